// MLP inference on the CPU or the accelerator, with a measured crossover
// and batching across callers (see inference_service.h).
#include "mlaas/inference_service.h"

#include <fmt/format.h>

#include <algorithm>
#include <condition_variable>

#include "accel/kernel_ids.h"
#include "base/clock.h"
#include "base/log.h"
#include "mlaas/caller_batcher.h"

namespace malv::mlaas {

namespace {

using accel::ArgKind;
using accel::BuiltinKernel;
using accel::DevicePtr;
using accel::KernelArgValue;

KernelArgValue buffer_arg(DevicePtr ptr, std::uint64_t extent) {
  return KernelArgValue{ArgKind::kBuffer, ptr, extent, 0, 0.0f};
}
KernelArgValue i64_arg(std::uint64_t value) {
  return KernelArgValue{ArgKind::kI64, {}, 0, static_cast<std::int64_t>(value), 0.0f};
}
KernelArgValue f32_arg(float value) { return KernelArgValue{ArgKind::kF32, {}, 0, 0, value}; }

// Waits for a run's ops: every completion records the first failure; the
// final Marker's completion wakes the caller.
struct RunSync {
  std::mutex mu;
  std::condition_variable cv;
  bool done = false;
  ErrorCode first_error = ErrorCode::kOk;
  std::uint64_t failed_op = 0;

  static void on_op(void* context, std::uint64_t cookie, ErrorCode status) {
    auto* sync = static_cast<RunSync*>(context);
    if (status == ErrorCode::kOk) return;
    std::lock_guard lock(sync->mu);
    if (sync->first_error == ErrorCode::kOk) {
      sync->first_error = status;
      sync->failed_op = cookie;
    }
  }
  static void on_marker(void* context, std::uint64_t, ErrorCode status) {
    auto* sync = static_cast<RunSync*>(context);
    std::lock_guard lock(sync->mu);
    if (status != ErrorCode::kOk && sync->first_error == ErrorCode::kOk) sync->first_error = status;
    sync->done = true;
    sync->cv.notify_all();
  }
  void wait() {
    std::unique_lock lock(mu);
    cv.wait(lock, [&] { return done; });
  }
};

bool accelerator_capable(const Mlp& mlp) {
  const auto& layers = mlp.layers();
  for (std::size_t i = 0; i + 1 < layers.size(); ++i) {
    if (layers[i].activation != Activation::kRelu &&
        layers[i].activation != Activation::kIdentity) {
      return false;
    }
  }
  return true;
}

}  // namespace

struct InferenceService::Model {
  explicit Model(Mlp m) : mlp(std::move(m)), capable(accelerator_capable(mlp)) {}

  // The shape, and the weights the model was added with (calibration times
  // these); the weights in force are current()'s, which train() replaces.
  Mlp mlp;
  bool capable;
  // `mlp` itself until the first train() (no lock on the inference path of
  // a model nobody trains), then the latest trained weights.
  std::shared_ptr<const Mlp> current() const {
    if (!trained.load(std::memory_order_acquire)) return {std::shared_ptr<const Mlp>(), &mlp};
    std::lock_guard lock(live_mu);
    return live;
  }
  mutable std::mutex live_mu;
  std::shared_ptr<const Mlp> live;  // live_mu; set before `trained`
  std::atomic<bool> trained{false};
  std::mutex train_mu;  // one train() of the model at a time
  // The device's copy of the weights is older than current(): the next
  // accelerator run copies them first (train() itself never waits for the
  // device, so a policy's feedback() does not either).
  std::atomic<bool> device_stale{false};
  Crossover crossover;               // guarded by the service's mu_
  bool calibration_pending = false;  // mu_
  // crossover.batch, read by every run without the lock.
  std::atomic<std::size_t> crossover_rows{kNeverAccelerate};
  std::unique_ptr<CallerBatcher> batcher;  // set before the model is shared

