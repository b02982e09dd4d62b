// Encoding and decoding of the ATen argument record (see aten_record.h).
#include "proto/aten_record.h"

#include <fmt/format.h>

#include <bit>
#include <cstring>

namespace malv::proto {
namespace {

constexpr std::uint32_t kLastTag = static_cast<std::uint32_t>(AtenTag::kCpuScalar);

std::uint64_t header(AtenTag tag, std::size_t count) {
  return static_cast<std::uint64_t>(tag) | (static_cast<std::uint64_t>(count) << 32);
}

bool one_word(AtenTag tag) {
  switch (tag) {
    case AtenTag::kBool:
    case AtenTag::kInt:
    case AtenTag::kDouble:
    case AtenTag::kScalarInt:
    case AtenTag::kScalarDouble:
    case AtenTag::kScalarBool:
    case AtenTag::kScalarType:
    case AtenTag::kLayout:
    case AtenTag::kMemoryFormat:
    case AtenTag::kDevice: return true;
    default: return false;
  }
}

Status encode_tensor(const AtenTensorArg& t, std::vector<std::uint64_t>& out) {
  if (t.sizes.size() != t.strides.size()) {
    return Error(ErrorCode::kInvalidArgument, fmt::format("a tensor has {} sizes and {} strides",
                                                          t.sizes.size(), t.strides.size()));
  }
  if (t.sizes.size() > kAtenMaxRank) {
    return Error(ErrorCode::kInvalidArgument,
                 fmt::format("a tensor of rank {} (at most {})", t.sizes.size(), kAtenMaxRank));
  }
  out.push_back(header(AtenTag::kTensor, 0));
  out.push_back(t.buffer);
  out.push_back(t.offset);
  out.push_back(static_cast<std::uint64_t>(t.dtype) |
                (static_cast<std::uint64_t>(t.sizes.size()) << 32));
  for (std::int64_t s : t.sizes) out.push_back(static_cast<std::uint64_t>(s));
  for (std::int64_t s : t.strides) out.push_back(static_cast<std::uint64_t>(s));
  return ok_status();
}

// Reads values from words[at...]; `at` moves past what it read.
class Reader {
 public:
  explicit Reader(std::span<const std::uint64_t> words) : words_(words) {}
  bool done() const { return at_ == words_.size(); }

