// Scheduler traces -> learned-sjf's training table (see sjf_trace.h).
#include "train/sjf_trace.h"

#include <fmt/format.h>

#include <array>

#include "malv/sjf_features.h"

namespace malv::train {

Result<FeatureTable> sjf_feature_table(const FeatureTable& trace) {
  MALV_ASSIGN_OR_RETURN(std::size_t kernel, trace.column("kernel_id"));
  MALV_ASSIGN_OR_RETURN(std::size_t priority, trace.column("priority_class"));
  MALV_ASSIGN_OR_RETURN(std::size_t flops, trace.column("est_flops"));
  MALV_ASSIGN_OR_RETURN(std::size_t bytes, trace.column("est_bytes"));
  MALV_ASSIGN_OR_RETURN(std::size_t run, trace.column("run_ns"));
  FeatureTable table;
  table.origin = trace.origin;
  for (int i = 0; i < MALV_SJF_FEATURE_COUNT; ++i) table.columns.push_back(fmt::format("f{}", i));
  table.columns.emplace_back(kSjfTargetColumn);
  table.lines = trace.lines;
  table.values.reserve(trace.rows() * table.columns.size());
  for (std::size_t r = 0; r < trace.rows(); ++r) {
    const float k = trace.at(r, kernel), p = trace.at(r, priority);
    const float f = trace.at(r, flops), b = trace.at(r, bytes), ns = trace.at(r, run);
    if (k < 0 || k != static_cast<float>(static_cast<std::uint32_t>(k))) {
      return Error(ErrorCode::kInvalidArgument,
                   fmt::format("{}: kernel_id {} is not a kernel id", trace.where(r), k));
    }
    if (p != 0 && p != 1) {
      return Error(ErrorCode::kInvalidArgument,
                   fmt::format("{}: priority_class {} is neither 0 nor 1", trace.where(r), p));
    }
    if (f < 0 || b < 0) {
      return Error(ErrorCode::kInvalidArgument,
                   fmt::format("{}: negative est_flops or est_bytes", trace.where(r)));
    }
    if (!(ns > 0)) {
      return Error(ErrorCode::kInvalidArgument,
                   fmt::format("{}: run_ns {} must be > 0", trace.where(r), ns));
    }
    malv_gpu_sched_observation o{};
    o.kernel_id = static_cast<std::uint32_t>(k);
    o.priority_class = static_cast<std::uint32_t>(p);
    o.est_flops = f;
    o.est_bytes = b;
    std::array<float, MALV_SJF_FEATURE_COUNT> x{};
    malv_sjf_features(&o, x.data());
    table.values.insert(table.values.end(), x.begin(), x.end());
    table.values.push_back(malv_sjf_target(static_cast<std::int64_t>(ns)));
  }
  if (table.rows() == 0) {
    return Error(ErrorCode::kInvalidArgument, fmt::format("{}: no outcomes", trace.origin));
  }
  return table;
}

Result<FeatureTable> read_sjf_trace(const std::string& path) {
  MALV_ASSIGN_OR_RETURN(FeatureTable trace, read_feature_csv(path));
  return sjf_feature_table(trace);
}

Result<mlaas::Mlp> neutralise_constant_inputs(const mlaas::Mlp& model, const FeatureTable& table) {
  std::vector<mlaas::DenseLayer> layers = model.layers();
  mlaas::DenseLayer& first = layers.front();
  if (first.in > table.columns.size()) {
    return Error(ErrorCode::kInvalidArgument,
                 fmt::format("the model takes {} inputs, the table has {} columns", first.in,
                             table.columns.size()));
  }
  for (std::size_t c = 0; c < first.in; ++c) {
    const float value = table.at(0, c);
    bool constant = true;
    for (std::size_t r = 1; r < table.rows() && constant; ++r) constant = table.at(r, c) == value;
    if (!constant) continue;
    for (std::size_t o = 0; o < first.out; ++o) {
      float& w = first.weight[o * first.in + c];
      first.bias[o] += w * value;
      w = 0.0f;
    }
  }
  return mlaas::Mlp::create(std::move(layers));
}

}  // namespace malv::train
