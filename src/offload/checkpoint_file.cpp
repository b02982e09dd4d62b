#include "offload/checkpoint_file.h"

#include <fmt/format.h>
#include <zlib.h>

#include <algorithm>
#include <array>
#include <cstring>
#include <limits>
#include <set>

namespace malv::offload {
namespace {

constexpr std::array<char, 8> kMagic = {'M', 'A', 'L', 'V', 'C', 'K', '0', '1'};
constexpr std::uint32_t kVersionFixedNames = 1;
constexpr std::uint32_t kVersionNameTable = 2;

struct FileHeader {
  std::array<char, 8> magic;
  std::uint32_t version;
  std::uint32_t entries;
  std::uint64_t metadata_bytes;
  std::uint64_t payload_bytes;
};
static_assert(sizeof(FileHeader) == 32);

struct FileEntry {
  char name[kCheckpointEntryNameBytes];
  std::uint64_t bytes;
};
static_assert(sizeof(FileEntry) == 48);

struct FileEntryRef {  // version 2; the names follow the table
  std::uint64_t bytes;
  std::uint32_t name_bytes;
  std::uint32_t reserved;
};
static_assert(sizeof(FileEntryRef) == 16);

constexpr std::uint64_t kCrcBytes = sizeof(std::uint32_t);

std::uint32_t crc_update(std::uint32_t crc, std::span<const std::byte> bytes) {
  while (!bytes.empty()) {
    const auto n = static_cast<uInt>(std::min<std::size_t>(bytes.size(), 1u << 30));
    crc = static_cast<std::uint32_t>(crc32(crc, reinterpret_cast<const Bytef*>(bytes.data()), n));
    bytes = bytes.subspan(n);
  }
  return crc;
}

template <typename T>
std::span<const std::byte> bytes_of(const T& value) {
  return std::as_bytes(std::span(&value, 1));
}

Error data_loss(std::string message) { return Error(ErrorCode::kDataLoss, std::move(message)); }

// A name of 1..kCheckpointMaxEntryName bytes that holds no NUL.
bool valid_entry_name(std::string_view name) {
  return !name.empty() && name.size() <= kCheckpointMaxEntryName &&
         name.find('\0') == std::string_view::npos;
}

// Version 1 whenever every name fits its 40-byte slot, else version 2.
bool needs_name_table(const CheckpointContents& contents) {
  return std::any_of(contents.entries.begin(), contents.entries.end(), [](const CheckpointBlob& e) {
    return e.name.size() >= kCheckpointEntryNameBytes;
  });
}

}  // namespace

std::uint64_t CheckpointContents::file_bytes() const {
  std::uint64_t total = sizeof(FileHeader) + metadata.size();
  const bool table = needs_name_table(*this);
  for (const CheckpointBlob& e : entries) {
    total += e.bytes.size() + (table ? sizeof(FileEntryRef) + e.name.size() : sizeof(FileEntry));
  }
  return total + kCrcBytes;
}

Status encode_checkpoint(const CheckpointContents& contents, const ByteSink& out) {
  if (contents.entries.empty()) {
    return Error(ErrorCode::kInvalidArgument, "a checkpoint needs at least one entry");
  }
  if (contents.entries.size() > std::numeric_limits<std::uint32_t>::max()) {
    return Error(ErrorCode::kInvalidArgument,
                 fmt::format("a checkpoint of {} entries is too many", contents.entries.size()));
  }
  const bool name_table = needs_name_table(contents);
  std::set<std::string_view> names;
  FileHeader header{kMagic, name_table ? kVersionNameTable : kVersionFixedNames,
                    static_cast<std::uint32_t>(contents.entries.size()), contents.metadata.size(),
                    0};
  std::vector<FileEntry> table;
  std::vector<FileEntryRef> refs;
  for (const CheckpointBlob& e : contents.entries) {
    if (!valid_entry_name(e.name) || !names.insert(e.name).second) {
      return Error(ErrorCode::kInvalidArgument,
                   fmt::format("checkpoint entry name '{}' is empty, longer than {} bytes, holds "
                               "a NUL or is repeated",
                               e.name, kCheckpointMaxEntryName));
    }
    if (name_table) {
      refs.push_back({e.bytes.size(), static_cast<std::uint32_t>(e.name.size()), 0});
    } else {
      FileEntry& entry = table.emplace_back();
      std::memset(&entry, 0, sizeof(FileEntry));
      std::memcpy(entry.name, e.name.data(), e.name.size());
      entry.bytes = e.bytes.size();
    }
    header.payload_bytes += e.bytes.size();
  }
  std::uint32_t crc = crc32(0L, Z_NULL, 0);
  auto emit = [&](std::span<const std::byte> part) -> Status {
    crc = crc_update(crc, part);
    return out(part);
  };
  MALV_TRY(emit(bytes_of(header)));
  if (name_table) {
    MALV_TRY(emit(std::as_bytes(std::span(refs))));
    for (const CheckpointBlob& e : contents.entries) {
      MALV_TRY(emit(std::as_bytes(std::span(e.name.data(), e.name.size()))));
    }
  } else {
    MALV_TRY(emit(std::as_bytes(std::span(table))));
  }
  MALV_TRY(emit(contents.metadata));
  for (const CheckpointBlob& e : contents.entries) MALV_TRY(emit(e.bytes));
  return out(bytes_of(crc));
}

Result<std::vector<std::byte>> encode_checkpoint(const CheckpointContents& contents) {
  std::vector<std::byte> file;
  file.reserve(contents.file_bytes());
  MALV_TRY(encode_checkpoint(contents, [&](std::span<const std::byte> part) {
    file.insert(file.end(), part.begin(), part.end());
    return ok_status();
  }));
  return file;
}

Result<CheckpointImage> CheckpointImage::parse(std::vector<std::byte> file) {
  FileHeader header{};
  if (file.size() < sizeof(header) + kCrcBytes) {
    return data_loss(fmt::format("checkpoint file of {} bytes is truncated (a header alone is {})",
                                 file.size(), sizeof(header) + kCrcBytes));
  }
  std::memcpy(&header, file.data(), sizeof(header));
  if (header.magic != kMagic) return data_loss("not a MaLV-OS checkpoint file (bad magic)");
  if (header.version != kVersionFixedNames && header.version != kVersionNameTable) {
    return Error(ErrorCode::kUnimplemented,
                 fmt::format("checkpoint version {} is not supported (this host reads {} and {})",
                             header.version, kVersionFixedNames, kVersionNameTable));
  }
  const bool name_table = header.version == kVersionNameTable;
  // Every length is bounded by the file size before it is added, so the
  // sums below cannot overflow.
  const std::uint64_t size = file.size();
  const std::uint64_t record_bytes = name_table ? sizeof(FileEntryRef) : sizeof(FileEntry);
  if (header.entries == 0 || header.entries > size / record_bytes || header.metadata_bytes > size ||
      header.payload_bytes > size) {
    return data_loss(
        fmt::format("checkpoint header announces {} entries, {} metadata bytes and {} "
                    "payload bytes in a {}-byte file",
                    header.entries, header.metadata_bytes, header.payload_bytes, size));
  }
  const std::uint64_t records_end = sizeof(header) + header.entries * record_bytes;
  std::vector<std::string> names(header.entries);
  std::vector<std::uint64_t> sizes(header.entries);
  std::uint64_t table_end = records_end;
  if (records_end > size) return data_loss("checkpoint entry table runs past the file's end");
  for (std::uint32_t i = 0; i < header.entries; ++i) {
    const std::byte* at = file.data() + sizeof(header) + i * record_bytes;
    if (name_table) {
      FileEntryRef ref{};
      std::memcpy(&ref, at, sizeof(ref));
      if (ref.name_bytes == 0 || ref.name_bytes > kCheckpointMaxEntryName || ref.reserved != 0 ||
          ref.name_bytes > size - table_end) {
        return data_loss(
            fmt::format("checkpoint entry {} has a bad name length {}", i, ref.name_bytes));
      }
      names[i].assign(reinterpret_cast<const char*>(file.data() + table_end), ref.name_bytes);
      table_end += ref.name_bytes;
      sizes[i] = ref.bytes;
    } else {
      FileEntry entry{};
      std::memcpy(&entry, at, sizeof(entry));
      names[i].assign(entry.name, strnlen(entry.name, sizeof(entry.name)));
      if (names[i].size() == sizeof(entry.name)) names[i].clear();  // no NUL: bad
      sizes[i] = entry.bytes;
    }
  }
  if (table_end > size - header.metadata_bytes || table_end + header.metadata_bytes > size) {
    return data_loss("checkpoint entry names run past the file's end");
  }
  const std::uint64_t expected =
      table_end + header.metadata_bytes + header.payload_bytes + kCrcBytes;
  if (expected != size) {
    return data_loss(fmt::format("checkpoint file is {} bytes, its header announces {} ({})", size,
                                 expected, size < expected ? "truncated" : "trailing bytes"));
  }
  std::uint32_t stored = 0;
  std::memcpy(&stored, file.data() + size - kCrcBytes, kCrcBytes);
  const std::uint32_t computed =
      crc_update(crc32(0L, Z_NULL, 0), std::span(file).first(size - kCrcBytes));
  if (computed != stored) {
    return data_loss(
        fmt::format("checkpoint is corrupt: CRC-32 {:08x}, stored {:08x}", computed, stored));
  }
  CheckpointImage image;
  image.metadata_offset_ = table_end;
  image.metadata_bytes_ = header.metadata_bytes;
  std::uint64_t offset = table_end + header.metadata_bytes;
  std::set<std::string> seen;
  for (std::uint32_t i = 0; i < header.entries; ++i) {
    if (names[i].empty() || names[i].find('\0') != std::string::npos ||
        !seen.insert(names[i]).second) {
      return data_loss(fmt::format("checkpoint entry {} has a bad or repeated name", i));
    }
    if (sizes[i] > expected - kCrcBytes - offset) {
      return data_loss(fmt::format("checkpoint entry '{}' overruns the payload", names[i]));
    }
    image.entries_.push_back({std::move(names[i]), offset, sizes[i]});
    offset += sizes[i];
  }
  if (offset != size - kCrcBytes) {
    return data_loss("checkpoint entries do not add up to the payload size");
  }
  image.file_ = std::move(file);
  return image;
}

const CheckpointImage::Entry* CheckpointImage::find(std::string_view name) const {
  auto it = std::find_if(entries_.begin(), entries_.end(),
                         [&](const Entry& e) { return e.name == name; });
  return it == entries_.end() ? nullptr : &*it;
}

}  // namespace malv::offload
