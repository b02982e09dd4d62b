// Batching across callers in the inference service: many concurrent callers
// each get exactly their own rows back (checked by content against a
// single-caller run), a lone caller does not wait for the window, a caller
// past its deadline gets kDeadlineExceeded and never a late answer (from
// the batcher, through the host-services table and through a policy's
// decide()), and calibration runs in the background.
#include <gtest/gtest.h>

#include <atomic>
#include <cmath>
#include <cstdlib>
#include <random>
#include <span>
#include <string>
#include <thread>
#include <vector>

#include "accel/backend.h"
#include "mlaas/caller_batcher.h"
#include "mlaas/decision_deadline.h"
#include "mlaas/feature_registry.h"
#include "mlaas/host_services.h"
#include "mlaas/inference_service.h"
#include "mlaas/policy_registry.h"
#include "mlaas/policy_runner.h"

namespace malv::mlaas {
namespace {

using namespace std::chrono_literals;

Mlp random_mlp(std::size_t in, std::size_t hidden, std::size_t out, unsigned seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> dist(0.0f, 0.5f);
  auto layer = [&](std::size_t i, std::size_t o, Activation act) {
    DenseLayer l{i, o, {}, {}, act};
    l.weight.resize(i * o);
    for (float& w : l.weight) w = dist(rng);
    l.bias.resize(o);
    for (float& b : l.bias) b = dist(rng);
    return l;
  };
  std::vector<DenseLayer> layers;
  layers.push_back(layer(in, hidden, Activation::kRelu));
  layers.push_back(layer(hidden, out, Activation::kIdentity));
  return Mlp::create(std::move(layers)).value();
}

// Caller c's rows of call k: unlike any other caller's or call's.
std::vector<float> caller_rows(std::size_t caller, std::size_t call, std::size_t rows,
                               std::size_t dim) {
  std::vector<float> in(rows * dim);
  for (std::size_t r = 0; r < rows; ++r) {
    for (std::size_t d = 0; d < dim; ++d) {
      in[r * dim + d] =
          std::sin(static_cast<float>(caller * 7919 + call * 31 + r * 7 + d) * 0.61f) +
          static_cast<float>(caller) * 0.01f;
    }
  }
  return in;
}

std::size_t rows_of(std::size_t caller, std::size_t call) { return 1 + (caller + call) % 3; }

TEST(CallerBatching, ManyConcurrentCallersEachGetExactlyTheirOwnRows) {
  constexpr std::size_t kCallers = 64;
  constexpr std::size_t kCalls = 60;
  constexpr std::size_t kIn = 6, kOut = 3;
  const Mlp mlp = random_mlp(kIn, 24, kOut, 21);

  // What each call must answer, from one caller alone.
  std::vector<std::vector<std::vector<float>>> want(kCallers);
  for (std::size_t c = 0; c < kCallers; ++c) {
    for (std::size_t k = 0; k < kCalls; ++k) {
      std::vector<float> in = caller_rows(c, k, rows_of(c, k), kIn);
      std::vector<float> out(rows_of(c, k) * kOut);
      mlp.infer_cpu(in.data(), rows_of(c, k), out.data());
      want[c].push_back(std::move(out));
    }
  }

  auto backend = accel::make_cpu_backend({.memory_bytes = 64 << 20, .workers = 1});
  InferenceService service(backend.get(), {.calibrate = false,
                                           .batching = CallerBatching::kOn,
                                           .batch_window = 200us,
                                           .max_batch_rows = 64});
  const ModelId model = service.add(mlp).value();
  std::atomic<std::size_t> wrong{0}, failed{0};
  std::vector<std::thread> callers;
  for (std::size_t c = 0; c < kCallers; ++c) {
    callers.emplace_back([&, c] {
      for (std::size_t k = 0; k < kCalls; ++k) {
        const std::size_t rows = rows_of(c, k);
        std::vector<float> in = caller_rows(c, k, rows, kIn);
        std::vector<float> out(rows * kOut, NAN);
        if (!service.infer(model, in.data(), rows, out.data()).ok()) {
          ++failed;
          continue;
        }
        for (std::size_t i = 0; i < out.size(); ++i) {
          if (!(std::fabs(out[i] - want[c][k][i]) <= 1e-4f)) {
            ++wrong;
            break;
          }
        }
      }
    });
  }
  for (std::thread& t : callers) t.join();
  EXPECT_EQ(failed.load(), 0u);
  EXPECT_EQ(wrong.load(), 0u) << "a caller got rows that were not its own";

  const InferenceCounters stats = service.stats();
  EXPECT_EQ(stats.requests, kCallers * kCalls);
  EXPECT_LT(stats.runs(), stats.requests) << "no two callers ever shared a run";
  EXPECT_EQ(stats.run_rows, stats.rows);
  std::uint64_t shared_runs = 0;
  for (std::size_t b = 3; b < stats.batch_rows.size(); ++b) shared_runs += stats.batch_rows[b];
  EXPECT_GT(shared_runs, 0u) << "no run had more than 4 rows";
}

TEST(CallerBatching, ByDefaultAModelIsBatchedOnlyWhenABatchCanReachTheAccelerator) {
  auto backend = accel::make_cpu_backend({.memory_bytes = 64 << 20, .workers = 1});
  InferenceService service(backend.get(), {.calibrate = false, .batch_window = 50ms});
  const ModelId model = service.add(random_mlp(4, 8, 2, 4)).value();
  std::vector<float> in = caller_rows(0, 0, 2, 4), out(4);
  // A run of 2 rows, then one of 1 row: a batched model's next batch waits
  // for 2 rows or the 50 ms window; a model whose calls run on their own
  // does not wait.
  auto two_then_one = [&] {
    EXPECT_TRUE(service.infer(model, in.data(), 2, out.data()).ok());
    Stopwatch watch;
    EXPECT_TRUE(service.infer(model, in.data(), 1, out.data()).ok());
    return watch.elapsed();
  };
  EXPECT_LT(two_then_one(), 25ms) << "CPU always faster (no crossover): not batched";
  ASSERT_TRUE(service.set_crossover(model, 8).ok());
  EXPECT_GE(two_then_one(), 50ms) << "accelerator from 8 rows: batched";
}

TEST(CallerBatching, ALoneCallerDoesNotWaitForTheWindow) {
  InferenceService service(
      nullptr, {.calibrate = false, .batching = CallerBatching::kOn, .batch_window = 200ms});
  const ModelId model = service.add(random_mlp(4, 8, 2, 3)).value();
  std::vector<float> in(4, 0.5f), out(2);
  Stopwatch watch;
  for (int i = 0; i < 20; ++i) ASSERT_TRUE(service.infer(model, in.data(), 1, out.data()).ok());
  EXPECT_LT(watch.elapsed(), 100ms) << "20 calls of one caller waited for a 200 ms window";
  EXPECT_EQ(service.stats().cpu_runs, 20u);
}

// A batcher's runs that wait at a gate the test opens: out = 2 * in + 1.
// A watchdog opens it after 10 s, so that a failing test ends.
class GatedRuns {
 public:
  GatedRuns() {
    watchdog_ = std::thread([this] {
      for (int i = 0; i < 1000 && !open_.load(); ++i) std::this_thread::sleep_for(10ms);
      open_.store(true);
    });
  }
  ~GatedRuns() {
    open_.store(true);
    watchdog_.join();
  }
  CallerBatcher::RunFn run() {
    return [this](const float* in, std::size_t rows, float* out) {
      last_rows_.store(rows);
      ++entered_;
      while (!open_.load()) std::this_thread::sleep_for(100us);
      for (std::size_t i = 0; i < rows; ++i) out[i] = 2 * in[i] + 1;
      return ok_status();
    };
  }
  void wait_entered(int n) const {
    while (entered_.load() < n) std::this_thread::sleep_for(100us);
  }
  int entered() const { return entered_.load(); }
  std::size_t last_rows() const { return last_rows_.load(); }
  void open() { open_.store(true); }
  bool is_open() const { return open_.load(); }

