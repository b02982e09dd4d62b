#include "vgpu/memory_history.h"

#include <fmt/format.h>

#include <algorithm>

#include "mlaas/mlp.h"

namespace malv::vgpu {

const std::array<std::string_view, MALV_MEMORY_FEATURE_COUNT>& memory_feature_names() {
  // The order of malv_memory_features()'s outputs.
  static constexpr std::array<std::string_view, MALV_MEMORY_FEATURE_COUNT> kNames = {
      "log_ops_since_use",     "log_period1_remaining", "log_period2_remaining",
      "log_period3_remaining", "log_period4_remaining", "period1_mismatch",
      "period2_mismatch",      "period3_mismatch",      "period4_mismatch",
      "log_last_gap"};
  return kNames;
}

void MemoryHistory::allocate(std::uint32_t buffer, std::uint64_t op) {
  entries_[buffer] = Entry{.since = op};
}

void MemoryHistory::use(std::uint32_t buffer, std::uint64_t op) {
  Entry& e = entries_[buffer];
  if (e.used) {
    std::copy_backward(e.gaps.begin(), e.gaps.end() - 1, e.gaps.end());
    e.gaps[0] = op - e.since;
    e.gap_count = std::min<std::uint32_t>(e.gap_count + 1, MALV_MEMORY_GAP_HISTORY);
  }
  e.used = true;
  e.since = op;
}

void MemoryHistory::observe(std::uint32_t buffer, std::uint64_t op,
                            malv_memory_observation& out) const {
  const Entry& e = entries_[buffer];
  out.ops_since_use = op - e.since;
  std::copy(e.gaps.begin(), e.gaps.end(), out.reuse_gaps);
  out.gap_count = e.gap_count;
  out.reserved2 = 0;
}

void MemoryHistory::features(std::uint32_t buffer, std::uint64_t op,
                             float out[MALV_MEMORY_FEATURE_COUNT]) const {
  malv_memory_observation o{};
  observe(buffer, op, o);
  malv_memory_features(&o, out);
}

Status check_memory_model(const mlaas::Mlp& model, std::string_view origin) {
  if (model.input_dim() == MALV_MEMORY_FEATURE_COUNT && model.output_dim() == 1) return ok_status();
  return Error(
      ErrorCode::kInvalidArgument,
      fmt::format("{}: the model takes {} inputs and gives {} outputs; the learned memory "
                  "policy's model takes {} inputs (include/malv/memory_features.h) and "
                  "gives 1 output",
                  origin, model.input_dim(), model.output_dim(), MALV_MEMORY_FEATURE_COUNT));
}

}  // namespace malv::vgpu
