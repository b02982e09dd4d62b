// Conformance, part 1: every built-in kernel against a plain reference
// implementation on random inputs.
#include <cmath>
#include <random>

#include "backend_conformance.h"

namespace malv::accel::testing {
namespace {

std::vector<float> random_floats(std::size_t count, std::uint32_t seed, float low = -1.0f,
                                 float high = 1.0f) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> dist(low, high);
  std::vector<float> values(count);
  for (float& v : values) v = dist(rng);
  return values;
}

std::vector<std::int32_t> random_labels(std::size_t rows, std::int32_t cols, std::uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_int_distribution<std::int32_t> dist(0, cols - 1);
  std::vector<std::int32_t> labels(rows);
  for (auto& label : labels) label = dist(rng);
  return labels;
}

void expect_near_all(const std::vector<float>& actual, const std::vector<float>& expected,
                     float tolerance) {
  ASSERT_EQ(actual.size(), expected.size());
  for (std::size_t i = 0; i < actual.size(); ++i) {
    ASSERT_NEAR(actual[i], expected[i], tolerance * std::max(1.0f, std::fabs(expected[i])))
        << "at index " << i;
  }
}

TEST_P(KernelConformance, NopCompletesWithOk) { EXPECT_EQ(launch("nop", {}), ErrorCode::kOk); }

TEST_P(KernelConformance, GemmMatchesReferenceForAllTransposesAndAlphaBeta) {
  const std::int64_t m = 7, n = 5, k = 13;
  for (int trans_a : {0, 1}) {
    for (int trans_b : {0, 1}) {
      SCOPED_TRACE("trans_a=" + std::to_string(trans_a) + " trans_b=" + std::to_string(trans_b));
      auto a = random_floats(m * k, 1 + trans_a);
      auto b = random_floats(k * n, 3 + trans_b);
      auto c = random_floats(m * n, 5);
      const float alpha = 1.5f, beta = -0.25f;
      std::vector<float> expected(m * n);
      for (std::int64_t i = 0; i < m; ++i) {
        for (std::int64_t j = 0; j < n; ++j) {
          double sum = 0.0;
          for (std::int64_t p = 0; p < k; ++p) {
            float av = trans_a ? a[p * m + i] : a[i * k + p];
            float bv = trans_b ? b[j * k + p] : b[p * n + j];
            sum += static_cast<double>(av) * bv;
          }
          expected[i * n + j] = static_cast<float>(alpha * sum + beta * c[i * n + j]);
        }
      }
      auto da = upload(a), db = upload(b), dc = upload(c);
      ASSERT_EQ(launch("gemm", {buf(da), buf(db), buf(dc), i64(m), i64(n), i64(k), i64(trans_a),
                                i64(trans_b), f32(alpha), f32(beta)}),
                ErrorCode::kOk);
      expect_near_all(download<float>(dc), expected, 1e-5f);
    }
  }
}

TEST_P(KernelConformance, GemmWithBetaZeroIgnoresWhatCHeld) {
  const std::int64_t m = 33, n = 17, k = 64;
  auto a = random_floats(m * k, 11), b = random_floats(k * n, 12);
  std::vector<float> c(m * n, std::nanf(""));
  std::vector<float> expected(m * n);
  for (std::int64_t i = 0; i < m; ++i) {
    for (std::int64_t j = 0; j < n; ++j) {
      double sum = 0.0;
      for (std::int64_t p = 0; p < k; ++p) sum += static_cast<double>(a[i * k + p]) * b[p * n + j];
      expected[i * n + j] = static_cast<float>(sum);
    }
  }
  auto da = upload(a), db = upload(b), dc = upload(c);
  ASSERT_EQ(launch("gemm", {buf(da), buf(db), buf(dc), i64(m), i64(n), i64(k), i64(0), i64(0),
                            f32(1.0f), f32(0.0f)}),
            ErrorCode::kOk);
  expect_near_all(download<float>(dc), expected, 1e-4f);
}

TEST_P(KernelConformance, ElementwiseKernelsMatchReference) {
  const std::size_t n = 1001;
  auto x = random_floats(n, 21), y = random_floats(n, 22);
  auto dx = upload(x), dy = upload(y), dout = allocate(n * 4);
  const auto N = i64(static_cast<std::int64_t>(n));
  std::vector<float> expected(n);

  ASSERT_EQ(launch("add", {buf(dx), buf(dy), buf(dout), N}), ErrorCode::kOk);
  for (std::size_t i = 0; i < n; ++i) expected[i] = x[i] + y[i];
  expect_near_all(download<float>(dout), expected, 1e-6f);

  ASSERT_EQ(launch("scale", {buf(dx), buf(dout), N, f32(-2.5f)}), ErrorCode::kOk);
  for (std::size_t i = 0; i < n; ++i) expected[i] = -2.5f * x[i];
  expect_near_all(download<float>(dout), expected, 1e-6f);

  ASSERT_EQ(launch("relu", {buf(dx), buf(dout), N}), ErrorCode::kOk);
  for (std::size_t i = 0; i < n; ++i) expected[i] = x[i] > 0 ? x[i] : 0.0f;
  expect_near_all(download<float>(dout), expected, 0.0f);

  ASSERT_EQ(launch("relu_backward", {buf(dy), buf(dx), buf(dout), N}), ErrorCode::kOk);
  for (std::size_t i = 0; i < n; ++i) expected[i] = x[i] > 0 ? y[i] : 0.0f;
  expect_near_all(download<float>(dout), expected, 0.0f);

  ASSERT_EQ(launch("axpy", {buf(dx), buf(dy), N, f32(0.75f)}), ErrorCode::kOk);
  for (std::size_t i = 0; i < n; ++i) expected[i] = y[i] + 0.75f * x[i];
  expect_near_all(download<float>(dy), expected, 1e-6f);

  ASSERT_EQ(launch("fill", {buf(dout), N, f32(3.25f)}), ErrorCode::kOk);
  expect_near_all(download<float>(dout), std::vector<float>(n, 3.25f), 0.0f);
}

TEST_P(KernelConformance, SgdStepMatchesReference) {
  const std::size_t n = 257;
  auto param = random_floats(n, 31), grad = random_floats(n, 32);
  auto dp = upload(param), dg = upload(grad);
  ASSERT_EQ(launch("sgd_step", {buf(dp), buf(dg), i64(n), f32(0.1f)}), ErrorCode::kOk);
  std::vector<float> expected(n);
  for (std::size_t i = 0; i < n; ++i) expected[i] = param[i] - 0.1f * grad[i];
  expect_near_all(download<float>(dp), expected, 1e-6f);
}

TEST_P(KernelConformance, AdamStepMatchesReferenceOverTwoSteps) {
  const std::size_t n = 129;
  auto param = random_floats(n, 41), g1 = random_floats(n, 42), g2 = random_floats(n, 43);
  std::vector<float> m(n, 0.0f), v(n, 0.0f);
  auto dp = upload(param), dg = upload(g1), dm = upload(m), dv = upload(v);
  const float lr = 0.01f, b1 = 0.9f, b2 = 0.999f, eps = 1e-8f;
  for (int step = 1; step <= 2; ++step) {
    const auto& g = step == 1 ? g1 : g2;
    if (step == 2) {
      ASSERT_EQ(run(CopyH2D{g2.data(), dg.ptr, dg.bytes}), ErrorCode::kOk);
    }
    ASSERT_EQ(launch("adam_step", {buf(dp), buf(dg), buf(dm), buf(dv), i64(n), f32(lr), f32(b1),
                                   f32(b2), f32(eps), i64(step)}),
              ErrorCode::kOk);
    for (std::size_t i = 0; i < n; ++i) {
      m[i] = b1 * m[i] + (1 - b1) * g[i];
      v[i] = b2 * v[i] + (1 - b2) * g[i] * g[i];
      double m_hat = m[i] / (1 - std::pow(b1, step));
      double v_hat = v[i] / (1 - std::pow(b2, step));
      param[i] -= static_cast<float>(lr * m_hat / (std::sqrt(v_hat) + eps));
    }
  }
  expect_near_all(download<float>(dp), param, 1e-5f);
  expect_near_all(download<float>(dm), m, 1e-5f);
  expect_near_all(download<float>(dv), v, 1e-5f);
}

TEST_P(KernelConformance, BiasAddAndSumRowsMatchReference) {
  const std::int64_t rows = 9, cols = 31;
  auto x = random_floats(rows * cols, 51), bias = random_floats(cols, 52);
  auto dx = upload(x), dbias = upload(bias), dsum = allocate(cols * 4);
  ASSERT_EQ(launch("bias_add", {buf(dx), buf(dbias), i64(rows), i64(cols)}), ErrorCode::kOk);
  std::vector<float> expected(x.size());
  for (std::int64_t i = 0; i < rows; ++i) {
    for (std::int64_t j = 0; j < cols; ++j) expected[i * cols + j] = x[i * cols + j] + bias[j];
  }
  expect_near_all(download<float>(dx), expected, 1e-6f);

  ASSERT_EQ(launch("sum_rows", {buf(dx), buf(dsum), i64(rows), i64(cols)}), ErrorCode::kOk);
  std::vector<float> sums(cols, 0.0f);
  for (std::int64_t i = 0; i < rows; ++i) {
    for (std::int64_t j = 0; j < cols; ++j) sums[j] += expected[i * cols + j];
  }
  expect_near_all(download<float>(dsum), sums, 1e-5f);
}

TEST_P(KernelConformance, SoftmaxXentMatchesReferenceAndIsStableForLargeLogits) {
  const std::int64_t rows = 6, cols = 10;
  auto logits = random_floats(rows * cols, 61, -5.0f, 5.0f);
  for (std::int64_t j = 0; j < cols; ++j) logits[j] += 1000.0f;  // exp overflows unless shifted
  auto labels = random_labels(rows, cols, 62);
  auto dl = upload(logits), dlab = upload(labels), dp = allocate(rows * cols * 4);
  auto dloss = allocate(4), dgrad = allocate(rows * cols * 4);
  ASSERT_EQ(launch("softmax_xent", {buf(dl), buf(dlab), buf(dp), buf(dloss), i64(rows), i64(cols)}),
            ErrorCode::kOk);
  std::vector<float> probs(rows * cols);
  double loss = 0.0;
  for (std::int64_t i = 0; i < rows; ++i) {
    double max = logits[i * cols];
    for (std::int64_t j = 0; j < cols; ++j) max = std::max<double>(max, logits[i * cols + j]);
    double sum = 0.0;
    for (std::int64_t j = 0; j < cols; ++j) sum += std::exp(logits[i * cols + j] - max);
    for (std::int64_t j = 0; j < cols; ++j) {
      probs[i * cols + j] = static_cast<float>(std::exp(logits[i * cols + j] - max) / sum);
    }
    loss += -std::log(std::exp(logits[i * cols + labels[i]] - max) / sum);
  }
  loss /= rows;
  expect_near_all(download<float>(dp), probs, 1e-5f);
  auto device_loss = download<float>(dloss);
  EXPECT_NEAR(device_loss[0], loss, 1e-4);

  ASSERT_EQ(launch("softmax_xent_backward", {buf(dp), buf(dlab), buf(dgrad), i64(rows), i64(cols)}),
            ErrorCode::kOk);
  std::vector<float> grad(rows * cols);
  for (std::int64_t i = 0; i < rows; ++i) {
    for (std::int64_t j = 0; j < cols; ++j) {
      grad[i * cols + j] = (probs[i * cols + j] - (j == labels[i] ? 1.0f : 0.0f)) / rows;
    }
  }
  expect_near_all(download<float>(dgrad), grad, 1e-5f);
}

TEST_P(KernelConformance, ArgmaxRowsPicksTheFirstOfEqualMaxima) {
  const std::int64_t rows = 4, cols = 5;
  std::vector<float> x = {1, 3, 3, 0, 2, -1, -2, -3, -4, -5, 0, 0, 0, 0, 0, 1, 2, 3, 4, 9};
  auto dx = upload(x), dout = allocate(rows * 4);
  ASSERT_EQ(launch("argmax_rows", {buf(dx), buf(dout), i64(rows), i64(cols)}), ErrorCode::kOk);
  EXPECT_EQ(download<std::int32_t>(dout), (std::vector<std::int32_t>{1, 0, 0, 4}));
}

TEST_P(KernelConformance, LabelOutOfRangeFaultsTheLaunchAndLaterOpsStillRun) {
  const std::int64_t rows = 3, cols = 4;
  auto logits = random_floats(rows * cols, 71);
  for (std::int32_t bad : {-1, 4, 1000}) {
    SCOPED_TRACE("label " + std::to_string(bad));
    std::vector<std::int32_t> labels = {0, bad, 2};
    auto dl = upload(logits), dlab = upload(labels), dp = allocate(rows * cols * 4);
    auto dloss = allocate(4), dx = allocate(16);
    CompletionLog log;
    backend_->enqueue(queue_,
                      make_launch("softmax_xent",
                                  {buf(dl), buf(dlab), buf(dp), buf(dloss), i64(rows), i64(cols)}),
                      log.completion(1));
    backend_->enqueue(
        queue_,
        make_launch("softmax_xent_backward", {buf(dp), buf(dlab), buf(dp), i64(rows), i64(cols)}),
        log.completion(2));
    backend_->enqueue(queue_, make_launch("fill", {buf(dx), i64(4), f32(7.0f)}), log.completion(3));
    backend_->synchronize_all();
    using Entry = std::pair<std::uint64_t, ErrorCode>;
    EXPECT_EQ(log.entries(), (std::vector<Entry>{{1, ErrorCode::kInvalidArgument},
                                                 {2, ErrorCode::kInvalidArgument},
                                                 {3, ErrorCode::kOk}}));
    EXPECT_EQ(download<float>(dx), std::vector<float>(4, 7.0f));
  }
}

// Issue 15: labels are data in device memory, so a kernel must check each
// label where it uses it. Here the labels are the first `rows` int32 of the
// probs output: once row 0 is written they read as float bits (about 1e9),
// an index far outside the row. A backend that checked the labels first and
// read them again when it used them would read out of bounds.
TEST_P(KernelConformance, SoftmaxXentWithLabelsAliasingProbsStaysInBounds) {
  const std::int64_t rows = 8, cols = 64;
  auto logits = random_floats(rows * cols, 81);
  std::vector<std::int32_t> probs_then_labels(rows * cols, 0);
  for (std::int64_t i = 0; i < rows; ++i) probs_then_labels[i] = static_cast<std::int32_t>(i * 7);
  auto dl = upload(logits), dp = upload(probs_then_labels), dloss = allocate(4);
  const ErrorCode status =
      launch("softmax_xent", {buf(dl), buf(dp), buf(dp), buf(dloss), i64(rows), i64(cols)});
  ASSERT_TRUE(status == ErrorCode::kOk || status == ErrorCode::kInvalidArgument)
      << error_code_name(status);
  if (status != ErrorCode::kOk) return;
  const float loss = download<float>(dloss)[0];
  EXPECT_TRUE(std::isfinite(loss) && loss >= 0.0f) << loss;
  const auto probs = download<float>(dp);
  for (std::int64_t i = 0; i < rows; ++i) {
    double sum = 0.0;
    for (std::int64_t j = 0; j < cols; ++j) sum += probs[i * cols + j];
    EXPECT_NEAR(sum, 1.0, 1e-4) << "row " << i;
  }
}

// The same for the backward kernel, with labels aliasing grad and probs
// chosen so that the grad floats written over the labels (5e29) read as
// int32 near 1.9e9: an index 7 GB past the row.
TEST_P(KernelConformance, SoftmaxXentBackwardWithLabelsAliasingGradStaysInBounds) {
  const std::int64_t rows = 8, cols = 64;
  std::vector<float> probs(rows * cols, 4e30f);
  std::vector<std::int32_t> grad_then_labels(rows * cols, 0);
  for (std::int64_t i = 0; i < rows; ++i) grad_then_labels[i] = static_cast<std::int32_t>(i * 5);
  auto dp = upload(probs), dg = upload(grad_then_labels);
  const ErrorCode status =
      launch("softmax_xent_backward", {buf(dp), buf(dg), buf(dg), i64(rows), i64(cols)});
  ASSERT_TRUE(status == ErrorCode::kOk || status == ErrorCode::kInvalidArgument)
      << error_code_name(status);
  if (status != ErrorCode::kOk) return;
  for (float g : download<float>(dg)) ASSERT_TRUE(std::isfinite(g)) << g;
}

// Another queue rewrites the labels, between in-range and far out-of-range
// values, while launches that use them run. Each launch must either succeed
// with results that some in-range labels give, or fault with
// kInvalidArgument; nothing may be read or written out of bounds.
TEST_P(KernelConformance, LabelsRewrittenByAnotherQueueDuringLaunchesStayInBounds) {
#if defined(__SANITIZE_THREAD__)
  // The guest racing its own kernel is the point of this test, and
  // ThreadSanitizer rightly reports that race; ASan and UBSan check it.
  GTEST_SKIP() << "a deliberate data race between two queues";
#endif
  const std::int64_t rows = 256, cols = 512;
  constexpr int kLaunches = 12;
  constexpr int kRewrites = 2000;
  constexpr std::size_t kScratchBytes = 256 << 10;
  auto other = backend_->create_queue(QueuePriority::kNormal);
  ASSERT_TRUE(other.ok());
  const float p = 1.0f / static_cast<float>(cols);
  auto dl = upload(random_floats(rows * cols, 91));
  auto dprobs = upload(std::vector<float>(rows * cols, p));
  auto dlab = upload(random_labels(rows, cols, 92));
  std::vector<std::int32_t> good = random_labels(rows, cols, 93);
  std::vector<std::int32_t> bad(rows);
  for (std::int64_t i = 0; i < rows; ++i) bad[i] = i % 2 == 0 ? 0x3fffffff : -0x40000000;
  std::vector<DeviceBuffer> probs_out, loss_out, grad_out;
  for (int i = 0; i < kLaunches; ++i) {
    probs_out.push_back(allocate(rows * cols * 4));
    loss_out.push_back(allocate(4));
    grad_out.push_back(allocate(rows * cols * 4));
  }
  // Between rewrites the other queue clears a scratch buffer, so each
  // version of the labels lasts a while: a launch can pass a check on good
  // labels and see bad ones later, which is the race that must be harmless.
  auto scratch = allocate(kScratchBytes);
  CompletionLog rewrites;
  for (int i = 0; i < kRewrites; ++i) {
    const auto& labels = i % 2 == 0 ? good : bad;
    backend_->enqueue(*other, CopyH2D{labels.data(), dlab.ptr, dlab.bytes},
                      rewrites.completion(2 * i));
    backend_->enqueue(*other, Memset{scratch.ptr, static_cast<std::uint8_t>(i), kScratchBytes},
                      rewrites.completion(2 * i + 1));
  }
  CompletionLog launches;
  for (int i = 0; i < kLaunches; ++i) {
    backend_->enqueue(queue_,
                      make_launch("softmax_xent", {buf(dl), buf(dlab), buf(probs_out[i]),
                                                   buf(loss_out[i]), i64(rows), i64(cols)}),
                      launches.completion(2 * i));
    backend_->enqueue(queue_,
                      make_launch("softmax_xent_backward",
                                  {buf(dprobs), buf(dlab), buf(grad_out[i]), i64(rows), i64(cols)}),
                      launches.completion(2 * i + 1));
  }
  backend_->synchronize_all();
  backend_->destroy_queue(*other);
  for (const auto& [cookie, status] : rewrites.entries()) ASSERT_EQ(status, ErrorCode::kOk);
  const auto entries = launches.entries();
  ASSERT_EQ(entries.size(), 2u * kLaunches);
  const float off_label = p / static_cast<float>(rows);
  const float on_label = (p - 1.0f) / static_cast<float>(rows);
  for (const auto& [cookie, status] : entries) {
    SCOPED_TRACE("launch " + std::to_string(cookie));
    ASSERT_TRUE(status == ErrorCode::kOk || status == ErrorCode::kInvalidArgument)
        << error_code_name(status);
    if (status != ErrorCode::kOk) continue;
    const std::size_t i = cookie / 2;
    if (cookie % 2 == 0) {
      const float loss = download<float>(loss_out[i])[0];
      EXPECT_TRUE(std::isfinite(loss) && loss >= 0.0f) << loss;
    } else {
      for (float g : download<float>(grad_out[i])) {
        ASSERT_TRUE(g == off_label || g == on_label) << g;
      }
    }
  }
}

}  // namespace
}  // namespace malv::accel::testing
