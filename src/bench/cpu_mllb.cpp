#include "bench/cpu_mllb.h"

#include <fmt/format.h>

#include <chrono>
#include <cstdlib>
#include <span>
#include <vector>

#include "accel/backend.h"
#include "base/clock.h"
#include "mlaas/feature_registry.h"
#include "mlaas/host_services.h"
#include "mlaas/inference_service.h"
#include "mlaas/policy_dir.h"
#include "mlaas/policy_registry.h"
#include "mlaas/policy_runner.h"
#include "train/mllb_model.h"

namespace malv::bench {
namespace {

using nlohmann::json;

// Candidates per decision: a balance pass asks about the runnable threads of
// the busiest core, a handful on a small host.
constexpr std::size_t kCandidates = 8;

json scores_json(const train::MllbScores& s) {
  return {{"rows", s.rows},
          {"accuracy", s.accuracy},
          {"precision", s.precision},
          {"recall", s.recall},
          {"majority_accuracy", s.majority_accuracy},
          {"reference_accuracy", s.reference_accuracy ? json(*s.reference_accuracy) : json()}};
}

struct PolicyTiming {
  double ns_per_observation = 0;
  std::size_t fallbacks = 0;  // decisions the baseline answered (late or failed)
};

// ns per observation of the `mllb` policy deciding kCandidates migrations at
// a time through the inference service (on `backend`, or inline without).
Result<PolicyTiming> policy_ns_per_observation(const std::vector<malv_cpu_sched_observation>& obs,
                                               accel::Backend* backend, int decisions) {
  mlaas::FeatureRegistry features;
  mlaas::InferenceService inference(backend, {.calibrate = backend != nullptr});
  mlaas::HostServices services(features, &inference);
  mlaas::PolicyRegistry registry(services.table());
  MALV_TRY(registry.load_directory(mlaas::policy_dir()));
  MALV_TRY(registry.select("bench", mlaas::PolicyClass::kCpuSched, "malv_cpu_mllb/mllb"));
  mlaas::PolicyRunner runner(registry);
  std::vector<malv_cpu_sched_decision> out(kCandidates);
  std::size_t fallbacks = 0;
  Stopwatch watch;
  for (int d = 0; d < decisions; ++d) {
    const std::size_t first =
        (static_cast<std::size_t>(d) * kCandidates) % (obs.size() - kCandidates);
    mlaas::DecisionReport r =
        runner.decide("bench", std::span(obs).subspan(first, kCandidates), std::span(out));
    if (r.source != mlaas::DecisionSource::kPolicy) ++fallbacks;
  }
  return PolicyTiming{watch.elapsed_s() * 1e9 / (static_cast<double>(decisions) * kCandidates),
                      fallbacks};
}

}  // namespace

Result<json> measure_mllb(const std::string& data_flag, int decisions) {
  std::string data = data_flag;
  if (data.empty()) {
    const char* env = std::getenv("MALV_MLLB_DATA");
    if (env != nullptr) data = env;
  }
  if (data.empty()) return json{{"skipped", "no dump: give --mllb-data or set MALV_MLLB_DATA"}};
  MALV_ASSIGN_OR_RETURN(train::MllbDump dump, train::read_mllb_dump(data));
  std::optional<mlaas::Mlp> reference;
  if (const std::string ref = train::default_mllb_reference_path(data); !ref.empty()) {
    MALV_ASSIGN_OR_RETURN(reference, train::load_mllb_reference(ref));
  }
  // The shipped model's recipe (scripts/train-mllb-model.sh: the defaults),
  // trained again here: its held-out rows are the ones it never saw.
  MALV_ASSIGN_OR_RETURN(train::MllbTraining trained,
                        train::train_mllb_model(dump, {}, reference ? &*reference : nullptr));
  json out{{"data", data},
           {"heldout_all", scores_json(*trained.holdout_all)},
           {"heldout_not_running", scores_json(*trained.holdout_not_running)}};

  // Decide time on the dump's own migrations (every row a candidate).
  std::vector<malv_cpu_sched_observation> obs;
  for (const train::MllbSample& s : dump.samples) {
    malv_cpu_sched_observation o{};
    o.kind = MALV_CPU_SCHED_MIGRATE;
    o.migration = s.migration;
    obs.push_back(o);
  }
  if (obs.size() <= kCandidates) return out;
  MALV_ASSIGN_OR_RETURN(mlaas::Mlp shipped,
                        train::load_mllb_model(train::default_mllb_model_path()));
  std::vector<float> in =
      train::mllb_feature_matrix(dump, train::select_mllb_rows(dump, train::MllbRows::kAll));
  std::vector<float> y(kCandidates);
  Stopwatch inline_watch;
  for (int d = 0; d < decisions; ++d) {
    const std::size_t first =
        (static_cast<std::size_t>(d) * kCandidates) % (obs.size() - kCandidates);
    shipped.infer_cpu(in.data() + first * MALV_MLLB_FEATURE_COUNT, kCandidates, y.data());
  }
  out["decide_inline_ns_per_observation"] =
      inline_watch.elapsed_s() * 1e9 / (static_cast<double>(decisions) * kCandidates);
  MALV_ASSIGN_OR_RETURN(PolicyTiming service, policy_ns_per_observation(obs, nullptr, decisions));
  std::unique_ptr<accel::Backend> device = accel::make_cpu_backend({.workers = 1});
  MALV_ASSIGN_OR_RETURN(PolicyTiming accel,
                        policy_ns_per_observation(obs, device.get(), decisions));
  out["decide_service_ns_per_observation"] = service.ns_per_observation;
  out["decide_service_accel_ns_per_observation"] = accel.ns_per_observation;
  // Decisions the guardrails gave to the baseline (over the 2 ms budget,
  // e.g. the timing thread preempted): counted, not hidden.
  out["decide_service_fallbacks"] = service.fallbacks + accel.fallbacks;
  out["decisions_per_path"] = decisions;
  out["candidates_per_decision"] = kCandidates;
  return out;
}

}  // namespace malv::bench
