// Checkpoint: named float32 arrays plus string metadata, as bytes or a file.
//
// The byte layout is fixed so two checkpoints of the same state compare
// equal byte for byte (little-endian host, as every MaLV-OS target is):
//
//   "MALVNN01"                     8 bytes magic
//   u32 version (1)
//   u32 metadata count, then per entry: u32 key length, key, u32 value length, value
//   u32 array count,    then per array: u32 name length, name, u64 floats, floats
//   u32 CRC-32 (zlib) of every byte before it
//
// Files are written atomically: a temporary file in the same directory,
// fsync, rename, fsync of the directory, so a crash leaves the old
// checkpoint or the new one, never half of one.
//
//   Checkpoint c;
//   c.set("model", "mlp:784-256-128-10");
//   c.arrays.push_back({"dense0.weight", weights});
//   MALV_TRY(write_file_atomically(path, encode_checkpoint(c)));
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "base/atomic_file.h"
#include "malv/result.h"

namespace malv::nn {

struct NamedArray {
  std::string name;
  std::vector<float> values;
};

struct Checkpoint {
  std::vector<std::pair<std::string, std::string>> metadata;  // in insertion order
  std::vector<NamedArray> arrays;

  void set(std::string key, std::string value);
  std::optional<std::string> get(std::string_view key) const;
  // The value of a key that must be present, or an error naming it.
  [[nodiscard]] Result<std::string> require(std::string_view key) const;
  // Each key must be present with the value this run has; a checkpoint made
  // with another one would not resume the same run, so the error names the
  // key and both values.
  using Expected = std::pair<std::string_view, std::string>;
  [[nodiscard]] Status require_equal(std::span<const Expected> expected) const;
};

std::vector<std::byte> encode_checkpoint(const Checkpoint& checkpoint);
// Validates magic, version, lengths and the CRC; errors say what is wrong.
[[nodiscard]] Result<Checkpoint> decode_checkpoint(std::span<const std::byte> bytes);

// Atomic writes and whole-file reads live in base/atomic_file.h.
using malv::read_file;
using malv::write_file_atomically;

}  // namespace malv::nn
