// Safetensors: reading and writing the .safetensors tensor file format
// (float32 tensors only), for the models MLaaS modules ship.
//
// Layout: an 8-byte little-endian header length N, N bytes of JSON, then the
// data section. The JSON maps each tensor name to
//   {"dtype": "F32", "shape": [d0, d1, ...], "data_offsets": [begin, end]}
// (offsets relative to the data section) and may hold "__metadata__", a map
// of string to string. Reading checks everything before trusting it: the
// header length against the file, the JSON, the dtype (F32 only), shapes
// against byte counts (with overflow checks), offsets within the data
// section and not overlapping. Errors name the file and the tensor.
//
//   SafetensorsFile file;
//   file.tensors["w"] = TensorF32{{2, 3}, {1, 2, 3, 4, 5, 6}};
//   file.metadata["format"] = "malv-mlp";
//   write_safetensors("/tmp/m.safetensors", file).value();
//   SafetensorsFile back = read_safetensors("/tmp/m.safetensors").value();
#pragma once

#include <cstdint>
#include <map>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "malv/result.h"

namespace malv::mlaas {

struct TensorF32 {
  std::vector<std::int64_t> shape;
  std::vector<float> data;  // row-major, product(shape) elements
};

struct SafetensorsFile {
  std::map<std::string, TensorF32> tensors;
  std::map<std::string, std::string> metadata;
};

inline constexpr std::uint64_t kMaxSafetensorsHeader = 100u << 20;

// Parses a whole file's bytes; origin names it in errors.
[[nodiscard]] Result<SafetensorsFile> parse_safetensors(std::span<const std::uint8_t> bytes,
                                                        std::string_view origin);
[[nodiscard]] Result<SafetensorsFile> read_safetensors(const std::string& path);

// Encodes tensors in name order; checks each tensor's data against its shape.
[[nodiscard]] Result<std::vector<std::uint8_t>> encode_safetensors(const SafetensorsFile& file);
[[nodiscard]] Status write_safetensors(const std::string& path, const SafetensorsFile& file);

}  // namespace malv::mlaas
