// InferenceStats: what the MLaaS inference service has done (requests, rows,
// runs inline or on the accelerator, batch sizes, latency, deadlines
// missed), counted where it happens and read as a snapshot for /metrics and
// the benchmarks.
//
//   InferenceStats stats;
//   stats.record_run(64, /*accelerator=*/false);
//   stats.record_request(1, latency_ns, ErrorCode::kOk);
//   InferenceCounters now = stats.snapshot();
//   double p99_s = now.latency_quantile(0.99);   // a bucket's upper bound
//
// Every method is thread-safe and lock-free (relaxed atomics: a snapshot
// taken while calls are in flight may be off by those calls).
#pragma once

#include <array>
#include <atomic>
#include <cstddef>
#include <cstdint>

#include "malv/error.h"

namespace malv::mlaas {

// Rows per run: each bucket counts runs of at most that many rows (the
// last, runs of more).
inline constexpr std::array<std::size_t, 12> kBatchRowBounds = {1,  2,   4,   8,   16,   32,
                                                                64, 128, 256, 512, 1024, 4096};
// A request's latency, entry to answer, in seconds.
inline constexpr std::array<double, 12> kLatencyBounds = {2e-6,   5e-6, 1e-5, 2.5e-5, 5e-5, 1e-4,
                                                          2.5e-4, 5e-4, 1e-3, 2.5e-3, 1e-2, 1e-1};

struct InferenceCounters {
  std::uint64_t requests = 0;           // infer() calls
  std::uint64_t rows = 0;               // rows they asked for
  std::uint64_t deadline_exceeded = 0;  // answered kDeadlineExceeded
  std::uint64_t errors = 0;             // other failures
  std::uint64_t cpu_runs = 0;           // Mlp::infer_cpu calls
  std::uint64_t accelerator_runs = 0;   // runs on the backend's queue
  std::uint64_t run_rows = 0;           // rows over all runs
  std::uint64_t calibrations = 0;       // crossover measurements done
  // Per bucket (not cumulative); the last entry counts what is above the
  // last bound.
  std::array<std::uint64_t, kBatchRowBounds.size() + 1> batch_rows{};
  std::array<std::uint64_t, kLatencyBounds.size() + 1> latency{};
  double latency_sum_s = 0;

  std::uint64_t runs() const { return cpu_runs + accelerator_runs; }
  // The upper bound of the bucket holding quantile q of request latency
  // (infinity past the last bound; 0 with no requests).
  double latency_quantile(double q) const;
};

class InferenceStats {
 public:
  void record_request(std::size_t rows, std::int64_t latency_ns, ErrorCode outcome);
  void record_run(std::size_t rows, bool accelerator);
  void record_calibration() { calibrations_.fetch_add(1, std::memory_order_relaxed); }
  InferenceCounters snapshot() const;

 private:
  using Counter = std::atomic<std::uint64_t>;
  Counter requests_{0}, rows_{0}, deadline_exceeded_{0}, errors_{0};
  Counter cpu_runs_{0}, accelerator_runs_{0}, run_rows_{0}, calibrations_{0};
  std::array<Counter, kBatchRowBounds.size() + 1> batch_rows_{};
  std::array<Counter, kLatencyBounds.size() + 1> latency_{};
  Counter latency_sum_ns_{0};
};

}  // namespace malv::mlaas
