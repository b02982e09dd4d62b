// PyTorch operators on the host (malv/aten.h): kAtenIntern and kAtenOp.
#include "malv/aten.h"

#include <fmt/format.h>

#include <algorithm>
#include <cstring>

#include "guest/connection_core.h"
#include "proto/aten_record.h"
#include "proto/encoder.h"

namespace malv::guest {
namespace {

using wire::Opcode;

// Room a call leaves for what comes back (returns or a message).
constexpr std::uint64_t kReplyRoom = 4096;

struct Staged {
  std::uint64_t offset = 0;
  std::uint64_t record_bytes = 0;
  std::uint64_t bytes = 0;  // the range: the record, and room for the reply
};

// The record in a fresh arena range, at least `room` bytes long.
Result<Staged> stage_record(ConnectionCore& core, std::span<const wire::AtenValue> args,
                            std::uint64_t room) {
  MALV_ASSIGN_OR_RETURN(std::vector<std::uint64_t> words, proto::encode_aten_record(args));
  const std::uint64_t record_bytes = words.size() * sizeof(std::uint64_t);
  const std::uint64_t bytes = std::max(record_bytes, room);
  MALV_ASSIGN_OR_RETURN(std::uint64_t offset,
                        core.arena_allocate(std::max<std::uint64_t>(bytes, 8)));
  std::byte* at = core.arena().data() + offset;
  if (record_bytes > 0) std::memcpy(at, words.data(), record_bytes);
  return Staged{offset, record_bytes, std::max<std::uint64_t>(bytes, 8)};
}

}  // namespace

Result<std::uint32_t> aten_intern(Connection& connection, std::string_view schema_name) {
  if (schema_name.empty() || schema_name.size() > 256) {
    return Error(ErrorCode::kInvalidArgument,
                 fmt::format("an operator name of {} bytes (1-256)", schema_name.size()));
  }
  ConnectionCore& core = core_of(connection);
  MALV_ASSIGN_OR_RETURN(std::uint64_t offset, core.arena_allocate(schema_name.size()));
  std::memcpy(core.arena().data() + offset, schema_name.data(), schema_name.size());
  PendingCommand pending;
  pending.arena_offset = offset;
  pending.arena_bytes = schema_name.size();
  MALV_ASSIGN_OR_RETURN(wire::Completion c,
                        core.call(proto::make_command(Opcode::kAtenIntern, core.next_tag(),
                                                      {offset, schema_name.size()}),
                                  {offset, schema_name.size()}, pending));
  if (c.status != 0) {
    return Error(static_cast<ErrorCode>(c.status),
                 fmt::format("the host refused operator {}", schema_name));
  }
  return static_cast<std::uint32_t>(c.result);
}

Status aten_enqueue(Connection& connection, Stream& stream, std::uint32_t op,
                    std::span<const wire::AtenValue> args) {
  // Encoded into this thread's buffer (its capacity kept: no allocation
  // per operator), which queue_aten copies into the batch.
  thread_local std::vector<std::uint64_t> words;
  MALV_TRY(proto::encode_aten_record_into(args, words));
  return core_of(connection).queue_aten(stream.handle(), op, words);
}

std::uint32_t aten_held(Connection& connection) { return core_of(connection).aten_held(); }

std::uint64_t aten_batches_sent(Connection& connection) {
  return core_of(connection).aten_batches_sent();
}

Result<std::uint32_t> aten_flush_if_idle(Connection& connection) {
  ConnectionCore& core = core_of(connection);
  if (core.aten_held() == 0) return 0u;
  MALV_TRY(core.drain(std::chrono::nanoseconds::zero()));
  if (core.aten_batches_in_flight() < ConnectionCore::kAtenBatchesInFlight) {
    MALV_TRY(core.flush_aten_batch());
  }
  return core.aten_held();
}

Result<std::vector<wire::AtenValue>> aten_call(Connection& connection, Stream& stream,
                                               std::uint32_t op,
                                               std::span<const wire::AtenValue> args) {
  ConnectionCore& core = core_of(connection);
  MALV_ASSIGN_OR_RETURN(Staged staged, stage_record(core, args, kReplyRoom));
  std::vector<std::byte> landed(staged.bytes);
  PendingCommand pending;
  pending.arena_offset = staged.offset;
  pending.arena_bytes = staged.bytes;
  pending.read_into = landed.data();
  pending.read_on_error = true;
  MALV_ASSIGN_OR_RETURN(wire::Completion c,
                        core.call(proto::make_command(Opcode::kAtenOp, core.next_tag(),
                                                      {stream.handle(), op, staged.offset,
                                                       staged.record_bytes, staged.bytes}),
                                  {staged.offset, staged.bytes}, pending));
  const std::size_t written = std::min<std::size_t>(c.result, landed.size());
  if (c.status != 0) {
    return Error(static_cast<ErrorCode>(c.status),
                 std::string(reinterpret_cast<const char*>(landed.data()), written));
  }
  std::vector<std::uint64_t> words(written / sizeof(std::uint64_t));
  if (!words.empty())
    std::memcpy(words.data(), landed.data(), words.size() * sizeof(std::uint64_t));
  return proto::decode_aten_record(words);
}

}  // namespace malv::guest
