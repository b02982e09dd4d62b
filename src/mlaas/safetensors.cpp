// .safetensors reader and writer (see safetensors.h).
#include "mlaas/safetensors.h"

#include <fmt/format.h>

#include <algorithm>
#include <cstring>
#include <fstream>
#include <iterator>
#include <limits>
#include <nlohmann/json.hpp>

namespace malv::mlaas {
namespace {

Error bad(std::string_view origin, std::string message) {
  return Error(ErrorCode::kInvalidArgument, fmt::format("safetensors {}: {}", origin, message));
}

// Elements of a shape, or an error on a negative dimension or overflow.
Result<std::uint64_t> element_count(const std::vector<std::int64_t>& shape) {
  std::uint64_t count = 1;
  for (std::int64_t dim : shape) {
    if (dim < 0)
      return Error(ErrorCode::kInvalidArgument, fmt::format("negative dimension {}", dim));
    auto d = static_cast<std::uint64_t>(dim);
    if (d != 0 && count > std::numeric_limits<std::uint64_t>::max() / 4 / d) {
      return Error(ErrorCode::kInvalidArgument, "shape overflows");
    }
    count *= d;
  }
  return count;
}

struct Span {
  std::uint64_t begin;
  std::uint64_t end;
  std::string name;
};

}  // namespace

Result<SafetensorsFile> parse_safetensors(std::span<const std::uint8_t> bytes,
                                          std::string_view origin) {
  if (bytes.size() < 8) {
    return bad(origin,
               fmt::format("truncated: {} bytes, the header length alone is 8", bytes.size()));
  }
  std::uint64_t header_len = 0;
  for (int i = 7; i >= 0; --i) header_len = (header_len << 8) | bytes[static_cast<std::size_t>(i)];
  if (header_len > kMaxSafetensorsHeader) {
    return bad(origin, fmt::format("header length {} is past the {} byte limit", header_len,
                                   kMaxSafetensorsHeader));
  }
  if (header_len > bytes.size() - 8) {
    return bad(origin, fmt::format("truncated: header says {} bytes of JSON, file has {} after "
                                   "the length",
                                   header_len, bytes.size() - 8));
  }
  const char* json_begin = reinterpret_cast<const char*>(bytes.data() + 8);
  nlohmann::json header = nlohmann::json::parse(json_begin, json_begin + header_len, nullptr,
                                                /*allow_exceptions=*/false);
  if (header.is_discarded() || !header.is_object()) {
    return bad(origin, "header is not a JSON object");
  }
  const std::span<const std::uint8_t> data = bytes.subspan(8 + header_len);

  SafetensorsFile file;
  std::vector<Span> spans;
  for (const auto& [name, entry] : header.items()) {
    if (name == "__metadata__") {
      if (!entry.is_object()) return bad(origin, "__metadata__ is not an object");
      for (const auto& [key, value] : entry.items()) {
        if (!value.is_string())
          return bad(origin, fmt::format("__metadata__.{} is not a string", key));
        file.metadata[key] = value.get<std::string>();
      }
      continue;
    }
    if (!entry.is_object()) return bad(origin, fmt::format("tensor '{}' is not an object", name));
    auto dtype = entry.find("dtype");
    auto shape = entry.find("shape");
    auto offsets = entry.find("data_offsets");
    if (dtype == entry.end() || shape == entry.end() || offsets == entry.end()) {
      return bad(origin, fmt::format("tensor '{}' needs dtype, shape and data_offsets", name));
    }
    if (!dtype->is_string())
      return bad(origin, fmt::format("tensor '{}': dtype is not a string", name));
    if (dtype->get<std::string>() != "F32") {
      return bad(origin, fmt::format("tensor '{}' has dtype {}; only F32 is supported", name,
                                     dtype->get<std::string>()));
    }
    TensorF32 tensor;
    if (!shape->is_array())
      return bad(origin, fmt::format("tensor '{}': shape is not an array", name));
    for (const auto& dim : *shape) {
      if (!dim.is_number_integer()) {
        return bad(origin, fmt::format("tensor '{}': shape holds a non-integer", name));
      }
      tensor.shape.push_back(dim.get<std::int64_t>());
    }
    if (!offsets->is_array() || offsets->size() != 2 || !(*offsets)[0].is_number_unsigned() ||
        !(*offsets)[1].is_number_unsigned()) {
      return bad(origin, fmt::format("tensor '{}': data_offsets must be [begin, end]", name));
    }
    const auto begin = (*offsets)[0].get<std::uint64_t>();
    const auto end = (*offsets)[1].get<std::uint64_t>();
    if (begin > end || end > data.size()) {
      return bad(origin, fmt::format("tensor '{}': data_offsets [{}, {}] out of range of the {} "
                                     "byte data section (truncated file?)",
                                     name, begin, end, data.size()));
    }
    Result<std::uint64_t> count = element_count(tensor.shape);
    if (!count.ok())
      return bad(origin, fmt::format("tensor '{}': {}", name, count.error().message()));
    if (end - begin != *count * 4) {
      return bad(origin, fmt::format("tensor '{}': shape holds {} floats ({} bytes) but "
                                     "data_offsets span {} bytes",
                                     name, *count, *count * 4, end - begin));
    }
    tensor.data.resize(*count);
    if (*count != 0) std::memcpy(tensor.data.data(), data.data() + begin, end - begin);
    spans.push_back(Span{begin, end, name});
    file.tensors.emplace(name, std::move(tensor));
  }
  std::sort(spans.begin(), spans.end(),
            [](const Span& a, const Span& b) { return a.begin < b.begin; });
  for (std::size_t i = 1; i < spans.size(); ++i) {
    if (spans[i].begin < spans[i - 1].end) {
      return bad(origin,
                 fmt::format("tensors '{}' and '{}' overlap", spans[i - 1].name, spans[i].name));
    }
  }
  return file;
}

Result<SafetensorsFile> read_safetensors(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return Error(ErrorCode::kNotFound, fmt::format("safetensors {}: cannot open", path));
  std::vector<std::uint8_t> bytes((std::istreambuf_iterator<char>(in)),
                                  std::istreambuf_iterator<char>());
  if (in.bad()) return Error(ErrorCode::kIo, fmt::format("safetensors {}: read failed", path));
  return parse_safetensors(bytes, path);
}

Result<std::vector<std::uint8_t>> encode_safetensors(const SafetensorsFile& file) {
  nlohmann::json header = nlohmann::json::object();
  if (!file.metadata.empty()) header["__metadata__"] = file.metadata;
  std::uint64_t offset = 0;
  for (const auto& [name, tensor] : file.tensors) {
    if (name == "__metadata__") {
      return Error(ErrorCode::kInvalidArgument, "a tensor cannot be named __metadata__");
    }
    MALV_ASSIGN_OR_RETURN(std::uint64_t count, element_count(tensor.shape));
    if (count != tensor.data.size()) {
      return Error(ErrorCode::kInvalidArgument,
                   fmt::format("tensor '{}': shape holds {} floats, data has {}", name, count,
                               tensor.data.size()));
    }
    header[name] = {
        {"dtype", "F32"}, {"shape", tensor.shape}, {"data_offsets", {offset, offset + count * 4}}};
    offset += count * 4;
  }
  std::string json = header.dump();
  while ((8 + json.size()) % 8 != 0) json.push_back(' ');  // data section 8-byte aligned
  std::vector<std::uint8_t> bytes(8 + json.size() + offset);
  std::uint64_t length = json.size();
  for (int i = 0; i < 8; ++i)
    bytes[static_cast<std::size_t>(i)] = static_cast<std::uint8_t>(length >> (8 * i));
  std::memcpy(bytes.data() + 8, json.data(), json.size());
  std::uint8_t* out = bytes.data() + 8 + json.size();
  for (const auto& [name, tensor] : file.tensors) {
    std::size_t n = tensor.data.size() * sizeof(float);
    if (n != 0) std::memcpy(out, tensor.data.data(), n);
    out += n;
  }
  return bytes;
}

Status write_safetensors(const std::string& path, const SafetensorsFile& file) {
  MALV_ASSIGN_OR_RETURN(std::vector<std::uint8_t> bytes, encode_safetensors(file));
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  if (!out) return Error(ErrorCode::kIo, fmt::format("safetensors {}: cannot create", path));
  out.write(reinterpret_cast<const char*>(bytes.data()),
            static_cast<std::streamsize>(bytes.size()));
  out.close();
  if (!out) return Error(ErrorCode::kIo, fmt::format("safetensors {}: write failed", path));
  return ok_status();
}

}  // namespace malv::mlaas
