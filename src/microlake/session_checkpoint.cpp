// Session handlers of the checkpoint service (kCheckpointSave/Restore).
//
// Save: after validating the whole spec, the session queues a device-to-host
// copy of every entry on the guest's stream into a host snapshot, so the
// snapshot is exactly the buffers' state at that point of the stream; the
// stream goes on right after those copies. A marker behind them hands the
// snapshot to the session's CheckpointWriter, which writes the file
// atomically off the stream and posts the command's completion once the file
// is durable (result = file bytes).
//
// Restore: the file is read and verified when the command is taken (a
// missing file is kNotFound, a damaged one kDataLoss); every requested entry
// must exist with exactly the requested size. Host-to-device copies from the
// file's bytes (kept alive until they ran) are queued on the stream, and a
// marker behind them writes the stored metadata into the arena right after
// the entries and completes (result = metadata bytes).
//
// docs/protocol.md ("Checkpoints") is the guest-facing description.
#include <fmt/format.h>

#include <cstring>
#include <set>

#include "base/log.h"
#include "microlake/session.h"
#include "offload/checkpoint_store.h"
#include "offload/checkpoint_writer.h"
#include "proto/decoder.h"

namespace malv::microlake {
namespace {

// One entry of a spec, whatever its layout.
struct SpecEntry {
  std::uint64_t buffer = 0;
  std::uint64_t offset = 0;
  std::uint64_t bytes = 0;
};

// The spec as copied out of the arena (the guest may change the arena while
// the host works, so nothing is read from it twice).
struct CheckpointSpec {
  std::string name;
  std::vector<SpecEntry> entries;
  std::vector<std::string> entry_names;
  std::uint64_t metadata_offset = 0;   // in the arena, right after the entries
  std::uint32_t metadata_bytes = 0;    // save: stored bytes; restore: room
  std::vector<BufferObject*> buffers;  // of each entry, checked
};

// A NUL-terminated string in a fixed field, or nullopt if it has no NUL.
std::optional<std::string> terminated(const char* field, std::size_t size) {
  const std::size_t n = strnlen(field, size);
  if (n == size) return std::nullopt;
  return std::string(field, n);
}

// The entries and names of a kFixedNames spec: CheckpointEntry records
// with names of at most 39 bytes. `at` is the first record's offset in the
// arena; returns the offset right after the records.
Result<std::uint64_t> read_fixed_entries(std::span<const std::byte> arena, std::uint64_t at,
                                         std::uint32_t count, CheckpointSpec& spec) {
  std::vector<wire::CheckpointEntry> records(count);
  std::memcpy(records.data(), arena.data() + at, records.size() * sizeof(wire::CheckpointEntry));
  for (const wire::CheckpointEntry& record : records) {
    std::optional<std::string> entry_name = terminated(record.name, sizeof(record.name));
    if (!entry_name) {
      return Error(ErrorCode::kInvalidArgument,
                   fmt::format("checkpoint entry {} has an unterminated name (names of 40 bytes "
                               "and more use the name-table layout)",
                               spec.entry_names.size()));
    }
    spec.entries.push_back({record.buffer, record.offset, record.bytes});
    spec.entry_names.push_back(std::move(*entry_name));
  }
  return at + records.size() * sizeof(wire::CheckpointEntry);
}

// The entries and names of a kNameTable spec: CheckpointEntryRef records,
// then the names back to back, all within `end`.
Result<std::uint64_t> read_named_entries(std::span<const std::byte> arena, std::uint64_t at,
                                         std::uint64_t end, std::uint32_t count,
                                         CheckpointSpec& spec) {
  std::vector<wire::CheckpointEntryRef> records(count);
  std::memcpy(records.data(), arena.data() + at, records.size() * sizeof(wire::CheckpointEntryRef));
  std::uint64_t name_at = at + records.size() * sizeof(wire::CheckpointEntryRef);
  for (const wire::CheckpointEntryRef& record : records) {
    const std::size_t index = spec.entry_names.size();
    if (record.reserved != 0) {
      return Error(ErrorCode::kInvalidArgument,
                   fmt::format("checkpoint entry {}: reserved field is {}, must be zero", index,
                               record.reserved));
    }
    if (record.name_bytes == 0 || record.name_bytes > wire::kMaxCheckpointEntryName) {
      return Error(ErrorCode::kInvalidArgument,
                   fmt::format("checkpoint entry {}: a name of {} bytes, expected 1 to {}", index,
                               record.name_bytes, wire::kMaxCheckpointEntryName));
    }
    if (record.name_bytes > end - name_at) {
      return Error(ErrorCode::kOutOfRange,
                   fmt::format("checkpoint entry {}: its {}-byte name runs past the spec", index,
                               record.name_bytes));
    }
    std::string entry_name(reinterpret_cast<const char*>(arena.data() + name_at),
                           record.name_bytes);
    if (entry_name.find('\0') != std::string::npos) {
      return Error(ErrorCode::kInvalidArgument,
                   fmt::format("checkpoint entry {}: its name holds a NUL byte", index));
    }
    name_at += record.name_bytes;
    spec.entries.push_back({record.buffer, record.offset, record.bytes});
    spec.entry_names.push_back(std::move(entry_name));
  }
  return name_at;
}

// A spec in the arena, checked whole: the service exists, the range fits the
// arena, structure, names, and every entry's buffer by `lookup` (handle,
// right, range).
template <typename Lookup>
Result<CheckpointSpec> read_spec(const SessionServices& services, std::span<const std::byte> arena,
                                 proto::ArenaRange range, std::uint64_t layout, Lookup lookup) {
  if (services.checkpoints == nullptr) {
    return Error(ErrorCode::kUnimplemented, "this host offers no checkpoint service");
  }
  const bool named = layout == static_cast<std::uint64_t>(wire::CheckpointSpecLayout::kNameTable);
  if (!named && layout != static_cast<std::uint64_t>(wire::CheckpointSpecLayout::kFixedNames)) {
    return Error(ErrorCode::kUnimplemented,
                 fmt::format("checkpoint spec layout {} is unknown (this host reads 0, fixed "
                             "names, and 1, a name table)",
                             layout));
  }
  if (!proto::range_fits(range.offset, range.bytes, arena.size())) {
    return Error(ErrorCode::kOutOfRange,
                 fmt::format("checkpoint spec [{}, +{}) is outside the {}-byte arena", range.offset,
                             range.bytes, arena.size()));
  }
  wire::CheckpointHeader header{};
  if (range.bytes < sizeof(header)) {
    return Error(ErrorCode::kOutOfRange, fmt::format("checkpoint spec of {} bytes is shorter than "
                                                     "its {}-byte header",
                                                     range.bytes, sizeof(header)));
  }
  std::memcpy(&header, arena.data() + range.offset, sizeof(header));
  CheckpointSpec spec;
  const std::optional<std::string> name = terminated(header.name, sizeof(header.name));
  if (!name) return Error(ErrorCode::kInvalidArgument, "checkpoint name is not NUL-terminated");
  MALV_TRY(offload::CheckpointStore::validate_name(*name, "checkpoint name"));
  spec.name = *name;
  const std::uint32_t max_entries =
      named ? wire::kMaxCheckpointEntriesNamed : wire::kMaxCheckpointEntries;
  if (header.entries == 0 || header.entries > max_entries) {
    return Error(ErrorCode::kInvalidArgument,
                 fmt::format("checkpoint of {} entries, expected 1 to {}{}", header.entries,
                             max_entries, named ? "" : " (more with the name-table layout)"));
  }
  const std::uint64_t record_bytes =
      named ? sizeof(wire::CheckpointEntryRef) : sizeof(wire::CheckpointEntry);
  const std::uint64_t records_end = sizeof(header) + std::uint64_t{header.entries} * record_bytes;
  if (records_end + header.metadata_bytes > range.bytes) {
    return Error(ErrorCode::kOutOfRange,
                 fmt::format("checkpoint spec of {} entries and {} metadata bytes needs {} bytes, "
                             "the range holds {}",
                             header.entries, header.metadata_bytes,
                             records_end + header.metadata_bytes, range.bytes));
  }
  const std::uint64_t first = range.offset + sizeof(header);
  // The names (kNameTable) lie between the records and the metadata.
  const std::uint64_t names_end = range.offset + range.bytes - header.metadata_bytes;
  Result<std::uint64_t> read =
      named ? read_named_entries(arena, first, names_end, header.entries, spec)
            : read_fixed_entries(arena, first, header.entries, spec);
  if (!read.ok()) return std::move(read).error();
  const std::uint64_t entries_end = read.value() - range.offset;
  std::set<std::string_view> seen;
  for (std::size_t i = 0; i < spec.entry_names.size(); ++i) {
    if (spec.entry_names[i].empty() || !seen.insert(spec.entry_names[i]).second) {
      return Error(ErrorCode::kInvalidArgument,
                   fmt::format("checkpoint entry {} has an empty or repeated name '{}'", i,
                               spec.entry_names[i]));
    }
  }
  spec.metadata_offset = range.offset + entries_end;
  spec.metadata_bytes = header.metadata_bytes;
  for (std::size_t i = 0; i < spec.entries.size(); ++i) {
    Result<BufferObject*> buffer = lookup(spec.entries[i]);
    if (!buffer.ok()) {
      return std::move(buffer).error().with_context(
          fmt::format("checkpoint entry '{}'", spec.entry_names[i]));
    }
    spec.buffers.push_back(buffer.value());
  }
  return spec;
}

// What the copies of one checkpoint share until its marker has run.
struct CopyState {
  std::mutex mutex;
  ErrorCode first_error = ErrorCode::kOk;  // guarded by mutex

