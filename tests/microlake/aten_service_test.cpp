// PyTorch operators over the channel (kAtenIntern, kAtenOp), end to end: a
// guest through the real client library interns operators, queues them on
// a stream over its own buffers and reads results equal to PyTorch's on the
// CPU; a call that waits gets non-tensor returns, or PyTorch's message; the
// host refuses an operator off its allow-list, an id the session did not
// intern, a view past its buffer and another session's buffer, each with
// the reason, and the session goes on working after each.
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <vector>

#include "accel/aten/aten_executor.h"
#include "guest/connection_core.h"
#include "host_fixture.h"
#include "malv/aten.h"
#include "proto/aten_record.h"
#include "proto/encoder.h"

namespace malv::testing {
namespace {

using wire::AtenTag;
using wire::AtenTensorArg;
using wire::AtenValue;

constexpr std::uint32_t kFloat = 6;  // c10::ScalarType::Float

AtenValue tensor(const guest::Buffer& buffer, std::vector<std::int64_t> sizes,
                 std::vector<std::int64_t> strides = {}, std::uint64_t offset = 0) {
  if (strides.empty()) {
    strides.assign(sizes.size(), 1);
    for (std::size_t d = sizes.size(); d-- > 1;) strides[d - 1] = strides[d] * sizes[d];
  }
  return AtenValue::tensor(AtenTensorArg{.buffer = buffer.handle(),
                                         .offset = offset,
                                         .dtype = kFloat,
                                         .sizes = std::move(sizes),
                                         .strides = std::move(strides)});
}

// One operator of a forged kAtenBatch: its header word, then its record.
std::vector<std::uint64_t> batch_entry(std::uint32_t op, const std::vector<AtenValue>& values) {
  std::vector<std::uint64_t> words = proto::encode_aten_record(values).value();
  words.insert(words.begin(), std::uint64_t{op} | (std::uint64_t{words.size()} << 32));
  return words;
}

struct BatchOutcome {
  std::uint16_t status = 0;
  std::string message;  // what the host wrote back
};

// Sends `words` as one kAtenBatch of `count` operators and waits for it.
BatchOutcome run_batch(guest::Connection& conn, guest::Stream& stream,
                       const std::vector<std::uint64_t>& words, std::uint64_t count) {
  guest::ConnectionCore& core = guest::core_of(conn);
  const std::uint64_t bytes = words.size() * sizeof(std::uint64_t);
  const std::uint64_t offset = core.arena_allocate(bytes).value();
  std::memcpy(core.arena().data() + offset, words.data(), bytes);
  auto done = core.call(
      proto::make_command(wire::Opcode::kAtenBatch, core.next_tag(),
                          {stream.handle(), count, offset, bytes}),
      {offset, bytes},
      guest::PendingCommand{.arena_offset = offset, .arena_bytes = bytes, .read_on_error = true});
  EXPECT_TRUE(done.ok());
  BatchOutcome outcome;
  if (done.ok()) {
    outcome.status = done->status;
    outcome.message.assign(reinterpret_cast<const char*>(core.arena().data() + offset),
                           std::min<std::uint64_t>(done->result, bytes));
  }
  core.release_arena(offset, bytes);
  (void)stream.synchronize();  // the stream's error, reported once
  return outcome;
}

class AtenService : public HostFixture {
 protected:
  void customize(microlake::ServerOptions& options) override {
    options.admit = [this](const microlake::HelloInfo& info) -> Result<microlake::Admission> {
      microlake::Admission admission;
      admission.services.aten = &executor_;
      if (info.vm_name == "vm-refused") {
        admission.services.aten_refusal = [] { return std::string("this VM may not, for a test"); };
      }
      return admission;
    };
  }

  guest::Buffer upload(guest::Connection& conn, guest::Stream& stream,
                       const std::vector<float>& values) {
    auto buffer = conn.allocate(values.size() * sizeof(float));
    EXPECT_TRUE(buffer.ok());
    EXPECT_TRUE(stream.write(*buffer, 0, std::as_bytes(std::span(values))).ok());
    return std::move(buffer).value();
  }
  std::vector<float> download(guest::Stream& stream, const guest::Buffer& buffer, std::size_t n) {
    std::vector<float> out(n);
    EXPECT_TRUE(stream.read(buffer, 0, std::as_writable_bytes(std::span(out))).ok());
    EXPECT_TRUE(stream.synchronize().ok());
    return out;
  }

