// Guarded decisions and their counters (see policy_runner.h).
#include "mlaas/policy_runner.h"

#include <fmt/format.h>

#include <algorithm>
#include <limits>

#include "base/clock.h"
#include "base/log.h"
#include "mlaas/baselines.h"
#include "mlaas/decision_deadline.h"

namespace malv::mlaas {

std::string_view failure_kind_name(FailureKind kind) {
  switch (kind) {
    case FailureKind::kNone: return "none";
    case FailureKind::kError: return "error";
    case FailureKind::kLate: return "late";
    case FailureKind::kInvalid: return "invalid";
  }
  return "unknown";
}

PolicyRunner::PolicyRunner(PolicyRegistry& registry, GuardrailOptions options)
    : registry_(registry), options_(options) {}

void PolicyRunner::set_options(const GuardrailOptions& options) {
  std::lock_guard lock(mu_);
  options_ = options;
}

GuardrailOptions PolicyRunner::options() const {
  std::lock_guard lock(mu_);
  return options_;
}

DecisionReport PolicyRunner::decide(std::string_view vm, PolicyClass cls, const void* observations,
                                    std::size_t n, void* decisions) {
  DecisionReport report;
  std::shared_ptr<PolicyInstance> instance = registry_.current(vm, cls);
  report.policy = instance->qualified_name();
  if (n == 0) {
    report.source = instance->is_baseline() ? DecisionSource::kBaseline : DecisionSource::kPolicy;
    return report;
  }
  const malv_policy& baseline = baseline_policy(cls);
  if (instance->is_baseline()) {
    // Baselines are stateless, cannot fail, and need no lock.
    baseline.decide(nullptr, observations, n, decisions);
    report.source = DecisionSource::kBaseline;
    std::lock_guard lock(mu_);
    ++counters_[{std::string(vm), std::string(kBuiltinModuleName)}].decisions;
    return report;
  }

  GuardrailOptions options = this->options();
  poison_decisions(cls, decisions, n);
  int status = MALV_MLAAS_ERR_INTERNAL;
  bool threw = false;
  bool inference_missed = false;  // a host service gave up on the deadline
  {
    std::lock_guard instance_lock(instance->mutex());
    const std::int64_t start = mono_now_ns();
    // What the module asks of the host meanwhile (inference) is answered
    // within the budget or not at all.
    DecisionDeadlineScope deadline(MonoClock::now() + options.budget_for(cls));
    try {
      status = instance->policy().decide(instance->state(), observations, n, decisions);
    } catch (...) {
      threw = true;
    }
    report.elapsed_ns = mono_now_ns() - start;
    inference_missed = deadline.missed();
  }

  if (!threw && status != MALV_MLAAS_OK && inference_missed) {
    report.failure = FailureKind::kLate;
    report.detail = fmt::format(
        "decide() returned status {}: an inference it asked for missed the decision's budget "
        "of {} ns",
        status, options.budget_for(cls).count());
  } else if (threw || status != MALV_MLAAS_OK) {
    report.failure = FailureKind::kError;
    report.detail =
        threw ? "decide() threw an exception" : fmt::format("decide() returned status {}", status);
  } else if (report.elapsed_ns > options.budget_for(cls).count()) {
    report.failure = FailureKind::kLate;
    report.detail = fmt::format("decide() took {} ns, budget {} ns", report.elapsed_ns,
                                options.budget_for(cls).count());
  } else if (Status valid = validate_decisions(cls, observations, decisions, n); !valid.ok()) {
    report.failure = FailureKind::kInvalid;
    report.detail = valid.error().message();
  }

  const std::string module(instance->module_name());
  bool disable = false;
  {
    std::lock_guard lock(mu_);
    PolicyCounters& c = counters_[{std::string(vm), module}];
    ++c.decisions;
    Streak& streak = streaks_[{std::string(vm), cls}];
    if (streak.instance != instance.get()) streak = Streak{instance.get(), 0};
    if (report.failure == FailureKind::kNone) {
      streak.failures = 0;
    } else {
      ++c.fallbacks;
      if (report.failure == FailureKind::kError) ++c.errors;
      if (report.failure == FailureKind::kLate) ++c.late;
      if (report.failure == FailureKind::kInvalid) ++c.invalid;
      if (++streak.failures >= options.max_consecutive_failures) {
        disable = true;
        streak = Streak{};
      }
    }
  }
  if (report.failure == FailureKind::kNone) {
    report.source = DecisionSource::kPolicy;
    return report;
  }

  baseline.decide(nullptr, observations, n, decisions);
  report.source = DecisionSource::kFallback;
  log::debug("mlaas", "VM {}: {} failed ({}): {}; baseline decided", vm, report.policy,
             failure_kind_name(report.failure), report.detail);
  if (disable && registry_.revert_if_current(vm, cls, instance.get())) {
    report.disabled = true;
    {
      std::lock_guard lock(mu_);
      ++counters_[{std::string(vm), module}].disables;
    }
    log::warn("mlaas",
              "VM {}: {} policy {} switched off after {} failures in a row (last: {}); "
              "the VM uses the {} baseline now",
              vm, policy_class_name(cls), report.policy, options.max_consecutive_failures,
              report.detail, baseline.name);
  }
  return report;
}

PolicyRunner::EnqueueInputs PolicyRunner::enqueue_inputs(std::string_view vm,
                                                         const malv_gpu_sched_observation& item,
                                                         std::span<float> row) {
  std::shared_ptr<PolicyInstance> instance = registry_.current(vm, PolicyClass::kGpuSched);
  const auto inputs = instance->policy().enqueue_inputs;
  if (inputs == nullptr || instance->is_baseline()) return {};
  std::fill(row.begin(), row.end(), std::numeric_limits<float>::quiet_NaN());
  malv_model model = 0;
  try {
    if (inputs(instance->state(), &item, &model, row.data(), row.size()) != MALV_MLAAS_OK) {
      return {};
    }
  } catch (...) {
    return {};
  }
  return {model, model == 0 ? 0 : instance->serial()};
}

bool PolicyRunner::has_enqueue_inputs(std::string_view vm) const {
  const std::shared_ptr<PolicyInstance> instance = registry_.current(vm, PolicyClass::kGpuSched);
  return !instance->is_baseline() && instance->policy().enqueue_inputs != nullptr;
}

std::uint64_t PolicyRunner::gpu_sched_instance(std::string_view vm) const {
  return registry_.current(vm, PolicyClass::kGpuSched)->serial();
}

void PolicyRunner::feedback(std::string_view vm, PolicyClass cls, const void* outcomes,
                            std::size_t n) {
  std::shared_ptr<PolicyInstance> instance = registry_.current(vm, cls);
  if (n == 0 || instance->is_baseline() || instance->policy().feedback == nullptr) return;
  {
    std::lock_guard instance_lock(instance->mutex());
    try {
      instance->policy().feedback(instance->state(), outcomes, n);
    } catch (...) {
      log::warn("mlaas", "VM {}: {} feedback() threw; ignored", vm, instance->qualified_name());
    }
  }
  std::lock_guard lock(mu_);
  ++counters_[{std::string(vm), std::string(instance->module_name())}].feedbacks;
}

PolicyCounters PolicyRunner::counters(std::string_view vm, std::string_view module) const {
  std::lock_guard lock(mu_);
  auto it = counters_.find(std::pair<std::string, std::string>(vm, module));
  return it == counters_.end() ? PolicyCounters{} : it->second;
}

std::vector<CounterRow> PolicyRunner::all_counters() const {
  std::lock_guard lock(mu_);
  std::vector<CounterRow> rows;
  for (const auto& [key, c] : counters_) rows.push_back({key.first, key.second, c});
  return rows;
}

std::size_t lowest_score(std::span<const malv_gpu_sched_decision> decisions) {
  std::size_t best = 0;
  for (std::size_t i = 1; i < decisions.size(); ++i) {
    if (decisions[i].score < decisions[best].score) best = i;
  }
  return best;
}

std::size_t highest_evict_score(std::span<const malv_memory_decision> decisions) {
  std::size_t best = 0;
  for (std::size_t i = 1; i < decisions.size(); ++i) {
    if (decisions[i].evict_score > decisions[best].evict_score) best = i;
  }
  return best;
}

}  // namespace malv::mlaas
