#include "malv/connection.h"

#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <bit>
#include <cstring>

#include "base/log.h"
#include "guest/connection_core.h"
#include "guest/ivshmem_device.h"
#include "malv/aten_record.h"
#include "proto/encoder.h"

namespace malv::guest {
namespace {

using namespace std::chrono_literals;
using wire::Opcode;

constexpr auto kWaitSlice = 20ms;
// Ordinary-memory transfers go through the arena in chunks of at most this
// much, two in flight: the host copies one while the guest fills the next,
// and the pages they use stay mapped and in cache (measured in
// docs/benchmarks.md, `malv bench overhead` and `malv bench ipc`).
constexpr std::uint64_t kStagingChunkBytes = 2ull << 20;

bool is_stream_op(std::uint16_t opcode) {
  switch (static_cast<Opcode>(opcode)) {
    case Opcode::kWrite:
    case Opcode::kRead:
    case Opcode::kCopy:
    case Opcode::kMemset:
    case Opcode::kEventRecord:
    case Opcode::kEventWait:
    case Opcode::kDatasetNext:
    case Opcode::kAtenOp:
    case Opcode::kAtenBatch:
    case Opcode::kLaunch: return true;
    default: return false;
  }
}

}  // namespace

Error completion_error(const wire::Completion& c) {
  return Error(static_cast<ErrorCode>(c.status),
               fmt::format("command #{} ({}) failed", c.tag, proto::opcode_name(c.opcode)));
}

KernelArg KernelArg::f32(float v) {
  return {{static_cast<std::uint32_t>(wire::ArgKind::kF32), 0, std::bit_cast<std::uint32_t>(v), 0}};
}

void ObjectHandle::reset() {
  if (connection_ != nullptr && handle_ != 0) connection_->release_object(destroy_, handle_);
  connection_ = nullptr;
  handle_ = 0;
}

ConnectionCore::ConnectionCore(std::unique_ptr<ClientChannel> channel)
    : channel_(std::move(channel)), arena_(channel_->arena().size()) {}

ConnectionCore& core_of(Connection& connection) { return *connection.core_; }

Connection::Connection(std::unique_ptr<ConnectionCore> core) : core_(std::move(core)) {}

Connection::~Connection() {
  // Let outstanding reads land before their destinations go away.
  if (!core_->broken()) (void)core_->synchronize();
}

void Connection::flush() { core_->flush(); }
std::uint64_t Connection::doorbells() const { return core_->doorbells(); }
std::uint64_t Connection::arena_bytes() const { return core_->arena_bytes(); }

Result<std::unique_ptr<Connection>> Connection::connect_unix(const std::string& path,
                                                             const ConnectOptions& options) {
  MALV_ASSIGN_OR_RETURN(ipc::Socket socket, ipc::Socket::connect_unix(path));
  MALV_ASSIGN_OR_RETURN(
      auto channel, open_shm_channel(std::move(socket),
                                     {options.vm_name, options.credential, options.arena_bytes}));
  return std::unique_ptr<Connection>(
      new Connection(std::make_unique<ConnectionCore>(std::move(channel))));
}

Result<std::unique_ptr<Connection>> Connection::connect_tcp(const std::string& host,
                                                            std::uint16_t port,
                                                            const ConnectOptions& options) {
  MALV_ASSIGN_OR_RETURN(ipc::Socket socket, ipc::Socket::connect_tcp(host, port));
  MALV_ASSIGN_OR_RETURN(auto channel,
                        open_stream_channel(std::move(socket), {options.vm_name, options.credential,
                                                                options.arena_bytes}));
  return std::unique_ptr<Connection>(
      new Connection(std::make_unique<ConnectionCore>(std::move(channel))));
}

Result<std::unique_ptr<Connection>> Connection::connect_vsock(std::uint32_t cid, std::uint32_t port,
                                                              const ConnectOptions& options) {
  MALV_ASSIGN_OR_RETURN(ipc::Socket socket, ipc::Socket::connect_vsock(cid, port));
  MALV_ASSIGN_OR_RETURN(auto channel,
                        open_stream_channel(std::move(socket), {options.vm_name, options.credential,
                                                                options.arena_bytes}));
  return std::unique_ptr<Connection>(
      new Connection(std::make_unique<ConnectionCore>(std::move(channel))));
}

bool ivshmem_device_present() { return find_ivshmem_pci_device().has_value(); }

Result<std::unique_ptr<Connection>> Connection::connect_ivshmem(const std::string& device,
                                                                const ConnectOptions& options) {
  MALV_ASSIGN_OR_RETURN(std::unique_ptr<IvshmemDevice> opened, open_ivshmem_device(device));
  MALV_ASSIGN_OR_RETURN(
      auto channel, open_ivshmem_channel(std::move(opened), {options.vm_name, options.credential,
                                                             options.arena_bytes}));
  return std::unique_ptr<Connection>(
      new Connection(std::make_unique<ConnectionCore>(std::move(channel))));
}

Status ConnectionCore::drain(std::chrono::nanoseconds timeout, std::uint64_t wake_tag) {
  if (broken_) return Error(ErrorCode::kDisconnected, "connection to the host is closed");
  std::array<wire::Completion, 64> batch;
  Result<std::size_t> n = channel_->poll(batch);
  if (n.ok() && n.value() == 0 && timeout > std::chrono::nanoseconds::zero()) {
    Status waited = channel_->wait(timeout, wake_tag);
    if (!waited.ok()) {
      broken_ = true;
      return waited;
    }
    n = channel_->poll(batch);
  }
  if (!n.ok()) {
    broken_ = true;
    return std::move(n).error().with_context("reading completions");
  }
  for (std::size_t i = 0; i < n.value(); ++i) process(batch[i]);
  return ok_status();
}

void ConnectionCore::process(const wire::Completion& c) {
  if (c.status != 0 && is_stream_op(c.opcode)) {
    auto [it, inserted] = stream_errors_.try_emplace(
        c.result2, FailedCommand{c.tag, c.opcode, static_cast<ErrorCode>(c.status)});
    (void)it;
    (void)inserted;  // keep the first failure per stream
  }
  auto it = pending_.find(c.tag);
  if (it == pending_.end()) {
    if (c.status != 0 && !is_stream_op(c.opcode)) {
      log::debug("guest", "{}", completion_error(c).to_string());
    }
    return;
  }
  Pending& p = it->second;
  if (p.aten_batch) --aten_batches_in_flight_;
  if ((c.status == 0 || p.read_on_error) && p.read_into != nullptr) {
    std::memcpy(p.read_into, channel_->arena().data() + p.arena_offset, p.arena_bytes);
  }
  if (p.arena_bytes > 0) arena_.release(p.arena_offset, p.arena_bytes);
  if (p.staging) staging_in_flight_ -= p.arena_bytes;
  if (p.wanted) {
    p.done = true;
    p.completion = c;
  } else {
    pending_.erase(it);
  }
}

Status ConnectionCore::submit(std::span<const wire::Command> records, proto::ArenaRange publish,
                              const Pending* pending) {
  // Queued operators go first: every command keeps its place in the stream.
  if (aten_batch_.count != 0) MALV_TRY(flush_aten_batch());
  if (pending != nullptr) pending_.emplace(records[0].tag, *pending);
  for (;;) {
    Result<bool> pushed = channel_->try_submit(records, publish);
    if (!pushed.ok()) {
      broken_ = true;
      pending_.erase(records[0].tag);
      if (pending != nullptr && pending->staging) staging_in_flight_ -= pending->arena_bytes;
      return std::move(pushed).error().with_context("submitting a command");
    }
    if (pushed.value()) return ok_status();
    // The ring is full: let the host catch up, by a burst's worth.
    do {
      MALV_TRY(drain(std::chrono::microseconds(100)));
    } while (!channel_->ready_for_a_burst());
  }
}

namespace {
// A batch is sent once it holds this many operators or words, whether or
// not one is in flight (the host's validation copies it whole).
constexpr std::uint32_t kAtenBatchOps = 256;
constexpr std::size_t kAtenBatchWords = 64 * 1024 / sizeof(std::uint64_t);
}  // namespace

Status ConnectionCore::queue_aten(std::uint64_t stream, std::uint32_t op,
                                  std::span<const std::uint64_t> record) {
  // A record as large as a batch may be (1 MiB, header included) travels
  // in a batch of its own.
  constexpr std::size_t kMaxRecordWords = wire::kAtenMaxBatchBytes / sizeof(std::uint64_t) - 1;
  if (record.size() > kMaxRecordWords) {
    return Error(
        ErrorCode::kInvalidArgument,
        fmt::format("an operator record of {} words (at most {})", record.size(), kMaxRecordWords));
  }
  if (aten_batch_.count != 0 && (aten_batch_.stream != stream ||
                                 aten_batch_.words.size() + 1 + record.size() > kAtenBatchWords)) {
    MALV_TRY(flush_aten_batch());
  }
  aten_batch_.stream = stream;
  aten_batch_.words.push_back(std::uint64_t{op} | (std::uint64_t{record.size()} << 32));
  aten_batch_.words.insert(aten_batch_.words.end(), record.begin(), record.end());
  ++aten_batch_.count;
  MALV_TRY(drain(std::chrono::nanoseconds::zero()));  // has a batch in flight completed?
  if (aten_batches_in_flight_ < kAtenBatchesInFlight || aten_batch_.count >= kAtenBatchOps ||
      aten_batch_.words.size() >= kAtenBatchWords) {
    return flush_aten_batch();
  }
  return ok_status();
}

Status ConnectionCore::flush_aten_batch() {
  if (aten_batch_.count == 0) return ok_status();
  AtenBatch batch = std::move(aten_batch_);
  aten_batch_ = AtenBatch{};
  const std::uint64_t bytes = batch.words.size() * sizeof(std::uint64_t);
  MALV_ASSIGN_OR_RETURN(const std::uint64_t offset, arena_allocate(bytes));
  std::memcpy(arena().data() + offset, batch.words.data(), bytes);
  Pending pending;
  pending.arena_offset = offset;
  pending.arena_bytes = bytes;
  pending.aten_batch = true;
  const wire::Command cmd = proto::make_command(Opcode::kAtenBatch, next_tag(),
                                                {batch.stream, batch.count, offset, bytes});
  ++aten_batches_in_flight_;
  ++aten_batches_sent_;
  aten_batched_ops_ += batch.count;
  Status submitted = submit(std::span(&cmd, 1), {offset, bytes}, &pending);
  if (submitted.ok()) {
    flush();  // a batch is work to start now: ring the doorbell (a syscall only if the host sleeps)
  } else {
    --aten_batches_in_flight_;
  }
  batch.words.clear();  // keeps its capacity for the next batch
  if (aten_batch_.count == 0) aten_batch_.words = std::move(batch.words);
  return submitted;
}

Result<wire::Completion> ConnectionCore::call(wire::Command cmd, proto::ArenaRange publish,
                                              Pending pending) {
  pending.wanted = true;
  MALV_TRY(submit(std::span(&cmd, 1), publish, &pending));
  flush();  // the caller waits for it: the host must look now
  for (;;) {
    auto it = pending_.find(cmd.tag);
    if (it != pending_.end() && it->second.done) {
      wire::Completion c = it->second.completion;
      pending_.erase(it);
      return c;
    }
    MALV_TRY(drain(kWaitSlice, cmd.tag));
  }
}

Result<std::uint64_t> ConnectionCore::arena_allocate(std::uint64_t bytes) {
  if (bytes > arena_.capacity()) {
    return Error(ErrorCode::kInvalidArgument,
                 fmt::format("{} bytes do not fit the {}-byte arena", bytes, arena_.capacity()));
  }
  for (;;) {
    if (std::optional<std::uint64_t> offset = arena_.allocate(bytes)) return *offset;
    MALV_TRY(drain(kWaitSlice));  // in-flight transfers give their ranges back
  }
}

std::uint64_t ConnectionCore::staging_chunk_bytes() const {
  return std::clamp<std::uint64_t>(arena_.capacity() / 4, 4096, kStagingChunkBytes);
}

Result<std::uint64_t> ConnectionCore::staging_allocate(std::uint64_t bytes) {
  MALV_TRY(drain(std::chrono::nanoseconds::zero()));  // completed chunks give their room back
  while (staging_in_flight_ > 0 && staging_in_flight_ + bytes > staging_window()) {
    MALV_TRY(drain(kWaitSlice));
  }
  MALV_ASSIGN_OR_RETURN(std::uint64_t offset, arena_allocate(bytes));
  staging_in_flight_ += bytes;
  return offset;
}

Status Connection::ping() {
  ConnectionCore& core = *core_;
  MALV_ASSIGN_OR_RETURN(wire::Completion c,
                        core.call(proto::make_command(Opcode::kNop, core.next_tag())));
  if (c.status != 0) return completion_error(c);
  return ok_status();
}

Result<DeviceInfo> Connection::device_info() {
  ConnectionCore& core = *core_;
  MALV_ASSIGN_OR_RETURN(std::uint64_t offset, core.arena_allocate(sizeof(wire::DeviceInfoRecord)));
  PendingCommand pending;
  pending.arena_offset = offset;
  pending.arena_bytes = sizeof(wire::DeviceInfoRecord);
  wire::DeviceInfoRecord record{};
  pending.read_into = reinterpret_cast<std::byte*>(&record);
  MALV_ASSIGN_OR_RETURN(wire::Completion c,
                        core.call(proto::make_command(Opcode::kDeviceQuery, core.next_tag(),
                                                      {offset, sizeof(record)}),
                                  {}, pending));
  if (c.status != 0) return completion_error(c);
  DeviceInfo info;
  info.backend.assign(record.backend, strnlen(record.backend, sizeof(record.backend)));
  info.name.assign(record.name, strnlen(record.name, sizeof(record.name)));
  info.total_memory = record.total_memory;
  info.free_memory = record.free_memory;
  info.compute_units = record.compute_units;
  return info;
}

void HostBuffer::reset() {
  if (connection_ != nullptr && bytes_ > 0) connection_->release_arena(offset_, bytes_);
  connection_ = nullptr;
  bytes_ = 0;
  data_ = nullptr;
}

Result<HostBuffer> Connection::allocate_host(std::uint64_t bytes) {
  ConnectionCore& core = *core_;
  if (bytes == 0) return Error(ErrorCode::kInvalidArgument, "host buffer of 0 bytes");
  MALV_ASSIGN_OR_RETURN(std::uint64_t offset, core.arena_allocate(bytes));
  return HostBuffer(&core, offset, bytes, core.arena().data() + offset);
}

Result<Buffer> Connection::allocate(std::uint64_t bytes) {
  ConnectionCore& core = *core_;
  MALV_ASSIGN_OR_RETURN(wire::Completion c, core.call(proto::make_command(
                                                Opcode::kBufferAlloc, core.next_tag(), {bytes})));
  if (c.status != 0) {
    return completion_error(c).with_context(fmt::format("allocating {} bytes", bytes));
  }
  return Buffer(&core, c.result, bytes);
}

Result<Stream> Connection::create_stream(bool high_priority) {
  ConnectionCore& core = *core_;
  MALV_ASSIGN_OR_RETURN(wire::Completion c,
                        core.call(proto::make_command(Opcode::kStreamCreate, core.next_tag(),
                                                      {high_priority ? 1u : 0u})));
  if (c.status != 0) return completion_error(c);
  return Stream(&core, c.result);
}

Result<Event> Connection::create_event() {
  ConnectionCore& core = *core_;
  MALV_ASSIGN_OR_RETURN(wire::Completion c,
                        core.call(proto::make_command(Opcode::kEventCreate, core.next_tag())));
  if (c.status != 0) return completion_error(c);
  return Event(&core, c.result);
}

Result<Kernel> Connection::kernel(std::string_view name) {
  ConnectionCore& core = *core_;
  MALV_ASSIGN_OR_RETURN(std::uint64_t offset, core.arena_allocate(name.size()));
  std::memcpy(core.arena().data() + offset, name.data(), name.size());
  PendingCommand pending;
  pending.arena_offset = offset;
  pending.arena_bytes = name.size();
  MALV_ASSIGN_OR_RETURN(
      wire::Completion c,
      core.call(proto::make_command(Opcode::kKernelLookup, core.next_tag(), {offset, name.size()}),
                {offset, name.size()}, pending));
  if (c.status != 0) {
    return completion_error(c).with_context(fmt::format("looking up kernel '{}'", name));
  }
  return Kernel{std::string(name), c.result, static_cast<std::uint32_t>(c.result2)};
}

Status Connection::synchronize() { return core_->synchronize(); }

Status ConnectionCore::synchronize() {
  MALV_ASSIGN_OR_RETURN(wire::Completion c,
                        call(proto::make_command(Opcode::kSyncAll, next_tag())));
  if (c.status == 0) {
    stream_errors_.clear();
    return ok_status();
  }
  // The host names the failing command by tag; find its stream's record.
  for (auto& [stream, failed] : stream_errors_) {
    if (failed.tag == c.result) return take_stream_error(stream, failed.status, failed.tag);
  }
  return Error(static_cast<ErrorCode>(c.status),
               fmt::format("command #{} failed (reported at synchronize)", c.result));
}

Status ConnectionCore::take_stream_error(std::uint64_t stream_handle, ErrorCode status,
                                         std::uint64_t tag) {
  auto it = stream_errors_.find(stream_handle);
  std::uint16_t opcode = 0xffff;
  if (it != stream_errors_.end()) {
    if (it->second.tag == tag) opcode = it->second.opcode;
    stream_errors_.erase(it);
  }
  if (status == ErrorCode::kOk) return ok_status();
  return Error(status, fmt::format("command #{} ({}) on stream {:#x} failed", tag,
                                   proto::opcode_name(opcode), stream_handle));
}

Result<std::uint64_t> Connection::elapsed_ns(const Event& start, const Event& end) {
  ConnectionCore& core = *core_;
  MALV_ASSIGN_OR_RETURN(wire::Completion c,
                        core.call(proto::make_command(Opcode::kEventElapsed, core.next_tag(),
                                                      {start.handle(), end.handle()})));
  if (c.status != 0) return completion_error(c);
  return c.result;
}

void ConnectionCore::release_object(wire::Opcode destroy, std::uint64_t handle) {
  if (broken_) return;
  wire::Command cmd = proto::make_command(destroy, next_tag(), {handle});
  cmd.flags = wire::kFlagSkipSuccess;
  if (Status s = submit(std::span(&cmd, 1), {}, nullptr); !s.ok()) {
    log::debug("guest", "releasing handle {:#x}: {}", handle, s.error().to_string());
    return;
  }
  flush();  // memory goes back to the quota now, not at this guest's next wait
}

}  // namespace malv::guest
