// MlaasMemoryPolicies: the memory manager's policy source, backed by the
// MLaaS subsystem. Each VM's eviction decision goes through the
// PolicyRunner, which calls the VM's selected `memory` module under the
// guardrails (time budget, output checks, fallback to the builtin/lru
// baseline) and counts what happened; score() returns true when the
// baseline answered, so the caller can count the fallback on the VM.
//
// Thread-safety: any thread, several at once (the runner serialises calls
// into one VM's policy instance; nothing here is shared between calls).
#pragma once

#include "mlaas/policy_runner.h"
#include "vgpu/memory_policies.h"

namespace malv::vgpu {

class MlaasMemoryPolicies final : public MemoryPolicies {
 public:
  explicit MlaasMemoryPolicies(mlaas::PolicyRunner& runner) : runner_(runner) {}

  bool score(std::string_view vm, std::span<const malv_memory_observation> candidates,
             std::span<double> scores) override;
  void feedback(std::string_view vm, const malv_memory_outcome& outcome) override;

 private:
  mlaas::PolicyRunner& runner_;
};

}  // namespace malv::vgpu
