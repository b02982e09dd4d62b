#include "bench/mlaas_prefetch.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <mutex>
#include <random>

#include "accel/backend.h"
#include "base/clock.h"
#include "bench/training_runs.h"
#include "harness/host_process.h"
#include "malv/connection.h"
#include "malv/dataset.h"
#include "microlake/server.h"
#include "mlaas/feature_registry.h"
#include "mlaas/host_services.h"
#include "mlaas/inference_service.h"
#include "mlaas/policy_dir.h"
#include "mlaas/policy_registry.h"
#include "mlaas/policy_runner.h"
#include "nn/batch_source.h"
#include "nn/remote_device.h"
#include "nn/trainer.h"
#include "offload/dataset_catalog.h"

namespace malv::bench {
namespace {

std::uint64_t mix64(std::uint64_t x) {  // splitmix64's finaliser
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

double unit(std::uint64_t bits) { return static_cast<double>(bits >> 11) * 0x1.0p-53; }

}  // namespace

std::int64_t DataStepSchedule::delay_ns(std::uint64_t batch, double step_ns) const {
  const std::uint64_t h = mix64(mix64(seed) ^ batch);
  const double u = unit(h);
  const double v = unit(mix64(h));
  const double steps =
      u < slow_share ? slow_min_steps + v * (slow_max_steps - slow_min_steps) : v * fast_max_steps;
  return static_cast<std::int64_t>(steps * step_ns);
}

Status DataStepSchedule::check() const {
  const bool ok = std::isfinite(slow_share) && slow_share >= 0 && slow_share <= 1 &&
                  std::isfinite(slow_min_steps) && slow_min_steps >= 0 &&
                  std::isfinite(slow_max_steps) && slow_max_steps >= slow_min_steps &&
                  slow_max_steps <= 1000 && std::isfinite(fast_max_steps) && fast_max_steps >= 0 &&
                  fast_max_steps <= 1000;
  if (ok) return ok_status();
  return Error(ErrorCode::kInvalidArgument,
               fmt::format("data step schedule: slow share {} must be in [0, 1], slow steps {}..{} "
                           "and fast steps {} within [0, 1000], min <= max",
                           slow_share, slow_min_steps, slow_max_steps, fast_max_steps));
}

// The current run, as the catalog's callbacks see it (guarded by mu).
struct RunState {
  std::string vm;
  PrefetchRunSpec spec;
  std::mt19937_64 explore;
  std::uint32_t held = 0;  // kExplorePolicy's depth in force
  PrefetchRun result;
  double depth_sum = 0;
};

struct PrefetchTestbed::Parts {
  std::unique_ptr<accel::Backend> device;
  mlaas::FeatureRegistry features;
  std::unique_ptr<mlaas::InferenceService> inference;
  std::unique_ptr<mlaas::HostServices> services;
  std::unique_ptr<mlaas::PolicyRegistry> registry;
  std::unique_ptr<mlaas::PolicyRunner> runner;
  std::unique_ptr<offload::DatasetCatalog> catalog;
  std::shared_ptr<const data::Dataset> dataset;  // decoded once, kept for every run
  std::unique_ptr<microlake::Server> server;
  std::string socket;
  double step_ns = 0;
  std::uint64_t runs = 0;

  std::mutex mu;
  RunState* current = nullptr;  // guarded by mu

