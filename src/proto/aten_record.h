// AtenRecord: a PyTorch (ATen) operator's arguments on the wire, the
// payload of kAtenOp. The guest's torch device encodes it, the host's
// executor (accel/aten/) decodes it; neither side needs the other's code,
// and nothing here needs libtorch.
//
// The record is the operator schema's arguments in order, each a tagged
// value, then one tensor per tensor the operator returns when it is
// functional (the outputs the guest allocated; the host writes into them).
// It is a sequence of little-endian 64-bit words; a value is a header word
// (tag in the low 32 bits, a count in the high 32) and its payload:
//
//   kNone                          nothing
//   kBool kInt kScalarType kLayout kMemoryFormat kDevice
//                                  1 word (int64)
//   kDouble                        1 word (IEEE double bits)
//   kScalarInt kScalarDouble kScalarBool
//                                  1 word (a Scalar: int64, double, 0/1)
//   kIntList kBoolList             count words (int64)
//   kDoubleList                    count words (double bits)
//   kString                        count bytes, zero-padded to whole words
//   kTensor                        buffer handle, byte offset, dtype | rank << 32,
//                                  rank sizes, rank strides (in elements)
//   kTensorList                    count values follow, each kTensor
//   kOptionalTensorList            count values follow, each kNone or kTensor
//
// A tensor is a capability and a view, never a pointer: the buffer handle
// the guest holds, the view's byte offset in it, the dtype (torch's
// c10::ScalarType numbering: 6 float32, 7 float64, 4 int64, 11 bool ...),
// sizes and strides. decode() checks the record's shape only (lengths,
// tags, bounds below); what a value means for an operator is the
// executor's check.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "malv/aten_record.h"
#include "malv/result.h"

namespace malv::proto {

using wire::AtenTag;
using wire::AtenTensorArg;
using wire::AtenValue;
using wire::kAtenMaxListLength;
using wire::kAtenMaxRank;
using wire::kAtenMaxRecordBytes;
using wire::kAtenMaxValues;

// The record's words, ready for the arena.
[[nodiscard]] Result<std::vector<std::uint64_t>> encode_aten_record(
    std::span<const AtenValue> values);
// encode_aten_record into `out` (cleared first; its capacity kept).
[[nodiscard]] Status encode_aten_record_into(std::span<const AtenValue> values,
                                             std::vector<std::uint64_t>& out);

// kInvalidArgument naming the value and what is wrong: an unknown tag, a
// record that ends inside a value or has words past its last value, more
// than kAtenMaxValues values, a rank or list past its limit, a tensor list
// element that is not a tensor.
[[nodiscard]] Result<std::vector<AtenValue>> decode_aten_record(
    std::span<const std::uint64_t> words);

// decode_aten_record into `values`, reused: the record is values[0, count)
// (entries past it are left from earlier records). Their vectors keep
// their capacity, so a caller that keeps `values` decodes without
// allocating once warm (the host decodes every operator it runs).
[[nodiscard]] Result<std::size_t> decode_aten_record_into(std::span<const std::uint64_t> words,
                                                          std::vector<AtenValue>& values);

}  // namespace malv::proto
