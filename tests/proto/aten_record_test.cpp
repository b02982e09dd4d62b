// The ATen argument record (kAtenOp's payload): every kind of value comes
// back as it was encoded, and a record that is cut short, has an unknown
// tag, a rank or list past its limit or a non-tensor in a tensor list is
// refused naming the argument.
#include "proto/aten_record.h"

#include <gtest/gtest.h>

#include <cmath>
#include <string>
#include <vector>

namespace malv::proto {
namespace {

AtenTensorArg view(std::uint64_t buffer, std::uint64_t offset, std::vector<std::int64_t> sizes,
                   std::vector<std::int64_t> strides) {
  return {.buffer = buffer,
          .offset = offset,
          .dtype = 6,
          .sizes = std::move(sizes),
          .strides = std::move(strides)};
}

void expect_same(const AtenValue& a, const AtenValue& b, std::size_t k) {
  EXPECT_EQ(a.tag, b.tag) << k;
  if (a.tag != AtenTag::kCpuScalar) {  // there i holds d's bits
    EXPECT_EQ(a.i, b.i) << k;
  }
  EXPECT_EQ(a.d, b.d) << k;
  EXPECT_EQ(a.ints, b.ints) << k;
  EXPECT_EQ(a.doubles, b.doubles) << k;
  EXPECT_EQ(a.text, b.text) << k;
  EXPECT_EQ(a.present, b.present) << k;
  EXPECT_EQ(a.scalar_flags, b.scalar_flags) << k;
  ASSERT_EQ(a.tensors.size(), b.tensors.size()) << k;
  for (std::size_t t = 0; t < a.tensors.size(); ++t) {
    if (!a.present[t]) continue;
    EXPECT_EQ(a.tensors[t].buffer, b.tensors[t].buffer);
    EXPECT_EQ(a.tensors[t].offset, b.tensors[t].offset);
    EXPECT_EQ(a.tensors[t].dtype, b.tensors[t].dtype);
    EXPECT_EQ(a.tensors[t].sizes, b.tensors[t].sizes);
    EXPECT_EQ(a.tensors[t].strides, b.tensors[t].strides);
  }
}

std::vector<AtenValue> every_kind() {
  std::vector<AtenValue> values;
  values.push_back(AtenValue::none());
  values.push_back(AtenValue::boolean(true));
  values.push_back(AtenValue::integer(-42));
  values.push_back(AtenValue::real(0.125));
  values.push_back({.tag = AtenTag::kScalarDouble, .d = -2.5});
  values.push_back({.tag = AtenTag::kScalarInt, .i = 7});
  values.push_back({.tag = AtenTag::kScalarType, .i = 6});
  values.push_back({.tag = AtenTag::kIntList, .ints = {3, -1, 0, 1ll << 40}});
  values.push_back({.tag = AtenTag::kDoubleList, .doubles = {1.5, -0.0}});
  values.push_back({.tag = AtenTag::kString, .text = "reflect"});
  values.push_back({.tag = AtenTag::kString, .text = ""});
  values.push_back(AtenValue::tensor(view(0x10002, 64, {2, 3}, {3, 1})));
  values.push_back(AtenValue::tensor(view(0x10003, 0, {}, {})));  // a 0-dim tensor
  AtenValue list{.tag = AtenTag::kOptionalTensorList};
  list.tensors = {view(5, 0, {4}, {1}), {}, view(6, 8, {1, 1}, {1, 1})};
  list.present = {true, false, true};
  values.push_back(list);
  AtenValue scalar{.tag = AtenTag::kCpuScalar, .d = 0.75};
  scalar.scalar_flags = 7 | wire::kAtenWrappedNumber;
  scalar.scalar_is_floating = true;
  values.push_back(scalar);
  return values;
}

TEST(AtenRecord, EveryKindOfValueComesBackAsEncoded) {
  const std::vector<AtenValue> values = every_kind();
  auto words = encode_aten_record(values);
  ASSERT_TRUE(words.ok()) << words.error().to_string();
  auto back = decode_aten_record(*words);
  ASSERT_TRUE(back.ok()) << back.error().to_string();
  ASSERT_EQ(back->size(), values.size());
  for (std::size_t k = 0; k < values.size(); ++k) expect_same(values[k], (*back)[k], k);
  // -0.0 keeps its sign bit (a double travels as its bits).
  EXPECT_TRUE(std::signbit((*back)[8].doubles[1]));
}

// The host decodes into values it keeps and the guest encodes into words it
// keeps: whatever a reused value or buffer held before (a tensor where an
// int now is, a longer list, a longer record), the result is what a fresh
// decode or encode gives.
TEST(AtenRecord, ReusedValuesAndWordsGiveWhatFreshOnesGive) {
  const std::vector<AtenValue> all = every_kind();
  std::vector<AtenValue> shuffled(all.rbegin(), all.rend());
  AtenValue shorter{.tag = AtenTag::kOptionalTensorList};
  shorter.tensors = {view(9, 16, {2}, {1})};
  shorter.present = {true};
  const std::vector<std::vector<AtenValue>> records{
      all, shuffled, {AtenValue::integer(3), shorter},
      {},  all,      {AtenValue::tensor(view(7, 0, {5}, {1})), AtenValue::none()}};
  std::vector<AtenValue> kept;
  std::vector<std::uint64_t> words;
  for (std::size_t r = 0; r < records.size(); ++r) {
    ASSERT_TRUE(encode_aten_record_into(records[r], words).ok()) << r;
    EXPECT_EQ(words, encode_aten_record(records[r]).value()) << r;
    auto count = decode_aten_record_into(words, kept);
    ASSERT_TRUE(count.ok()) << count.error().to_string();
    ASSERT_EQ(*count, records[r].size()) << r;
    const std::vector<AtenValue> fresh = decode_aten_record(words).value();
    for (std::size_t k = 0; k < *count; ++k) expect_same(fresh[k], kept[k], k);
  }
}

void expect_refused(const std::vector<std::uint64_t>& words, const std::string& why) {
  auto back = decode_aten_record(words);
  ASSERT_FALSE(back.ok()) << why;
  EXPECT_EQ(back.error().code(), ErrorCode::kInvalidArgument);
  EXPECT_NE(back.error().message().find(why), std::string::npos) << back.error().message();
}

TEST(AtenRecord, MalformedRecordsAreRefusedNamingTheArgument) {
  const auto good =
      encode_aten_record(std::vector<AtenValue>{AtenValue::integer(1),
                                                AtenValue::tensor(view(1, 0, {2, 2}, {2, 1}))})
          .value();
  // Cut anywhere inside the tensor: the record ends inside a value.
  for (std::size_t cut = 3; cut < good.size(); ++cut) {
    expect_refused(std::vector<std::uint64_t>(good.begin(), good.begin() + cut), "argument 1");
  }
  expect_refused({2}, "argument 0: the record ends inside its value");
  expect_refused({99}, "argument 0: unknown tag 99");
  // A rank past the limit, whatever the record holds after it.
  std::vector<std::uint64_t> deep{15, 1, 0, 6 | (std::uint64_t{33} << 32)};
  deep.resize(deep.size() + 66, 1);
  expect_refused(deep, "rank 33");
  // A list longer than the limit, and one longer than the record.
  expect_refused({11 | (std::uint64_t{65537} << 32)}, "a list of 65537 elements");
  expect_refused({11 | (std::uint64_t{3} << 32), 1, 2}, "ends inside its elements");
  // A tensor list that claims more elements than the record has words: refused
  // before anything is made for them.
  expect_refused({16 | (std::uint64_t{65536} << 32), 15}, "ends inside its elements");
  // A tensor list whose element is an int.
  expect_refused({16 | (std::uint64_t{1} << 32), 2, 5}, "element 0 of a tensor list");
  // An absent element only in an optional list.
  expect_refused({16 | (std::uint64_t{1} << 32), 0}, "element 0 of a tensor list");
  EXPECT_TRUE(
      decode_aten_record(std::vector<std::uint64_t>{17 | (std::uint64_t{1} << 32), 0}).ok());
  // Too many values.
  expect_refused(std::vector<std::uint64_t>(kAtenMaxValues + 1, 0), "more than 64 values");
  // The empty record is a valid record of no arguments.
  EXPECT_TRUE(decode_aten_record({}).ok());
}

TEST(AtenRecord, EncodingRefusesWhatCouldNotBeDecoded) {
  AtenTensorArg odd = view(1, 0, {2, 2}, {1});
  EXPECT_FALSE(encode_aten_record(std::vector<AtenValue>{AtenValue::tensor(odd)}).ok());
  AtenTensorArg deep =
      view(1, 0, std::vector<std::int64_t>(33, 1), std::vector<std::int64_t>(33, 1));
  EXPECT_FALSE(encode_aten_record(std::vector<AtenValue>{AtenValue::tensor(deep)}).ok());
  EXPECT_FALSE(encode_aten_record(std::vector<AtenValue>(kAtenMaxValues + 1)).ok());
}

}  // namespace
}  // namespace malv::proto