  std::uint32_t decide(std::string_view vm, const malv_prefetch_observation& observation);
  void feedback(std::string_view vm, const malv_prefetch_outcome& outcome);
  std::int64_t delay(std::string_view vm, std::uint64_t batch);
};

std::uint32_t PrefetchTestbed::Parts::decide(std::string_view vm,
                                             const malv_prefetch_observation& observation) {
  malv_prefetch_observation o = observation;
  o.vm_id = 1;  // the testbed's one VM at a time
  bool explore = false;
  std::uint32_t drawn = 0;
  {
    std::lock_guard lock(mu);
    if (current == nullptr || current->vm != vm) return 1;
    // The first period holds the pipeline's start (the first batch staged
    // while the consumer waits): the same under every policy, not counted.
    if (current->result.decisions > 0) current->result.stall_ns += o.consumer_stall_ns;
    ++current->result.decisions;
    if (current->spec.policy == kExplorePolicy) {
      // A depth drawn uniformly from 1..max_depth, kept for a period and
      // then redrawn with probability 1/3: every period's depth is still
      // uniform, and a depth lasts long enough (three periods on average)
      // for the producer to stage that far, so its own effect shows.
      explore = true;
      const std::uint32_t cap = std::max<std::uint32_t>(1, o.max_depth);
      if (current->held == 0 || current->held > cap ||
          std::uniform_int_distribution<int>(0, 2)(current->explore) == 0) {
        current->held = std::uniform_int_distribution<std::uint32_t>(1, cap)(current->explore);
      }
      drawn = current->held;
    }
  }
  std::uint32_t depth = drawn;
  bool fallback = false;
  if (!explore) {
    malv_prefetch_decision decision{};
    const mlaas::DecisionReport report =
        runner->decide(vm, std::span(&o, 1), std::span(&decision, 1));
    fallback = report.source == mlaas::DecisionSource::kFallback;
    depth = decision.depth;
  }
  std::lock_guard lock(mu);
  if (current != nullptr && current->vm == vm) {
    current->depth_sum += depth;
    if (fallback) ++current->result.fallbacks;
  }
  return depth;
}

void PrefetchTestbed::Parts::feedback(std::string_view vm, const malv_prefetch_outcome& outcome) {
  malv_prefetch_outcome o = outcome;
  o.stream.vm_id = 1;
  {
    std::lock_guard lock(mu);
    if (current == nullptr || current->vm != vm) return;
    current->result.outcomes.push_back(o);
  }
  runner->feedback(vm, mlaas::PolicyClass::kPrefetch, &o, 1);
}

std::int64_t PrefetchTestbed::Parts::delay(std::string_view vm, std::uint64_t batch) {
  std::lock_guard lock(mu);
  if (current == nullptr || current->vm != vm || !current->spec.delays) return 0;
  return current->spec.schedule.delay_ns(batch, step_ns);
}

PrefetchTestbed::PrefetchTestbed(std::unique_ptr<Parts> parts) : parts_(std::move(parts)) {}

PrefetchTestbed::~PrefetchTestbed() {
  if (parts_ == nullptr) return;
  parts_->server.reset();  // sessions (and their pipelines) end before the catalog
  parts_->catalog.reset();
}

Result<std::unique_ptr<PrefetchTestbed>> PrefetchTestbed::start(const std::string& backend,
                                                                const std::string& data_dir) {
  auto parts = std::make_unique<Parts>();
  Parts* p = parts.get();
  MALV_ASSIGN_OR_RETURN(p->device,
                        accel::make_backend(backend, {.memory_bytes = 1ull << 30, .workers = 0}));
  p->inference = std::make_unique<mlaas::InferenceService>(
      p->device.get(), mlaas::InferenceOptions{.calibrate = false});
  p->services = std::make_unique<mlaas::HostServices>(p->features, p->inference.get());
  p->registry = std::make_unique<mlaas::PolicyRegistry>(p->services->table());
  const std::string dir = mlaas::policy_dir();
  MALV_TRY_CONTEXT(p->registry->load_directory(dir), "loading MLaaS modules from " + dir);
  p->runner = std::make_unique<mlaas::PolicyRunner>(*p->registry);

  offload::CatalogOptions catalog;
  catalog.data_dirs = {data_dir};
  catalog.prefetch = [p](std::string_view vm, const malv_prefetch_observation& o) {
    return p->decide(vm, o);
  };
  catalog.prefetch_feedback = [p](std::string_view vm, const malv_prefetch_outcome& o) {
    p->feedback(vm, o);
  };
  catalog.producer_delay = [p](std::string_view vm, std::uint64_t batch) {
    return p->delay(vm, batch);
  };
  p->catalog = std::make_unique<offload::DatasetCatalog>(std::move(catalog));
  const guest::DatasetOptions wanted;
  MALV_ASSIGN_OR_RETURN(p->dataset, p->catalog->load({.features = wanted.features}));

  microlake::ServerOptions server;
  server.unix_path = harness::private_socket_path("prefetch");
  server.admit = [p](const microlake::HelloInfo&) -> Result<microlake::Admission> {
    microlake::Admission admission;
    admission.services.datasets = p->catalog.get();
    return admission;
  };
  p->socket = server.unix_path;
  MALV_ASSIGN_OR_RETURN(p->server, microlake::Server::start(*p->device, server));
  return std::unique_ptr<PrefetchTestbed>(new PrefetchTestbed(std::move(parts)));
}

double PrefetchTestbed::step_ns() const { return parts_->step_ns; }

std::string PrefetchTestbed::backend_name() const { return parts_->device->info().backend; }

Status PrefetchTestbed::calibrate(std::uint64_t steps, unsigned rounds) {
  std::vector<double> per_step;
  for (unsigned r = 0; r < std::max(1u, rounds); ++r) {
    MALV_ASSIGN_OR_RETURN(PrefetchRun run, this->run({.steps = steps, .delays = false}));
    per_step.push_back(run.seconds * 1e9 / static_cast<double>(std::max<std::uint64_t>(1, steps)));
  }
  parts_->step_ns = harness::median(per_step);
  return ok_status();
}

Result<PrefetchRun> PrefetchTestbed::run(const PrefetchRunSpec& spec) {
  MALV_TRY(spec.schedule.check());
  if (spec.delays && parts_->step_ns <= 0) {
    return Error(ErrorCode::kFailedPrecondition, "prefetch testbed: calibrate() before a run");
  }
  Parts& p = *parts_;
  RunState state;
  state.vm = fmt::format("prefetch-{}", p.runs++);
  state.spec = spec;
  state.explore.seed(spec.explore_seed);
  state.result.policy = spec.policy;
  if (spec.policy == kFixedPolicy || spec.policy == kExplorePolicy) {
    p.registry->select_baseline(state.vm, mlaas::PolicyClass::kPrefetch);
  } else {
    MALV_TRY_CONTEXT(p.registry->select(state.vm, mlaas::PolicyClass::kPrefetch, spec.policy),
                     "selecting " + spec.policy);
  }
  {
    std::lock_guard lock(p.mu);
    p.current = &state;
  }
  auto timed = [&]() -> Result<double> {
    MALV_ASSIGN_OR_RETURN(auto connection,
                          guest::Connection::connect_unix(p.socket, {.vm_name = state.vm}));
    MALV_ASSIGN_OR_RETURN(auto device, nn::RemoteDevice::create(*connection));
    guest::DatasetOptions data;
    data.batch = 128;
    data.seed = 1;
    MALV_ASSIGN_OR_RETURN(auto batches, nn::HostBatches::open(*device, data));
    // The loss is read back every step, as a loop that prints loss.item()
    // does: the guest then asks for batch s + 1 when step s is done, so the
    // pipeline sees the training's own pace. (A guest that never reads
    // anything queues steps far ahead of the device, and the host's
    // session asks for batches as fast as the producer makes them: every
    // depth looks the same.)
    nn::TrainOptions training = reference_training(spec.steps);
    training.log_every = 1;
    return time_steps(nn::Trainer::create(*device, std::move(batches), training));
  };
  Result<double> seconds = timed();
  {
    std::lock_guard lock(p.mu);
    p.current = nullptr;
  }
  p.registry->remove_vm(state.vm);
  MALV_TRY(seconds);
  PrefetchRun result = std::move(state.result);
  result.seconds = seconds.value();
  result.mean_depth =
      result.decisions > 0 ? state.depth_sum / static_cast<double>(result.decisions) : 0.0;
  return result;
}

// ------------------------------------------------------------ recording --

Result<PrefetchRecording> record_prefetch(const PrefetchRecordOptions& options) {
  MALV_ASSIGN_OR_RETURN(auto bed, PrefetchTestbed::start(options.backend, options.data_dir));
  MALV_TRY(bed->calibrate(std::min<std::uint64_t>(options.steps, 100)));
  PrefetchRecording recording;
  recording.step_ms = bed->step_ns() * 1e-6;
  std::mt19937_64 draw(options.seed);
  constexpr double kSlowShares[] = {0.0, 0.03, 0.06, 0.1, 0.15};
  constexpr double kSlowMax[] = {3, 6, 9};
  constexpr double kFastMax[] = {0.1, 0.3, 0.6};
  auto pick = [&](const auto& values) {
    return values[std::uniform_int_distribution<std::size_t>(0, std::size(values) - 1)(draw)];
  };
  for (std::uint64_t i = 0; i < options.runs; ++i) {
    PrefetchRunSpec spec{.policy = std::string(kExplorePolicy), .steps = options.steps};
    spec.schedule.seed = options.seed * 1000003 + i;
    spec.schedule.slow_share = pick(kSlowShares);
    spec.schedule.slow_max_steps = pick(kSlowMax);
    spec.schedule.slow_min_steps = spec.schedule.slow_max_steps / 3;
    spec.schedule.fast_max_steps = pick(kFastMax);
    spec.explore_seed = options.seed * 7919 + i;
    MALV_ASSIGN_OR_RETURN(PrefetchRun run, bed->run(spec));
    for (const malv_prefetch_outcome& o : run.outcomes) recording.rows.push_back({i, o});
    if (options.progress) options.progress(i, run);
  }
  return recording;
}

// ------------------------------------------------------------ the phase --

Result<PrefetchPhase> run_prefetch_phase(const MlaasOptions& flags) {
  MALV_ASSIGN_OR_RETURN(auto bed, PrefetchTestbed::start(flags.backend));
  PrefetchPhase phase;
  phase.steps = static_cast<std::uint64_t>(flags.prefetch_steps);
  phase.rounds = static_cast<unsigned>(flags.prefetch_rounds);
  fmt::print(stderr, "bench mlaas: prefetch: measuring the consumer's step ...\n");
  MALV_TRY(bed->calibrate(std::min<std::uint64_t>(phase.steps, 100)));
  phase.step_ms = bed->step_ns() * 1e-6;
  const std::string policies[] = {std::string(kFixedPolicy), "malv_prefetch_basic/adaptive",
                                  "malv_prefetch_learned/learned"};
  std::vector<PrefetchRun>* into[] = {&phase.fixed, &phase.adaptive, &phase.learned};
  for (unsigned r = 0; r < phase.rounds; ++r) {
    fmt::print(stderr,
               "bench mlaas: prefetch round {}/{}: fixed, adaptive, learned ({} steps) ...\n",
               r + 1, phase.rounds, phase.steps);
    for (std::size_t i = 0; i < std::size(policies); ++i) {
      const std::size_t k = (r + i) % std::size(policies);  // rotating order
      PrefetchRunSpec spec{.policy = policies[k], .steps = phase.steps};
      spec.schedule.seed = flags.prefetch_seed + r;
      MALV_ASSIGN_OR_RETURN(PrefetchRun run, bed->run(spec));
      into[k]->push_back(std::move(run));
    }
  }
  return phase;
}

namespace {

struct Totals {
  double stall_ms = 0;
  double seconds = 0;
  double depth = 0;
  std::uint64_t fallbacks = 0;
};

Totals totals(const std::vector<PrefetchRun>& runs) {
  Totals t;
  for (const PrefetchRun& r : runs) {
    t.stall_ms += static_cast<double>(r.stall_ns) * 1e-6;
    t.seconds += r.seconds;
    t.depth += r.mean_depth / static_cast<double>(runs.size());
    t.fallbacks += r.fallbacks;
  }
  return t;
}

}  // namespace

void add_prefetch_figures(const PrefetchPhase& phase, std::vector<harness::Figure>& figures,
                          nlohmann::json& extra) {
  const Totals fixed = totals(phase.fixed);
  const Totals adaptive = totals(phase.adaptive);
  const Totals learned = totals(phase.learned);
  const auto over = [&](double a) {
    return fixed.stall_ms > 0 ? a / fixed.stall_ms : std::numeric_limits<double>::quiet_NaN();
  };
  const std::string runs = fmt::format("{} runs of {} steps", phase.rounds, phase.steps);
  figures.push_back({"prefetch_stall_adaptive_over_fixed", over(adaptive.stall_ms), "x",
                     "consumer stall under adaptive / under fixed, same schedules; goal <= 0.5"});
  figures.push_back({"prefetch_stall_learned_over_fixed", over(learned.stall_ms), "x",
                     "consumer stall under learned / under fixed; goal <= 0.5"});
  figures.push_back({"prefetch_fixed_stall_ms", fixed.stall_ms, "ms", runs + ", all together"});
  figures.push_back({"prefetch_adaptive_stall_ms", adaptive.stall_ms, "ms", ""});
  figures.push_back({"prefetch_learned_stall_ms", learned.stall_ms, "ms", ""});
  figures.push_back({"prefetch_fixed_train_s", fixed.seconds, "s", "the guest's steps, " + runs});
  figures.push_back({"prefetch_adaptive_train_s", adaptive.seconds, "s", ""});
  figures.push_back({"prefetch_learned_train_s", learned.seconds, "s", ""});
  figures.push_back({"prefetch_fixed_mean_depth", fixed.depth, "", "mean decided depth"});
  figures.push_back({"prefetch_adaptive_mean_depth", adaptive.depth, "", ""});
  figures.push_back({"prefetch_learned_mean_depth", learned.depth, "", ""});
  figures.push_back({"prefetch_step_ms", phase.step_ms, "ms",
                     "consumer step without delays (the schedule's unit)"});
  figures.push_back({"prefetch_learned_fallbacks", static_cast<double>(learned.fallbacks), "",
                     "learned decisions the baseline answered instead"});
  figures.push_back(
      {"prefetch_adaptive_fallbacks", static_cast<double>(adaptive.fallbacks), "", ""});
  const DataStepSchedule schedule;
  extra["prefetch"] = {{"steps", phase.steps},
                       {"rounds", phase.rounds},
                       {"slow_share", schedule.slow_share},
                       {"slow_steps", {schedule.slow_min_steps, schedule.slow_max_steps}},
                       {"fast_max_steps", schedule.fast_max_steps}};
}

}  // namespace malv::bench
