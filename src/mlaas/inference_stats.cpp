// The inference service's counters and histograms (see inference_stats.h).
#include "mlaas/inference_stats.h"

#include <algorithm>
#include <limits>

namespace malv::mlaas {

double InferenceCounters::latency_quantile(double q) const {
  std::uint64_t total = 0;
  for (std::uint64_t n : latency) total += n;
  if (total == 0) return 0;
  const auto rank = static_cast<std::uint64_t>(q * static_cast<double>(total));
  std::uint64_t seen = 0;
  for (std::size_t i = 0; i < kLatencyBounds.size(); ++i) {
    seen += latency[i];
    if (seen > rank || seen == total) return kLatencyBounds[i];
  }
  return std::numeric_limits<double>::infinity();
}

void InferenceStats::record_request(std::size_t rows, std::int64_t latency_ns, ErrorCode outcome) {
  requests_.fetch_add(1, std::memory_order_relaxed);
  rows_.fetch_add(rows, std::memory_order_relaxed);
  if (outcome == ErrorCode::kDeadlineExceeded) {
    deadline_exceeded_.fetch_add(1, std::memory_order_relaxed);
  } else if (outcome != ErrorCode::kOk) {
    errors_.fetch_add(1, std::memory_order_relaxed);
  }
  const double seconds = static_cast<double>(std::max<std::int64_t>(latency_ns, 0)) / 1e9;
  const auto bucket = static_cast<std::size_t>(
      std::lower_bound(kLatencyBounds.begin(), kLatencyBounds.end(), seconds) -
      kLatencyBounds.begin());
  latency_[bucket].fetch_add(1, std::memory_order_relaxed);
  latency_sum_ns_.fetch_add(static_cast<std::uint64_t>(std::max<std::int64_t>(latency_ns, 0)),
                            std::memory_order_relaxed);
}

void InferenceStats::record_run(std::size_t rows, bool accelerator) {
  (accelerator ? accelerator_runs_ : cpu_runs_).fetch_add(1, std::memory_order_relaxed);
  run_rows_.fetch_add(rows, std::memory_order_relaxed);
  const auto bucket = static_cast<std::size_t>(
      std::lower_bound(kBatchRowBounds.begin(), kBatchRowBounds.end(), rows) -
      kBatchRowBounds.begin());
  batch_rows_[bucket].fetch_add(1, std::memory_order_relaxed);
}

InferenceCounters InferenceStats::snapshot() const {
  auto get = [](const Counter& c) { return c.load(std::memory_order_relaxed); };
  InferenceCounters c;
  c.requests = get(requests_);
  c.rows = get(rows_);
  c.deadline_exceeded = get(deadline_exceeded_);
  c.errors = get(errors_);
  c.cpu_runs = get(cpu_runs_);
  c.accelerator_runs = get(accelerator_runs_);
  c.run_rows = get(run_rows_);
  c.calibrations = get(calibrations_);
  for (std::size_t i = 0; i < c.batch_rows.size(); ++i) c.batch_rows[i] = get(batch_rows_[i]);
  for (std::size_t i = 0; i < c.latency.size(); ++i) c.latency[i] = get(latency_[i]);
  c.latency_sum_s = static_cast<double>(get(latency_sum_ns_)) / 1e9;
  return c;
}

}  // namespace malv::mlaas
