// Optimizer: SGD or Adam over a model's parameters, on the device.
//
// step() enqueues one update per parameter (sgd_step / adam_step kernels);
// Adam's moment estimates live on the device next to the parameters and are
// part of a checkpoint (state()), as is the step count that drives Adam's
// bias correction, so a resumed run continues exactly.
//
//   MALV_ASSIGN_OR_RETURN(auto opt, Optimizer::create(device, {.kind = OptimizerKind::kAdam},
//                                                     model.parameters()));
//   MALV_TRY(opt->step());
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "nn/tensor.h"

namespace malv::nn {

enum class OptimizerKind { kSgd, kAdam };

struct OptimizerConfig {
  OptimizerKind kind = OptimizerKind::kAdam;
  float lr = 1e-3f;
  float beta1 = 0.9f;    // Adam only
  float beta2 = 0.999f;  // Adam only
  float eps = 1e-8f;     // Adam only
};

// "sgd" or "adam".
[[nodiscard]] Result<OptimizerKind> parse_optimizer(std::string_view name);
std::string_view optimizer_name(OptimizerKind kind);

class Optimizer {
 public:
  [[nodiscard]] static Result<std::unique_ptr<Optimizer>> create(
      Device& device, const OptimizerConfig& config, std::span<const Parameter> parameters);

  // Applies every parameter's gradient; the update count goes up by one.
  [[nodiscard]] Status step();

  const OptimizerConfig& config() const { return config_; }
  std::uint64_t steps() const { return steps_; }
  void set_steps(std::uint64_t steps) { steps_ = steps; }
  // Device state to checkpoint, with names ("dense0.weight.adam_m"); empty for SGD.
  std::vector<std::pair<std::string, Tensor*>> state();

 private:
  Optimizer(Device& device, const OptimizerConfig& config, std::span<const Parameter> parameters)
      : device_(device), config_(config), parameters_(parameters.begin(), parameters.end()) {}

  Device& device_;
  OptimizerConfig config_;
  std::vector<Parameter> parameters_;
  std::vector<Tensor> m_;  // Adam first moments, one per parameter
  std::vector<Tensor> v_;  // Adam second moments
  std::uint64_t steps_ = 0;
};

}  // namespace malv::nn