  // Device state, guarded by run_mu.
  std::mutex run_mu;
  std::vector<DevicePtr> weights;  // per layer
  std::vector<DevicePtr> biases;
  DevicePtr scratch[2]{};
  std::size_t scratch_batch = 0;
};

InferenceService::InferenceService(accel::Backend* backend, InferenceOptions options)
    : backend_(backend), options_(std::move(options)), batching_(options_.batching) {
  if (backend_ == nullptr) return;
  Result<accel::QueueId> queue = backend_->create_queue(accel::QueuePriority::kHigh);
  if (!queue.ok()) {
    log::warn("mlaas", "inference: no accelerator queue ({}); CPU only", queue.error().to_string());
    backend_ = nullptr;
    return;
  }
  queue_ = *queue;
  const accel::DeviceInfo info = backend_->info();
  backend_name_ = info.backend + "/" + info.name;
  if (options_.calibrate && options_.calibrate_in_background) {
    calibrator_ = std::thread([this] { calibration_loop(); });
  }
}

InferenceService::~InferenceService() {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
    calibration_queue_.clear();
  }
  calibration_cv_.notify_all();
  if (calibrator_.joinable()) calibrator_.join();
  std::map<std::uint64_t, std::shared_ptr<Model>> models;
  {
    std::lock_guard lock(mu_);
    models.swap(models_);
  }
  if (backend_ == nullptr) return;
  backend_->destroy_queue(queue_);  // waits for pending runs
  for (auto& [id, model] : models) {
    for (DevicePtr p : model->weights) backend_->free(p);
    for (DevicePtr p : model->biases) backend_->free(p);
    for (DevicePtr p : model->scratch) {
      if (p.value != 0) backend_->free(p);
    }
  }
}

Result<ModelId> InferenceService::load(const std::string& path) {
  MALV_ASSIGN_OR_RETURN(Mlp mlp, Mlp::load(path));
  return add(std::move(mlp));
}

Result<ModelId> InferenceService::add(Mlp mlp) {
  auto model = std::make_shared<Model>(std::move(mlp));
  if (backend_ != nullptr && model->capable) {
    Status uploaded = upload(*model);
    if (!uploaded.ok()) {
      log::warn("mlaas", "inference: model {} stays on the CPU: {}", model->mlp.shape_key(),
                uploaded.error().to_string());
      model->capable = false;
    }
  }
  Model* raw = model.get();
  model->batcher = std::make_unique<CallerBatcher>(
      CallerBatcherOptions{.in_dim = model->mlp.input_dim(),
                           .out_dim = model->mlp.output_dim(),
                           .window = options_.batch_window,
                           .max_rows = std::max<std::size_t>(options_.max_batch_rows, 1),
                           .max_runs = std::max(options_.max_concurrent_runs, 1)},
      [this, raw](const float* in, std::size_t rows, float* out) {
        return run_batch(*raw, in, rows, out);
      });
  const bool measurable = options_.calibrate && backend_ != nullptr && model->capable;
  bool measure_now = false;
  {
    std::lock_guard lock(mu_);
    if (auto it = crossover_cache_.find(cache_key(*model)); it != crossover_cache_.end()) {
      store_crossover(*model, it->second);
    } else if (measurable && options_.calibrate_in_background) {
      model->calibration_pending = true;
      calibration_queue_.push_back(model);
    } else {
      measure_now = measurable;
    }
  }
  calibration_cv_.notify_all();
  if (measure_now) {
    MALV_ASSIGN_OR_RETURN(Crossover measured, measure(*model));
    std::lock_guard lock(mu_);
    store_crossover(*model, measured);
    crossover_cache_[cache_key(*model)] = measured;
  }
  std::lock_guard lock(mu_);
  ModelId id{next_id_++};
  models_.emplace(id.value(), std::move(model));
  return id;
}

void InferenceService::release(ModelId id) {
  std::shared_ptr<Model> model;
  {
    std::lock_guard lock(mu_);
    auto it = models_.find(id.value());
    if (it == models_.end()) return;
    model = std::move(it->second);
    models_.erase(it);
  }
  if (backend_ == nullptr) return;
  std::lock_guard run(model->run_mu);  // no run of it is in flight past this
  for (DevicePtr p : model->weights) backend_->free(p);
  for (DevicePtr p : model->biases) backend_->free(p);
  for (DevicePtr p : model->scratch) {
    if (p.value != 0) backend_->free(p);
  }
  model->weights.clear();
  model->biases.clear();
}

Result<std::shared_ptr<InferenceService::Model>> InferenceService::find(ModelId id) const {
  std::lock_guard lock(mu_);
  auto it = models_.find(id.value());
  if (it == models_.end()) {
    return Error(ErrorCode::kNotFound, fmt::format("no inference model {}", id.value()));
  }
  return it->second;
}

