#include "nn/optimizer.h"

#include <fmt/format.h>

namespace malv::nn {

Result<OptimizerKind> parse_optimizer(std::string_view name) {
  if (name == "sgd") return OptimizerKind::kSgd;
  if (name == "adam") return OptimizerKind::kAdam;
  return Error(ErrorCode::kInvalidArgument,
               fmt::format("unknown optimizer '{}' (sgd or adam)", name));
}

std::string_view optimizer_name(OptimizerKind kind) {
  return kind == OptimizerKind::kSgd ? "sgd" : "adam";
}

Result<std::unique_ptr<Optimizer>> Optimizer::create(Device& device, const OptimizerConfig& config,
                                                     std::span<const Parameter> parameters) {
  if (!(config.lr > 0.0f)) {
    return Error(ErrorCode::kInvalidArgument,
                 fmt::format("learning rate must be positive, got {}", config.lr));
  }
  std::unique_ptr<Optimizer> opt(new Optimizer(device, config, parameters));
  if (config.kind == OptimizerKind::kAdam) {
    for (const Parameter& p : parameters) {
      for (auto* moments : {&opt->m_, &opt->v_}) {
        MALV_ASSIGN_OR_RETURN(Tensor t, Tensor::create(device, p.value->rows, p.value->cols));
        MALV_TRY(
            device.launch(BuiltinKernel::kFill, {t.arg(), Arg::i64(t.numel()), Arg::f32(0.0f)}));
        moments->push_back(std::move(t));
      }
    }
  }
  return opt;
}

Status Optimizer::step() {
  ++steps_;
  for (std::size_t i = 0; i < parameters_.size(); ++i) {
    const Parameter& p = parameters_[i];
    if (config_.kind == OptimizerKind::kSgd) {
      MALV_TRY(device_.launch(
          BuiltinKernel::kSgdStep,
          {p.value->arg(), p.grad->arg(), Arg::i64(p.value->numel()), Arg::f32(config_.lr)}));
    } else {
      MALV_TRY(device_.launch(
          BuiltinKernel::kAdamStep,
          {p.value->arg(), p.grad->arg(), m_[i].arg(), v_[i].arg(), Arg::i64(p.value->numel()),
           Arg::f32(config_.lr), Arg::f32(config_.beta1), Arg::f32(config_.beta2),
           Arg::f32(config_.eps), Arg::i64(static_cast<std::int64_t>(steps_))}));
    }
  }
  return ok_status();
}

std::vector<std::pair<std::string, Tensor*>> Optimizer::state() {
  std::vector<std::pair<std::string, Tensor*>> out;
  for (std::size_t i = 0; i < m_.size(); ++i) {
    out.emplace_back(parameters_[i].name + ".adam_m", &m_[i]);
    out.emplace_back(parameters_[i].name + ".adam_v", &v_[i]);
  }
  return out;
}

}  // namespace malv::nn
