#include "malv/checkpoint.h"

#include <fmt/format.h>

#include <cstring>

#include "guest/connection_core.h"
#include "proto/encoder.h"

namespace malv::guest {
namespace {

using wire::Opcode;

// Header and entries of a spec, ready to be copied into the arena.
Result<std::vector<std::byte>> encode_spec(std::string_view name,
                                           std::span<const CheckpointItem> items,
                                           std::uint32_t metadata_bytes) {
  wire::CheckpointHeader header{};
  if (name.empty() || name.size() >= sizeof(header.name)) {
    return Error(
        ErrorCode::kInvalidArgument,
        fmt::format("checkpoint name '{}' must be 1 to {} bytes", name, sizeof(header.name) - 1));
  }
  if (items.empty() || items.size() > wire::kMaxCheckpointEntries) {
    return Error(ErrorCode::kInvalidArgument,
                 fmt::format("checkpoint of {} items, expected 1 to {}", items.size(),
                             wire::kMaxCheckpointEntries));
  }
  std::memcpy(header.name, name.data(), name.size());
  header.entries = static_cast<std::uint32_t>(items.size());
  header.metadata_bytes = metadata_bytes;
  std::vector<std::byte> spec(sizeof(header) + items.size() * sizeof(wire::CheckpointEntry));
  std::memcpy(spec.data(), &header, sizeof(header));
  for (std::size_t i = 0; i < items.size(); ++i) {
    const CheckpointItem& item = items[i];
    wire::CheckpointEntry entry{};
    if (item.buffer == nullptr || item.name.empty() || item.name.size() >= sizeof(entry.name)) {
      return Error(ErrorCode::kInvalidArgument,
                   fmt::format("checkpoint item '{}' needs a buffer and a name of 1 to {} bytes",
                               item.name, sizeof(entry.name) - 1));
    }
    entry.buffer = item.buffer->handle();
    entry.offset = item.offset;
    entry.bytes = item.bytes;
    std::memcpy(entry.name, item.name.data(), item.name.size());
    std::memcpy(spec.data() + sizeof(header) + i * sizeof(entry), &entry, sizeof(entry));
  }
  return spec;
}

Error host_error(const wire::Completion& c, std::string_view what, std::string_view name) {
  const auto code = static_cast<ErrorCode>(c.status);
  return Error(
      code, fmt::format("{} checkpoint {}: host answered {}", what, name, error_code_name(code)));
}

}  // namespace

Result<std::uint64_t> save_checkpoint(Connection& owner, Stream& stream, std::string_view name,
                                      std::span<const CheckpointItem> items,
                                      std::span<const std::byte> metadata, SaveMode mode) {
  ConnectionCore& connection = core_of(owner);
  if (metadata.size() > wire::kMaxCheckpointMetadata) {
    return Error(ErrorCode::kInvalidArgument,
                 fmt::format("checkpoint metadata of {} bytes, at most {}", metadata.size(),
                             wire::kMaxCheckpointMetadata));
  }
  MALV_ASSIGN_OR_RETURN(std::vector<std::byte> spec,
                        encode_spec(name, items, static_cast<std::uint32_t>(metadata.size())));
  const std::uint64_t bytes = spec.size() + metadata.size();
  MALV_ASSIGN_OR_RETURN(std::uint64_t offset, connection.arena_allocate(bytes));
  std::byte* arena = connection.arena().data() + offset;
  std::memcpy(arena, spec.data(), spec.size());
  if (!metadata.empty()) std::memcpy(arena + spec.size(), metadata.data(), metadata.size());
  PendingCommand pending;
  pending.arena_offset = offset;
  pending.arena_bytes = bytes;
  wire::Command cmd = proto::make_command(Opcode::kCheckpointSave, connection.next_tag(),
                                          {stream.handle(), offset, bytes});
  if (mode == SaveMode::kAsync) {
    MALV_TRY(connection.submit(std::span(&cmd, 1), {offset, bytes}, &pending));
    return std::uint64_t{0};
  }
  MALV_ASSIGN_OR_RETURN(wire::Completion c, connection.call(cmd, {offset, bytes}, pending));
  if (c.status != 0) return host_error(c, "saving", name);
  return c.result;
}

Result<std::vector<std::byte>> restore_checkpoint(Connection& owner, Stream& stream,
                                                  std::string_view name,
                                                  std::span<const CheckpointItem> items) {
  ConnectionCore& connection = core_of(owner);
  const std::uint32_t room = wire::kMaxCheckpointMetadata;  // what any save can have stored
  MALV_ASSIGN_OR_RETURN(std::vector<std::byte> spec, encode_spec(name, items, room));
  const std::uint64_t bytes = spec.size() + room;
  MALV_ASSIGN_OR_RETURN(std::uint64_t offset, connection.arena_allocate(bytes));
  std::memcpy(connection.arena().data() + offset, spec.data(), spec.size());
  std::vector<std::byte> landed(bytes);
  PendingCommand pending;
  pending.arena_offset = offset;
  pending.arena_bytes = bytes;
  pending.read_into = landed.data();
  MALV_ASSIGN_OR_RETURN(
      wire::Completion c,
      connection.call(proto::make_command(Opcode::kCheckpointRestore, connection.next_tag(),
                                          {stream.handle(), offset, bytes}),
                      {offset, spec.size()}, pending));
  if (c.status != 0) return host_error(c, "restoring", name);
  if (c.result > room) {
    return Error(
        ErrorCode::kDataLoss,
        fmt::format("host returned {} metadata bytes, more than the {} asked for", c.result, room));
  }
  const auto first = landed.begin() + static_cast<std::ptrdiff_t>(spec.size());
  return std::vector<std::byte>(first, first + static_cast<std::ptrdiff_t>(c.result));
}

}  // namespace malv::guest
