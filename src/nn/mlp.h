// Mlp: a multi-layer perceptron trained on an nn::Device, as a classifier
// or as a regression model.
//
// Built from a spec string "mlp:784-256-128-10" (input width, hidden widths,
// outputs): Dense layers with ReLU between them, a loss on top, and an
// optimizer (SGD or Adam) that the model owns. Every step is a sequence of
// kernel launches on the device's stream; nothing waits for the device
// unless the caller asks for a loss, an accuracy, outputs or the parameters.
//
// The loss (MlpOptions::loss) decides what a batch's targets are:
//  * Loss::kSoftmaxXent (the default): one int32 class label per row, the
//    outputs are the classes' logits; train_step(x, labels), predict().
//  * Loss::kMeanSquaredError: outputs() floats per row, the output layer is
//    the identity; train_step(x, targets). The loss is the mean over every
//    element of (output - target)^2, so its gradient is
//    2 / (rows * outputs) * (output - target), computed with the builtin
//    scale/axpy/gemm kernels (no kernel of its own).
//
//   MALV_ASSIGN_OR_RETURN(MlpSpec spec, MlpSpec::parse("mlp:784-256-128-10"));
//   MALV_ASSIGN_OR_RETURN(auto model, Mlp::create(device, spec, {.max_batch = 128, .seed = 1}));
//   for (...) MALV_TRY(model->train_step(x, labels));   // asynchronous
//   MALV_ASSIGN_OR_RETURN(float loss, model->mean_loss()); // waits, once per N steps
//   MALV_ASSIGN_OR_RETURN(double accuracy, model->evaluate(test));
//
//   // Regression: y = f(x), one output per target column.
//   MALV_ASSIGN_OR_RETURN(auto reg, Mlp::create(device, *MlpSpec::parse("mlp:2-16-1"),
//                                               {.loss = Loss::kMeanSquaredError}));
//   MALV_TRY(reg->train_step(x, y));  // y: rows x 1 floats
//   MALV_ASSIGN_OR_RETURN(std::vector<float> yhat, reg->outputs(x));
//
// The same spec, seed and data give the same parameters, bit for bit, on a
// RemoteDevice and a NativeDevice over the same backend kind.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "nn/checkpoint.h"
#include "nn/dataset.h"
#include "nn/dense.h"
#include "nn/optimizer.h"

namespace malv::nn {

struct MlpSpec {
  std::vector<std::int64_t> widths;  // input, hidden..., classes; at least two

  // "mlp:784-256-128-10"
  [[nodiscard]] static Result<MlpSpec> parse(std::string_view text);
  std::string to_string() const;
  std::int64_t inputs() const { return widths.front(); }
  std::int64_t classes() const { return widths.back(); }
};

// What a model is trained to minimise (see the header comment).
enum class Loss { kSoftmaxXent, kMeanSquaredError };

// "xent" or "mse".
[[nodiscard]] Result<Loss> parse_loss(std::string_view name);
std::string_view loss_name(Loss loss);

struct MlpOptions {
  std::int64_t max_batch = 128;  // rows per step at most
  std::uint64_t seed = 1;        // initial weights
  OptimizerConfig optimizer;
  Loss loss = Loss::kSoftmaxXent;
};

class Mlp {
 public:
  [[nodiscard]] static Result<std::unique_ptr<Mlp>> create(Device& device, const MlpSpec& spec,
                                                           const MlpOptions& options);

  // Enqueues forward, backward and one optimizer update for a batch of
  // labels.size() rows (x holds rows x inputs floats). Does not wait.
  // Classification (Loss::kSoftmaxXent) only.
  [[nodiscard]] Status train_step(std::span<const float> x, std::span<const std::int32_t> labels);
  // The same for regression (Loss::kMeanSquaredError): targets holds rows x
  // outputs floats, row-major.
  [[nodiscard]] Status train_step(std::span<const float> x, std::span<const float> targets);
  // The two halves of train_step: queue the upload of a batch into the
  // model's input and label (or target) buffers, and train on the `rows`
  // examples those buffers hold (whoever filled them: see nn/batch_source.h).
  [[nodiscard]] Status upload(std::span<const float> x, std::span<const std::int32_t> labels);
  [[nodiscard]] Status upload(std::span<const float> x, std::span<const float> targets);
  [[nodiscard]] Status train_loaded(std::int64_t rows);
  const DeviceBuffer& input_buffer() const { return input_.buffer; }  // max_batch x inputs f32
  // max_batch int32 (classification) or max_batch x outputs f32 (regression).
  const DeviceBuffer& labels_buffer() const { return labels_.buffer; }
  std::int64_t max_batch() const { return max_batch_; }
  Loss loss() const { return loss_kind_; }
  // The loss of the latest train_step (waits for the device).
  [[nodiscard]] Result<float> last_loss();
  // Mean loss of the steps since the previous call (waits for the device).
  [[nodiscard]] Result<float> mean_loss();

