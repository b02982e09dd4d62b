#include "offload/checkpoint_file.h"

#include <fmt/format.h>
#include <zlib.h>

#include <algorithm>
#include <array>
#include <cstring>
#include <set>

namespace malv::offload {
namespace {

constexpr std::array<char, 8> kMagic = {'M', 'A', 'L', 'V', 'C', 'K', '0', '1'};
constexpr std::uint32_t kVersion = 1;

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

// A name fits the table slot (with its NUL) and holds no NUL itself.
bool valid_entry_name(std::string_view name) {
  return !name.empty() && name.size() < kCheckpointEntryNameBytes &&
         name.find('\0') == std::string_view::npos;
}

}  // namespace

std::uint64_t CheckpointContents::file_bytes() const {
  std::uint64_t total = sizeof(FileHeader) + entries.size() * sizeof(FileEntry) + metadata.size();
  for (const CheckpointBlob& e : entries) total += e.bytes.size();
  return total + kCrcBytes;
}

Status encode_checkpoint(const CheckpointContents& contents, const ByteSink& out) {
  if (contents.entries.empty()) {
    return Error(ErrorCode::kInvalidArgument, "a checkpoint needs at least one entry");
  }
  std::set<std::string_view> names;
  FileHeader header{kMagic, kVersion, static_cast<std::uint32_t>(contents.entries.size()),
                    contents.metadata.size(), 0};
  std::vector<FileEntry> table(contents.entries.size());
  for (std::size_t i = 0; i < contents.entries.size(); ++i) {
    const CheckpointBlob& e = contents.entries[i];
    if (!valid_entry_name(e.name) || !names.insert(e.name).second) {
      return Error(
          ErrorCode::kInvalidArgument,
          fmt::format("checkpoint entry name '{}' is empty, too long or repeated", e.name));
    }
    std::memset(&table[i], 0, sizeof(FileEntry));
    std::memcpy(table[i].name, e.name.data(), e.name.size());
    table[i].bytes = e.bytes.size();
    header.payload_bytes += e.bytes.size();
  }
  std::uint32_t crc = crc32(0L, Z_NULL, 0);
  auto emit = [&](std::span<const std::byte> part) -> Status {
    crc = crc_update(crc, part);
    return out(part);
  };
  MALV_TRY(emit(bytes_of(header)));
  MALV_TRY(emit(std::as_bytes(std::span(table))));
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
  if (header.version != kVersion) {
    return Error(ErrorCode::kUnimplemented,
                 fmt::format("checkpoint version {} is not supported (this host reads {})",
                             header.version, kVersion));
  }
  // Every length is bounded by the file size before it is added, so the
  // sums below cannot overflow.
  const std::uint64_t size = file.size();
  if (header.entries == 0 || header.entries > size / sizeof(FileEntry) ||
      header.metadata_bytes > size || header.payload_bytes > size) {
    return data_loss(
        fmt::format("checkpoint header announces {} entries, {} metadata bytes and {} "
                    "payload bytes in a {}-byte file",
                    header.entries, header.metadata_bytes, header.payload_bytes, size));
  }
  const std::uint64_t table_end = sizeof(header) + header.entries * sizeof(FileEntry);
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
  std::set<std::string> names;
  for (std::uint32_t i = 0; i < header.entries; ++i) {
    FileEntry entry{};
    std::memcpy(&entry, file.data() + sizeof(header) + i * sizeof(FileEntry), sizeof(entry));
    const std::string name(entry.name, strnlen(entry.name, sizeof(entry.name)));
    if (name.size() == sizeof(entry.name) || name.empty() || !names.insert(name).second) {
      return data_loss(fmt::format("checkpoint entry {} has a bad or repeated name", i));
    }
    if (entry.bytes > expected - kCrcBytes - offset) {
      return data_loss(fmt::format("checkpoint entry '{}' overruns the payload", name));
    }
    image.entries_.push_back({name, offset, entry.bytes});
    offset += entry.bytes;
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
