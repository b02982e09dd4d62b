// Checkpoints kept by the host (libmalv side of the checkpoint service).
//
// The guest names a set of its device buffers (ranges of them) and some
// opaque metadata; the host snapshots the buffers at that point of a stream
// and writes them, with the metadata, atomically and with a checksum into
// this VM's checkpoint directory. Restoring copies them back, in stream
// order, into buffers of a later session (after a crash, on another host
// with the same directory) and returns the metadata.
//
//   const CheckpointItem items[] = {{"weights", &w, 0, w.size()}, {"bias", &b, 0, b.size()}};
//   MALV_TRY(save_checkpoint(*conn, stream, "run1", items, metadata));  // waits: durable
//   ...                                                                 // new session
//   MALV_ASSIGN_OR_RETURN(std::vector<std::byte> meta,
//                         restore_checkpoint(*conn, stream, "run1", items));
//
// Errors: validation and snapshot failures are stream errors (reported by
// the call when it waits, and by the stream's next synchronize); a save's
// disk error is reported by the waiting call only. Restore reads the file
// when the host takes the command: wait for a save to finish before
// restoring the same name.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string_view>
#include <vector>

#include "malv/connection.h"
#include "malv/objects.h"
#include "malv/result.h"
#include "malv/stream.h"

namespace malv::guest {

struct CheckpointItem {
  std::string_view name;  // unique in the checkpoint, 1..wire::kMaxCheckpointEntryName bytes
  const Buffer* buffer = nullptr;
  std::uint64_t offset = 0;
  std::uint64_t bytes = 0;
};

enum class SaveMode {
  kDurable,  // return once the file is on disk (or with the error)
  kAsync,    // return once submitted; the stream goes on after the snapshot
};

// `name`: [A-Za-z0-9._-], 1..63 bytes, not starting with '.'. `items`: 1 to
// wire::kMaxCheckpointEntriesNamed (65536; more than 256, or item names of 40
// bytes and more, need a host that reads the name-table layout, as every host
// since issue 21 does). `metadata`: at most wire::kMaxCheckpointMetadata
// bytes. Returns the file's size when durable, 0 in kAsync mode.
[[nodiscard]] Result<std::uint64_t> save_checkpoint(Connection& connection, Stream& stream,
                                                    std::string_view name,
                                                    std::span<const CheckpointItem> items,
                                                    std::span<const std::byte> metadata,
                                                    SaveMode mode = SaveMode::kDurable);

// Restores every item (each must be stored with exactly `bytes` bytes) and
// returns the checkpoint's metadata. kNotFound: no such checkpoint or
// entry; kDataLoss: the file is damaged.
[[nodiscard]] Result<std::vector<std::byte>> restore_checkpoint(
    Connection& connection, Stream& stream, std::string_view name,
    std::span<const CheckpointItem> items);

}  // namespace malv::guest
