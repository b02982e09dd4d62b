// The learned-sjf phase of `malv bench mlaas`: learned-sjf's mean
// completion time over fifo's, from a cold start with the shipped model.
//
// One in-process host per policy run: a backend, the MLaaS subsystem with
// malv_sched_basic loaded (an inference service and host services with no
// state directory, so learned-sjf opens the shipped model and nothing
// persisted), and a vGPU of one device slot. One VM with several streams
// runs the kBench mix of bench/sjf_workload.h (each burst one stream
// carries long work, the others short groups) with no warm-up: learned-sjf
// decides its first burst with the model it shipped with. fifo and
// learned-sjf alternate for `rounds` rounds over the same seeded bursts;
// the ratio is of the means over every round.
//
//   MALV_ASSIGN_OR_RETURN(SjfPhase sjf, run_sjf_phase(flags));
//   add_sjf_figures(sjf, figures, extra);   // learned_sjf_cold_over_fifo, ...
#pragma once

#include <nlohmann/json.hpp>
#include <vector>

#include "bench/bench.h"
#include "bench/sjf_workload.h"
#include "harness/report.h"
#include "malv/result.h"

namespace malv::bench {

struct SjfPhase {
  SjfWorkloadFigures fifo;              // means over every round
  SjfWorkloadFigures learned;           // learned-sjf, cold each round
  std::uint64_t learned_fallbacks = 0;  // of which:
  std::uint64_t learned_failures = 0;   // the module erred or answered out of range
  std::uint64_t learned_late = 0;       // past the gpu_sched budget (a busy machine)
  // learned-sjf's decision candidates whose prediction, computed at enqueue,
  // was ready by the decision or not (then the policy ran the model itself).
  std::uint64_t learned_prepared_ready = 0;
  std::uint64_t learned_prepared_missing = 0;
  int rounds = 0;
  int bursts = 0;
  int streams = 0;
};

[[nodiscard]] Result<SjfPhase> run_sjf_phase(const MlaasOptions& flags);
void add_sjf_figures(const SjfPhase& phase, std::vector<harness::Figure>& figures,
                     nlohmann::json& extra);

}  // namespace malv::bench
