// The class baselines: one policy per class compiled into the host, used
// when a VM selects nothing, when a module's decision is rejected, and when
// a module is switched off. They are stateless, cannot fail, and take
// microseconds for thousands of items.
//
//   gpu_sched  fifo       score = enqueue_time_ns (oldest first)
//   memory     lru        evict_score = age_ns (least recently used first)
//   prefetch   fixed      depth = min(kBaselinePrefetchDepth, max_depth)
//   cpu_sched  none       weight 100 (the default share), any core; migrations:
//                         the kernel's own rule. A VM on it is not put in a
//                         control group at all (cpu_control/).
//
// They are registered under the module name "builtin" ("builtin/fifo").
#pragma once

#include <cstdint>
#include <string_view>

#include "malv/mlaas.h"
#include "mlaas/policy_class.h"

namespace malv::mlaas {

inline constexpr std::string_view kBuiltinModuleName = "builtin";
inline constexpr std::uint32_t kBaselinePrefetchDepth = 2;

// The baseline policy of a class. Its create() gives a null state, and its
// decide() accepts a null state.
const malv_policy& baseline_policy(PolicyClass cls);

// The "builtin" pseudo-module's descriptor (its policies are the baselines).
const malv_mlaas_module& builtin_module();

}  // namespace malv::mlaas