  // Class of each row of x (rows x inputs); waits for the device.
  // Classification only.
  [[nodiscard]] Result<std::vector<std::int32_t>> predict(std::span<const float> x);
  // The output layer's values for each row of x (rows x outputs, row-major):
  // a regression model's predictions, a classifier's logits. Waits.
  [[nodiscard]] Result<std::vector<float>> outputs(std::span<const float> x);
  // Fraction of `data` (its first `limit` examples, 0: all) classified right.
  [[nodiscard]] Result<double> evaluate(const Dataset& data, std::size_t limit = 0);

  // Parameters in a fixed order (dense0.weight, dense0.bias, dense1.weight...).
  std::span<const Parameter> parameters() const { return parameters_; }
  // Parameters only, as a checkpoint (model spec + arrays); waits.
  [[nodiscard]] Result<Checkpoint> parameters_checkpoint();
  [[nodiscard]] Result<std::vector<std::byte>> save_parameters();
  [[nodiscard]] Status load_parameters(std::span<const std::byte> bytes);
  // Parameters, optimizer state and step count; waits. `restore` checks that
  // model and optimizer agree with this model's, then loads all of it.
  [[nodiscard]] Result<Checkpoint> training_checkpoint();
  [[nodiscard]] Status restore(const Checkpoint& checkpoint);
  // The pieces of a training checkpoint, for copies made elsewhere (the
  // host's checkpoint service, nn/host_checkpoint.h): its tensors in order
  // (parameters, then optimizer state), its metadata (model, optimizer, lr,
  // step), and adopting that metadata once the tensors hold the state.
  std::vector<std::pair<std::string, Tensor*>> training_tensors();
  Checkpoint training_metadata() const;
  [[nodiscard]] Status restore_metadata(const Checkpoint& metadata);

  const MlpSpec& spec() const { return spec_; }
  const Optimizer& optimizer() const { return *optimizer_; }
  std::uint64_t steps() const { return optimizer_->steps(); }
  Device& device() { return device_; }

 private:
  Mlp(Device& device, MlpSpec spec, std::int64_t max_batch, Loss loss)
      : device_(device), spec_(std::move(spec)), max_batch_(max_batch), loss_kind_(loss) {}
  [[nodiscard]] Status upload_batch(std::span<const float> x, std::size_t rows);
  [[nodiscard]] Status require_loss(Loss loss, std::string_view what) const;
  [[nodiscard]] Status forward(std::int64_t rows);
  // Loss of the `rows` outputs and its gradient into grads_.back().
  [[nodiscard]] Status softmax_xent_loss(std::int64_t rows);
  [[nodiscard]] Status squared_error_loss(std::int64_t rows);
  [[nodiscard]] Result<std::vector<NamedArray>> read_arrays(
      const std::vector<std::pair<std::string, Tensor*>>& tensors);
  [[nodiscard]] Status write_arrays(const Checkpoint& checkpoint,
                                    const std::vector<std::pair<std::string, Tensor*>>& tensors);
  std::vector<std::pair<std::string, Tensor*>> parameter_tensors() const;
  // A checkpoint's "loss" key (absent for classification) and its check.
  void set_loss(Checkpoint& checkpoint) const;
  [[nodiscard]] Status check_loss(const Checkpoint& checkpoint) const;
  // The step of a checkpoint whose model and optimizer match this model's.
  [[nodiscard]] Result<std::uint64_t> checked_step(const Checkpoint& checkpoint) const;

  Device& device_;
  MlpSpec spec_;
  std::int64_t max_batch_;
  Loss loss_kind_;
  std::vector<Dense> layers_;
  std::vector<Tensor> activations_;  // ReLU outputs of the hidden layers
  std::vector<Tensor> grads_;        // gradient w.r.t. each layer's output
  std::vector<Parameter> parameters_;
  std::unique_ptr<Optimizer> optimizer_;
  Tensor input_;        // max_batch x inputs
  Tensor labels_;       // max_batch int32, or max_batch x outputs f32 (regression)
  Tensor probs_;        // max_batch x classes (classification only)
  Tensor predictions_;  // max_batch int32 (classification only)
  Tensor loss_;         // 1 float: the latest step's loss
  Tensor loss_sum_;     // 1 float: sum since mean_loss() last ran
  std::uint64_t loss_count_ = 0;
};

}  // namespace malv::nn
