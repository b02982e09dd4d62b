// Mlp: a multi-layer perceptron of dense layers, the model type the MLaaS
// inference service runs, and its .safetensors layout.
//
// File layout (what load()/save() read and write):
//   "layers.<i>.weight"  F32 [out, in]   for i = 0, 1, ... with no gaps
//   "layers.<i>.bias"    F32 [out]
//   __metadata__ "format":      "malv-mlp"
//   __metadata__ "activations": one name per layer, comma-separated, from
//                               identity, relu, sigmoid, tanh, softmax
//                               (softmax is over each row's outputs)
// Layer i+1's `in` must equal layer i's `out`; every weight and bias is
// finite. Each layer computes
// y = act(x W^T + b) for a batch of row vectors x.
//
//   Mlp mlp = Mlp::load("model.safetensors").value();
//   std::vector<float> out(batch * mlp.output_dim());
//   mlp.infer_cpu(in.data(), batch, out.data());
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "malv/result.h"
#include "mlaas/safetensors.h"

namespace malv::mlaas {

enum class Activation { kIdentity, kRelu, kSigmoid, kTanh, kSoftmax };

std::string_view activation_name(Activation activation);
[[nodiscard]] Result<Activation> parse_activation(std::string_view name);
// Applies an activation in place to rows x cols values.
void apply_activation(Activation activation, float* values, std::size_t rows, std::size_t cols);

struct DenseLayer {
  std::size_t in = 0;
  std::size_t out = 0;
  std::vector<float> weight;  // out x in, row-major
  std::vector<float> bias;    // out
  Activation activation = Activation::kIdentity;
};

class Mlp {
 public:
  // Checks layer shapes and chaining.
  [[nodiscard]] static Result<Mlp> create(std::vector<DenseLayer> layers);
  [[nodiscard]] static Result<Mlp> from_safetensors(const SafetensorsFile& file,
                                                    std::string_view origin);
  [[nodiscard]] static Result<Mlp> load(const std::string& path);

  SafetensorsFile to_safetensors() const;
  [[nodiscard]] Status save(const std::string& path) const;

  std::size_t input_dim() const { return layers_.front().in; }
  std::size_t output_dim() const { return layers_.back().out; }
  std::size_t widest() const;  // largest in or out of any layer
  const std::vector<DenseLayer>& layers() const { return layers_; }
  // "4-16relu-1identity": identifies the shape for crossover calibration.
  std::string shape_key() const;

  // batch rows of input_dim() floats in, batch rows of output_dim() out, on
  // the calling thread (cblas_sgemm per layer).
  void infer_cpu(const float* in, std::size_t batch, float* out) const;

  // `steps` steps of gradient descent on the mean squared error of the
  // outputs for `in` (batch rows of input_dim()) against `targets` (batch
  // rows of output_dim()), each step over the whole batch (mlp_train.cpp).
  // Returns the loss before the first step. Inputs, targets and the
  // learning rate must be finite (kInvalidArgument); a softmax layer cannot
  // be trained (kUnimplemented); a step that makes any weight non-finite is
  // undone with every other step of the call (kDataLoss: the model is as it
  // was).
  [[nodiscard]] Result<float> train_sgd(const float* in, const float* targets, std::size_t batch,
                                        float learning_rate, std::uint32_t steps);

 private:
  explicit Mlp(std::vector<DenseLayer> layers) : layers_(std::move(layers)) {}
  // infer_cpu for rows that fit the scratch buffers a and b (grown here).
  void infer_rows(const float* in, std::size_t batch, float* out, std::vector<float>& a,
                  std::vector<float>& b) const;
  std::vector<DenseLayer> layers_;
};

}  // namespace malv::mlaas
