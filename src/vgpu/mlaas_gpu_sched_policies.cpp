#include "vgpu/mlaas_gpu_sched_policies.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

namespace malv::vgpu {

void MlaasGpuSchedPolicies::score(Vm& vm, std::span<const malv_gpu_sched_observation> items,
                                  std::span<double> scores) {
  // Called under the scheduler's lock, from one thread at a time.
  thread_local std::vector<malv_gpu_sched_decision> decisions;
  decisions.assign(items.size(), malv_gpu_sched_decision{});
  const mlaas::DecisionReport report =
      runner_.decide(vm.name(), items, std::span<malv_gpu_sched_decision>(decisions));
  if (report.source == mlaas::DecisionSource::kFallback) {
    vm.counters().fallbacks.fetch_add(1, std::memory_order_relaxed);
  }
  for (std::size_t i = 0; i < items.size(); ++i) scores[i] = decisions[i].score;
}

void MlaasGpuSchedPolicies::feedback(Vm& vm, const malv_gpu_sched_outcome& outcome) {
  runner_.feedback(vm.name(), std::span(&outcome, 1));
}

void MlaasGpuSchedPolicies::prepare(Vm& vm, std::span<const malv_gpu_sched_observation> items,
                                    std::span<PreparedItem> prepared) {
  if (queue_ == nullptr || inference_ == nullptr || !runner_.has_enqueue_inputs(vm.name())) return;
  // Rows of consecutive items for one model go as one request.
  thread_local std::vector<float> rows;
  thread_local std::vector<std::size_t> members;
  std::uint64_t model = 0;
  std::uint64_t source = 0;
  std::size_t input_dim = 0;
  auto flush = [&] {
    if (members.empty()) return;
    Result<mlaas::InferenceTicket> ticket =
        queue_->submit(mlaas::ModelId{model}, rows.data(), members.size());
    if (ticket.ok()) {
      for (std::size_t k = 0; k < members.size(); ++k) {
        prepared[members[k]] = PreparedItem{*ticket, k, source};
      }
      submitted_.fetch_add(members.size(), std::memory_order_relaxed);
    } else {
      refused_.fetch_add(members.size(), std::memory_order_relaxed);
    }
    rows.clear();
    members.clear();
  };
  float row[MALV_ENQUEUE_INPUTS_MAX];
  for (std::size_t i = 0; i < items.size() && i < prepared.size(); ++i) {
    const mlaas::PolicyRunner::EnqueueInputs asked =
        runner_.enqueue_inputs(vm.name(), items[i], std::span(row));
    const std::uint64_t wanted = asked.model;
    if (wanted == 0) continue;
    if (wanted != model || asked.instance != source) {
      flush();
      source = asked.instance;
      Result<mlaas::ModelInfo> info = inference_->info(mlaas::ModelId{wanted});
      if (!info.ok() || info->input_dim == 0 || info->input_dim > MALV_ENQUEUE_INPUTS_MAX) {
        refused_.fetch_add(1, std::memory_order_relaxed);
        model = 0;
        continue;
      }
      model = wanted;
      input_dim = info->input_dim;
    }
    if (!std::all_of(row, row + input_dim, [](float v) { return std::isfinite(v); })) {
      refused_.fetch_add(1, std::memory_order_relaxed);
      continue;
    }
    rows.insert(rows.end(), row, row + input_dim);
    members.push_back(i);
  }
  flush();
}

void MlaasGpuSchedPolicies::run_prepared() {
  if (queue_ != nullptr) queue_->run_pending();
}

double MlaasGpuSchedPolicies::prepared_output(Vm& vm, const PreparedItem& item) {
  if (!item.ready() || item.source != runner_.gpu_sched_instance(vm.name())) {
    return std::numeric_limits<double>::quiet_NaN();
  }
  return item.output();
}

PredictionCounters MlaasGpuSchedPolicies::predictions() const {
  return {submitted_.load(), refused_.load()};
}

std::string MlaasGpuSchedPolicies::metrics_text() const {
  const PredictionCounters c = predictions();
  return fmt::format(
      "# HELP malv_gpu_sched_enqueue_rows_total Items whose policy's model row was computed "
      "at enqueue, by what became of it\n"
      "# TYPE malv_gpu_sched_enqueue_rows_total counter\n"
      "malv_gpu_sched_enqueue_rows_total{{state=\"submitted\"}} {}\n"
      "malv_gpu_sched_enqueue_rows_total{{state=\"refused\"}} {}\n",
      c.submitted, c.refused);
}

}  // namespace malv::vgpu