  accel::aten::AtenExecutor executor_{{.allow = {.denied = {"aten::cumsum"}}}};
};

std::vector<float> values_of(const at::Tensor& t) {
  at::Tensor c = t.contiguous();
  return std::vector<float>(c.data_ptr<float>(), c.data_ptr<float>() + c.numel());
}

TEST_F(AtenService, AGuestRunsOperatorsOnItsBuffersAndReadsWhatTheCpuComputes) {
  auto conn = connect();
  ASSERT_NE(conn, nullptr);
  auto stream = conn->create_stream().value();
  const std::vector<float> a{1, 2, 3, 4, 5, 6}, b{0.5f, -1, 2, 0.25f, 8, -3};
  guest::Buffer ba = upload(*conn, stream, a), bb = upload(*conn, stream, b);
  guest::Buffer sum = conn->allocate(6 * sizeof(float)).value();
  guest::Buffer product = conn->allocate(4 * sizeof(float)).value();
  const std::uint32_t add = guest::aten_intern(*conn, "aten::add.Tensor").value();
  const std::uint32_t mm = guest::aten_intern(*conn, "aten::mm").value();
  // sum = a + 2b, then product = sum (2x3) @ b viewed as 3x2, all queued.
  const AtenValue alpha{.tag = AtenTag::kScalarDouble, .d = 2.0};
  ASSERT_TRUE(guest::aten_enqueue(*conn, stream, add,
                                  std::vector<AtenValue>{tensor(ba, {2, 3}), tensor(bb, {2, 3}),
                                                         alpha, tensor(sum, {2, 3})})
                  .ok());
  ASSERT_TRUE(guest::aten_enqueue(*conn, stream, mm,
                                  std::vector<AtenValue>{tensor(sum, {2, 3}), tensor(bb, {3, 2}),
                                                         tensor(product, {2, 2})})
                  .ok());
  const at::Tensor ta = at::tensor(at::ArrayRef<float>(a)).view({2, 3});
  const at::Tensor tb = at::tensor(at::ArrayRef<float>(b));
  const at::Tensor expected_sum = at::add(ta, tb.view({2, 3}), 2.0);
  EXPECT_EQ(download(stream, product, 4), values_of(at::mm(expected_sum, tb.view({3, 2}))));
  EXPECT_EQ(download(stream, sum, 6), values_of(expected_sum));

  // A call that waits: its non-tensor return.
  const std::uint32_t item = guest::aten_intern(*conn, "aten::_local_scalar_dense").value();
  auto returned =
      guest::aten_call(*conn, stream, item, std::vector<AtenValue>{tensor(product, {}, {}, 4)});
  ASSERT_TRUE(returned.ok()) << returned.error().to_string();
  ASSERT_EQ(returned->size(), 1u);
  EXPECT_EQ((*returned)[0].tag, AtenTag::kScalarDouble);
  EXPECT_EQ((*returned)[0].d, values_of(at::mm(expected_sum, tb.view({3, 2})))[1]);
}

TEST_F(AtenService, RefusalsNameTheirReasonAndTheSessionGoesOn) {
  auto conn = connect();
  ASSERT_NE(conn, nullptr);
  auto stream = conn->create_stream().value();
  guest::Buffer small = upload(*conn, stream, {1, 2, 3, 4, 5, 6});
  guest::Buffer out = conn->allocate(6 * sizeof(float)).value();

  auto denied = guest::aten_intern(*conn, "aten::cumsum");
  ASSERT_FALSE(denied.ok());
  EXPECT_EQ(denied.error().code(), ErrorCode::kPermissionDenied);
  EXPECT_EQ(guest::aten_intern(*conn, "aten::no_such_operator").error().code(),
            ErrorCode::kNotFound);
  EXPECT_EQ(guest::aten_intern(*conn, "aten::from_file").error().code(),
            ErrorCode::kPermissionDenied);

  const std::uint32_t relu = guest::aten_intern(*conn, "aten::relu").value();
  const std::uint32_t mm = guest::aten_intern(*conn, "aten::mm").value();
  // A view past its buffer: the message says where it reaches.
  auto past = guest::aten_call(*conn, stream, relu,
                               std::vector<AtenValue>{tensor(small, {2, 4}), tensor(out, {2, 4})});
  ASSERT_FALSE(past.ok());
  EXPECT_EQ(past.error().code(), ErrorCode::kOutOfRange);
  EXPECT_NE(past.error().message().find("reaches byte 32 of a buffer of 24"), std::string::npos)
      << past.error().message();
  // PyTorch's own check, with its message.
  auto shapes = guest::aten_call(
      *conn, stream, mm,
      std::vector<AtenValue>{tensor(small, {2, 3}), tensor(small, {2, 3}), tensor(out, {2, 2})});
  ASSERT_FALSE(shapes.ok());
  EXPECT_EQ(shapes.error().code(), ErrorCode::kInvalidArgument);
  EXPECT_NE(shapes.error().message().find("mat1 and mat2 shapes cannot be multiplied"),
            std::string::npos)
      << shapes.error().message();
  // An id this session never interned (another session's, or made up).
  auto unknown = guest::aten_call(*conn, stream, relu + 1000,
                                  std::vector<AtenValue>{tensor(small, {6}), tensor(out, {6})});
  ASSERT_FALSE(unknown.ok());
  EXPECT_EQ(unknown.error().code(), ErrorCode::kNotFound);
  // Another session's buffer: a handle this session does not hold.
  auto other = connect("vm-other");
  ASSERT_NE(other, nullptr);
  guest::Buffer theirs = other->allocate(24).value();
  auto forged = guest::aten_call(*conn, stream, relu,
                                 std::vector<AtenValue>{tensor(theirs, {6}), tensor(out, {6})});
  ASSERT_FALSE(forged.ok());
  EXPECT_NE(forged.error().code(), ErrorCode::kOk);
  // A queued call refused: the stream reports it at its synchronize, once.
  ASSERT_TRUE(
      guest::aten_enqueue(*conn, stream, relu,
                          std::vector<AtenValue>{tensor(small, {2, 4}), tensor(out, {2, 4})})
          .ok());
  EXPECT_EQ(stream.synchronize().error().code(), ErrorCode::kOutOfRange);
  EXPECT_TRUE(stream.synchronize().ok());
  // And the session still works.
  auto fine = guest::aten_call(*conn, stream, relu,
                               std::vector<AtenValue>{tensor(small, {6}), tensor(out, {6})});
  ASSERT_TRUE(fine.ok()) << fine.error().to_string();
  EXPECT_EQ(download(stream, out, 6), (std::vector<float>{1, 2, 3, 4, 5, 6}));
}

TEST_F(AtenService, QueuedOperatorsTravelInBatchesAndRunInOrder) {
  auto conn = connect();
  ASSERT_NE(conn, nullptr);
  auto stream = conn->create_stream().value();
  guest::Buffer acc = upload(*conn, stream, {0, 0});
  const std::uint32_t add = guest::aten_intern(*conn, "aten::add_.Scalar").value();
  const std::uint32_t mul = guest::aten_intern(*conn, "aten::mul_.Scalar").value();
  const AtenValue one{.tag = AtenTag::kScalarDouble, .d = 1.0};
  const AtenValue alpha{.tag = AtenTag::kScalarDouble, .d = 1.0};
  const AtenValue half{.tag = AtenTag::kScalarDouble, .d = 0.5};
  // acc = (acc + 1) * 0.5, 600 times: order matters at every step.
  guest::ConnectionCore& core = guest::core_of(*conn);
  const std::uint64_t batches_before = core.aten_batches_sent();
  for (int i = 0; i < 300; ++i) {
    ASSERT_TRUE(guest::aten_enqueue(*conn, stream, add,
                                    std::vector<AtenValue>{tensor(acc, {2}), one, alpha})
                    .ok());
    ASSERT_TRUE(
        guest::aten_enqueue(*conn, stream, mul, std::vector<AtenValue>{tensor(acc, {2}), half})
            .ok());
  }
  at::Tensor expected = at::zeros({2});
  for (int i = 0; i < 300; ++i) expected.add_(1.0).mul_(0.5);
  EXPECT_EQ(download(stream, acc, 2), values_of(expected));
  const std::uint64_t batches = core.aten_batches_sent() - batches_before;
  EXPECT_GE(batches, 1u);
  EXPECT_LE(batches, 600u);
  EXPECT_EQ(core.aten_batches_in_flight(), 0u);
}

TEST_F(AtenService, AnOperatorRefusedInABatchEndsItWithItsReason) {
  auto conn = connect();
  ASSERT_NE(conn, nullptr);
  auto stream = conn->create_stream().value();
  guest::Buffer acc = upload(*conn, stream, {1, 1});
  guest::Buffer small = upload(*conn, stream, {1});
  const std::uint32_t add = guest::aten_intern(*conn, "aten::add_.Scalar").value();
  const AtenValue one{.tag = AtenTag::kScalarDouble, .d = 1.0};
  // One batch, forged whole: acc += 1; acc viewed past its buffer += 1; acc += 1.
  std::vector<std::uint64_t> words = batch_entry(add, {tensor(acc, {2}), one, one});
  for (const auto& w : batch_entry(add, {tensor(small, {4}), one, one})) words.push_back(w);
  for (const auto& w : batch_entry(add, {tensor(acc, {2}), one, one})) words.push_back(w);
  const BatchOutcome refused = run_batch(*conn, stream, words, 3);
  EXPECT_EQ(refused.status, static_cast<std::uint16_t>(ErrorCode::kOutOfRange));
  EXPECT_NE(refused.message.find("operator 1 of the batch refused"), std::string::npos)
      << refused.message;
  // The first ran, the third did not.
  EXPECT_EQ(download(stream, acc, 2), (std::vector<float>{2, 2}));
  // A header whose record runs past the batch's end.
  std::vector<std::uint64_t> torn = batch_entry(add, {tensor(acc, {2}), one, one});
  torn[0] += std::uint64_t{100} << 32;
  EXPECT_EQ(run_batch(*conn, stream, torn, 1).status,
            static_cast<std::uint16_t>(ErrorCode::kInvalidArgument));
  EXPECT_EQ(download(stream, acc, 2), (std::vector<float>{2, 2}));
}

TEST_F(AtenService, ABatchCutIntoChunksStillEndsAtItsFirstFailure) {
  auto conn = connect();
  ASSERT_NE(conn, nullptr);
  auto stream = conn->create_stream().value();
  constexpr std::int64_t kN = 192;  // a matmul of a few ms: every one is a chunk of its own
  guest::Buffer big = upload(*conn, stream, std::vector<float>(kN * kN, 0.25f));
  guest::Buffer product = conn->allocate(kN * kN * sizeof(float)).value();
  guest::Buffer acc = upload(*conn, stream, {1, 1});
  const std::uint32_t mm = guest::aten_intern(*conn, "aten::mm").value();
  const std::uint32_t add = guest::aten_intern(*conn, "aten::add_.Scalar").value();
  const AtenValue one{.tag = AtenTag::kScalarDouble, .d = 1.0};
  const std::vector<AtenValue> matmul{tensor(big, {kN, kN}), tensor(big, {kN, kN}),
                                      tensor(product, {kN, kN})};
  // One run first: the host then knows how long a matmul takes.
  ASSERT_TRUE(guest::aten_call(*conn, stream, mm, matmul).ok());
  // acc += 1; three matmuls; a matmul of mismatched shapes (PyTorch's own
  // check fails it when it runs); acc += 1, which must not run.
  std::vector<std::uint64_t> words = batch_entry(add, {tensor(acc, {2}), one, one});
  for (int i = 0; i < 3; ++i) {
    for (const auto& w : batch_entry(mm, matmul)) words.push_back(w);
  }
  for (const auto& w : batch_entry(
           mm, {tensor(big, {kN, kN}), tensor(big, {kN / 2, 2 * kN}), tensor(product, {kN, kN})})) {
    words.push_back(w);
  }
  for (const auto& w : batch_entry(add, {tensor(acc, {2}), one, one})) words.push_back(w);
  const BatchOutcome failed = run_batch(*conn, stream, words, 6);
  EXPECT_EQ(failed.status, static_cast<std::uint16_t>(ErrorCode::kInvalidArgument));
  EXPECT_NE(failed.message.find("operator 4 of the batch, aten::mm"), std::string::npos)
      << failed.message;
  EXPECT_EQ(download(stream, acc, 2), (std::vector<float>{2, 2}));
}

TEST_F(AtenService, AVmTheHostRefusesIsToldWhy) {
  auto conn = connect("vm-refused");
  ASSERT_NE(conn, nullptr);
  auto refused = guest::aten_intern(*conn, "aten::relu");
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.error().code(), ErrorCode::kUnimplemented);
}

}  // namespace
}  // namespace malv::testing
