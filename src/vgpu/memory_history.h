// MemoryHistory: each buffer's uses in a VM's ops, the history the learned
// memory policy's model reads (include/malv/memory_features.h), kept from an
// access trace (vgpu/access_trace.h). The training rows of `malv memory
// train` (vgpu/memory_training_data.h) and the `learned` policy of `malv
// memory replay` (vgpu/trace_replay.h) both compute a candidate's features
// here, so a model is replayed on exactly the inputs it was trained on.
//
//   MemoryHistory history(buffers);         // buffers by dense index
//   history.allocate(b, record.op_index);   // at its kAllocate record
//   history.use(b, record.op_index);        // once per op that touches it
//   float in[MALV_MEMORY_FEATURE_COUNT];
//   history.features(b, t, in);             // at op t, which does not use b
//
// The definitions (the host's, to the op): ops count by the trace's
// op_index; at op t, ops_since_use = t - (op of the last use), or t - (op of
// the allocation record) if never used; reuse_gaps[0] is the difference of
// the ops of the last two uses, [1] of the two before, ..., latest first, at
// most MALV_MEMORY_GAP_HISTORY of them (gap_count), 0 beyond.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <string_view>
#include <vector>

#include "malv/memory_features.h"
#include "malv/mlaas.h"
#include "malv/result.h"

namespace malv::mlaas {
class Mlp;
}

namespace malv::vgpu {

// The model inputs' column names, in input order (a model file's
// "features" metadata), and the target's: log1p of the ops until the next
// use, malv_memory_distance_target().
const std::array<std::string_view, MALV_MEMORY_FEATURE_COUNT>& memory_feature_names();
inline constexpr std::string_view kMemoryTargetName = "log_next_use_distance";

class MemoryHistory {
 public:
  explicit MemoryHistory(std::size_t buffers) : entries_(buffers) {}

  void allocate(std::uint32_t buffer, std::uint64_t op);
  // Ops in order, at most once per op for a buffer.
  void use(std::uint32_t buffer, std::uint64_t op);
  bool used(std::uint32_t buffer) const { return entries_[buffer].used; }

  // The history fields of an observation at op `op`, not before the last use
  // (ops_since_use, reuse_gaps, gap_count); the other fields are left as they are.
  void observe(std::uint32_t buffer, std::uint64_t op, malv_memory_observation& out) const;
  // malv_memory_features() of that observation.
  void features(std::uint32_t buffer, std::uint64_t op, float out[MALV_MEMORY_FEATURE_COUNT]) const;

 private:
  struct Entry {
    std::uint64_t since = 0;  // op of the last use, or of the allocation
    bool used = false;
    std::uint32_t gap_count = 0;
    std::array<std::uint64_t, MALV_MEMORY_GAP_HISTORY> gaps{};  // latest first
  };
  std::vector<Entry> entries_;
};

// A model the learned policy can run: MALV_MEMORY_FEATURE_COUNT inputs, one
// output. kInvalidArgument otherwise, naming `origin` and both widths.
[[nodiscard]] Status check_memory_model(const mlaas::Mlp& model, std::string_view origin);

}  // namespace malv::vgpu
