// The learned-sjf phase of `malv bench mlaas` (see mlaas_sjf.h).
#include "bench/mlaas_sjf.h"

#include <fmt/format.h>

#include "accel/backend.h"
#include "mlaas/async_inference.h"
#include "mlaas/feature_registry.h"
#include "mlaas/host_services.h"
#include "mlaas/inference_service.h"
#include "mlaas/policy_dir.h"
#include "mlaas/policy_registry.h"
#include "mlaas/policy_runner.h"
#include "vgpu/mlaas_gpu_sched_policies.h"
#include "vgpu/vgpu_service.h"

namespace malv::bench {
namespace {

constexpr std::string_view kModule = "malv_sched_basic";
constexpr const char* kVm = "bench-sjf";

struct SjfRun {
  SjfWorkloadFigures figures;
  mlaas::PolicyCounters counters;
  std::uint64_t prepared_ready = 0;  // decision candidates with their answer ready
  std::uint64_t prepared_missing = 0;
};

// A fresh host (nothing learned, nothing persisted) running the workload
// with the VM on `policy`.
Result<SjfRun> run_once(const MlaasOptions& flags, const std::string& policy) {
  MALV_ASSIGN_OR_RETURN(std::unique_ptr<accel::Backend> device,
                        accel::make_backend(flags.backend, {.memory_bytes = 1ull << 30}));
  mlaas::FeatureRegistry features;
  mlaas::InferenceService inference(device.get(), mlaas::InferenceOptions{.calibrate = false});
  mlaas::HostServices services(features, &inference);  // no state directory: cold
  mlaas::PolicyRegistry registry(services.table());
  MALV_TRY(registry.load_module(mlaas::policy_module_path(kModule)));
  mlaas::PolicyRunner runner(registry);
  // As `malv serve`: learned-sjf's model runs as items are queued (ABI 6).
  MALV_ASSIGN_OR_RETURN(std::unique_ptr<mlaas::AsyncInference> queue,
                        mlaas::AsyncInference::create(inference, vgpu::kEnqueueScoringQueue));
  vgpu::MlaasGpuSchedPolicies policies(runner, &inference, queue.get());
  SjfRun run;
  {
    vgpu::VgpuService vgpu(*device, policies, {.device_slots = 1});
    MALV_TRY_CONTEXT(
        registry.select(kVm, mlaas::PolicyClass::kGpuSched, fmt::format("{}/{}", kModule, policy)),
        policy);
    MALV_ASSIGN_OR_RETURN(run.figures, run_sjf_workload(vgpu, kVm,
                                                        {.mix = SjfMix::kBench,
                                                         .streams = flags.sjf_streams,
                                                         .bursts = flags.sjf_bursts,
                                                         .seed = flags.sjf_seed}));
    run.counters = runner.counters(kVm, kModule);
    const vgpu::SchedulerStats stats = vgpu.scheduler().stats();
    run.prepared_ready = stats.prepared_ready;
    run.prepared_missing = stats.prepared_missing;
  }
  registry.remove_vm(kVm);
  return run;
}

void accumulate(SjfWorkloadFigures& sum, const SjfWorkloadFigures& f) {
  sum.items += f.items;
  sum.mean_ms += f.mean_ms;
  sum.short_mean_ms += f.short_mean_ms;
  sum.long_mean_ms += f.long_mean_ms;
  sum.max_ms = std::max(sum.max_ms, f.max_ms);
  sum.seconds += f.seconds;
}

void average(SjfWorkloadFigures& sum, int rounds) {
  const double n = static_cast<double>(std::max(rounds, 1));
  sum.mean_ms /= n;
  sum.short_mean_ms /= n;
  sum.long_mean_ms /= n;
}

}  // namespace

Result<SjfPhase> run_sjf_phase(const MlaasOptions& flags) {
  SjfPhase phase;
  phase.rounds = flags.sjf_rounds;
  phase.bursts = flags.sjf_bursts;
  phase.streams = flags.sjf_streams;
  for (int r = 0; r < flags.sjf_rounds; ++r) {
    fmt::print(stderr,
               "bench mlaas: learned-sjf cold vs fifo, one VM, {} streams, round {}/{} ...\n",
               flags.sjf_streams, r + 1, flags.sjf_rounds);
    MALV_ASSIGN_OR_RETURN(SjfRun fifo, run_once(flags, "fifo"));
    MALV_ASSIGN_OR_RETURN(SjfRun learned, run_once(flags, "learned-sjf"));
    accumulate(phase.fifo, fifo.figures);
    accumulate(phase.learned, learned.figures);
    phase.learned_fallbacks += learned.counters.fallbacks;
    phase.learned_failures += learned.counters.errors + learned.counters.invalid;
    phase.learned_late += learned.counters.late;
    phase.learned_prepared_ready += learned.prepared_ready;
    phase.learned_prepared_missing += learned.prepared_missing;
  }
  average(phase.fifo, flags.sjf_rounds);
  average(phase.learned, flags.sjf_rounds);
  return phase;
}

void add_sjf_figures(const SjfPhase& p, std::vector<harness::Figure>& figures,
                     nlohmann::json& extra) {
  figures.push_back({"learned_sjf_cold_over_fifo", p.learned.mean_ms / p.fifo.mean_ms, "",
                     "mean completion, learned-sjf from a cold start with the shipped model over "
                     "fifo; one VM, mixed short and long work on several streams; goal <= 0.6"});
  figures.push_back({"sjf_fifo_mean_completion_ms", p.fifo.mean_ms, "ms", ""});
  figures.push_back({"sjf_learned_cold_mean_completion_ms", p.learned.mean_ms, "ms", ""});
  figures.push_back({"sjf_fifo_short_mean_completion_ms", p.fifo.short_mean_ms, "ms",
                     "short items: gemm 64^3, memset 4 KiB"});
  figures.push_back(
      {"sjf_learned_cold_short_mean_completion_ms", p.learned.short_mean_ms, "ms", ""});
  figures.push_back({"sjf_fifo_long_mean_completion_ms", p.fifo.long_mean_ms, "ms",
                     "long items: gemm 512^3, memset 16 MiB"});
  figures.push_back({"sjf_learned_cold_long_mean_completion_ms", p.learned.long_mean_ms, "ms", ""});
  figures.push_back({"sjf_fifo_max_completion_ms", p.fifo.max_ms, "ms", ""});
  figures.push_back({"sjf_learned_cold_max_completion_ms", p.learned.max_ms, "ms",
                     "aging bounds a long item's wait"});
  figures.push_back({"sjf_learned_cold_fallbacks", static_cast<double>(p.learned_fallbacks), "",
                     "learned-sjf decisions the baseline answered instead"});
  figures.push_back({"sjf_learned_cold_failures", static_cast<double>(p.learned_failures), "",
                     "of which the module erred or answered out of range"});
  figures.push_back({"sjf_learned_cold_late", static_cast<double>(p.learned_late), "",
                     "of which it answered past the gpu_sched budget"});
  const double candidates =
      static_cast<double>(p.learned_prepared_ready + p.learned_prepared_missing);
  figures.push_back(
      {"sjf_learned_prepared_ready_fraction",
       candidates > 0 ? static_cast<double>(p.learned_prepared_ready) / candidates : 0.0, "",
       "learned-sjf decision candidates whose prediction, computed when the item "
       "was queued (batched, off the scheduler's lock), was ready by the decision"});
  extra["sjf"] = {{"rounds", p.rounds},
                  {"bursts", p.bursts},
                  {"streams", p.streams},
                  {"items_per_policy", p.fifo.items}};
}

}  // namespace malv::bench
