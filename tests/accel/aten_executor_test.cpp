// The host's ATen executor (issue 21): it interns only allowed operators,
// runs functional, in-place and out= operators over a VM's buffers (views
// and strides as the record gives them) with results equal to PyTorch on
// the CPU, writes batch norm's running statistics in place, returns
// non-tensor results as values, and refuses a view past its buffer, a
// negative stride, a forged handle, a value of the wrong kind, an output
// that does not fit and PyTorch's own failed checks, each naming what.
#include "accel/aten/aten_executor.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#ifdef __SANITIZE_ADDRESS__
#include <sanitizer/lsan_interface.h>
#endif

#include <cstring>
#include <map>
#include <vector>

namespace malv::accel::aten {
namespace {

using wire::AtenTag;
using wire::AtenTensorArg;
using wire::AtenValue;

constexpr std::uint32_t kFloat = 6;  // c10::ScalarType::Float

// A VM's buffers: handle -> bytes.
class Buffers {
 public:
  std::uint64_t add(std::vector<float> values) {
    const std::uint64_t handle = next_++;
    auto& bytes = memory_[handle];
    bytes.resize(values.size() * sizeof(float));
    std::memcpy(bytes.data(), values.data(), bytes.size());
    return handle;
  }
  std::uint64_t add_longs(const std::vector<std::int64_t>& values) {
    const std::uint64_t handle = next_++;
    auto& bytes = memory_[handle];
    bytes.resize(values.size() * sizeof(std::int64_t));
    std::memcpy(bytes.data(), values.data(), bytes.size());
    return handle;
  }
  std::vector<float> floats(std::uint64_t handle) const {
    const auto& bytes = memory_.at(handle);
    std::vector<float> out(bytes.size() / sizeof(float));
    std::memcpy(out.data(), bytes.data(), bytes.size());
    return out;
  }
  ResolveBuffer resolver() {
    return [this](std::uint64_t handle) -> Result<BufferMemory> {
      auto it = memory_.find(handle);
      if (it == memory_.end()) {
        return Error(ErrorCode::kStaleHandle, "buffer " + std::to_string(handle) + " is not yours");
      }
      return BufferMemory{it->second.data(), it->second.size()};
    };
  }

 private:
  std::uint64_t next_ = 0x100;
  std::map<std::uint64_t, std::vector<std::byte>> memory_;
};

AtenValue tensor(std::uint64_t buffer, std::vector<std::int64_t> sizes,
                 std::vector<std::int64_t> strides = {}, std::uint64_t offset = 0) {
  if (strides.empty()) {  // contiguous
    strides.assign(sizes.size(), 1);
    for (std::size_t d = sizes.size(); d-- > 1;) strides[d - 1] = strides[d] * sizes[d];
  }
  return AtenValue::tensor(AtenTensorArg{.buffer = buffer,
                                         .offset = offset,
                                         .dtype = kFloat,
                                         .sizes = std::move(sizes),
                                         .strides = std::move(strides)});
}

AtenValue scalar(double v) { return {.tag = AtenTag::kScalarDouble, .d = v}; }

std::vector<float> range(std::size_t n, float start, float step) {
  std::vector<float> v(n);
  for (std::size_t i = 0; i < n; ++i) v[i] = start + step * static_cast<float>(i);
  return v;
}

at::Tensor cpu(const std::vector<float>& values, std::vector<std::int64_t> sizes) {
  return at::from_blob(const_cast<float*>(values.data()), sizes, at::kFloat).clone();
}

std::vector<float> values_of(const at::Tensor& t) {
  at::Tensor c = t.contiguous();
  return std::vector<float>(c.data_ptr<float>(), c.data_ptr<float>() + c.numel());
}

class AtenExecutorTest : public ::testing::Test {
 protected:
  std::uint32_t op(const char* name) {
    auto id = exec.intern(name);
    EXPECT_TRUE(id.ok()) << name << ": " << id.error().to_string();
    return id.ok() ? *id : 0;
  }
  Result<std::vector<AtenValue>> run(const char* name, std::vector<AtenValue> args) {
    return exec.run(op(name), args, buffers.resolver());
  }

