#include "proto/decoder.h"

#include <gtest/gtest.h>

#include <cstring>
#include <limits>

#include "malv/aten_record.h"
#include "proto/encoder.h"

namespace malv::proto {
namespace {

using wire::Opcode;

Result<Request> decode(const wire::Command& cmd) { return decode_command(cmd, {}); }

Result<Request> decode_records(const std::vector<wire::Command>& records) {
  auto bytes = std::as_bytes(std::span(records)).subspan(sizeof(wire::Command));
  return decode_command(records[0], bytes);
}

TEST(Decoder, UnknownOpcodeIsUnimplemented) {
  wire::Command cmd = make_command(Opcode::kNop, 1);
  cmd.opcode = 999;
  auto r = decode(cmd);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code(), ErrorCode::kUnimplemented);
  EXPECT_NE(r.error().message().find("999"), std::string::npos);
}

TEST(Decoder, ReservedBytesMustBeZero) {
  wire::Command cmd = make_command(Opcode::kNop, 1);
  cmd.reserved[1] = 7;
  EXPECT_EQ(decode(cmd).error().code(), ErrorCode::kInvalidArgument);
}

TEST(Decoder, UnknownFlagsAreRejected) {
  wire::Command cmd = make_command(Opcode::kNop, 1);
  cmd.flags = 0x80;
  EXPECT_EQ(decode(cmd).error().code(), ErrorCode::kInvalidArgument);
}

TEST(Decoder, UnusedArgumentsMustBeZero) {
  auto r = decode(make_command(Opcode::kBufferFree, 1, {5, 9}));
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().message().find("unused argument 1"), std::string::npos);
}

TEST(Decoder, WriteCarriesAllFields) {
  auto r = decode(make_command(Opcode::kWrite, 3, {11, 12, 13, 4096, 100}));
  ASSERT_TRUE(r.ok());
  const auto& w = std::get<WriteRequest>(r.value());
  EXPECT_EQ(w.stream, 11u);
  EXPECT_EQ(w.buffer, 12u);
  EXPECT_EQ(w.buffer_offset, 13u);
  EXPECT_EQ(w.src.offset, 4096u);
  EXPECT_EQ(w.src.bytes, 100u);
}

TEST(Decoder, AtenBatchCarriesItsRangeAndRefusesImpossibleCounts) {
  auto r = decode(make_command(Opcode::kAtenBatch, 3, {11, 2, 64, 48}));
  ASSERT_TRUE(r.ok()) << r.error().to_string();
  const auto& batch = std::get<AtenBatchRequest>(r.value());
  EXPECT_EQ(batch.stream, 11u);
  EXPECT_EQ(batch.count, 2u);
  EXPECT_EQ(batch.batch.offset, 64u);
  EXPECT_EQ(batch.batch.bytes, 48u);
  // No operator, more than the limit, part of a word, fewer words than
  // headers, more than the limit's bytes, and a fifth argument.
  const std::vector<wire::Command> malformed{
      make_command(Opcode::kAtenBatch, 3, {11, 0, 64, 48}),
      make_command(Opcode::kAtenBatch, 3, {11, wire::kAtenMaxBatchOps + 1, 64, 1 << 20}),
      make_command(Opcode::kAtenBatch, 3, {11, 2, 64, 49}),
      make_command(Opcode::kAtenBatch, 3, {11, 3, 64, 16}),
      make_command(Opcode::kAtenBatch, 3, {11, 1, 64, wire::kAtenMaxBatchBytes + 8}),
      make_command(Opcode::kAtenBatch, 3, {11, 2, 64, 48, 1})};
  for (std::size_t i = 0; i < malformed.size(); ++i) {
    auto bad = decode(malformed[i]);
    ASSERT_FALSE(bad.ok()) << "case " << i;
    EXPECT_EQ(bad.error().code(), ErrorCode::kInvalidArgument) << "case " << i;
  }
}

TEST(Decoder, AtenOpCarriesItsRecordAndRefusesAMalformedOne) {
  auto r = decode(make_command(Opcode::kAtenOp, 3, {11, 2, 64, 40, 4096}));
  ASSERT_TRUE(r.ok()) << r.error().to_string();
  const auto& op = std::get<AtenOpRequest>(r.value());
  EXPECT_EQ(op.stream, 11u);
  EXPECT_EQ(op.op, 2u);
  EXPECT_EQ(op.record.offset, 64u);
  EXPECT_EQ(op.record.bytes, 40u);
  EXPECT_EQ(op.reply_bytes, 4096u);
  // A record of part of a word, and a reply room smaller than the record.
  auto partial = decode(make_command(Opcode::kAtenOp, 3, {11, 2, 64, 41, 4096}));
  ASSERT_FALSE(partial.ok());
  EXPECT_NE(partial.error().message().find("whole 8-byte words"), std::string::npos);
  auto small = decode(make_command(Opcode::kAtenOp, 3, {11, 2, 64, 40, 32}));
  ASSERT_FALSE(small.ok());
  EXPECT_NE(small.error().message().find("smaller than the 40-byte record"), std::string::npos);
  auto intern = decode(make_command(Opcode::kAtenIntern, 4, {128, 16}));
  ASSERT_TRUE(intern.ok());
  EXPECT_EQ(std::get<AtenInternRequest>(intern.value()).name.bytes, 16u);
  EXPECT_EQ(decode(make_command(Opcode::kAtenIntern, 4, {128, 16, 1})).error().code(),
            ErrorCode::kInvalidArgument);
}

