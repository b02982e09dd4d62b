// Per-class sizes and decision checks for the C ABI's policy classes.
#include "mlaas/policy_class.h"

#include <fmt/format.h>

#include <cmath>
#include <limits>

namespace malv::mlaas {
namespace {

bool score_ok(double score) {
  return std::isfinite(score) && std::fabs(score) <= MALV_MLAAS_SCORE_LIMIT;
}

Error bad_score(std::string_view what, std::size_t index, double value) {
  return Error(ErrorCode::kOutOfRange, fmt::format("decision {}: {} {} is not finite within +-{}",
                                                   index, what, value, MALV_MLAAS_SCORE_LIMIT));
}

template <typename Decision, typename Get>
Status check_scores(const void* decisions, std::size_t n, std::string_view what, Get get) {
  const auto* d = static_cast<const Decision*>(decisions);
  for (std::size_t i = 0; i < n; ++i) {
    if (!score_ok(get(d[i]))) return bad_score(what, i, get(d[i]));
  }
  return ok_status();
}

}  // namespace

std::string_view policy_class_name(PolicyClass cls) {
  switch (cls) {
    case PolicyClass::kGpuSched: return "gpu_sched";
    case PolicyClass::kMemory: return "memory";
    case PolicyClass::kCpuSched: return "cpu_sched";
    case PolicyClass::kPrefetch: return "prefetch";
  }
  return "unknown";
}

Result<PolicyClass> parse_policy_class(std::string_view name) {
  for (PolicyClass cls : kAllPolicyClasses) {
    if (policy_class_name(cls) == name) return cls;
  }
  return Error(
      ErrorCode::kInvalidArgument,
      fmt::format("unknown policy class '{}' (gpu_sched, memory, cpu_sched, prefetch)", name));
}

std::optional<PolicyClass> policy_class_from_abi(std::uint32_t value) {
  if (value < MALV_POLICY_CLASS_MIN || value > MALV_POLICY_CLASS_MAX) return std::nullopt;
  return static_cast<PolicyClass>(value);
}

std::size_t observation_size(PolicyClass cls) {
  switch (cls) {
    case PolicyClass::kGpuSched: return sizeof(malv_gpu_sched_observation);
    case PolicyClass::kMemory: return sizeof(malv_memory_observation);
    case PolicyClass::kCpuSched: return sizeof(malv_cpu_sched_observation);
    case PolicyClass::kPrefetch: return sizeof(malv_prefetch_observation);
  }
  return 0;
}

std::size_t decision_size(PolicyClass cls) {
  switch (cls) {
    case PolicyClass::kGpuSched: return sizeof(malv_gpu_sched_decision);
    case PolicyClass::kMemory: return sizeof(malv_memory_decision);
    case PolicyClass::kCpuSched: return sizeof(malv_cpu_sched_decision);
    case PolicyClass::kPrefetch: return sizeof(malv_prefetch_decision);
  }
  return 0;
}

std::size_t outcome_size(PolicyClass cls) {
  switch (cls) {
    case PolicyClass::kGpuSched: return sizeof(malv_gpu_sched_outcome);
    case PolicyClass::kMemory: return sizeof(malv_memory_outcome);
    case PolicyClass::kCpuSched: return sizeof(malv_cpu_sched_outcome);
    case PolicyClass::kPrefetch: return sizeof(malv_prefetch_outcome);
  }
  return 0;
}

void poison_decisions(PolicyClass cls, void* decisions, std::size_t n) {
  const double nan = std::numeric_limits<double>::quiet_NaN();
  switch (cls) {
    case PolicyClass::kGpuSched:
      for (std::size_t i = 0; i < n; ++i)
        static_cast<malv_gpu_sched_decision*>(decisions)[i] = {nan};
      return;
    case PolicyClass::kMemory:
      for (std::size_t i = 0; i < n; ++i) static_cast<malv_memory_decision*>(decisions)[i] = {nan};
      return;
    case PolicyClass::kCpuSched: {
      constexpr std::uint32_t kUnset = std::numeric_limits<std::uint32_t>::max();
      for (std::size_t i = 0; i < n; ++i) {
        static_cast<malv_cpu_sched_decision*>(decisions)[i] = {kUnset, kUnset, kUnset, kUnset};
      }
      return;
    }
    case PolicyClass::kPrefetch:
      for (std::size_t i = 0; i < n; ++i) {
        static_cast<malv_prefetch_decision*>(decisions)[i] = {
            std::numeric_limits<std::uint32_t>::max()};
      }
      return;
  }
}

// SHARE: a weight in range (or 0: keep) and a known placement; MIGRATE: one
// of the three answers. Fields a kind does not use must be 0.
Status check_cpu_sched_decisions(const malv_cpu_sched_observation* obs,
                                 const malv_cpu_sched_decision* d, std::size_t n) {
  for (std::size_t i = 0; i < n; ++i) {
    if (d[i].reserved != 0) {
      return Error(ErrorCode::kOutOfRange, fmt::format("decision {}: reserved is not 0", i));
    }
    if (obs[i].kind == MALV_CPU_SCHED_MIGRATE) {
      if (d[i].migrate > MALV_CPU_MIGRATE_DEFAULT || d[i].weight != 0 || d[i].placement != 0) {
        return Error(ErrorCode::kOutOfRange,
                     fmt::format("decision {} (migrate): migrate {} (0, 1 or 2), weight {} and "
                                 "placement {} (both must be 0)",
                                 i, d[i].migrate, d[i].weight, d[i].placement));
      }
      continue;
    }
    if ((d[i].weight != 0 &&
         (d[i].weight < MALV_CPU_WEIGHT_MIN || d[i].weight > MALV_CPU_WEIGHT_MAX)) ||
        d[i].placement > MALV_CPU_PLACE_BALANCED || d[i].migrate != 0) {
      return Error(
          ErrorCode::kOutOfRange,
          fmt::format("decision {} (share): weight {} (0 or {}..{}), placement {} (0 to 2), "
                      "migrate {} (must be 0)",
                      i, d[i].weight, MALV_CPU_WEIGHT_MIN, MALV_CPU_WEIGHT_MAX, d[i].placement,
                      d[i].migrate));
    }
  }
  return ok_status();
}

Status validate_decisions(PolicyClass cls, const void* observations, const void* decisions,
                          std::size_t n) {
  switch (cls) {
    case PolicyClass::kGpuSched: {
      MALV_TRY(check_scores<malv_gpu_sched_decision>(
          decisions, n, "score", [](const malv_gpu_sched_decision& d) { return d.score; }));
      // A score ranks the VM's own items (ABI 5): never negative.
      const auto* d = static_cast<const malv_gpu_sched_decision*>(decisions);
      for (std::size_t i = 0; i < n; ++i) {
        if (d[i].score < 0) {
          return Error(ErrorCode::kOutOfRange,
                       fmt::format("decision {}: score {} is negative (a gpu_sched score ranks "
                                   "the VM's own items: 0 to {})",
                                   i, d[i].score, MALV_MLAAS_SCORE_LIMIT));
        }
      }
      return ok_status();
    }
    case PolicyClass::kMemory:
      return check_scores<malv_memory_decision>(
          decisions, n, "evict_score", [](const malv_memory_decision& d) { return d.evict_score; });
    case PolicyClass::kCpuSched:
      return check_cpu_sched_decisions(static_cast<const malv_cpu_sched_observation*>(observations),
                                       static_cast<const malv_cpu_sched_decision*>(decisions), n);
    case PolicyClass::kPrefetch: {
      const auto* obs = static_cast<const malv_prefetch_observation*>(observations);
      const auto* d = static_cast<const malv_prefetch_decision*>(decisions);
      for (std::size_t i = 0; i < n; ++i) {
        if (d[i].depth > obs[i].max_depth) {
          return Error(ErrorCode::kOutOfRange,
                       fmt::format("decision {}: depth {} is past max_depth {}", i, d[i].depth,
                                   obs[i].max_depth));
        }
      }
      return ok_status();
    }
  }
  return Error(ErrorCode::kInvalidArgument, "unknown policy class");
}

}  // namespace malv::mlaas