  AtenExecutor exec{ExecutorOptions{.allow = {.denied = {"aten::cumsum"}}}};
  Buffers buffers;
};

TEST_F(AtenExecutorTest, InternsAllowedOperatorsOnceAndRefusesTheRestWithTheReason) {
  const std::uint32_t add = op("aten::add.Tensor");
  EXPECT_NE(add, 0u);
  EXPECT_EQ(op("aten::add.Tensor"), add);
  EXPECT_NE(op("aten::relu"), add);
  EXPECT_NE(exec.schema(add).find("aten::add.Tensor(Tensor self, Tensor other"), std::string::npos)
      << exec.schema(add);
  struct Refused {
    const char* name;
    ErrorCode code;
    const char* why;
  };
  for (const Refused& r : {
           Refused{"aten::no_such_op", ErrorCode::kNotFound, "has no such operator"},
           Refused{"aten::add.NoSuchOverload", ErrorCode::kNotFound, "has no such operator"},
           Refused{"aten::from_file", ErrorCode::kPermissionDenied, "outside the VM's memory"},
           Refused{"aten::_pin_memory", ErrorCode::kPermissionDenied, "outside the VM's memory"},
           Refused{"aten::to_sparse", ErrorCode::kPermissionDenied, "outside the VM's memory"},
           Refused{"aten::cumsum", ErrorCode::kPermissionDenied, "the admin denies"},
           Refused{"prim::Constant", ErrorCode::kPermissionDenied, "only aten:: operators"},
           Refused{"", ErrorCode::kInvalidArgument, "0 bytes"},
       }) {
    auto id = exec.intern(r.name);
    ASSERT_FALSE(id.ok()) << r.name;
    EXPECT_EQ(id.error().code(), r.code) << r.name;
    EXPECT_NE(id.error().message().find(r.why), std::string::npos) << id.error().message();
  }
  auto unknown = exec.run(999, {}, buffers.resolver());
  ASSERT_FALSE(unknown.ok());
  EXPECT_EQ(unknown.error().code(), ErrorCode::kNotFound);
}

TEST_F(AtenExecutorTest, AFunctionalOperatorWritesItsResultIntoTheRecordsOutput) {
  const auto a = range(6, 1, 1), b = range(6, -2, 0.5f);
  const std::uint64_t ha = buffers.add(a), hb = buffers.add(b), hout = buffers.add(range(6, 0, 0));
  auto returned = run("aten::add.Tensor",
                      {tensor(ha, {2, 3}), tensor(hb, {2, 3}), scalar(2.0), tensor(hout, {2, 3})});
  ASSERT_TRUE(returned.ok()) << returned.error().to_string();
  EXPECT_TRUE(returned->empty());
  EXPECT_EQ(buffers.floats(hout), values_of(at::add(cpu(a, {2, 3}), cpu(b, {2, 3}), 2.0)));
  EXPECT_EQ(buffers.floats(ha), a);  // inputs untouched
  // A Python number PyTorch wraps as a 0-dim CPU tensor: a double that does
  // not promote the float32 result.
  AtenValue two_and_a_half;
  two_and_a_half.tag = AtenTag::kCpuScalar;
  two_and_a_half.scalar_flags = 7 | wire::kAtenWrappedNumber;  // float64, wrapped
  two_and_a_half.d = 2.5;
  auto mul = run("aten::mul.Tensor", {tensor(ha, {2, 3}), two_and_a_half, tensor(hout, {2, 3})});
  ASSERT_TRUE(mul.ok()) << mul.error().to_string();
  EXPECT_EQ(buffers.floats(hout), values_of(cpu(a, {2, 3}) * 2.5));
}

TEST_F(AtenExecutorTest, InPlaceAndOutVariantsWriteTheVmsBufferDirectly) {
  const auto a = range(4, 1, 1), b = range(4, 10, 10);
  const std::uint64_t ha = buffers.add(a), hb = buffers.add(b);
  ASSERT_TRUE(run("aten::mul_.Tensor", {tensor(ha, {4}), tensor(hb, {4})}).ok());
  EXPECT_EQ(buffers.floats(ha), values_of(cpu(a, {4}) * cpu(b, {4})));
  // mm.out into a buffer that holds the 2x2 result at byte offset 8.
  const auto m = range(4, 1, 1);
  const std::uint64_t hm = buffers.add(m), hout = buffers.add(range(6, -1, 0));
  auto mm =
      run("aten::mm.out", {tensor(hm, {2, 2}), tensor(hm, {2, 2}), tensor(hout, {2, 2}, {}, 8)});
  ASSERT_TRUE(mm.ok()) << mm.error().to_string();
  const auto out = buffers.floats(hout);
  const auto expected = values_of(at::mm(cpu(m, {2, 2}), cpu(m, {2, 2})));
  EXPECT_EQ(out[0], -1.0f);
  EXPECT_EQ(out[1], -1.0f);  // before the view: untouched
  EXPECT_EQ(std::vector<float>(out.begin() + 2, out.end()), expected);
}

TEST_F(AtenExecutorTest, ViewsRunWithTheRecordsStridesAndOffsets) {
  // A 3x2 transposed view (strides 1, 3) of a 2x3 buffer, times a 2x2.
  const auto x = range(6, 1, 1), w = range(4, 0.5f, 0.25f);
  const std::uint64_t hx = buffers.add(x), hw = buffers.add(w), hout = buffers.add(range(6, 0, 0));
  ASSERT_TRUE(
      run("aten::mm", {tensor(hx, {3, 2}, {1, 3}), tensor(hw, {2, 2}), tensor(hout, {3, 2})}).ok());
  EXPECT_EQ(buffers.floats(hout), values_of(at::mm(cpu(x, {2, 3}).t(), cpu(w, {2, 2}))));
}

TEST_F(AtenExecutorTest, ConvolutionAndBatchNormMatchTheCpuAndUpdateRunningStatistics) {
  const auto input = range(2 * 3 * 5 * 5, -1, 0.013f), weight = range(4 * 3 * 3 * 3, 0.2f, -0.007f),
             bias = range(4, 0.1f, 0.1f);
  const std::uint64_t hi = buffers.add(input), hw = buffers.add(weight), hb = buffers.add(bias),
                      hout = buffers.add(std::vector<float>(2 * 4 * 5 * 5));
  const AtenValue ints1{.tag = AtenTag::kIntList, .ints = {1, 1}};
  const AtenValue ints0{.tag = AtenTag::kIntList, .ints = {0, 0}};
  auto conv =
      run("aten::convolution",
          {tensor(hi, {2, 3, 5, 5}), tensor(hw, {4, 3, 3, 3}), tensor(hb, {4}), ints1, ints1, ints1,
           AtenValue::boolean(false), ints0, AtenValue::integer(1), tensor(hout, {2, 4, 5, 5})});
  ASSERT_TRUE(conv.ok()) << conv.error().to_string();
  const at::Tensor expected =
      at::convolution(cpu(input, {2, 3, 5, 5}), cpu(weight, {4, 3, 3, 3}), cpu(bias, {4}), {1, 1},
                      {1, 1}, {1, 1}, false, {0, 0}, 1);
  EXPECT_EQ(buffers.floats(hout), values_of(expected));  // bit for bit

  // Training-mode batch norm: the running statistics live in the VM's
  // buffers and are written there (their schema does not mark them written).
  const std::vector<float> mean0(4, 0.0f), var0(4, 1.0f), gamma(4, 1.5f), beta(4, -0.5f);
  const std::uint64_t hmean = buffers.add(mean0), hvar = buffers.add(var0),
                      hgamma = buffers.add(gamma), hbeta = buffers.add(beta),
                      hy = buffers.add(std::vector<float>(2 * 4 * 5 * 5)),
                      hsave_mean = buffers.add(std::vector<float>(4)),
                      hsave_invstd = buffers.add(std::vector<float>(4));
  auto bn =
      run("aten::native_batch_norm",
          {tensor(hout, {2, 4, 5, 5}), tensor(hgamma, {4}), tensor(hbeta, {4}), tensor(hmean, {4}),
           tensor(hvar, {4}), AtenValue::boolean(true), AtenValue::real(0.1), AtenValue::real(1e-5),
           tensor(hy, {2, 4, 5, 5}), tensor(hsave_mean, {4}), tensor(hsave_invstd, {4})});
  ASSERT_TRUE(bn.ok()) << bn.error().to_string();
  at::Tensor mean = cpu(mean0, {4}), var = cpu(var0, {4});
  auto [y, save_mean, save_invstd] =
      at::native_batch_norm(expected, cpu(gamma, {4}), cpu(beta, {4}), mean, var, true, 0.1, 1e-5);
  EXPECT_EQ(buffers.floats(hy), values_of(y));
  EXPECT_EQ(buffers.floats(hmean), values_of(mean));
  EXPECT_EQ(buffers.floats(hvar), values_of(var));
  EXPECT_NE(buffers.floats(hmean), mean0);
}

// Cross entropy's loss: an out= variant with two outputs, an absent
// optional weight and a SymInt argument.
TEST_F(AtenExecutorTest, NllLossOutWritesBothOutputs) {
  const auto logp = range(4 * 3, -2.0f, 0.1f);
  const std::uint64_t hl = buffers.add(logp), ht = buffers.add_longs({0, 2, 1, 2}),
                      hout = buffers.add({0}), htotal = buffers.add({0});
  AtenValue target = tensor(ht, {4});
  target.tensors[0].dtype = 4;  // int64
  for (int round = 0; round < 3; ++round) {
    auto r = run("aten::nll_loss_forward.output",
                 {tensor(hl, {4, 3}), target, AtenValue::none(), AtenValue::integer(1),
                  AtenValue::integer(-100), tensor(hout, {}), tensor(htotal, {})});
    ASSERT_TRUE(r.ok()) << r.error().to_string();
  }
  const at::Tensor t = at::tensor(std::vector<std::int64_t>{0, 2, 1, 2});
  auto [loss, total] = at::nll_loss_forward(cpu(logp, {4, 3}), t, {}, 1, -100);
  EXPECT_EQ(buffers.floats(hout)[0], loss.item<float>());
  EXPECT_EQ(buffers.floats(htotal)[0], total.item<float>());
}

// mse_loss.out with a mean reduction shapes its output like its inputs
// first, then reduces into it: the output's storage must grow on the way.
// The result lands in the VM's buffer, and the bytes around it stay; an
// out= tensor the kernel leaves in another shape fails the call, naming it.
TEST_F(AtenExecutorTest, AnOutKernelThatReshapesItsOutputOnTheWayWritesTheVmsBuffer) {
  const auto a = range(6, 1, 0.5f), b = range(6, -1, 0.25f);
  const std::uint64_t ha = buffers.add(a), hb = buffers.add(b), hout = buffers.add({7, 0, 7});
  auto mean = run("aten::mse_loss.out", {tensor(ha, {2, 3}), tensor(hb, {2, 3}),
                                         AtenValue::integer(1), tensor(hout, {}, {}, 4)});
  ASSERT_TRUE(mean.ok()) << mean.error().to_string();
  const float expected = at::mse_loss(cpu(a, {2, 3}), cpu(b, {2, 3}), 1).item<float>();
  EXPECT_EQ(buffers.floats(hout), (std::vector<float>{7, expected, 7}));

  const std::uint64_t hwrong = buffers.add({0, 0});
  auto wrong = run("aten::mse_loss.out", {tensor(ha, {2, 3}), tensor(hb, {2, 3}),
                                          AtenValue::integer(1), tensor(hwrong, {2})});
  ASSERT_FALSE(wrong.ok());
  EXPECT_EQ(wrong.error().code(), ErrorCode::kInvalidArgument);
  EXPECT_NE(wrong.error().message().find("argument 'out'"), std::string::npos)
      << wrong.error().message();
}

// Views are kept between calls (ViewCache): a call sees the buffer's bytes
// as they are now, a kernel that reshaped its out= view on one call does
// not leave the next call a stale view, and other views of the same bytes
// are their own.
TEST_F(AtenExecutorTest, RepeatedCallsOverTheSameViewsSeeTheBytesAsTheyAreNow) {
  std::vector<float> a = range(6, 1, 0.5f);
  const auto b = range(6, -1, 0.25f);
  const std::uint64_t ha = buffers.add(a), hb = buffers.add(b), hout = buffers.add({7, 0, 7});
  for (int round = 0; round < 3; ++round) {
    auto mean = run("aten::mse_loss.out", {tensor(ha, {2, 3}), tensor(hb, {2, 3}),
                                           AtenValue::integer(1), tensor(hout, {}, {}, 4)});
    ASSERT_TRUE(mean.ok()) << mean.error().to_string();
    a = buffers.floats(ha);
    const float expected = at::mse_loss(cpu(a, {2, 3}), cpu(b, {2, 3}), 1).item<float>();
    EXPECT_EQ(buffers.floats(hout), (std::vector<float>{7, expected, 7})) << "round " << round;
    // The input changes between calls: the next one reads the new bytes.
    ASSERT_TRUE(run("aten::add_.Scalar", {tensor(ha, {2, 3}), scalar(0.5), scalar(1)}).ok());
  }
  // The same bytes as another shape and as a transposed view.
  const std::uint64_t hsum = buffers.add({0, 0, 0});
  ASSERT_TRUE(run("aten::sum.IntList_out",
                  {tensor(ha, {3, 2}), AtenValue{.tag = AtenTag::kIntList, .ints = {1}},
                   AtenValue::boolean(false), AtenValue::none(), tensor(hsum, {3})})
                  .ok());
  a = buffers.floats(ha);
  EXPECT_EQ(buffers.floats(hsum), values_of(cpu(a, {3, 2}).sum(1)));
  ASSERT_TRUE(run("aten::sum.IntList_out",
                  {tensor(ha, {3, 2}, {1, 3}), AtenValue{.tag = AtenTag::kIntList, .ints = {1}},
                   AtenValue::boolean(false), AtenValue::none(), tensor(hsum, {3})})
                  .ok());
  EXPECT_EQ(buffers.floats(hsum), values_of(cpu(a, {2, 3}).t().sum(1)));
}

// A kernel that divides by an empty input's size (SIGFPE) fails its call;
// the process, and the next call, go on. What the kernel held when it was
// stopped leaks (documented: the recovery jumps over its destructors), so
// LeakSanitizer is told not to count it.
TEST_F(AtenExecutorTest, AnArithmeticFaultInAKernelFailsTheCallNotTheHost) {
  const std::uint64_t hx = buffers.add({1}), hw = buffers.add({1, 1, 1}),
                      hmean = buffers.add({0, 0, 0}), hvar = buffers.add({1, 1, 1}),
                      hy = buffers.add({0}), hs = buffers.add({0, 0, 0}),
                      hi = buffers.add({0, 0, 0});
#ifdef __SANITIZE_ADDRESS__
  __lsan_disable();
#endif
  auto fault =
      run("aten::native_batch_norm",
          {tensor(hx, {0, 3, 0}), tensor(hw, {3}), tensor(hw, {3}), tensor(hmean, {3}),
           tensor(hvar, {3}), AtenValue::boolean(true), AtenValue::real(0.1), AtenValue::real(1e-5),
           tensor(hy, {0, 3, 0}), tensor(hs, {3}), tensor(hi, {3})});
#ifdef __SANITIZE_ADDRESS__
  __lsan_enable();
#endif
  if (fault.ok()) GTEST_SKIP() << "this libtorch does not fault on an empty batch norm";
  EXPECT_EQ(fault.error().code(), ErrorCode::kInvalidArgument);
  EXPECT_NE(fault.error().message().find("SIGFPE"), std::string::npos) << fault.error().message();
  const std::uint64_t ha = buffers.add({-1, 2}), hout = buffers.add({0, 0});
  ASSERT_TRUE(run("aten::relu", {tensor(ha, {2}), tensor(hout, {2})}).ok());
  EXPECT_EQ(buffers.floats(hout), (std::vector<float>{0, 2}));
}

TEST_F(AtenExecutorTest, ATaskEstimatesItsRunTimeFromTheOperatorsEarlierRunsScaledToItsSize) {
  const std::uint64_t a = buffers.add(std::vector<float>(64 * 64, 0.5f));
  const std::uint64_t out = buffers.add(std::vector<float>(64 * 64));
  const std::uint32_t mm = op("aten::mm");
  const std::vector<AtenValue> args{tensor(a, {64, 64}), tensor(a, {64, 64}),
                                    tensor(out, {64, 64})};
  auto first = exec.prepare_task(mm, args, buffers.resolver());
  ASSERT_TRUE(first.ok()) << first.error().to_string();
  EXPECT_EQ((*first)->estimated_ns(), 0);  // never run here yet
  ASSERT_EQ((*first)->run(), ErrorCode::kOk);
  auto second = exec.prepare_task(mm, args, buffers.resolver());
  ASSERT_TRUE(second.ok());
  EXPECT_GT((*second)->estimated_ns(), 0);
  // Scaled to the call's size: a quarter of the elements, a quarter of the time.
  const std::vector<AtenValue> small{tensor(a, {32, 32}), tensor(a, {32, 32}),
                                     tensor(out, {32, 32})};
  auto smaller = exec.prepare_task(mm, small, buffers.resolver());
  ASSERT_TRUE(smaller.ok());
  EXPECT_NEAR(static_cast<double>((*smaller)->estimated_ns()),
              static_cast<double>((*second)->estimated_ns()) / 4, 2.0);
  // Another operator has an estimate of its own.
  const std::vector<AtenValue> relu_args{tensor(a, {4096}), tensor(out, {4096})};
  auto relu = exec.prepare_task(op("aten::relu"), relu_args, buffers.resolver());
  ASSERT_TRUE(relu.ok());
  EXPECT_EQ((*relu)->estimated_ns(), 0);
}

TEST_F(AtenExecutorTest, NonTensorResultsComeBackAsValues) {
  const std::uint64_t h = buffers.add({2.5f});
  auto item = run("aten::_local_scalar_dense", {tensor(h, {})});
  ASSERT_TRUE(item.ok()) << item.error().to_string();
  ASSERT_EQ(item->size(), 1u);
  EXPECT_EQ((*item)[0].tag, AtenTag::kScalarDouble);
  EXPECT_EQ((*item)[0].d, 2.5);
  auto nonzero = run("aten::is_nonzero", {tensor(h, {})});
  ASSERT_TRUE(nonzero.ok()) << nonzero.error().to_string();
  EXPECT_EQ((*nonzero)[0].tag, AtenTag::kBool);
  EXPECT_EQ((*nonzero)[0].i, 1);
}

void expect_refused(const Result<std::vector<AtenValue>>& r, ErrorCode code, const char* why) {
  ASSERT_FALSE(r.ok()) << why;
  EXPECT_EQ(r.error().code(), code) << r.error().to_string();
  EXPECT_NE(r.error().message().find(why), std::string::npos) << r.error().message();
}

TEST_F(AtenExecutorTest, BadRecordsAreRefusedNamingWhatIsWrongAndTouchNothing) {
  const std::uint64_t ha = buffers.add(range(6, 1, 1)), hout = buffers.add(range(6, 7, 0));
  const auto before = buffers.floats(hout);
  // A view past its buffer: 6 floats, a 2x4 view.
  expect_refused(run("aten::add.Tensor",
                     {tensor(ha, {2, 4}), tensor(ha, {2, 3}), scalar(1), tensor(hout, {2, 3})}),
                 ErrorCode::kOutOfRange, "argument 'self': the view");
  // Strides that reach past it, and an offset that does.
  expect_refused(run("aten::relu", {tensor(ha, {2, 3}, {4, 1}), tensor(hout, {2, 3})}),
                 ErrorCode::kOutOfRange, "reaches byte 28 of a buffer of 24");
  expect_refused(run("aten::relu", {tensor(ha, {2, 3}, {}, 4), tensor(hout, {2, 3})}),
                 ErrorCode::kOutOfRange, "argument 'self'");
  // Strides so large that their product overflows.
  expect_refused(
      run("aten::relu", {tensor(ha, {3, 3}, {1ll << 62, 1ll << 62}), tensor(hout, {2, 3})}),
      ErrorCode::kOutOfRange, "past any buffer");
  // A negative stride, and a misaligned offset.
  expect_refused(run("aten::relu", {tensor(ha, {2, 3}, {-3, 1}, 12), tensor(hout, {2, 3})}),
                 ErrorCode::kInvalidArgument, "no negative sizes or strides");
  expect_refused(run("aten::relu", {tensor(ha, {2}, {}, 2), tensor(hout, {2})}),
                 ErrorCode::kInvalidArgument, "not a multiple of the element size");
  // A forged handle: the resolver's refusal, as it gave it.
  expect_refused(run("aten::relu", {tensor(0xdead, {2}), tensor(hout, {2})}),
                 ErrorCode::kStaleHandle, "is not yours");
  // A value of the wrong kind, a missing value, an unsupported dtype.
  expect_refused(run("aten::add.Tensor",
                     {tensor(ha, {2, 3}), AtenValue::integer(3), scalar(1), tensor(hout, {2, 3})}),
                 ErrorCode::kInvalidArgument, "argument 'other' is a Tensor");
  expect_refused(run("aten::add.Tensor", {tensor(ha, {2, 3}), tensor(ha, {2, 3}), scalar(1)}),
                 ErrorCode::kInvalidArgument, "3 arguments and 1 outputs");
  AtenValue complex = tensor(ha, {2});
  complex.tensors[0].dtype = 8;  // ComplexHalf
  expect_refused(run("aten::relu", {complex, tensor(hout, {2})}), ErrorCode::kInvalidArgument,
                 "dtype 8");
  // A tensor value holding two views; an output that does; a Tensor?[] whose
  // presence flags do not match its views; an element of a list past its
  // buffer (named by its place in the list).
  AtenValue two = tensor(ha, {2});
  two.tensors.push_back(two.tensors[0]);
  expect_refused(run("aten::relu", {two, tensor(hout, {2})}), ErrorCode::kInvalidArgument,
                 "argument 'self' is a Tensor");
  expect_refused(run("aten::relu", {tensor(ha, {2}), two}), ErrorCode::kInvalidArgument,
                 "output 0 must be a Tensor");
  const std::uint64_t hidx = buffers.add_longs({0, 1});
  AtenValue indices{.tag = AtenTag::kOptionalTensorList};
  indices.tensors = {tensor(hidx, {2}).tensors[0]};
  indices.tensors[0].dtype = 4;  // Long
  expect_refused(run("aten::index.Tensor", {tensor(ha, {6}), indices, tensor(hout, {2})}),
                 ErrorCode::kInvalidArgument, "argument 'indices' is a Tensor?[]");
  AtenValue views{.tag = AtenTag::kTensorList};
  views.tensors = {tensor(ha, {2}).tensors[0], tensor(ha, {8}).tensors[0]};
  views.present = {true, true};
  expect_refused(run("aten::cat", {views, AtenValue::integer(0), tensor(hout, {10})}),
                 ErrorCode::kOutOfRange, "argument 'tensors' element 1: the view");
  // An output of the wrong shape, and PyTorch's own check.
  expect_refused(run("aten::relu", {tensor(ha, {2, 3}), tensor(hout, {3, 2})}),
                 ErrorCode::kInvalidArgument,
                 "returned [2, 3] Float, the record's output is [3, 2]");
  expect_refused(run("aten::mm", {tensor(ha, {2, 3}), tensor(ha, {2, 3}), tensor(hout, {2, 2})}),
                 ErrorCode::kInvalidArgument,
                 "aten::mm: mat1 and mat2 shapes cannot be multiplied");
  EXPECT_EQ(buffers.floats(hout), before);
}

}  // namespace
}  // namespace malv::accel::aten