  // Fills `v` in place (its vectors keep their capacity: a decoder that
  // reuses its values allocates nothing once warm).
  Status value(std::size_t index, AtenValue& v) {
    MALV_ASSIGN_OR_RETURN(const std::uint64_t head, word(index, "its header"));
    const std::uint32_t raw_tag = static_cast<std::uint32_t>(head);
    const std::size_t count = static_cast<std::size_t>(head >> 32);
    if (raw_tag > kLastTag) {
      return Error(ErrorCode::kInvalidArgument,
                   fmt::format("argument {}: unknown tag {}", index, raw_tag));
    }
    v.reset(static_cast<AtenTag>(raw_tag));
    if (v.tag == AtenTag::kNone) return ok_status();
    if (one_word(v.tag)) {
      MALV_ASSIGN_OR_RETURN(const std::uint64_t w, word(index, "its value"));
      if (v.tag == AtenTag::kDouble || v.tag == AtenTag::kScalarDouble) {
        v.d = std::bit_cast<double>(w);
      } else {
        v.i = static_cast<std::int64_t>(w);
      }
      return ok_status();
    }
    if (v.tag == AtenTag::kCpuScalar) {
      MALV_ASSIGN_OR_RETURN(const std::uint64_t w, word(index, "its value"));
      v.scalar_flags = static_cast<std::uint32_t>(count);
      v.i = static_cast<std::int64_t>(w);
      v.d = std::bit_cast<double>(w);
      return ok_status();
    }
    if (v.tag == AtenTag::kTensor) {
      v.tensors.resize(1);
      MALV_TRY(tensor_body(index, v.tensors[0]));
      v.present.push_back(true);
      return ok_status();
    }
    if (count > kAtenMaxListLength) {
      return Error(ErrorCode::kInvalidArgument,
                   fmt::format("argument {}: a list of {} elements (at most {})", index, count,
                               kAtenMaxListLength));
    }
    switch (v.tag) {
      case AtenTag::kIntList:
      case AtenTag::kBoolList:
      case AtenTag::kDoubleList: {
        MALV_TRY(need(index, count, "its elements"));
        for (std::size_t k = 0; k < count; ++k) {
          const std::uint64_t w = words_[at_++];
          if (v.tag == AtenTag::kDoubleList) {
            v.doubles.push_back(std::bit_cast<double>(w));
          } else {
            v.ints.push_back(static_cast<std::int64_t>(w));
          }
        }
        return ok_status();
      }
      case AtenTag::kString: {
        const std::size_t padded = (count + 7) / 8;
        MALV_TRY(need(index, padded, "its text"));
        v.text.resize(count);
        if (count > 0) std::memcpy(v.text.data(), words_.data() + at_, count);
        at_ += padded;
        return ok_status();
      }
      case AtenTag::kTensorList:
      case AtenTag::kOptionalTensorList: {
        MALV_TRY(need(index, count, "its elements"));  // each at least a word
        v.tensors.resize(count);
        for (std::size_t k = 0; k < count; ++k) {
          MALV_ASSIGN_OR_RETURN(const std::uint64_t element, word(index, "an element"));
          const auto element_tag = static_cast<AtenTag>(static_cast<std::uint32_t>(element));
          if (element_tag == AtenTag::kNone && v.tag == AtenTag::kOptionalTensorList) {
            v.tensors[k] = AtenTensorArg();
            v.present.push_back(false);
            continue;
          }
          if (element_tag != AtenTag::kTensor) {
            return Error(
                ErrorCode::kInvalidArgument,
                fmt::format("argument {}: element {} of a tensor list is not a tensor", index, k));
          }
          MALV_TRY(tensor_body(index, v.tensors[k]));
          v.present.push_back(true);
        }
        return ok_status();
      }
      default: break;
    }
    return Error(ErrorCode::kInvalidArgument, fmt::format("argument {}: tag {}", index, raw_tag));
  }

 private:
  Result<std::uint64_t> word(std::size_t index, const char* what) {
    MALV_TRY(need(index, 1, what));
    return words_[at_++];
  }
  Status need(std::size_t index, std::size_t n, const char* what) {
    if (words_.size() - at_ < n) {
      return Error(ErrorCode::kInvalidArgument,
                   fmt::format("argument {}: the record ends inside {}", index, what));
    }
    return ok_status();
  }
  Status tensor_body(std::size_t index, AtenTensorArg& t) {
    MALV_TRY(need(index, 3, "a tensor"));
    t.buffer = words_[at_++];
    t.offset = words_[at_++];
    const std::uint64_t shape = words_[at_++];
    t.dtype = static_cast<std::uint32_t>(shape);
    const std::size_t rank = static_cast<std::size_t>(shape >> 32);
    if (rank > kAtenMaxRank) {
      return Error(
          ErrorCode::kInvalidArgument,
          fmt::format("argument {}: a tensor of rank {} (at most {})", index, rank, kAtenMaxRank));
    }
    MALV_TRY(need(index, 2 * rank, "a tensor's sizes and strides"));
    const auto* dims = reinterpret_cast<const std::int64_t*>(words_.data() + at_);
    t.sizes.assign(dims, dims + rank);
    t.strides.assign(dims + rank, dims + 2 * rank);
    at_ += 2 * rank;
    return ok_status();
  }

