// The prefetch testbed: a training VM whose data step varies, fed by the
// host's data pipeline (offload::DataPipeline), under a prefetch policy.
// What `malv bench mlaas` measures the prefetch policies with (its prefetch
// phase) and what `malv prefetch record` records training data with.
//
// One in-process host: a backend, the MLaaS subsystem with the policy
// modules of policy_dir() loaded, a dataset catalog whose pipelines ask the
// VM's prefetch policy through the PolicyRunner (as `malv serve` wires
// them), and a Micro-LAKE server. The guest is this process too: a
// guest::Connection over the unix socket, nn::HostBatches and the reference
// training job (bench/training_runs.h), so the consumer is a real training
// loop over the real channel. The producer's cost per batch varies by a
// seeded schedule (DataStepSchedule: most batches cost a little extra, a few
// cost several consumer steps, as a dataset behind slower storage would),
// scaled by the consumer's step time measured first, so the same schedule
// means the same to a fast or a slow machine.
//
//   MALV_ASSIGN_OR_RETURN(auto bed, PrefetchTestbed::start("cpu"));
//   MALV_TRY(bed->calibrate(60));
//   MALV_ASSIGN_OR_RETURN(PrefetchRun run, bed->run({.policy = "malv_prefetch_basic/adaptive"}));
//   fmt::print("stalled {} ms\n", run.stall_ns / 1e6);
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "bench/bench.h"
#include "harness/report.h"
#include "malv/mlaas.h"
#include "malv/result.h"
#include "train/prefetch_data.h"

namespace malv::bench {

// The producer's extra time per batch, in consumer steps, drawn from the
// seed and the batch's index (so every policy sees the same schedule).
struct DataStepSchedule {
  std::uint64_t seed = 1;
  double slow_share = 0.06;     // share of batches that are slow
  double slow_min_steps = 2;    // a slow batch costs this many consumer steps at least
  double slow_max_steps = 6;    // and at most
  double fast_max_steps = 0.3;  // every other batch costs up to this (uniform)

  // Extra nanoseconds for batch `batch` when a consumer step takes step_ns.
  std::int64_t delay_ns(std::uint64_t batch, double step_ns) const;
  [[nodiscard]] Status check() const;
};

// Policy names a run takes besides a module's "module/policy".
inline constexpr std::string_view kFixedPolicy = "fixed";      // the class baseline
inline constexpr std::string_view kExplorePolicy = "explore";  // seeded random depths (recording)
// (each uniform in 1..max_depth, kept for three periods on average)

struct PrefetchRunSpec {
  std::string policy = std::string(kFixedPolicy);
  std::uint64_t steps = 300;
  DataStepSchedule schedule;
  bool delays = true;              // false: no schedule (calibration)
  std::uint64_t explore_seed = 1;  // kExplorePolicy's draws
};

struct PrefetchRun {
  std::string policy;
  double seconds = 0;           // the guest's training steps
  std::int64_t stall_ns = 0;    // consumer stall in every decision period after the first
  std::uint64_t decisions = 0;  // prefetch decisions
  std::uint64_t fallbacks = 0;  // of which the baseline answered instead of the policy
  double mean_depth = 0;        // mean decided depth
  std::vector<malv_prefetch_outcome> outcomes;  // in order, as the policy heard them
};

class PrefetchTestbed {
 public:
  // backend: "cpu" or "cuda"; data_dir holds fashion-mnist/ (the host's data directory).
  [[nodiscard]] static Result<std::unique_ptr<PrefetchTestbed>> start(
      const std::string& backend, const std::string& data_dir = "/usr/share/datasets");
  ~PrefetchTestbed();
  PrefetchTestbed(const PrefetchTestbed&) = delete;
  PrefetchTestbed& operator=(const PrefetchTestbed&) = delete;

  // Measures the consumer's step time without delays (the median of
  // `rounds` runs of `steps` steps); the schedule's unit from then on.
  [[nodiscard]] Status calibrate(std::uint64_t steps, unsigned rounds = 2);
  double step_ns() const;

  // One training run of a fresh VM under spec.policy.
  [[nodiscard]] Result<PrefetchRun> run(const PrefetchRunSpec& spec);

  std::string backend_name() const;

 private:
  struct Parts;
  explicit PrefetchTestbed(std::unique_ptr<Parts> parts);
  std::unique_ptr<Parts> parts_;
};

// `malv prefetch record`: `runs` runs of `steps` steps under kExplorePolicy,
// each on its own schedule (seeded by `seed` and the run: slow shares from 0
// to 0.15, slow batches up to 3 to 9 steps, fast ones up to 0.1 to 0.6),
// every outcome as a row (train/prefetch_data.h).
struct PrefetchRecordOptions {
  std::string backend = "cpu";
  std::uint64_t runs = 12;
  std::uint64_t steps = 400;
  std::uint64_t seed = 1;
  std::string data_dir = "/usr/share/datasets";
  std::function<void(std::uint64_t run, const PrefetchRun&)> progress;
};

struct PrefetchRecording {
  double step_ms = 0;
  std::vector<train::PrefetchRecordRow> rows;
};

[[nodiscard]] Result<PrefetchRecording> record_prefetch(const PrefetchRecordOptions& options);

// `malv bench mlaas`'s prefetch phase: fixed, adaptive and learned on the
// same schedule, `rounds` rounds in rotating order.
struct PrefetchPhase {
  double step_ms = 0;
  std::uint64_t steps = 0;
  unsigned rounds = 0;
  std::vector<PrefetchRun> fixed, adaptive, learned;
};

[[nodiscard]] Result<PrefetchPhase> run_prefetch_phase(const MlaasOptions& flags);

// Appends prefetch_stall_adaptive_over_fixed, prefetch_stall_learned_over_fixed
// and the absolute figures (docs/benchmarks.md), and extra["prefetch"].
void add_prefetch_figures(const PrefetchPhase& phase, std::vector<harness::Figure>& figures,
                          nlohmann::json& extra);

}  // namespace malv::bench