Result<ModelInfo> InferenceService::info(ModelId id) const {
  MALV_ASSIGN_OR_RETURN(std::shared_ptr<Model> model, find(id));
  std::lock_guard lock(mu_);
  return ModelInfo{model->mlp.input_dim(),     model->mlp.output_dim(),
                   model->mlp.shape_key(),     model->capable && backend_ != nullptr,
                   model->calibration_pending, model->crossover};
}

std::vector<ModelId> InferenceService::model_ids() const {
  std::lock_guard lock(mu_);
  std::vector<ModelId> ids;
  for (const auto& [id, model] : models_) ids.push_back(ModelId{id});
  return ids;
}

void InferenceService::set_batching(CallerBatching batching) { batching_.store(batching); }

Status InferenceService::upload(Model& model) {
  std::lock_guard run(model.run_mu);
  RunSync sync;
  for (const DenseLayer& layer : model.mlp.layers()) {
    MALV_ASSIGN_OR_RETURN(DevicePtr w, backend_->allocate(layer.weight.size() * sizeof(float)));
    model.weights.push_back(w);
    MALV_ASSIGN_OR_RETURN(DevicePtr b, backend_->allocate(layer.bias.size() * sizeof(float)));
    model.biases.push_back(b);
    backend_->enqueue(queue_, accel::CopyH2D{layer.weight.data(), w, layer.weight.size() * 4},
                      {&RunSync::on_op, &sync, 1});
    backend_->enqueue(queue_, accel::CopyH2D{layer.bias.data(), b, layer.bias.size() * 4},
                      {&RunSync::on_op, &sync, 2});
  }
  backend_->enqueue(queue_, accel::Marker{}, {&RunSync::on_marker, &sync, 0});
  sync.wait();
  if (sync.first_error != ErrorCode::kOk) {
    return Error(sync.first_error, "copying the weights to the accelerator failed");
  }
  return ok_status();
}

Status InferenceService::copy_weights_to_device(Model& model, const Mlp& mlp) {
  if (model.weights.size() != mlp.layers().size()) return ok_status();  // not uploaded
  RunSync sync;
  for (std::size_t i = 0; i < mlp.layers().size(); ++i) {
    const DenseLayer& layer = mlp.layers()[i];
    backend_->enqueue(
        queue_, accel::CopyH2D{layer.weight.data(), model.weights[i], layer.weight.size() * 4},
        {&RunSync::on_op, &sync, 1});
    backend_->enqueue(queue_,
                      accel::CopyH2D{layer.bias.data(), model.biases[i], layer.bias.size() * 4},
                      {&RunSync::on_op, &sync, 2});
  }
  backend_->enqueue(queue_, accel::Marker{}, {&RunSync::on_marker, &sync, 0});
  sync.wait();
  if (sync.first_error != ErrorCode::kOk) {
    return Error(sync.first_error, "copying trained weights to the accelerator failed");
  }
  return ok_status();
}

Result<float> InferenceService::train(ModelId id, const float* in, const float* targets,
                                      std::size_t batch, float learning_rate, std::uint32_t steps) {
  MALV_ASSIGN_OR_RETURN(std::shared_ptr<Model> model, find(id));
  std::lock_guard training(model->train_mu);
  auto trained = std::make_shared<Mlp>(*model->current());
  MALV_ASSIGN_OR_RETURN(float loss, trained->train_sgd(in, targets, batch, learning_rate, steps));
  {
    std::lock_guard lock(model->live_mu);
    model->live = std::move(trained);
  }
  model->trained.store(true, std::memory_order_release);
  model->device_stale.store(true, std::memory_order_release);
  return loss;
}

Result<std::shared_ptr<const Mlp>> InferenceService::weights(ModelId id) const {
  MALV_ASSIGN_OR_RETURN(std::shared_ptr<Model> model, find(id));
  std::shared_ptr<const Mlp> weights = model->current();
  // Untrained, current() does not own model->mlp: share the model's ownership.
  if (weights.use_count() == 0) return std::shared_ptr<const Mlp>(model, weights.get());
  return weights;
}

