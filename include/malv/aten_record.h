// The argument record of kAtenOp (protocol ABI): a PyTorch (ATen)
// operator's arguments as tagged values. Layout, limits and meaning:
// src/proto/aten_record.h (encode_aten_record / decode_aten_record) and
// docs/protocol.md.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace malv::wire {

enum class AtenTag : std::uint32_t {
  kNone = 0,
  kBool = 1,
  kInt = 2,
  kDouble = 3,
  kScalarInt = 4,
  kScalarDouble = 5,
  kScalarBool = 6,
  kScalarType = 7,
  kLayout = 8,
  kMemoryFormat = 9,
  kDevice = 10,
  kIntList = 11,
  kDoubleList = 12,
  kBoolList = 13,
  kString = 14,
  kTensor = 15,
  kTensorList = 16,
  kOptionalTensorList = 17,
  // A CPU scalar PyTorch passes as a 0-dim tensor (a Python number in
  // `x + 1`): the header's count holds its dtype and, at bit 16, whether it
  // is a wrapped number (type promotion ignores those); one word of value
  // (double bits for floating dtypes, int64 otherwise).
  kCpuScalar = 18,
};
inline constexpr std::uint32_t kAtenWrappedNumber = 1u << 16;

inline constexpr std::size_t kAtenMaxValues = 64;         // values in one record
inline constexpr std::size_t kAtenMaxRank = 32;           // dimensions of a tensor
inline constexpr std::size_t kAtenMaxListLength = 65536;  // elements of one list
inline constexpr std::size_t kAtenMaxRecordBytes = 1u << 20;
// kAtenBatch: operators queued together, each a header word (operator id
// in the low 32 bits, its record's words in the high 32) and its record.
inline constexpr std::size_t kAtenMaxBatchOps = 1024;
inline constexpr std::size_t kAtenMaxBatchBytes = kAtenMaxRecordBytes;

struct AtenTensorArg {
  std::uint64_t buffer = 0;  // the guest's buffer handle
  std::uint64_t offset = 0;  // bytes from the buffer's start
  std::uint32_t dtype = 0;   // c10::ScalarType code
  std::vector<std::int64_t> sizes;
  std::vector<std::int64_t> strides;  // elements
};

struct AtenValue {
  AtenTag tag = AtenTag::kNone;
  std::int64_t i = 0;              // kBool, kInt, kScalarInt, kScalarBool, and the enum-like tags
  double d = 0;                    // kDouble, kScalarDouble
  std::vector<std::int64_t> ints;  // kIntList, kBoolList
  std::vector<double> doubles;     // kDoubleList
  std::string text;                // kString
  // kTensor: one; kTensorList / kOptionalTensorList: one per element
  // (present[k] false for an absent optional element).
  std::vector<AtenTensorArg> tensors;
  std::vector<bool> present;
  // kCpuScalar: dtype | kAtenWrappedNumber; encoding sends d when
  // scalar_is_floating, else i (decoding fills both from the word).
  std::uint32_t scalar_flags = 0;
  bool scalar_is_floating = false;

  // This value as one of `new_tag` alone: its other fields cleared, its
  // vectors keeping their capacity, so that a value reused for the next
  // record allocates nothing. The tensors of a tensor or tensor-list tag
  // stay, for the caller to resize (an element kept keeps the capacity of
  // its sizes and strides).
  void reset(AtenTag new_tag) {
    tag = new_tag;
    i = 0;
    d = 0;
    ints.clear();
    doubles.clear();
    text.clear();
    present.clear();
    scalar_flags = 0;
    scalar_is_floating = false;
    if (tag != AtenTag::kTensor && tag != AtenTag::kTensorList &&
        tag != AtenTag::kOptionalTensorList) {
      tensors.clear();
    }
  }

  static AtenValue none() { return AtenValue(); }
  static AtenValue of(AtenTag tag, std::int64_t i) {
    AtenValue v;
    v.tag = tag;
    v.i = i;
    return v;
  }
  static AtenValue boolean(bool b) { return of(AtenTag::kBool, b ? 1 : 0); }
  static AtenValue integer(std::int64_t i) { return of(AtenTag::kInt, i); }
  static AtenValue real(double d) {
    AtenValue v;
    v.tag = AtenTag::kDouble;
    v.d = d;
    return v;
  }
  static AtenValue tensor(AtenTensorArg t) {
    AtenValue v;
    v.tag = AtenTag::kTensor;
    v.tensors.push_back(std::move(t));
    v.present.push_back(true);
    return v;
  }
};

}  // namespace malv::wire