TEST(Decoder, MemsetValueMustBeAByte) {
  EXPECT_FALSE(decode(make_command(Opcode::kMemset, 1, {1, 2, 0, 8, 256})).ok());
  EXPECT_TRUE(decode(make_command(Opcode::kMemset, 1, {1, 2, 0, 8, 255})).ok());
}

TEST(Decoder, ExtensionsOnANonLaunchCommandAreRejected) {
  std::vector<wire::Command> records(2);
  std::memset(records.data(), 0, sizeof(wire::Command) * 2);
  records[0] = make_command(Opcode::kNop, 1);
  records[0].extensions = 1;
  EXPECT_EQ(decode_records(records).error().code(), ErrorCode::kInvalidArgument);
}

TEST(Decoder, TooManyExtensionRecordsAreRejected) {
  wire::Command cmd = make_command(Opcode::kLaunch, 1, {1, 2, 0});
  cmd.extensions = 9;
  std::vector<std::byte> ext(9 * 64);
  EXPECT_EQ(decode_command(cmd, ext).error().code(), ErrorCode::kInvalidArgument);
}

TEST(Decoder, TruncatedExtensionBytesAreRejected) {
  auto records = make_launch(1, 1, 2, std::vector{i64_arg(1), i64_arg(2), i64_arg(3)});
  auto bytes = std::as_bytes(std::span(records)).subspan(sizeof(wire::Command));
  EXPECT_FALSE(decode_command(records[0], bytes.first(bytes.size() - 1)).ok());
}

TEST(Decoder, LaunchArgumentsRoundTrip) {
  auto records =
      make_launch(9, 100, 200, std::vector{buffer_arg(77, 64), i64_arg(-5), f32_arg(1.5f)});
  ASSERT_EQ(records.size(), 3u);  // 72 bytes of arguments need two records
  auto r = decode_records(records);
  ASSERT_TRUE(r.ok()) << r.error().to_string();
  const auto& l = std::get<LaunchRequest>(r.value());
  EXPECT_EQ(l.argc, 3u);
  EXPECT_EQ(l.args[0].value, 77u);
  EXPECT_EQ(l.args[0].offset, 64u);
  EXPECT_EQ(static_cast<std::int64_t>(l.args[1].value), -5);
}

TEST(Decoder, LaunchWithTooManyArgumentsIsRejected) {
  wire::Command cmd = make_command(Opcode::kLaunch, 1, {1, 2, 11});
  cmd.extensions = 4;
  std::vector<std::byte> ext(4 * 64);
  EXPECT_EQ(decode_command(cmd, ext).error().code(), ErrorCode::kInvalidArgument);
}

TEST(Decoder, LaunchArgumentWithUnknownKindIsRejected) {
  auto records = make_launch(1, 1, 2, std::vector{i64_arg(1)});
  auto* arg = reinterpret_cast<wire::KernelArg*>(records.data() + 1);
  arg->kind = 42;
  EXPECT_EQ(decode_records(records).error().code(), ErrorCode::kInvalidArgument);
}

TEST(Decoder, ScalarArgumentWithOffsetIsRejected) {
  auto records = make_launch(1, 1, 2, std::vector{i64_arg(1)});
  reinterpret_cast<wire::KernelArg*>(records.data() + 1)->offset = 8;
  EXPECT_FALSE(decode_records(records).ok());
}

TEST(Decoder, RangeFitsGuardsAgainstOverflow) {
  constexpr auto kMax = std::numeric_limits<std::uint64_t>::max();
  EXPECT_TRUE(range_fits(0, 100, 100));
  EXPECT_FALSE(range_fits(1, 100, 100));
  EXPECT_FALSE(range_fits(kMax, 2, 100));
  EXPECT_FALSE(range_fits(50, kMax, 100));
  EXPECT_TRUE(range_fits(100, 0, 100));
  EXPECT_FALSE(range_fits(101, 0, 100));
}

}  // namespace
}  // namespace malv::proto
