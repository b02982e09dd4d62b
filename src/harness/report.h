// Report writing shared by the benchmarks, the demo and the guest
// workloads: percentiles over measured samples, and printing a figure table
// and its JSON.
#pragma once

#include <fmt/format.h>

#include <algorithm>
#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <utility>
#include <vector>

#include "base/clock.h"
#include "malv/result.h"

namespace malv::harness {

// The q-quantile (0..1) of samples (sorted in place), nearest-rank.
inline double percentile(std::vector<double>& samples, double q) {
  if (samples.empty()) return 0.0;
  std::sort(samples.begin(), samples.end());
  auto rank = static_cast<std::size_t>(q * static_cast<double>(samples.size() - 1) + 0.5);
  return samples[std::min(rank, samples.size() - 1)];
}

inline double median(std::vector<double> samples) { return percentile(samples, 0.5); }

// Bytes per second (in GB/s) of fn() moving `bytes`, median of `repeats` runs.
template <typename Fn>
Result<double> median_gbps(int repeats, std::uint64_t bytes, Fn&& fn) {
  std::vector<double> rates;
  for (int i = 0; i < repeats; ++i) {
    Stopwatch watch;
    MALV_TRY(fn());
    rates.push_back(static_cast<double>(bytes) / watch.elapsed_s() / 1e9);
  }
  return median(rates);
}

struct Figure {
  std::string key;
  double value;
  std::string unit;
  std::string what;
};

// Prints figures as an aligned table (stdout) or as one JSON object.
void print_figures(const std::string& title, const std::vector<Figure>& figures, bool json,
                   const nlohmann::json& extra = nlohmann::json::object());

}  // namespace malv::harness
