// Mlp::train_sgd: plain gradient descent on the mean squared error, on the
// CPU (cblas), for the models policies update online (model_train). The
// same layers infer_cpu runs, so there is one MLP implementation.
#include <cblas.h>
#include <fmt/format.h>

#include <cmath>

#include "mlaas/mlp.h"

namespace malv::mlaas {
namespace {

bool all_finite(const float* v, std::size_t n) {
  for (std::size_t i = 0; i < n; ++i) {
    if (!std::isfinite(v[i])) return false;
  }
  return true;
}

// d(act)/dz from the activation's output a, multiplied into grad in place.
void times_derivative(Activation activation, const float* a, float* grad, std::size_t n) {
  switch (activation) {
    case Activation::kIdentity:
    case Activation::kSoftmax: return;  // softmax is refused before this
    case Activation::kRelu:
      for (std::size_t i = 0; i < n; ++i) grad[i] = a[i] > 0.0f ? grad[i] : 0.0f;
      return;
    case Activation::kSigmoid:
      for (std::size_t i = 0; i < n; ++i) grad[i] *= a[i] * (1.0f - a[i]);
      return;
    case Activation::kTanh:
      for (std::size_t i = 0; i < n; ++i) grad[i] *= 1.0f - a[i] * a[i];
      return;
  }
}

}  // namespace

Result<float> Mlp::train_sgd(const float* in, const float* targets, std::size_t batch,
                             float learning_rate, std::uint32_t steps) {
  if (in == nullptr || targets == nullptr || batch == 0) {
    return Error(ErrorCode::kInvalidArgument, "training needs at least one row and its targets");
  }
  if (!std::isfinite(learning_rate) || learning_rate <= 0.0f) {
    return Error(ErrorCode::kInvalidArgument,
                 fmt::format("learning rate {} must be finite and > 0", learning_rate));
  }
  if (!all_finite(in, batch * input_dim())) {
    return Error(ErrorCode::kInvalidArgument, "a training input is NaN or infinite");
  }
  if (!all_finite(targets, batch * output_dim())) {
    return Error(ErrorCode::kInvalidArgument, "a training target is NaN or infinite");
  }
  for (std::size_t i = 0; i < layers_.size(); ++i) {
    if (layers_[i].activation == Activation::kSoftmax) {
      return Error(ErrorCode::kUnimplemented,
                   fmt::format("layer {} is softmax: only identity, relu, sigmoid and tanh "
                               "layers can be trained",
                               i));
    }
  }
  const std::vector<DenseLayer> before = layers_;
  const int rows = static_cast<int>(batch);
  // acts[i]: the input of layer i (acts[0] = in), acts[L]: the output.
  std::vector<std::vector<float>> acts(layers_.size() + 1);
  acts[0].assign(in, in + batch * input_dim());
  std::vector<float> grad, grad_prev;
  float first_loss = 0.0f;
  for (std::uint32_t step = 0; step < steps; ++step) {
    for (std::size_t i = 0; i < layers_.size(); ++i) {
      const DenseLayer& l = layers_[i];
      std::vector<float>& y = acts[i + 1];
      y.resize(batch * l.out);
      for (std::size_t r = 0; r < batch; ++r) {
        std::copy(l.bias.begin(), l.bias.end(), y.begin() + static_cast<std::ptrdiff_t>(r * l.out));
      }
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, rows, static_cast<int>(l.out),
                  static_cast<int>(l.in), 1.0f, acts[i].data(), static_cast<int>(l.in),
                  l.weight.data(), static_cast<int>(l.in), 1.0f, y.data(), static_cast<int>(l.out));
      apply_activation(l.activation, y.data(), batch, l.out);
    }
    // dL/dy of the mean squared error over every output value.
    const std::vector<float>& out = acts.back();
    const float scale = 2.0f / static_cast<float>(out.size());
    grad.resize(out.size());
    double loss = 0.0;
    for (std::size_t j = 0; j < out.size(); ++j) {
      const float diff = out[j] - targets[j];
      loss += static_cast<double>(diff) * diff;
      grad[j] = scale * diff;
    }
    if (step == 0) first_loss = static_cast<float>(loss / static_cast<double>(out.size()));
    for (std::size_t i = layers_.size(); i-- > 0;) {
      DenseLayer& l = layers_[i];
      times_derivative(l.activation, acts[i + 1].data(), grad.data(), grad.size());
      // The gradient for the layer below, with the weights before this step.
      if (i > 0) {
        grad_prev.assign(batch * l.in, 0.0f);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, rows, static_cast<int>(l.in),
                    static_cast<int>(l.out), 1.0f, grad.data(), static_cast<int>(l.out),
                    l.weight.data(), static_cast<int>(l.in), 0.0f, grad_prev.data(),
                    static_cast<int>(l.in));
      }
      // W -= lr * grad^T x acts[i]; b -= lr * column sums of grad.
      cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, static_cast<int>(l.out),
                  static_cast<int>(l.in), rows, -learning_rate, grad.data(),
                  static_cast<int>(l.out), acts[i].data(), static_cast<int>(l.in), 1.0f,
                  l.weight.data(), static_cast<int>(l.in));
      for (std::size_t r = 0; r < batch; ++r) {
        for (std::size_t o = 0; o < l.out; ++o) l.bias[o] -= learning_rate * grad[r * l.out + o];
      }
      if (i > 0) grad.swap(grad_prev);
    }
    for (std::size_t i = 0; i < layers_.size(); ++i) {
      const DenseLayer& l = layers_[i];
      if (!all_finite(l.weight.data(), l.weight.size()) ||
          !all_finite(l.bias.data(), l.bias.size())) {
        layers_ = before;
        return Error(ErrorCode::kDataLoss,
                     fmt::format("training step {} made layer {}'s weights non-finite (learning "
                                 "rate {}); the model is unchanged",
                                 step, i, learning_rate));
      }
    }
  }
  return first_loss;
}

}  // namespace malv::mlaas
