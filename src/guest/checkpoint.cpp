#include "malv/checkpoint.h"

#include <fmt/format.h>

#include <cstring>

#include "guest/connection_core.h"
#include "proto/encoder.h"

namespace malv::guest {
namespace {

using wire::Opcode;

// Header, entries (and names) of a spec, ready to be copied into the arena,
// and the layout they use: kFixedNames whenever it can hold them (every
// host reads it), else kNameTable (more than 256 entries, or names of 40
// bytes and more: the state_dicts of real models).
struct EncodedSpec {
  std::vector<std::byte> bytes;
  wire::CheckpointSpecLayout layout = wire::CheckpointSpecLayout::kFixedNames;
};

Result<EncodedSpec> encode_spec(std::string_view name, std::span<const CheckpointItem> items,
                                std::uint32_t metadata_bytes) {
  wire::CheckpointHeader header{};
  if (name.empty() || name.size() >= sizeof(header.name)) {
    return Error(
        ErrorCode::kInvalidArgument,
        fmt::format("checkpoint name '{}' must be 1 to {} bytes", name, sizeof(header.name) - 1));
  }
  if (items.empty() || items.size() > wire::kMaxCheckpointEntriesNamed) {
    return Error(ErrorCode::kInvalidArgument,
                 fmt::format("checkpoint of {} items, expected 1 to {}", items.size(),
                             wire::kMaxCheckpointEntriesNamed));
  }
  bool fixed = items.size() <= wire::kMaxCheckpointEntries;
  std::uint64_t name_bytes = 0;
  for (const CheckpointItem& item : items) {
    if (item.buffer == nullptr || item.name.empty() ||
        item.name.size() > wire::kMaxCheckpointEntryName ||
        item.name.find('\0') != std::string_view::npos) {
      return Error(ErrorCode::kInvalidArgument,
                   fmt::format("checkpoint item '{}' needs a buffer and a name of 1 to {} bytes "
                               "without NUL",
                               item.name, wire::kMaxCheckpointEntryName));
    }
    fixed = fixed && item.name.size() < sizeof(wire::CheckpointEntry::name);
    name_bytes += item.name.size();
  }
  std::memcpy(header.name, name.data(), name.size());
  header.entries = static_cast<std::uint32_t>(items.size());
  header.metadata_bytes = metadata_bytes;
  EncodedSpec spec;
  std::vector<std::byte>& out = spec.bytes;
  const auto append = [&out](const void* data, std::size_t bytes) {
    const auto* p = static_cast<const std::byte*>(data);
    out.insert(out.end(), p, p + bytes);
  };
  append(&header, sizeof(header));
  if (fixed) {
    for (const CheckpointItem& item : items) {
      wire::CheckpointEntry entry{};
      entry.buffer = item.buffer->handle();
      entry.offset = item.offset;
      entry.bytes = item.bytes;
      std::memcpy(entry.name, item.name.data(), item.name.size());
      append(&entry, sizeof(entry));
    }
    return spec;
  }
  spec.layout = wire::CheckpointSpecLayout::kNameTable;
  out.reserve(sizeof(header) + items.size() * sizeof(wire::CheckpointEntryRef) + name_bytes);
  for (const CheckpointItem& item : items) {
    const wire::CheckpointEntryRef entry{item.buffer->handle(), item.offset, item.bytes,
                                         static_cast<std::uint32_t>(item.name.size()), 0};
    append(&entry, sizeof(entry));
  }
  for (const CheckpointItem& item : items) append(item.name.data(), item.name.size());
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
  MALV_ASSIGN_OR_RETURN(EncodedSpec encoded,
                        encode_spec(name, items, static_cast<std::uint32_t>(metadata.size())));
  const std::vector<std::byte>& spec = encoded.bytes;
  const std::uint64_t bytes = spec.size() + metadata.size();
  MALV_ASSIGN_OR_RETURN(std::uint64_t offset, connection.arena_allocate(bytes));
  std::byte* arena = connection.arena().data() + offset;
  std::memcpy(arena, spec.data(), spec.size());
  if (!metadata.empty()) std::memcpy(arena + spec.size(), metadata.data(), metadata.size());
  PendingCommand pending;
  pending.arena_offset = offset;
  pending.arena_bytes = bytes;
  wire::Command cmd = proto::make_command(
      Opcode::kCheckpointSave, connection.next_tag(),
      {stream.handle(), offset, bytes, static_cast<std::uint64_t>(encoded.layout)});
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
  MALV_ASSIGN_OR_RETURN(EncodedSpec encoded, encode_spec(name, items, room));
  const std::vector<std::byte>& spec = encoded.bytes;
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
                                          {stream.handle(), offset, bytes,
                                           static_cast<std::uint64_t>(encoded.layout)}),
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
