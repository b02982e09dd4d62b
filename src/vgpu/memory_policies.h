// MemoryPolicies: how the memory manager asks a VM's selected `memory`
// policy (an MLaaS module) which resident buffers to evict first.
//
//   std::vector<malv_memory_observation> candidates = ...;  // resident, evictable
//   std::vector<double> scores(candidates.size());
//   if (policies.score(vm.name(), candidates, scores)) ++vm_fallbacks;
//   // evict candidates in order of decreasing score until the new buffer fits
//   ...
//   policies.feedback(vm.name(), outcome);  // once refault_after_ns is known
//
// The observation carries what the host sees ahead (next_use_ops,
// next_use_ns) and whether evicting costs a copy-out (dirty); see
// docs/mlaas-abi.md. Scores of different VMs are never compared.
// MlaasMemoryPolicies (mlaas_memory_policies.h) implements this with the
// MLaaS guardrails; LruMemoryPolicies below decides in process.
#pragma once

#include <algorithm>
#include <span>
#include <string_view>

#include "malv/mlaas.h"

namespace malv::vgpu {

class MemoryPolicies {
 public:
  virtual ~MemoryPolicies() = default;
  // Fills scores[i] for candidates[i] (higher: evict first); every candidate
  // belongs to the VM named `vm`. Never fails: an implementation falls back to
  // LRU itself, and returns true when it did (the caller counts fallbacks).
  // scores has at least candidates.size() entries.
  virtual bool score(std::string_view vm, std::span<const malv_memory_observation> candidates,
                     std::span<double> scores) = 0;
  // What became of a buffer that was evicted (refault_after_ns once known).
  virtual void feedback(std::string_view vm, const malv_memory_outcome& outcome) = 0;
};

// LRU by age, in process: for tests and as the manager's default without
// MLaaS. The same scores as the builtin/lru baseline.
class LruMemoryPolicies final : public MemoryPolicies {
 public:
  bool score(std::string_view, std::span<const malv_memory_observation> candidates,
             std::span<double> scores) override {
    for (std::size_t i = 0; i < candidates.size(); ++i) {
      scores[i] = std::clamp(static_cast<double>(candidates[i].age_ns), -MALV_MLAAS_SCORE_LIMIT,
                             MALV_MLAAS_SCORE_LIMIT);
    }
    return false;
  }
  void feedback(std::string_view, const malv_memory_outcome&) override {}
};

}  // namespace malv::vgpu
