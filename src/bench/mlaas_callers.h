// `malv bench mlaas`, the concurrent-callers phase: the inference service's
// throughput and latency with 1, 8, 64 and 512 callers asking for one row at
// a time, batched across callers and not, for the LinnOS and MLLB shapes:
//  * blocking callers: threads that each call infer() in a loop (what policy
//    decisions do today);
//  * asynchronous callers: logical callers with one request in flight each,
//    driven by 2 submitter threads, through AsyncInference (batched) or run
//    alone inline on the submitter (unbatched);
// and the crossover the service's own calibration measures for each shape.
#pragma once

#include <nlohmann/json.hpp>
#include <vector>

#include "accel/backend.h"
#include "bench/bench.h"
#include "bench/models.h"
#include "harness/report.h"
#include "malv/result.h"
#include "mlaas/inference_service.h"

namespace malv::bench {

inline constexpr std::size_t kCallerCounts[] = {1, 8, 64, 512};

struct CallerMode {
  double per_s = 0;   // answers per second, all callers together
  double p50_us = 0;  // per call, entry to answer
  double p99_us = 0;
  double rows_per_run = 0;  // rows per model run (1 without batching)
  double per_cpu_s = 0;     // answers per CPU-second of the process (asynchronous callers)
};

struct CallerPoint {
  std::size_t callers = 0;
  CallerMode batched;
  CallerMode unbatched;
};

struct CallerShapeFigures {
  const ModelCase* shape = nullptr;
  mlaas::Crossover calibrated;            // the service's own calibration on this backend
  std::vector<CallerPoint> points;        // blocking caller threads
  std::vector<CallerPoint> async_points;  // asynchronous callers (AsyncInference)
};

[[nodiscard]] Result<std::vector<CallerShapeFigures>> run_concurrent_callers(
    accel::Backend& backend, const MlaasOptions& flags);

// Appends the phase's figures (keys in docs/benchmarks.md) and sets
// extra["calibrated_crossover"].
void add_caller_figures(const std::vector<CallerShapeFigures>& shapes,
                        std::vector<harness::Figure>& figures, nlohmann::json& extra);

}  // namespace malv::bench