Status InferenceService::run_accelerator(Model& model, const float* in, std::size_t batch,
                                         float* out) {
  std::lock_guard run(model.run_mu);
  if (model.weights.empty()) return Error(ErrorCode::kStaleHandle, "model was released");
  if (model.device_stale.exchange(false, std::memory_order_acq_rel)) {
    Status copied = copy_weights_to_device(model, *model.current());
    if (!copied.ok()) {
      model.device_stale.store(true, std::memory_order_release);
      return copied.error();
    }
  }
  const Mlp& mlp = model.mlp;
  const std::size_t width = mlp.widest();
  if (batch > model.scratch_batch) {
    for (DevicePtr& p : model.scratch) {
      if (p.value != 0) backend_->free(p);
      p = DevicePtr{};
    }
    model.scratch_batch = 0;
    for (DevicePtr& p : model.scratch) {
      MALV_ASSIGN_OR_RETURN(p, backend_->allocate(batch * width * sizeof(float)));
    }
    model.scratch_batch = batch;
  }
  const std::uint64_t extent = model.scratch_batch * width * sizeof(float);

  // Check every launch against the registry before anything is queued.
  std::vector<accel::Launch> launches;
  std::size_t current = 0;
  const auto& layers = mlp.layers();
  for (std::size_t i = 0; i < layers.size(); ++i) {
    const DenseLayer& l = layers[i];
    DevicePtr x = model.scratch[current];
    DevicePtr y = model.scratch[1 - current];
    accel::Launch gemm{accel::kernel_id(BuiltinKernel::kGemm),
                       {buffer_arg(x, extent), buffer_arg(model.weights[i], l.weight.size() * 4),
                        buffer_arg(y, extent), i64_arg(batch), i64_arg(l.out), i64_arg(l.in),
                        i64_arg(0), i64_arg(1), f32_arg(1.0f), f32_arg(0.0f)},
                       10};
    accel::Launch bias{accel::kernel_id(BuiltinKernel::kBiasAdd),
                       {buffer_arg(y, extent), buffer_arg(model.biases[i], l.bias.size() * 4),
                        i64_arg(batch), i64_arg(l.out)},
                       4};
    launches.push_back(gemm);
    launches.push_back(bias);
    if (l.activation == Activation::kRelu) {
      launches.push_back(
          accel::Launch{accel::kernel_id(BuiltinKernel::kRelu),
                        {buffer_arg(y, extent), buffer_arg(y, extent), i64_arg(batch * l.out)},
                        3});
    }
    current = 1 - current;
  }
  for (const accel::Launch& launch : launches) {
    MALV_TRY(accel::validate_launch(*accel::find_kernel(launch.kernel),
                                    {launch.args.data(), launch.argc}));
  }

  RunSync sync;
  backend_->enqueue(queue_, accel::CopyH2D{in, model.scratch[0], batch * mlp.input_dim() * 4},
                    {&RunSync::on_op, &sync, 1});
  std::uint64_t cookie = 2;
  for (const accel::Launch& launch : launches) {
    backend_->enqueue(queue_, launch, {&RunSync::on_op, &sync, cookie++});
  }
  backend_->enqueue(queue_,
                    accel::CopyD2H{model.scratch[current], out, batch * mlp.output_dim() * 4},
                    {&RunSync::on_op, &sync, cookie++});
  backend_->enqueue(queue_, accel::Marker{}, {&RunSync::on_marker, &sync, 0});
  sync.wait();
  if (sync.first_error != ErrorCode::kOk) {
    return Error(sync.first_error,
                 fmt::format("accelerator inference failed at op {}", sync.failed_op));
  }
  const Activation last = layers.back().activation;
  if (last != Activation::kRelu && last != Activation::kIdentity) {
    apply_activation(last, out, batch, mlp.output_dim());
  }
  return ok_status();
}

Status InferenceService::infer(ModelId id, const float* in, std::size_t batch, float* out,
                               InferencePath path) {
  return infer_now(id, in, batch, out, path, MonoTime::max());
}

Status InferenceService::infer(ModelId id, const float* in, std::size_t batch, float* out,
                               MonoTime deadline) {
  return infer_now(id, in, batch, out, InferencePath::kAuto, deadline);
}

