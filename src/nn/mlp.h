// Mlp: a multi-layer perceptron classifier trained on an nn::Device.
//
// Built from a spec string "mlp:784-256-128-10" (input width, hidden widths,
// classes): Dense layers with ReLU between them, softmax cross-entropy on
// top, and an optimizer (SGD or Adam) that the model owns. Every step is a
// sequence of kernel launches on the device's stream; nothing waits for the
// device unless the caller asks for a loss, an accuracy or the parameters.
//
//   MALV_ASSIGN_OR_RETURN(MlpSpec spec, MlpSpec::parse("mlp:784-256-128-10"));
//   MALV_ASSIGN_OR_RETURN(auto model, Mlp::create(device, spec, {.max_batch = 128, .seed = 1}));
//   for (...) MALV_TRY(model->train_step(x, labels));   // asynchronous
//   MALV_ASSIGN_OR_RETURN(float loss, model->mean_loss()); // waits, once per N steps
//   MALV_ASSIGN_OR_RETURN(double accuracy, model->evaluate(test));
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

struct MlpOptions {
  std::int64_t max_batch = 128;  // rows per step at most
  std::uint64_t seed = 1;        // initial weights
  OptimizerConfig optimizer;
};

class Mlp {
 public:
  [[nodiscard]] static Result<std::unique_ptr<Mlp>> create(Device& device, const MlpSpec& spec,
                                                           const MlpOptions& options);

  // Enqueues forward, backward and one optimizer update for a batch of
  // labels.size() rows (x holds rows x inputs floats). Does not wait.
  [[nodiscard]] Status train_step(std::span<const float> x, std::span<const std::int32_t> labels);
  // The two halves of train_step: queue the upload of a batch into the
  // model's input and label buffers, and train on the `rows` examples those
  // buffers hold (whoever filled them: see nn/batch_source.h).
  [[nodiscard]] Status upload(std::span<const float> x, std::span<const std::int32_t> labels);
  [[nodiscard]] Status train_loaded(std::int64_t rows);
  const DeviceBuffer& input_buffer() const { return input_.buffer; }    // max_batch x inputs f32
  const DeviceBuffer& labels_buffer() const { return labels_.buffer; }  // max_batch int32
  std::int64_t max_batch() const { return max_batch_; }
  // The loss of the latest train_step (waits for the device).
  [[nodiscard]] Result<float> last_loss();
  // Mean loss of the steps since the previous call (waits for the device).
  [[nodiscard]] Result<float> mean_loss();

  // Class of each row of x (rows x inputs); waits for the device.
  [[nodiscard]] Result<std::vector<std::int32_t>> predict(std::span<const float> x);
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
  Mlp(Device& device, MlpSpec spec, std::int64_t max_batch)
      : device_(device), spec_(std::move(spec)), max_batch_(max_batch) {}
  [[nodiscard]] Status upload_batch(std::span<const float> x, std::size_t rows);
  [[nodiscard]] Status forward(std::int64_t rows);
  [[nodiscard]] Result<std::vector<NamedArray>> read_arrays(
      const std::vector<std::pair<std::string, Tensor*>>& tensors);
  [[nodiscard]] Status write_arrays(const Checkpoint& checkpoint,
                                    const std::vector<std::pair<std::string, Tensor*>>& tensors);
  std::vector<std::pair<std::string, Tensor*>> parameter_tensors() const;
  // The step of a checkpoint whose model and optimizer match this model's.
  [[nodiscard]] Result<std::uint64_t> checked_step(const Checkpoint& checkpoint) const;

  Device& device_;
  MlpSpec spec_;
  std::int64_t max_batch_;
  std::vector<Dense> layers_;
  std::vector<Tensor> activations_;  // ReLU outputs of the hidden layers
  std::vector<Tensor> grads_;        // gradient w.r.t. each layer's output
  std::vector<Parameter> parameters_;
  std::unique_ptr<Optimizer> optimizer_;
  Tensor input_;        // max_batch x inputs
  Tensor labels_;       // max_batch int32
  Tensor probs_;        // max_batch x classes
  Tensor predictions_;  // max_batch int32
  Tensor loss_;         // 1 float: the latest step's loss
  Tensor loss_sum_;     // 1 float: sum since mean_loss() last ran
  std::uint64_t loss_count_ = 0;
};

}  // namespace malv::nn
