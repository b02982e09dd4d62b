// Dense: a fully connected layer, y = x W + b, with its gradients.
//
// W is in x out (row-major), b is 1 x out. The layer owns its output and
// gradient buffers, sized for `max_batch` rows; forward() and backward()
// take the actual row count, so a short last batch needs no new buffers.
// Initial weights come from a seeded Rng, so every device starts a model
// from the same bits.
#pragma once

#include <cstdint>

#include "nn/tensor.h"

namespace malv::nn {

enum class Init {
  kHeUniform,      // U(-sqrt(6/in), sqrt(6/in)): layers followed by ReLU
  kXavierUniform,  // U(-sqrt(6/(in+out)), ...): the output layer
};

class Dense {
 public:
  [[nodiscard]] static Result<Dense> create(Device& device, std::int64_t in, std::int64_t out,
                                            std::int64_t max_batch, Init init, std::uint64_t seed);

  std::int64_t in() const { return weight.rows; }
  std::int64_t out() const { return weight.cols; }

  // output[0:rows] = x[0:rows] W + b
  [[nodiscard]] Status forward(Device& device, const DeviceBuffer& x, std::int64_t rows);
  // From grad_output (rows x out): weight_grad, bias_grad and, if grad_input
  // is given, grad_input = grad_output W^T (rows x in).
  [[nodiscard]] Status backward(Device& device, const DeviceBuffer& x,
                                const DeviceBuffer& grad_output, std::int64_t rows,
                                const DeviceBuffer* grad_input);

  Tensor weight;
  Tensor bias;
  Tensor weight_grad;
  Tensor bias_grad;
  Tensor output;  // max_batch x out
};

}  // namespace malv::nn