  std::span<const std::uint64_t> words_;
  std::size_t at_ = 0;
};

}  // namespace

Status encode_aten_record_into(std::span<const AtenValue> values, std::vector<std::uint64_t>& out) {
  out.clear();
  if (values.size() > kAtenMaxValues) {
    return Error(ErrorCode::kInvalidArgument,
                 fmt::format("{} values (at most {})", values.size(), kAtenMaxValues));
  }
  for (const AtenValue& v : values) {
    if (v.tag == AtenTag::kNone) {
      out.push_back(header(v.tag, 0));
    } else if (one_word(v.tag)) {
      out.push_back(header(v.tag, 0));
      out.push_back(v.tag == AtenTag::kDouble || v.tag == AtenTag::kScalarDouble
                        ? std::bit_cast<std::uint64_t>(v.d)
                        : static_cast<std::uint64_t>(v.i));
    } else if (v.tag == AtenTag::kCpuScalar) {
      out.push_back(header(v.tag, v.scalar_flags));
      out.push_back(v.scalar_is_floating ? std::bit_cast<std::uint64_t>(v.d)
                                         : static_cast<std::uint64_t>(v.i));
    } else if (v.tag == AtenTag::kIntList || v.tag == AtenTag::kBoolList) {
      out.push_back(header(v.tag, v.ints.size()));
      for (std::int64_t x : v.ints) out.push_back(static_cast<std::uint64_t>(x));
    } else if (v.tag == AtenTag::kDoubleList) {
      out.push_back(header(v.tag, v.doubles.size()));
      for (double x : v.doubles) out.push_back(std::bit_cast<std::uint64_t>(x));
    } else if (v.tag == AtenTag::kString) {
      out.push_back(header(v.tag, v.text.size()));
      const std::size_t at = out.size();
      out.resize(at + (v.text.size() + 7) / 8, 0);
      if (!v.text.empty()) std::memcpy(out.data() + at, v.text.data(), v.text.size());
    } else if (v.tag == AtenTag::kTensor) {
      if (v.tensors.size() != 1) {
        return Error(ErrorCode::kInvalidArgument, "a tensor value holds one tensor");
      }
      MALV_TRY(encode_tensor(v.tensors[0], out));
    } else if (v.tag == AtenTag::kTensorList || v.tag == AtenTag::kOptionalTensorList) {
      out.push_back(header(v.tag, v.tensors.size()));
      for (std::size_t k = 0; k < v.tensors.size(); ++k) {
        const bool here = k >= v.present.size() || v.present[k];
        if (!here && v.tag == AtenTag::kOptionalTensorList) {
          out.push_back(header(AtenTag::kNone, 0));
        } else {
          MALV_TRY(encode_tensor(v.tensors[k], out));
        }
      }
    } else {
      return Error(ErrorCode::kInvalidArgument,
                   fmt::format("unknown tag {}", static_cast<std::uint32_t>(v.tag)));
    }
  }
  if (out.size() * sizeof(std::uint64_t) > kAtenMaxRecordBytes) {
    return Error(ErrorCode::kInvalidArgument, fmt::format("a record of {} bytes (at most {})",
                                                          out.size() * 8, kAtenMaxRecordBytes));
  }
  return ok_status();
}

Result<std::vector<std::uint64_t>> encode_aten_record(std::span<const AtenValue> values) {
  std::vector<std::uint64_t> out;
  MALV_TRY(encode_aten_record_into(values, out));
  return out;
}

Result<std::size_t> decode_aten_record_into(std::span<const std::uint64_t> words,
                                            std::vector<AtenValue>& values) {
  if (words.size() * sizeof(std::uint64_t) > kAtenMaxRecordBytes) {
    return Error(ErrorCode::kInvalidArgument, fmt::format("a record of {} bytes (at most {})",
                                                          words.size() * 8, kAtenMaxRecordBytes));
  }
  Reader reader(words);
  std::size_t count = 0;
  while (!reader.done()) {
    if (count == kAtenMaxValues) {
      return Error(ErrorCode::kInvalidArgument, fmt::format("more than {} values", kAtenMaxValues));
    }
    if (count == values.size()) values.emplace_back();
    MALV_TRY(reader.value(count, values[count]));
    ++count;
  }
  return count;
}

Result<std::vector<AtenValue>> decode_aten_record(std::span<const std::uint64_t> words) {
  std::vector<AtenValue> values;
  MALV_ASSIGN_OR_RETURN(const std::size_t count, decode_aten_record_into(words, values));
  values.resize(count);
  return values;
}

}  // namespace malv::proto
