#include "nn/checkpoint.h"

#include <fmt/format.h>
#include <zlib.h>

#include <cstring>

namespace malv::nn {
namespace {

constexpr char kMagic[8] = {'M', 'A', 'L', 'V', 'N', 'N', '0', '1'};
constexpr std::uint32_t kVersion = 1;

class Writer {
 public:
  void bytes(const void* data, std::size_t n) {
    const auto* p = static_cast<const std::byte*>(data);
    out_.insert(out_.end(), p, p + n);
  }
  void u32(std::uint32_t v) { bytes(&v, sizeof(v)); }
  void u64(std::uint64_t v) { bytes(&v, sizeof(v)); }
  void str(std::string_view s) {
    u32(static_cast<std::uint32_t>(s.size()));
    bytes(s.data(), s.size());
  }
  std::vector<std::byte>& out() { return out_; }

 private:
  std::vector<std::byte> out_;
};

class Reader {
 public:
  explicit Reader(std::span<const std::byte> in) : in_(in) {}
  Status bytes(void* out, std::size_t n, std::string_view what) {
    if (n > in_.size() - pos_) {
      return Error(ErrorCode::kDataLoss,
                   fmt::format("checkpoint truncated while reading {} (needs {} bytes at offset "
                               "{}, {} left)",
                               what, n, pos_, in_.size() - pos_));
    }
    if (n > 0) std::memcpy(out, in_.data() + pos_, n);
    pos_ += n;
    return ok_status();
  }
  Result<std::uint32_t> u32(std::string_view what) {
    std::uint32_t v = 0;
    MALV_TRY(bytes(&v, sizeof(v), what));
    return v;
  }
  Result<std::uint64_t> u64(std::string_view what) {
    std::uint64_t v = 0;
    MALV_TRY(bytes(&v, sizeof(v), what));
    return v;
  }
  Result<std::string> str(std::string_view what) {
    MALV_ASSIGN_OR_RETURN(std::uint32_t n, u32(what));
    if (n > remaining()) {
      return Error(ErrorCode::kDataLoss, fmt::format("checkpoint truncated in {}", what));
    }
    std::string s(n, '\0');
    MALV_TRY(bytes(s.data(), n, what));
    return s;
  }
  std::size_t remaining() const { return in_.size() - pos_; }

 private:
  std::span<const std::byte> in_;
  std::size_t pos_ = 0;
};

std::uint32_t crc_of(std::span<const std::byte> bytes) {
  uLong crc = crc32(0L, Z_NULL, 0);
  std::size_t done = 0;
  while (done < bytes.size()) {
    const auto n = static_cast<uInt>(std::min<std::size_t>(bytes.size() - done, 1u << 30));
    crc = crc32(crc, reinterpret_cast<const Bytef*>(bytes.data() + done), n);
    done += n;
  }
  return static_cast<std::uint32_t>(crc);
}

}  // namespace

void Checkpoint::set(std::string key, std::string value) {
  for (auto& [k, v] : metadata) {
    if (k == key) {
      v = std::move(value);
      return;
    }
  }
  metadata.emplace_back(std::move(key), std::move(value));
}

std::optional<std::string> Checkpoint::get(std::string_view key) const {
  for (const auto& [k, v] : metadata) {
    if (k == key) return v;
  }
  return std::nullopt;
}

Result<std::string> Checkpoint::require(std::string_view key) const {
  if (auto v = get(key)) return *v;
  return Error(ErrorCode::kInvalidArgument, fmt::format("checkpoint has no '{}' entry", key));
}

Status Checkpoint::require_equal(std::span<const Expected> expected) const {
  for (const auto& [key, want] : expected) {
    MALV_ASSIGN_OR_RETURN(std::string have, require(key));
    if (have != want) {
      return Error(
          ErrorCode::kInvalidArgument,
          fmt::format("checkpoint was made with {} {}, this run uses {}", key, have, want));
    }
  }
  return ok_status();
}

std::vector<std::byte> encode_checkpoint(const Checkpoint& checkpoint) {
  Writer w;
  w.bytes(kMagic, sizeof(kMagic));
  w.u32(kVersion);
  w.u32(static_cast<std::uint32_t>(checkpoint.metadata.size()));
  for (const auto& [key, value] : checkpoint.metadata) {
    w.str(key);
    w.str(value);
  }
  w.u32(static_cast<std::uint32_t>(checkpoint.arrays.size()));
  for (const NamedArray& array : checkpoint.arrays) {
    w.str(array.name);
    w.u64(array.values.size());
    w.bytes(array.values.data(), array.values.size() * sizeof(float));
  }
  w.u32(crc_of(w.out()));
  return std::move(w.out());
}

Result<Checkpoint> decode_checkpoint(std::span<const std::byte> bytes) {
  if (bytes.size() < sizeof(kMagic) + 4 * sizeof(std::uint32_t) ||
      std::memcmp(bytes.data(), kMagic, sizeof(kMagic)) != 0) {
    return Error(ErrorCode::kInvalidArgument, "not a MaLV-OS nn checkpoint (bad magic)");
  }
  const auto body = bytes.first(bytes.size() - sizeof(std::uint32_t));
  std::uint32_t stored_crc = 0;
  std::memcpy(&stored_crc, bytes.data() + body.size(), sizeof(stored_crc));
  if (const std::uint32_t crc = crc_of(body); crc != stored_crc) {
    return Error(
        ErrorCode::kDataLoss,
        fmt::format("checkpoint is corrupt: CRC-32 {:08x}, stored {:08x}", crc, stored_crc));
  }
  Reader r(body.subspan(sizeof(kMagic)));
  MALV_ASSIGN_OR_RETURN(std::uint32_t version, r.u32("version"));
  if (version != kVersion) {
    return Error(ErrorCode::kUnimplemented,
                 fmt::format("checkpoint version {} is not supported (this build reads {})",
                             version, kVersion));
  }
  Checkpoint checkpoint;
  MALV_ASSIGN_OR_RETURN(std::uint32_t entries, r.u32("metadata count"));
  for (std::uint32_t i = 0; i < entries; ++i) {
    MALV_ASSIGN_OR_RETURN(std::string key, r.str("metadata key"));
    MALV_ASSIGN_OR_RETURN(std::string value, r.str("metadata value"));
    checkpoint.metadata.emplace_back(std::move(key), std::move(value));
  }
  MALV_ASSIGN_OR_RETURN(std::uint32_t arrays, r.u32("array count"));
  for (std::uint32_t i = 0; i < arrays; ++i) {
    NamedArray array;
    MALV_ASSIGN_OR_RETURN(array.name, r.str("array name"));
    MALV_ASSIGN_OR_RETURN(std::uint64_t count, r.u64("array length"));
    if (count > r.remaining() / sizeof(float)) {
      return Error(ErrorCode::kDataLoss,
                   fmt::format("checkpoint truncated in array '{}' ({} floats announced)",
                               array.name, count));
    }
    array.values.resize(count);
    MALV_TRY(r.bytes(array.values.data(), count * sizeof(float), array.name));
    checkpoint.arrays.push_back(std::move(array));
  }
  if (r.remaining() != 0) {
    return Error(ErrorCode::kDataLoss,
                 fmt::format("checkpoint has {} unexpected bytes at the end", r.remaining()));
  }
  return checkpoint;
}

}  // namespace malv::nn