Status InferenceService::infer_now(ModelId id, const float* in, std::size_t batch, float* out,
                                   InferencePath path, MonoTime deadline) {
  const MonoTime start = MonoClock::now();
  Status status = [&]() -> Status {
    MALV_ASSIGN_OR_RETURN(std::shared_ptr<Model> model, find(id));
    if (batch == 0) return ok_status();
    if (in == nullptr || out == nullptr) {
      return Error(ErrorCode::kInvalidArgument, "inference input or output is null");
    }
    if (path == InferencePath::kAuto && batch <= options_.max_batch_rows && batches(*model)) {
      return model->batcher->submit(in, batch, out, deadline);
    }
    return run_alone(*model, in, batch, out, path, deadline);
  }();
  stats_.record_request(batch, (MonoClock::now() - start).count(),
                        status.ok() ? ErrorCode::kOk : status.error().code());
  return status;
}

bool InferenceService::batches(const Model& model) const {
  switch (batching_.load(std::memory_order_relaxed)) {
    case CallerBatching::kOff: return false;
    case CallerBatching::kOn: return true;
    case CallerBatching::kAuto:
      return backend_ != nullptr && model.capable &&
             model.crossover_rows.load(std::memory_order_relaxed) <= options_.max_batch_rows;
  }
  return false;
}

Status InferenceService::run_alone(Model& model, const float* in, std::size_t batch, float* out,
                                   InferencePath path, MonoTime deadline) {
  if (MonoClock::now() >= deadline) {
    return Error(ErrorCode::kDeadlineExceeded, "inference: the caller's deadline had passed");
  }
  const bool capable = backend_ != nullptr && model.capable;
  if (path == InferencePath::kAccelerator && !capable) {
    return Error(ErrorCode::kUnimplemented,
                 backend_ == nullptr ? "no accelerator backend"
                                     : "the accelerator path needs relu/identity hidden layers");
  }
  if (path == InferencePath::kAuto) {
    path = capable && batch >= model.crossover_rows.load(std::memory_order_relaxed)
               ? InferencePath::kAccelerator
               : InferencePath::kCpu;
  }
  if (path == InferencePath::kAccelerator) {
    MALV_TRY(run_accelerator(model, in, batch, out));
  } else {
    model.current()->infer_cpu(in, batch, out);
  }
  stats_.record_run(batch, path == InferencePath::kAccelerator);
  if (MonoClock::now() > deadline) {
    return Error(ErrorCode::kDeadlineExceeded, "inference: no answer before the caller's deadline");
  }
  return ok_status();
}

Status InferenceService::run_batch(Model& model, const float* in, std::size_t batch, float* out) {
  const bool accelerate = backend_ != nullptr && model.capable &&
                          batch >= model.crossover_rows.load(std::memory_order_relaxed);
  if (accelerate) {
    MALV_TRY(run_accelerator(model, in, batch, out));
  } else {
    model.current()->infer_cpu(in, batch, out);
  }
  stats_.record_run(batch, accelerate);
  return ok_status();
}

Result<Crossover> InferenceService::measure(Model& model) {
  Crossover result;
  result.measured = true;
  const Mlp& mlp = model.mlp;
  for (std::size_t batch : options_.calibration_batches) {
    if (batch == 0) continue;
    std::vector<float> in(batch * mlp.input_dim());
    for (std::size_t i = 0; i < in.size(); ++i) in[i] = static_cast<float>(i % 17) / 17.0f - 0.5f;
    std::vector<float> out(batch * mlp.output_dim());
    CalibrationPoint point{batch, 1e300, 1e300};
    for (int run = 0; run <= options_.calibration_runs; ++run) {  // run 0 warms up
      Stopwatch cpu;
      mlp.infer_cpu(in.data(), batch, out.data());
      double cpu_us = cpu.elapsed_us();
      Stopwatch acc;
      MALV_TRY(run_accelerator(model, in.data(), batch, out.data()));
      double acc_us = acc.elapsed_us();
      if (run == 0) continue;
      point.cpu_us = std::min(point.cpu_us, cpu_us);
      point.accelerator_us = std::min(point.accelerator_us, acc_us);
    }
    result.points.push_back(point);
  }
  // The smallest batch from which the accelerator wins at every larger one.
  for (std::size_t i = result.points.size(); i-- > 0;) {
    if (result.points[i].accelerator_us >= result.points[i].cpu_us) break;
    result.batch = result.points[i].batch;
  }
  stats_.record_calibration();
  log::info("mlaas", "inference crossover for {} on {}: {}", mlp.shape_key(), backend_name_,
            result.batch == kNeverAccelerate
                ? std::string("CPU always faster")
                : fmt::format("accelerator from batch {}", result.batch));
  return result;
}

