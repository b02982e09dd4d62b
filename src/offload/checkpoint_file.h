// The checkpoint file format of the host's checkpoint service ("MALVCK01"):
// named byte blobs (snapshots of a guest's device buffers) plus opaque
// metadata from the guest, with a CRC-32 over everything.
//
// Layout (little-endian, as every MaLV-OS host is), version 1:
//
//   "MALVCK01"                         8 bytes magic
//   u32 version (1)
//   u32 entry count                    >= 1
//   u64 metadata bytes
//   u64 payload bytes                  sum of the entries' bytes
//   entry table, per entry:
//     char name[40]                    NUL-terminated, NUL-padded, unique
//     u64 bytes
//   metadata bytes
//   payload: every entry's bytes, back to back, in table order
//   u32 CRC-32 (zlib) of every byte before it
//
// Version 2 (names of 40 bytes and more: the state_dicts of real models) is
// the same but for the entry table, which is a table of fixed records
//     u64 bytes, u32 name bytes (1..kCheckpointMaxEntryName), u32 zero
// followed by every name, back to back (no NUL). A checkpoint is written
// as version 1 whenever all its names fit, so hosts that read only version 1
// read every checkpoint they could before; this host reads both.
//
// The file's size is exactly what the header announces, so a truncated or
// extended file is detected before the CRC is even computed; a flipped bit
// anywhere fails the CRC. Either way parsing says kDataLoss and why.
//
//   CheckpointContents c;
//   c.entries.push_back({"dense0.weight", bytes});
//   MALV_TRY(encode_checkpoint(c, [&](std::span<const std::byte> part) { ... }));
//   MALV_ASSIGN_OR_RETURN(CheckpointImage image, CheckpointImage::parse(file_bytes));
//   const CheckpointImage::Entry* e = image.find("dense0.weight");
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "malv/result.h"

namespace malv::offload {

inline constexpr std::size_t kCheckpointEntryNameBytes = 40;  // version 1, including the NUL
inline constexpr std::size_t kCheckpointMaxEntryName = 1024;  // bytes (version 2)

struct CheckpointBlob {
  std::string name;  // 1..kCheckpointMaxEntryName bytes, no NUL
  std::vector<std::byte> bytes;
};

struct CheckpointContents {
  std::vector<CheckpointBlob> entries;
  std::vector<std::byte> metadata;

  // Size of the encoded file.
  std::uint64_t file_bytes() const;
};

// Receives the encoding piece by piece, in order.
using ByteSink = std::function<Status(std::span<const std::byte>)>;

// Checks the contents (entry count, names) and streams the encoding to
// `out`; an error from `out` ends it.
[[nodiscard]] Status encode_checkpoint(const CheckpointContents& contents, const ByteSink& out);
[[nodiscard]] Result<std::vector<std::byte>> encode_checkpoint(const CheckpointContents& contents);

// A parsed checkpoint file. It keeps the file's bytes; entries and metadata
// are ranges of them, so nothing is copied.
class CheckpointImage {
 public:
  struct Entry {
    std::string name;
    std::uint64_t offset = 0;  // in the file
    std::uint64_t bytes = 0;
  };

  // Validates magic, version, lengths, names and the CRC (kDataLoss, or
  // kUnimplemented for another version).
  [[nodiscard]] static Result<CheckpointImage> parse(std::vector<std::byte> file);

  const std::vector<Entry>& entries() const { return entries_; }
  const Entry* find(std::string_view name) const;
  std::span<const std::byte> data(const Entry& entry) const {
    return std::span(file_).subspan(entry.offset, entry.bytes);
  }
  std::span<const std::byte> metadata() const {
    return std::span(file_).subspan(metadata_offset_, metadata_bytes_);
  }
  std::uint64_t file_bytes() const { return file_.size(); }

 private:
  std::vector<std::byte> file_;
  std::vector<Entry> entries_;
  std::uint64_t metadata_offset_ = 0;
  std::uint64_t metadata_bytes_ = 0;
};

}  // namespace malv::offload
