#include "nn/mlp.h"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <charconv>

#include "nn/dataset.h"

namespace malv::nn {

Result<MlpSpec> MlpSpec::parse(std::string_view text) {
  constexpr std::string_view kPrefix = "mlp:";
  auto bad = [&](std::string_view why) {
    return Error(ErrorCode::kInvalidArgument,
                 fmt::format("model spec '{}': {} (expected e.g. mlp:784-256-128-10)", text, why));
  };
  if (!text.starts_with(kPrefix)) return bad("unknown model kind");
  std::string_view rest = text.substr(kPrefix.size());
  MlpSpec spec;
  while (!rest.empty() || spec.widths.empty()) {
    const auto dash = rest.find('-');
    const std::string_view part = rest.substr(0, dash);
    std::int64_t width = 0;
    auto [end, ec] = std::from_chars(part.data(), part.data() + part.size(), width);
    if (ec != std::errc() || end != part.data() + part.size() || width <= 0 || width > (1 << 20)) {
      return bad(fmt::format("'{}' is not a layer width", part));
    }
    spec.widths.push_back(width);
    if (dash == std::string_view::npos) break;
    rest = rest.substr(dash + 1);
    if (rest.empty()) return bad("trailing '-'");
  }
  if (spec.widths.size() < 2) return bad("needs at least an input and an output width");
  return spec;
}

std::string MlpSpec::to_string() const { return fmt::format("mlp:{}", fmt::join(widths, "-")); }

Result<Loss> parse_loss(std::string_view name) {
  for (Loss loss : {Loss::kSoftmaxXent, Loss::kMeanSquaredError}) {
    if (loss_name(loss) == name) return loss;
  }
  return Error(ErrorCode::kInvalidArgument, fmt::format("unknown loss '{}' (xent, mse)", name));
}

std::string_view loss_name(Loss loss) {
  switch (loss) {
    case Loss::kSoftmaxXent: return "xent";
    case Loss::kMeanSquaredError: return "mse";
  }
  return "unknown";
}

Result<std::unique_ptr<Mlp>> Mlp::create(Device& device, const MlpSpec& spec,
                                         const MlpOptions& options) {
  if (spec.widths.size() < 2) {
    return Error(ErrorCode::kInvalidArgument, "an MLP needs at least two widths");
  }
  if (options.max_batch <= 0) {
    return Error(ErrorCode::kInvalidArgument, "max_batch must be positive");
  }
  std::unique_ptr<Mlp> mlp(new Mlp(device, spec, options.max_batch, options.loss));
  const std::int64_t batch = options.max_batch;
  const std::size_t count = spec.widths.size() - 1;
  mlp->layers_.reserve(count);  // parameters_ points into the layers
  for (std::size_t i = 0; i < count; ++i) {
    const bool last = i + 1 == count;
    MALV_ASSIGN_OR_RETURN(Dense layer,
                          Dense::create(device, spec.widths[i], spec.widths[i + 1], batch,
                                        last ? Init::kXavierUniform : Init::kHeUniform,
                                        derive_seed(options.seed, i)));
    mlp->layers_.push_back(std::move(layer));
    MALV_ASSIGN_OR_RETURN(Tensor grad, Tensor::create(device, batch, spec.widths[i + 1]));
    mlp->grads_.push_back(std::move(grad));
    if (!last) {
      MALV_ASSIGN_OR_RETURN(Tensor act, Tensor::create(device, batch, spec.widths[i + 1]));
      mlp->activations_.push_back(std::move(act));
    }
  }
  for (std::size_t i = 0; i < count; ++i) {
    Dense& layer = mlp->layers_[i];
    mlp->parameters_.push_back(
        {fmt::format("dense{}.weight", i), &layer.weight, &layer.weight_grad});
    mlp->parameters_.push_back({fmt::format("dense{}.bias", i), &layer.bias, &layer.bias_grad});
  }
  MALV_ASSIGN_OR_RETURN(mlp->input_, Tensor::create(device, batch, spec.inputs()));
  if (options.loss == Loss::kSoftmaxXent) {
    MALV_ASSIGN_OR_RETURN(mlp->labels_, Tensor::create(device, batch, 1));
    MALV_ASSIGN_OR_RETURN(mlp->probs_, Tensor::create(device, batch, spec.classes()));
    MALV_ASSIGN_OR_RETURN(mlp->predictions_, Tensor::create(device, batch, 1));
  } else {
    MALV_ASSIGN_OR_RETURN(mlp->labels_, Tensor::create(device, batch, spec.classes()));
  }
  MALV_ASSIGN_OR_RETURN(mlp->loss_, Tensor::create(device, 1, 1));
  MALV_ASSIGN_OR_RETURN(mlp->loss_sum_, Tensor::create(device, 1, 1));
  MALV_TRY(device.launch(BuiltinKernel::kFill, {mlp->loss_.arg(), Arg::i64(1), Arg::f32(0.0f)}));
  MALV_TRY(
      device.launch(BuiltinKernel::kFill, {mlp->loss_sum_.arg(), Arg::i64(1), Arg::f32(0.0f)}));
  MALV_ASSIGN_OR_RETURN(mlp->optimizer_,
                        Optimizer::create(device, options.optimizer, mlp->parameters_));
  // Surface any set-up failure here rather than at the first step.
  MALV_TRY(device.synchronize());
  return mlp;
}

Status Mlp::upload_batch(std::span<const float> x, std::size_t rows) {
  if (rows == 0 || rows > static_cast<std::size_t>(max_batch_)) {
    return Error(ErrorCode::kInvalidArgument,
                 fmt::format("batch of {} rows; this model takes 1 to {}", rows, max_batch_));
  }
  if (x.size() != rows * static_cast<std::size_t>(spec_.inputs())) {
    return Error(ErrorCode::kInvalidArgument,
                 fmt::format("batch of {} rows needs {} input floats, got {}", rows,
                             rows * static_cast<std::size_t>(spec_.inputs()), x.size()));
  }
  return device_.write(input_.buffer, 0, std::as_bytes(x));
}

Status Mlp::require_loss(Loss loss, std::string_view what) const {
  if (loss_kind_ == loss) return ok_status();
  return Error(ErrorCode::kFailedPrecondition,
               fmt::format("{} is for a model trained with loss {}; this one uses {}", what,
                           loss_name(loss), loss_name(loss_kind_)));
}

Status Mlp::forward(std::int64_t rows) {
  const DeviceBuffer* in = &input_.buffer;
  for (std::size_t i = 0; i < layers_.size(); ++i) {
    Dense& layer = layers_[i];
    MALV_TRY(layer.forward(device_, *in, rows));
    if (i + 1 < layers_.size()) {
      Tensor& act = activations_[i];
      MALV_TRY(device_.launch(BuiltinKernel::kRelu,
                              {layer.output.arg(), act.arg(), Arg::i64(rows * layer.out())}));
      in = &act.buffer;
    }
  }
  return ok_status();
}

Status Mlp::train_step(std::span<const float> x, std::span<const std::int32_t> labels) {
  MALV_TRY(upload(x, labels));
  return train_loaded(static_cast<std::int64_t>(labels.size()));
}

Status Mlp::train_step(std::span<const float> x, std::span<const float> targets) {
  MALV_TRY(upload(x, targets));
  return train_loaded(static_cast<std::int64_t>(targets.size()) / spec_.classes());
}

Status Mlp::upload(std::span<const float> x, std::span<const std::int32_t> labels) {
  MALV_TRY(require_loss(Loss::kSoftmaxXent, "a batch of class labels"));
  MALV_TRY(upload_batch(x, labels.size()));
  return device_.write(labels_.buffer, 0, std::as_bytes(labels));
}

Status Mlp::upload(std::span<const float> x, std::span<const float> targets) {
  MALV_TRY(require_loss(Loss::kMeanSquaredError, "a batch of float targets"));
  const auto outputs = static_cast<std::size_t>(spec_.classes());
  if (targets.empty() || targets.size() % outputs != 0) {
    return Error(ErrorCode::kInvalidArgument,
                 fmt::format("{} target floats is not a whole number of {}-wide rows",
                             targets.size(), outputs));
  }
  MALV_TRY(upload_batch(x, targets.size() / outputs));
  return device_.write(labels_.buffer, 0, std::as_bytes(targets));
}

Status Mlp::train_loaded(std::int64_t rows) {
  if (rows <= 0 || rows > max_batch_) {
    return Error(ErrorCode::kInvalidArgument,
                 fmt::format("batch of {} rows; this model takes 1 to {}", rows, max_batch_));
  }
  MALV_TRY(forward(rows));
  if (loss_kind_ == Loss::kSoftmaxXent) {
    MALV_TRY(softmax_xent_loss(rows));
  } else {
    MALV_TRY(squared_error_loss(rows));
  }
  MALV_TRY(device_.launch(BuiltinKernel::kAxpy,
                          {loss_.arg(), loss_sum_.arg(), Arg::i64(1), Arg::f32(1.0f)}));
  ++loss_count_;
  for (std::size_t i = layers_.size(); i-- > 0;) {
    Dense& layer = layers_[i];
    const DeviceBuffer& in = i == 0 ? input_.buffer : activations_[i - 1].buffer;
    const DeviceBuffer* grad_in = i == 0 ? nullptr : &grads_[i - 1].buffer;
    MALV_TRY(layer.backward(device_, in, grads_[i].buffer, rows, grad_in));
    if (grad_in != nullptr) {
      // Through the ReLU: zero where the pre-activation was not positive.
      MALV_TRY(device_.launch(BuiltinKernel::kReluBackward,
                              {Arg::buffer(*grad_in), layers_[i - 1].output.arg(),
                               Arg::buffer(*grad_in), Arg::i64(rows * layer.in())}));
    }
  }
  return optimizer_->step();
}

Status Mlp::softmax_xent_loss(std::int64_t rows) {
  const std::int64_t classes = spec_.classes();
  const Tensor& logits = layers_.back().output;
  MALV_TRY(device_.launch(
      BuiltinKernel::kSoftmaxXent,
      {logits.arg(), labels_.arg(), probs_.arg(), loss_.arg(), Arg::i64(rows), Arg::i64(classes)}));
  return device_.launch(
      BuiltinKernel::kSoftmaxXentBackward,
      {probs_.arg(), labels_.arg(), grads_.back().arg(), Arg::i64(rows), Arg::i64(classes)});
}

Status Mlp::squared_error_loss(std::int64_t rows) {
  const std::int64_t n = rows * spec_.classes();
  const Tensor& out = layers_.back().output;
  const Arg diff = grads_.back().arg();
  // diff = output - target, built in the gradient buffer.
  MALV_TRY(
      device_.launch(BuiltinKernel::kScale, {labels_.arg(), diff, Arg::i64(n), Arg::f32(-1.0f)}));
  MALV_TRY(device_.launch(BuiltinKernel::kAxpy, {out.arg(), diff, Arg::i64(n), Arg::f32(1.0f)}));
  // loss = diff . diff / n: a 1 x n by n x 1 product.
  const float inv_n = 1.0f / static_cast<float>(n);
  MALV_TRY(device_.launch(BuiltinKernel::kGemm,
                          {diff, diff, loss_.arg(), Arg::i64(1), Arg::i64(1), Arg::i64(n),
                           Arg::i64(0), Arg::i64(0), Arg::f32(inv_n), Arg::f32(0.0f)}));
  return device_.launch(BuiltinKernel::kScale, {diff, diff, Arg::i64(n), Arg::f32(2.0f * inv_n)});
}

Result<float> Mlp::last_loss() {
  float loss = 0.0f;
  MALV_TRY(device_.read(loss_.buffer, 0, std::as_writable_bytes(std::span(&loss, 1))));
  MALV_TRY(device_.synchronize());
  return loss;
}

Result<float> Mlp::mean_loss() {
  float sum = 0.0f;
  MALV_TRY(device_.read(loss_sum_.buffer, 0, std::as_writable_bytes(std::span(&sum, 1))));
  MALV_TRY(device_.launch(BuiltinKernel::kFill, {loss_sum_.arg(), Arg::i64(1), Arg::f32(0.0f)}));
  MALV_TRY(device_.synchronize());
  const std::uint64_t count = std::exchange(loss_count_, 0);
  return count == 0 ? 0.0f : sum / static_cast<float>(count);
}

Result<std::vector<std::int32_t>> Mlp::predict(std::span<const float> x) {
  MALV_TRY(require_loss(Loss::kSoftmaxXent, "predict (a class per row)"));
  const auto inputs = static_cast<std::size_t>(spec_.inputs());
  if (x.size() % inputs != 0) {
    return Error(ErrorCode::kInvalidArgument,
                 fmt::format("{} floats is not a whole number of {}-wide rows", x.size(), inputs));
  }
  const std::size_t total = x.size() / inputs;
  std::vector<std::int32_t> out(total);
  for (std::size_t first = 0; first < total; first += static_cast<std::size_t>(max_batch_)) {
    const std::size_t rows = std::min(total - first, static_cast<std::size_t>(max_batch_));
    MALV_TRY(upload_batch(x.subspan(first * inputs, rows * inputs), rows));
    MALV_TRY(forward(static_cast<std::int64_t>(rows)));
    MALV_TRY(
        device_.launch(BuiltinKernel::kArgmaxRows,
                       {layers_.back().output.arg(), predictions_.arg(),
                        Arg::i64(static_cast<std::int64_t>(rows)), Arg::i64(spec_.classes())}));
    // The stream orders this read before the next batch overwrites predictions_.
    MALV_TRY(device_.read(predictions_.buffer, 0,
                          std::as_writable_bytes(std::span(out).subspan(first, rows))));
  }
  MALV_TRY(device_.synchronize());
  return out;
}

Result<std::vector<float>> Mlp::outputs(std::span<const float> x) {
  const auto inputs = static_cast<std::size_t>(spec_.inputs());
  const auto width = static_cast<std::size_t>(spec_.classes());
  if (x.size() % inputs != 0) {
    return Error(ErrorCode::kInvalidArgument,
                 fmt::format("{} floats is not a whole number of {}-wide rows", x.size(), inputs));
  }
  const std::size_t total = x.size() / inputs;
  std::vector<float> out(total * width);
  const Tensor& last = layers_.back().output;
  for (std::size_t first = 0; first < total; first += static_cast<std::size_t>(max_batch_)) {
    const std::size_t rows = std::min(total - first, static_cast<std::size_t>(max_batch_));
    MALV_TRY(upload_batch(x.subspan(first * inputs, rows * inputs), rows));
    MALV_TRY(forward(static_cast<std::int64_t>(rows)));
    // The stream orders this read before the next batch overwrites the output.
    MALV_TRY(
        device_.read(last.buffer, 0,
                     std::as_writable_bytes(std::span(out).subspan(first * width, rows * width))));
  }
  MALV_TRY(device_.synchronize());
  return out;
}

Result<double> Mlp::evaluate(const Dataset& data, std::size_t limit) {
  if (data.dims != static_cast<std::size_t>(spec_.inputs())) {
    return Error(ErrorCode::kInvalidArgument,
                 fmt::format("data has {} features per example, the model takes {}", data.dims,
                             spec_.inputs()));
  }
  const std::size_t n = limit == 0 ? data.count : std::min(limit, data.count);
  if (n == 0) return 0.0;
  MALV_ASSIGN_OR_RETURN(std::vector<std::int32_t> predicted,
                        predict(std::span(data.features).first(n * data.dims)));
  std::size_t right = 0;
  for (std::size_t i = 0; i < n; ++i) right += predicted[i] == data.labels[i] ? 1 : 0;
  return static_cast<double>(right) / static_cast<double>(n);
}

std::vector<std::pair<std::string, Tensor*>> Mlp::parameter_tensors() const {
  std::vector<std::pair<std::string, Tensor*>> out;
  for (const Parameter& p : parameters_) out.emplace_back(p.name, p.value);
  return out;
}

Result<std::vector<NamedArray>> Mlp::read_arrays(
    const std::vector<std::pair<std::string, Tensor*>>& tensors) {
  std::vector<NamedArray> arrays(tensors.size());
  for (std::size_t i = 0; i < tensors.size(); ++i) {
    arrays[i].name = tensors[i].first;
    arrays[i].values.resize(static_cast<std::size_t>(tensors[i].second->numel()));
    MALV_TRY(device_.read(tensors[i].second->buffer, 0,
                          std::as_writable_bytes(std::span(arrays[i].values))));
  }
  MALV_TRY(device_.synchronize());
  return arrays;
}

Status Mlp::write_arrays(const Checkpoint& checkpoint,
                         const std::vector<std::pair<std::string, Tensor*>>& tensors) {
  for (const auto& [name, tensor] : tensors) {
    const NamedArray* found = nullptr;
    for (const NamedArray& a : checkpoint.arrays) {
      if (a.name == name) found = &a;
    }
    if (found == nullptr) {
      return Error(ErrorCode::kInvalidArgument, fmt::format("checkpoint has no '{}'", name));
    }
    if (found->values.size() != static_cast<std::size_t>(tensor->numel())) {
      return Error(ErrorCode::kInvalidArgument,
                   fmt::format("checkpoint '{}' has {} values, the model needs {}", name,
                               found->values.size(), tensor->numel()));
    }
    MALV_TRY(device_.write(tensor->buffer, 0, std::as_bytes(std::span(found->values))));
  }
  return device_.synchronize();
}

Result<Checkpoint> Mlp::parameters_checkpoint() {
  Checkpoint checkpoint;
  checkpoint.set("model", spec_.to_string());
  set_loss(checkpoint);
  MALV_ASSIGN_OR_RETURN(checkpoint.arrays, read_arrays(parameter_tensors()));
  return checkpoint;
}

Result<std::vector<std::byte>> Mlp::save_parameters() {
  MALV_ASSIGN_OR_RETURN(Checkpoint checkpoint, parameters_checkpoint());
  return encode_checkpoint(checkpoint);
}

Status Mlp::load_parameters(std::span<const std::byte> bytes) {
  MALV_ASSIGN_OR_RETURN(Checkpoint checkpoint, decode_checkpoint(bytes));
  MALV_ASSIGN_OR_RETURN(std::string model, checkpoint.require("model"));
  if (model != spec_.to_string()) {
    return Error(ErrorCode::kInvalidArgument,
                 fmt::format("parameters are for {}, this model is {}", model, spec_.to_string()));
  }
  MALV_TRY(check_loss(checkpoint));
  return write_arrays(checkpoint, parameter_tensors());
}

std::vector<std::pair<std::string, Tensor*>> Mlp::training_tensors() {
  auto tensors = parameter_tensors();
  for (auto& entry : optimizer_->state()) tensors.push_back(std::move(entry));
  return tensors;
}

Checkpoint Mlp::training_metadata() const {
  Checkpoint checkpoint;
  const OptimizerConfig& opt = optimizer_->config();
  checkpoint.set("model", spec_.to_string());
  checkpoint.set("optimizer", std::string(optimizer_name(opt.kind)));
  checkpoint.set("lr", fmt::format("{}", opt.lr));
  checkpoint.set("step", std::to_string(optimizer_->steps()));
  set_loss(checkpoint);
  return checkpoint;
}

// A classifier's checkpoints carry no "loss" key, as they did before
// regression existed, so they stay byte for byte what they were.
void Mlp::set_loss(Checkpoint& checkpoint) const {
  if (loss_kind_ != Loss::kSoftmaxXent) checkpoint.set("loss", std::string(loss_name(loss_kind_)));
}

Status Mlp::check_loss(const Checkpoint& checkpoint) const {
  const std::string loss =
      checkpoint.get("loss").value_or(std::string(loss_name(Loss::kSoftmaxXent)));
  if (loss == loss_name(loss_kind_)) return ok_status();
  return Error(ErrorCode::kInvalidArgument,
               fmt::format("checkpoint is of a model trained with loss {}, this one uses {}", loss,
                           loss_name(loss_kind_)));
}

Result<Checkpoint> Mlp::training_checkpoint() {
  Checkpoint checkpoint = training_metadata();
  MALV_ASSIGN_OR_RETURN(checkpoint.arrays, read_arrays(training_tensors()));
  return checkpoint;
}

Status Mlp::restore(const Checkpoint& checkpoint) {
  MALV_ASSIGN_OR_RETURN(std::uint64_t step, checked_step(checkpoint));
  MALV_TRY(write_arrays(checkpoint, training_tensors()));
  optimizer_->set_steps(step);
  return ok_status();
}

Status Mlp::restore_metadata(const Checkpoint& metadata) {
  MALV_ASSIGN_OR_RETURN(std::uint64_t step, checked_step(metadata));
  optimizer_->set_steps(step);
  return ok_status();
}

Result<std::uint64_t> Mlp::checked_step(const Checkpoint& checkpoint) const {
  const OptimizerConfig& opt = optimizer_->config();
  const Checkpoint::Expected expected[] = {
      {"model", spec_.to_string()},
      {"optimizer", std::string(optimizer_name(opt.kind))},
      {"lr", fmt::format("{}", opt.lr)},
  };
  MALV_TRY(checkpoint.require_equal(expected));
  MALV_TRY(check_loss(checkpoint));
  MALV_ASSIGN_OR_RETURN(std::string step_text, checkpoint.require("step"));
  std::uint64_t step = 0;
  auto [end, ec] = std::from_chars(step_text.data(), step_text.data() + step_text.size(), step);
  if (ec != std::errc() || end != step_text.data() + step_text.size()) {
    return Error(ErrorCode::kInvalidArgument,
                 fmt::format("checkpoint step '{}' is not a number", step_text));
  }
  return step;
}

}  // namespace malv::nn
