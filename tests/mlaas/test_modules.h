// Paths of the test modules built by tests/mlaas/CMakeLists.txt, and a
// fixture that owns a registry and runner with host services.
#pragma once

#include <string>

#include "mlaas/feature_registry.h"
#include "mlaas/host_services.h"
#include "mlaas/policy_registry.h"
#include "mlaas/policy_runner.h"

namespace malv::mlaas::testing {

inline std::string test_module(const std::string& kind) {
  return std::string(MALV_TEST_MODULE_DIR) + "/libtest_" + kind + ".so";
}

struct MlaasHost {
  FeatureRegistry features;
  HostServices services{features, nullptr};
  PolicyRegistry registry{services.table()};
  PolicyRunner runner{registry, GuardrailOptions{std::chrono::milliseconds(20), 5}};
};

inline malv_gpu_sched_observation gpu_item(std::uint64_t vm, std::int64_t enqueue_ns) {
  malv_gpu_sched_observation o{};
  o.vm_id = vm;
  o.vm_weight = 1.0;
  o.enqueue_time_ns = enqueue_ns;
  return o;
}

}  // namespace malv::mlaas::testing