 private:
  std::atomic<int> entered_{0};
  std::atomic<std::size_t> last_rows_{0};
  std::atomic<bool> open_{false};
  std::thread watchdog_;
};

TEST(CallerBatching, ACallerWaitingForABusyModelLeavesAtItsDeadline) {
  GatedRuns gate;
  CallerBatcher batcher({.in_dim = 1, .out_dim = 1, .window = 0ns}, gate.run());
  float a_in = 1, a_out = 0;
  std::thread a([&] { EXPECT_TRUE(batcher.submit(&a_in, 1, &a_out, MonoTime::max()).ok()); });
  gate.wait_entered(1);  // a's run holds the model's one run slot

  float b_in = 5, b_out = -7;
  Stopwatch watch;
  Status b = batcher.submit(&b_in, 1, &b_out, MonoClock::now() + 20ms);
  EXPECT_FALSE(gate.is_open()) << "the caller waited for the run before it";
  ASSERT_FALSE(b.ok());
  EXPECT_EQ(b.error().code(), ErrorCode::kDeadlineExceeded);
  EXPECT_GE(watch.elapsed(), 20ms);
  gate.open();
  a.join();
  EXPECT_EQ(a_out, 3.0f);
  EXPECT_EQ(b_out, -7.0f);
}

TEST(CallerBatching, RowsOfACallerThatLeftARunningBatchAreNeverWritten) {
  GatedRuns warm_gate;
  warm_gate.open();
  GatedRuns gate;
  bool gated = false;
  CallerBatcher batcher(
      {.in_dim = 1, .out_dim = 1, .window = 10s},
      [&, warm = warm_gate.run(), run = gate.run()](const float* in, std::size_t rows, float* out) {
        return gated ? run(in, rows, out) : warm(in, rows, out);
      });
  // One run of 2 rows: the next batch waits for 2 rows (or the 10 s window).
  float warm_in[2] = {0, 0}, warm_out[2];
  ASSERT_TRUE(batcher.submit(warm_in, 2, warm_out, MonoTime::max()).ok());
  gated = true;

  float a_in = 1, a_out = 0;
  std::thread a([&] { EXPECT_TRUE(batcher.submit(&a_in, 1, &a_out, MonoTime::max()).ok()); });
  std::this_thread::sleep_for(20ms);  // a leads and waits for a second row
  float b_in = 5, b_out = -7;
  Status b = batcher.submit(&b_in, 1, &b_out, MonoClock::now() + 50ms);
  EXPECT_FALSE(gate.is_open()) << "the caller waited for the run it was in";
  EXPECT_EQ(gate.entered(), 1) << "the run with both rows had not started";
  EXPECT_EQ(gate.last_rows(), 2u);
  ASSERT_FALSE(b.ok());
  EXPECT_EQ(b.error().code(), ErrorCode::kDeadlineExceeded);
  gate.open();
  a.join();
  EXPECT_EQ(a_out, 3.0f);
  EXPECT_EQ(b_out, -7.0f) << "the range of a caller that left was copied out";
}

TEST(CallerBatching, ALeaderWhoseDeadlinePassesHandsTheBatchToTheNextCaller) {
  GatedRuns gate;
  CallerBatcher batcher({.in_dim = 1, .out_dim = 1, .window = 0ns}, gate.run());
  float c_in = 0, c_out = 0;
  std::thread c([&] { EXPECT_TRUE(batcher.submit(&c_in, 1, &c_out, MonoTime::max()).ok()); });
  gate.wait_entered(1);  // c's run holds the run slot; the next caller leads the next batch

  float a_in = 1, a_out = -7;
  Status a_status;
  std::thread a([&] { a_status = batcher.submit(&a_in, 1, &a_out, MonoClock::now() + 50ms); });
  std::this_thread::sleep_for(10ms);
  float b_in = 5, b_out = 0;
  std::thread b([&] { EXPECT_TRUE(batcher.submit(&b_in, 1, &b_out, MonoTime::max()).ok()); });
  a.join();
  EXPECT_FALSE(gate.is_open());
  ASSERT_FALSE(a_status.ok());
  EXPECT_EQ(a_status.error().code(), ErrorCode::kDeadlineExceeded);
  gate.open();
  b.join();
  c.join();
  EXPECT_EQ(b_out, 11.0f) << "the caller left behind was not served";
  EXPECT_EQ(c_out, 1.0f);
  EXPECT_EQ(a_out, -7.0f);
}

// A model of one input and one output: out = 3 * in + 1.
Mlp affine_model() {
  DenseLayer l{1, 1, {3.0f}, {1.0f}, Activation::kIdentity};
  return Mlp::create({l}).value();
}

TEST(CallerBatching, ADecisionsDeadlineReachesModelInferThroughTheHostTable) {
  InferenceService service(nullptr, {.calibrate = false});
  FeatureRegistry features;
  HostServices services(features, &service);
  const malv_host_services* t = services.table();
  const std::string path = ::testing::TempDir() + "/affine.safetensors";
  ASSERT_TRUE(affine_model().save(path).ok());
  malv_model model = 0;
  ASSERT_EQ(t->model_load(t, path.c_str(), &model), MALV_MLAAS_OK);
  float in = 2, out = 0;
  {
    DecisionDeadlineScope passed(MonoClock::now() - 1ms);
    EXPECT_NE(t->model_infer(t, model, &in, 1, &out), MALV_MLAAS_OK);
    EXPECT_EQ(out, 0.0f);
    {
      DecisionDeadlineScope inner(MonoClock::now() + 10s);
      EXPECT_EQ(t->model_infer(t, model, &in, 1, &out), MALV_MLAAS_OK);
      EXPECT_EQ(out, 7.0f);
    }
    EXPECT_NE(t->model_infer(t, model, &in, 1, &out), MALV_MLAAS_OK) << "the outer scope is back";
  }
  EXPECT_EQ(current_decision_deadline(), MonoTime::max());
  EXPECT_EQ(t->model_infer(t, model, &in, 1, &out), MALV_MLAAS_OK);
  EXPECT_EQ(service.stats().deadline_exceeded, 2u);
  t->model_release(t, model);
}

TEST(CallerBatching, APolicyWhoseInferenceMissesItsBudgetIsAnsweredByTheBaseline) {
  InferenceService service(nullptr, {.calibrate = false});
  FeatureRegistry features;
  HostServices services(features, &service);
  const std::string path = ::testing::TempDir() + "/affine_policy.safetensors";
  ASSERT_TRUE(affine_model().save(path).ok());
  ASSERT_EQ(::setenv("MALV_TEST_INFER_MODEL", path.c_str(), 1), 0);
  PolicyRegistry registry(services.table());
  ASSERT_TRUE(registry.load_module(std::string(MALV_TEST_MODULE_DIR) + "/libtest_good.so").ok());
  ASSERT_TRUE(registry.select("vm1", PolicyClass::kGpuSched, "test_policies/inferring").ok());
  PolicyRunner runner(registry, {.budget = 10s, .max_consecutive_failures = 100});

  std::vector<malv_gpu_sched_observation> items(3);
  for (std::size_t i = 0; i < items.size(); ++i) {
    items[i].queue_id = i + 1;
    items[i].enqueue_time_ns = static_cast<std::int64_t>(10 - i);
  }
  std::vector<malv_gpu_sched_decision> scores(items.size());
  DecisionReport report = runner.decide("vm1", std::span(items), std::span(scores));
  EXPECT_EQ(report.source, DecisionSource::kPolicy) << report.detail;
  EXPECT_EQ(scores[2].score, 10.0);  // 3 * 3 + 1, from the model

  runner.set_options({.budget = 1ns, .max_consecutive_failures = 100});
  report = runner.decide("vm1", std::span(items), std::span(scores));
  EXPECT_EQ(report.source, DecisionSource::kFallback);
  // Late, not the module's error: the host's inference gave up on the budget.
  EXPECT_EQ(report.failure, FailureKind::kLate) << report.detail;
  EXPECT_NE(report.detail.find("missed the decision's budget"), std::string::npos) << report.detail;
  EXPECT_GE(service.stats().deadline_exceeded, 1u);
  EXPECT_EQ(runner.counters("vm1", "test_policies").late, 1u);
  EXPECT_EQ(runner.counters("vm1", "test_policies").errors, 0u);
  registry.remove_vm("vm1");
}

TEST(CallerBatching, HundredsOfThreadsInferInlineAtOnce) {
  // OpenBLAS 0.3.21 crashes with a few hundred threads inside it at once.
  InferenceService service(nullptr, {.calibrate = false, .batching = CallerBatching::kOff});
  const Mlp mlp = random_mlp(31, 64, 2, 5);
  const ModelId model = service.add(mlp).value();
  std::vector<float> in(31, 0.25f), want(2);
  mlp.infer_cpu(in.data(), 1, want.data());
  std::atomic<int> wrong{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 300; ++t) {
    threads.emplace_back([&] {
      std::vector<float> out(2);
      for (int i = 0; i < 20; ++i) {
        if (!service.infer(model, in.data(), 1, out.data()).ok() || out != want) ++wrong;
      }
    });
  }
  for (std::thread& t : threads) t.join();
  EXPECT_EQ(wrong.load(), 0);
}

TEST(CallerBatching, CalibrationInTheBackgroundAppliesTheCrossoverWhenItIsDone) {
  auto backend = accel::make_cpu_backend({.memory_bytes = 128 << 20, .workers = 1});
  InferenceService service(backend.get(), {.calibrate = true,
                                           .calibrate_in_background = true,
                                           .calibration_batches = {1, 8, 64},
                                           .calibration_runs = 1});
  const ModelId model = service.add(random_mlp(8, 16, 1, 7)).value();
  ModelInfo info = service.info(model).value();
  EXPECT_TRUE(info.calibration_pending || info.crossover.measured);
  std::vector<float> in(8, 0.1f), out(1);
  ASSERT_TRUE(service.infer(model, in.data(), 1, out.data()).ok()) << "runs while it measures";
  ASSERT_TRUE(service.wait_for_calibration(60s));
  info = service.info(model).value();
  EXPECT_FALSE(info.calibration_pending);
  EXPECT_TRUE(info.crossover.measured);
  EXPECT_EQ(info.crossover.points.size(), 3u);
  EXPECT_EQ(service.stats().calibrations, 1u);

  // A second model of the same shape reuses the measurement ...
  const ModelId twin = service.add(random_mlp(8, 16, 1, 8)).value();
  ASSERT_TRUE(service.wait_for_calibration(60s));
  EXPECT_EQ(service.info(twin).value().crossover.points.size(), 3u);
  EXPECT_EQ(service.stats().calibrations, 1u);
  // ... until the backend changes: recalibrate() measures every model again.
  service.recalibrate();
  ASSERT_TRUE(service.wait_for_calibration(60s));
  EXPECT_EQ(service.stats().calibrations, 2u) << "twin reuses model's new measurement";
}

TEST(CallerBatching, BatchesAboveTheCrossoverRunOnTheAccelerator) {
  auto backend = accel::make_cpu_backend({.memory_bytes = 64 << 20, .workers = 1});
  InferenceService service(backend.get(), {.calibrate = false});
  const Mlp mlp = random_mlp(4, 8, 2, 9);
  const ModelId model = service.add(mlp).value();
  ASSERT_TRUE(service.set_crossover(model, 3).ok());
  std::vector<float> in = caller_rows(1, 1, 3, 4), out(6), want(6);
  mlp.infer_cpu(in.data(), 3, want.data());
  ASSERT_TRUE(service.infer(model, in.data(), 3, out.data()).ok());
  ASSERT_TRUE(service.infer(model, in.data(), 1, out.data()).ok());
  const InferenceCounters stats = service.stats();
  EXPECT_EQ(stats.accelerator_runs, 1u);
  EXPECT_EQ(stats.cpu_runs, 1u);
  EXPECT_NEAR(out[0], want[0], 1e-5f);
}

}  // namespace
}  // namespace malv::mlaas