  void note(ErrorCode status) {
    std::lock_guard lock(mutex);
    if (first_error == ErrorCode::kOk) first_error = status;
  }
  ErrorCode error() {
    std::lock_guard lock(mutex);
    return first_error;
  }
};

}  // namespace

void Session::finish_in_stream(StreamObject& stream, std::uint64_t tag, std::uint16_t opcode,
                               std::uint16_t flags, ErrorCode status, Reply reply) {
  if (status != ErrorCode::kOk) {
    std::lock_guard lock(stream.mutex);
    if (stream.first_error == ErrorCode::kOk) {
      stream.first_error = status;
      stream.first_error_tag = tag;
    }
  }
  reply.result2 = stream.handle;
  complete_tag(tag, opcode, flags, status, reply);
}

Status Session::run(const wire::Command& cmd, const proto::CheckpointSaveRequest& req) {
  MALV_ASSIGN_OR_RETURN(StreamObject * stream, streams_.lookup(req.stream, kRightUse));
  MALV_ASSIGN_OR_RETURN(CheckpointSpec spec,
                        read_spec(services_, arena_, req.spec, req.layout, [&](const SpecEntry& e) {
                          return buffer_range(e.buffer, kRightRead, e.offset, e.bytes);
                        }));
  if (spec.metadata_bytes > wire::kMaxCheckpointMetadata) {
    return Error(ErrorCode::kInvalidArgument,
                 fmt::format("checkpoint metadata of {} bytes, at most {}", spec.metadata_bytes,
                             wire::kMaxCheckpointMetadata));
  }
  // At most 65536 entries, each within a buffer (< 2^40 bytes): no overflow.
  std::uint64_t total = spec.metadata_bytes;
  for (const SpecEntry& e : spec.entries) total += e.bytes;
  if (!checkpoint_writer_) {
    checkpoint_writer_ = std::make_unique<offload::CheckpointWriter>(
        *services_.checkpoints, vm_name_,
        offload::CheckpointWriterLimits{services_.host_memory, services_.checkpoint_quota});
  }
  MALV_TRY(checkpoint_writer_->reserve(total));  // the last check: nothing below fails

  auto contents = std::make_shared<offload::CheckpointContents>();
  const auto* metadata = arena_.data() + spec.metadata_offset;
  contents->metadata.assign(metadata, metadata + spec.metadata_bytes);
  contents->entries.resize(spec.entries.size());
  auto state = std::make_shared<CopyState>();
  for (std::size_t i = 0; i < spec.entries.size(); ++i) {
    offload::CheckpointBlob& blob = contents->entries[i];
    blob.name = spec.entry_names[i];
    blob.bytes.resize(spec.entries[i].bytes);
    if (blob.bytes.empty()) continue;
    PendingOp copy;
    copy.internal = true;
    copy.on_done = [state](ErrorCode status) {
      if (status != ErrorCode::kOk) state->note(status);
    };
    enqueue(*stream,
            accel::CopyD2H{spec.buffers[i]->ptr + spec.entries[i].offset, blob.bytes.data(),
                           blob.bytes.size()},
            std::move(copy));
  }
  // Behind the copies: the snapshot is complete; the writer takes it from here.
  PendingOp marker;
  marker.internal = true;
  marker.on_done = [this, stream, state, contents, total, name = spec.name, tag = cmd.tag,
                    opcode = cmd.opcode, flags = cmd.flags](ErrorCode) mutable {
    offload::CheckpointWriter& writer = *checkpoint_writer_;
    if (const ErrorCode error = state->error(); error != ErrorCode::kOk) {
      writer.release(total);
      log::warn("microlake", "{}: snapshot for checkpoint {} failed: {}", vm_name_, name,
                error_code_name(error));
      finish_in_stream(*stream, tag, opcode, flags, error, {});
      return;
    }
    const proto::RawHandle handle = stream->handle;
    auto owned = std::make_unique<offload::CheckpointContents>(std::move(*contents));
    contents.reset();
    // Disk errors come after the stream has moved on: they are reported
    // on this command's completion alone, never as a stream error.
    writer.submit(std::move(name), std::move(owned), total,
                  [this, handle, tag, opcode, flags](Result<std::uint64_t> written) {
                    if (written.ok()) {
                      complete_tag(tag, opcode, flags, ErrorCode::kOk,
                                   {.result = written.value(), .result2 = handle});
                    } else {
                      complete_tag(tag, opcode, flags, written.error().code(), {.result2 = handle});
                    }
                  });
  };
  enqueue(*stream, accel::Marker{}, std::move(marker));
  return ok_status();
}

Status Session::run(const wire::Command& cmd, const proto::CheckpointRestoreRequest& req) {
  MALV_ASSIGN_OR_RETURN(StreamObject * stream, streams_.lookup(req.stream, kRightUse));
  MALV_ASSIGN_OR_RETURN(CheckpointSpec spec,
                        read_spec(services_, arena_, req.spec, req.layout, [&](const SpecEntry& e) {
                          return buffer_range(e.buffer, kRightWrite, e.offset, e.bytes);
                        }));
  Result<offload::CheckpointImage> loaded = services_.checkpoints->load(vm_name_, spec.name);
  if (!loaded.ok()) {
    if (loaded.error().code() != ErrorCode::kNotFound) {
      log::warn("microlake", "{}: restoring checkpoint {}: {}", vm_name_, spec.name,
                loaded.error().to_string());
    }
    return std::move(loaded).error();
  }
  auto image = std::make_shared<const offload::CheckpointImage>(std::move(loaded).value());
  std::vector<const offload::CheckpointImage::Entry*> stored;
  for (std::size_t i = 0; i < spec.entries.size(); ++i) {
    const offload::CheckpointImage::Entry* entry = image->find(spec.entry_names[i]);
    if (entry == nullptr) {
      return Error(ErrorCode::kNotFound,
                   fmt::format("checkpoint {} has no entry '{}'", spec.name, spec.entry_names[i]));
    }
    if (entry->bytes != spec.entries[i].bytes) {
      return Error(
          ErrorCode::kInvalidArgument,
          fmt::format("checkpoint {} entry '{}' holds {} bytes, {} were asked for", spec.name,
                      spec.entry_names[i], entry->bytes, spec.entries[i].bytes));
    }
    stored.push_back(entry);
  }
  const std::uint64_t metadata_bytes = image->metadata().size();
  if (metadata_bytes > spec.metadata_bytes) {
    // Not a fault of the host: the guest retries with the room it needs,
    // which the completion says (in stream order, like any stream error).
    PendingOp too_small;
    too_small.internal = true;
    too_small.on_done = [this, stream, metadata_bytes, tag = cmd.tag, opcode = cmd.opcode,
                         flags = cmd.flags](ErrorCode) {
      finish_in_stream(*stream, tag, opcode, flags, ErrorCode::kOutOfRange,
                       {.result = metadata_bytes});
    };
    enqueue(*stream, accel::Marker{}, std::move(too_small));
    return ok_status();
  }

  auto state = std::make_shared<CopyState>();
  for (std::size_t i = 0; i < spec.entries.size(); ++i) {
    if (stored[i]->bytes == 0) continue;
    PendingOp copy;
    copy.internal = true;
    copy.on_done = [state, image](ErrorCode status) {  // the image outlives the copy
      if (status != ErrorCode::kOk) state->note(status);
    };
    enqueue(*stream,
            accel::CopyH2D{image->data(*stored[i]).data(),
                           spec.buffers[i]->ptr + spec.entries[i].offset, stored[i]->bytes},
            std::move(copy));
  }
  PendingOp marker;
  marker.internal = true;
  marker.on_done = [this, stream, state, image, offset = spec.metadata_offset, tag = cmd.tag,
                    opcode = cmd.opcode, flags = cmd.flags](ErrorCode) {
    const ErrorCode error = state->error();
    const std::span<const std::byte> metadata = image->metadata();
    if (error == ErrorCode::kOk && !metadata.empty()) {
      std::memcpy(arena_.data() + offset, metadata.data(), metadata.size());
    }
    finish_in_stream(*stream, tag, opcode, flags, error,
                     {.result = metadata.size(), .arena_out = {offset, metadata.size()}});
  };
  enqueue(*stream, accel::Marker{}, std::move(marker));
  return ok_status();
}

}  // namespace malv::microlake