Result<Crossover> InferenceService::calibrate(ModelId id) {
  MALV_ASSIGN_OR_RETURN(std::shared_ptr<Model> model, find(id));
  if (backend_ == nullptr || !model->capable) {
    return Error(ErrorCode::kFailedPrecondition, "model cannot run on the accelerator");
  }
  MALV_ASSIGN_OR_RETURN(Crossover measured, measure(*model));
  std::lock_guard lock(mu_);
  store_crossover(*model, measured);
  crossover_cache_[cache_key(*model)] = measured;
  return model->crossover;
}

void InferenceService::recalibrate() {
  std::vector<std::shared_ptr<Model>> models;
  {
    std::lock_guard lock(mu_);
    crossover_cache_.clear();
    for (auto& [id, model] : models_) {
      if (backend_ == nullptr || !model->capable || !options_.calibrate) continue;
      if (options_.calibrate_in_background) {
        model->calibration_pending = true;
        calibration_queue_.push_back(model);
      } else {
        models.push_back(model);
      }
    }
  }
  calibration_cv_.notify_all();
  for (const auto& model : models) {
    Result<Crossover> measured = measure(*model);
    if (!measured.ok()) {
      log::warn("mlaas", "inference: recalibrating {} failed: {}", model->mlp.shape_key(),
                measured.error().to_string());
      continue;
    }
    std::lock_guard lock(mu_);
    store_crossover(*model, *measured);
    crossover_cache_.try_emplace(cache_key(*model), *measured);
  }
}

bool InferenceService::wait_for_calibration(Nanos timeout) {
  std::unique_lock lock(mu_);
  return calibration_cv_.wait_for(lock, timeout,
                                  [&] { return calibration_queue_.empty() && !calibrating_; });
}

void InferenceService::calibration_loop() {
  std::unique_lock lock(mu_);
  for (;;) {
    calibration_cv_.wait(lock, [&] { return stopping_ || !calibration_queue_.empty(); });
    if (stopping_) return;
    std::shared_ptr<Model> model = calibration_queue_.front().lock();
    calibration_queue_.pop_front();
    if (model == nullptr) continue;  // released meanwhile
    if (auto it = crossover_cache_.find(cache_key(*model)); it != crossover_cache_.end()) {
      store_crossover(*model, it->second);  // a model of its shape was measured meanwhile
      model->calibration_pending = false;
      calibration_cv_.notify_all();
      continue;
    }
    calibrating_ = true;
    lock.unlock();
    Result<Crossover> measured = measure(*model);
    lock.lock();
    calibrating_ = false;
    model->calibration_pending = false;
    if (measured.ok()) {
      store_crossover(*model, *measured);
      crossover_cache_[cache_key(*model)] = *measured;
    } else {
      log::warn("mlaas", "inference: calibrating {} failed ({}); it stays on the CPU",
                model->mlp.shape_key(), measured.error().to_string());
    }
    calibration_cv_.notify_all();
  }
}

void InferenceService::store_crossover(Model& model, const Crossover& measured) {
  const bool overridden = model.crossover.overridden;
  const std::size_t batch = model.crossover.batch;
  model.crossover = measured;
  if (overridden) {  // set_crossover() wins over a measurement
    model.crossover.overridden = true;
    model.crossover.batch = batch;
  }
  model.crossover_rows.store(model.crossover.batch, std::memory_order_relaxed);
}

std::string InferenceService::cache_key(const Model& model) const {
  return backend_name_ + ":" + model.mlp.shape_key();
}

Status InferenceService::set_crossover(ModelId id, std::size_t batch) {
  MALV_ASSIGN_OR_RETURN(std::shared_ptr<Model> model, find(id));
  std::lock_guard lock(mu_);
  model->crossover.batch = std::max<std::size_t>(batch, 1);
  model->crossover.overridden = true;
  model->crossover_rows.store(model->crossover.batch, std::memory_order_relaxed);
  return ok_status();
}

}  // namespace malv::mlaas
