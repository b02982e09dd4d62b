#include "malv/stream.h"

#include <fmt/format.h>

#include <algorithm>
#include <cstring>
#include <vector>

#include "guest/connection_core.h"
#include "proto/encoder.h"

namespace malv::guest {
namespace {

using wire::Opcode;

}  // namespace

// Ordinary guest memory goes through the arena in chunks (ConnectionCore::
// staging_allocate): the guest fills chunk i+1 while the host copies chunk i,
// so a transfer of several chunks hands each to the host at once rather
// than at the guest's next wait (a one-chunk transfer is part of a burst).
Status Stream::write(const Buffer& dst, std::uint64_t offset, std::span<const std::byte> data) {
  ConnectionCore& conn = core();
  const std::uint64_t chunk = conn.staging_chunk_bytes();
  std::uint64_t done = 0;
  do {
    const std::uint64_t n = std::min<std::uint64_t>(chunk, data.size() - done);
    MALV_ASSIGN_OR_RETURN(std::uint64_t arena_offset, conn.staging_allocate(n));
    if (n > 0) std::memcpy(conn.arena().data() + arena_offset, data.data() + done, n);
    PendingCommand pending;
    pending.arena_offset = arena_offset;
    pending.arena_bytes = n;
    pending.staging = true;
    wire::Command cmd = proto::make_command(
        Opcode::kWrite, conn.next_tag(), {handle(), dst.handle(), offset + done, arena_offset, n});
    MALV_TRY(conn.submit(std::span(&cmd, 1), {arena_offset, n}, &pending));
    if (data.size() > chunk) conn.flush();  // the host copies this chunk while we fill the next
    done += n;
  } while (done < data.size());
  return ok_status();
}

Status Stream::read(const Buffer& src, std::uint64_t offset, std::span<std::byte> out) {
  ConnectionCore& conn = core();
  const std::uint64_t chunk = conn.staging_chunk_bytes();
  std::uint64_t done = 0;
  do {
    const std::uint64_t n = std::min<std::uint64_t>(chunk, out.size() - done);
    MALV_ASSIGN_OR_RETURN(std::uint64_t arena_offset, conn.staging_allocate(n));
    PendingCommand pending;
    pending.arena_offset = arena_offset;
    pending.arena_bytes = n;
    pending.staging = true;
    pending.read_into = out.data() + done;
    wire::Command cmd = proto::make_command(
        Opcode::kRead, conn.next_tag(), {handle(), src.handle(), offset + done, arena_offset, n});
    MALV_TRY(conn.submit(std::span(&cmd, 1), {}, &pending));
    if (out.size() > chunk) conn.flush();  // the host fills this chunk while we queue the next
    done += n;
  } while (done < out.size());
  return ok_status();
}

namespace {

Status check_host_range(const HostBuffer& host, std::uint64_t offset, std::uint64_t bytes) {
  if (offset > host.size() || bytes > host.size() - offset) {
    return Error(ErrorCode::kOutOfRange,
                 fmt::format("range [{}, +{}) is outside the {}-byte host buffer", offset, bytes,
                             host.size()));
  }
  return ok_status();
}

}  // namespace

Status Stream::write(const Buffer& dst, std::uint64_t offset, const HostBuffer& src,
                     std::uint64_t src_offset, std::uint64_t bytes) {
  MALV_TRY(check_host_range(src, src_offset, bytes));
  ConnectionCore& conn = core();
  const std::uint64_t arena_offset = src.arena_offset() + src_offset;
  wire::Command cmd = proto::make_command(Opcode::kWrite, conn.next_tag(),
                                          {handle(), dst.handle(), offset, arena_offset, bytes});
  cmd.flags = wire::kFlagSkipSuccess;
  return conn.submit(std::span(&cmd, 1), {arena_offset, bytes}, nullptr);
}

Status Stream::read(const Buffer& src, std::uint64_t offset, const HostBuffer& dst,
                    std::uint64_t dst_offset, std::uint64_t bytes) {
  MALV_TRY(check_host_range(dst, dst_offset, bytes));
  ConnectionCore& conn = core();
  wire::Command cmd =
      proto::make_command(Opcode::kRead, conn.next_tag(),
                          {handle(), src.handle(), offset, dst.arena_offset() + dst_offset, bytes});
  // A completion is wanted even on success: on stream transports the data
  // travels in front of it.
  return conn.submit(std::span(&cmd, 1), {}, nullptr);
}

Status Stream::copy(const Buffer& src, std::uint64_t src_offset, const Buffer& dst,
                    std::uint64_t dst_offset, std::uint64_t bytes) {
  ConnectionCore& conn = core();
  wire::Command cmd =
      proto::make_command(Opcode::kCopy, conn.next_tag(),
                          {handle(), src.handle(), src_offset, dst.handle(), dst_offset, bytes});
  cmd.flags = wire::kFlagSkipSuccess;
  return conn.submit(std::span(&cmd, 1), {}, nullptr);
}

Status Stream::memset(const Buffer& dst, std::uint64_t offset, std::uint64_t bytes,
                      std::uint8_t value) {
  ConnectionCore& conn = core();
  wire::Command cmd = proto::make_command(Opcode::kMemset, conn.next_tag(),
                                          {handle(), dst.handle(), offset, bytes, value});
  cmd.flags = wire::kFlagSkipSuccess;
  return conn.submit(std::span(&cmd, 1), {}, nullptr);
}

Status Stream::launch(const Kernel& kernel, std::span<const KernelArg> args) {
  if (args.size() > wire::kMaxKernelArgs) {
    return Error(ErrorCode::kInvalidArgument,
                 fmt::format("{} arguments for kernel '{}', at most {}", args.size(), kernel.name,
                             wire::kMaxKernelArgs));
  }
  ConnectionCore& conn = core();
  // Command + up to four extension records, built in place (no allocation).
  std::array<wire::Command, 1 + wire::kMaxExtensionRecords> records{};
  const std::uint8_t extensions = proto::extension_records_for(args.size());
  records[0] =
      proto::make_command(Opcode::kLaunch, conn.next_tag(), {handle(), kernel.handle, args.size()});
  records[0].extensions = extensions;
  records[0].flags = wire::kFlagSkipSuccess;
  auto* packed = reinterpret_cast<wire::KernelArg*>(records.data() + 1);
  for (std::size_t i = 0; i < args.size(); ++i) packed[i] = args[i].wire;
  return conn.submit(std::span(records.data(), 1 + extensions), {}, nullptr);
}

Status Stream::record(const Event& event) {
  ConnectionCore& conn = core();
  wire::Command cmd =
      proto::make_command(Opcode::kEventRecord, conn.next_tag(), {handle(), event.handle()});
  cmd.flags = wire::kFlagSkipSuccess;
  return conn.submit(std::span(&cmd, 1), {}, nullptr);
}

Status Stream::wait(const Event& event) {
  ConnectionCore& conn = core();
  wire::Command cmd =
      proto::make_command(Opcode::kEventWait, conn.next_tag(), {handle(), event.handle()});
  cmd.flags = wire::kFlagSkipSuccess;
  return conn.submit(std::span(&cmd, 1), {}, nullptr);
}

Status Stream::synchronize() {
  ConnectionCore& conn = core();
  MALV_ASSIGN_OR_RETURN(wire::Completion c, conn.call(proto::make_command(
                                                Opcode::kStreamSync, conn.next_tag(), {handle()})));
  return conn.take_stream_error(handle(), static_cast<ErrorCode>(c.status), c.result);
}

Status synchronize(const Event& event) {
  ConnectionCore& conn = ConnectionCore::of(event);
  MALV_ASSIGN_OR_RETURN(
      wire::Completion c,
      conn.call(proto::make_command(Opcode::kEventSync, conn.next_tag(), {event.handle()})));
  if (c.status != 0) {
    return Error(static_cast<ErrorCode>(c.status), fmt::format("event synchronize failed"));
  }
  return ok_status();
}

}  // namespace malv::guest
