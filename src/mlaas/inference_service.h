// InferenceService: runs MLaaS models (Mlp) for policies, inline on the CPU
// or on the accelerator, whichever is faster for the batch at hand, and
// batches the rows of concurrent callers of one model into one run.
//
//   auto backend = accel::make_cpu_backend({});
//   InferenceService inference(backend.get());           // null: CPU only
//   ModelId model = inference.load("sjf.safetensors").value();
//   inference.infer(model, in.data(), batch, out.data()).value();
//   // with a deadline (a policy decision's budget):
//   Status s = inference.infer(model, in.data(), 1, out.data(), deadline);
//   if (s.error().code() == ErrorCode::kDeadlineExceeded) use_the_baseline();
//
// Two paths:
//  * CPU: Mlp::infer_cpu (cblas_sgemm per layer) on the calling thread. No
//    queueing, so it wins for small batches.
//  * Accelerator: the weights are copied to device memory once, at load;
//    each run copies the input in, queues gemm + bias_add (+ relu) Launch
//    ops per layer on the service's own high-priority queue, copies the
//    output back and waits on a Marker's completion. The kernel registry
//    has no sigmoid/tanh/softmax, so the accelerator path takes models whose
//    hidden layers are relu or identity; the last layer may use any
//    activation, applied on the host after read-back. Other models always
//    run on the CPU.
//
// Batching across callers (InferenceOptions::batching; kAuto calls of at
// most max_batch_rows rows): calls for the same model from any threads are
// combined by a CallerBatcher (caller_batcher.h): a caller alone runs at
// once; otherwise the first caller of a batch waits at most batch_window for
// others (0 by default: a batch is whoever came while the model's previous
// run ran), then one run, on the path the crossover picks for the batch's
// total rows, serves them all and each caller gets exactly its own rows
// back. At most max_concurrent_runs batches of a model run at once. By
// default (CallerBatching::kAuto) a model is batched only when its
// crossover is within max_batch_rows, that is when a batch can reach the
// accelerator: on the CPU a waiting caller's wake-up costs about what
// batching saves (docs/benchmarks.md), so each call runs on its own there.
// A call with a deadline is never answered after it: it gets
// kDeadlineExceeded instead, as soon as its answer cannot come in time.
// Calls that name a path (kCpu, kAccelerator) run alone.
//
// Crossover: both paths are timed at batch 1, 8, 64, 512, 4096 (best of a
// few runs) and the smallest measured batch from which the accelerator wins
// at every larger measured batch becomes the model's crossover; kAuto uses
// the accelerator from there on. With InferenceOptions::calibrate this
// happens when a model is added: in add() itself, or with
// calibrate_in_background on the service's own thread (add() returns at
// once and the model runs inline until its crossover is known). Results are
// cached per backend, device and model shape, so a second model of the same
// shape measures nothing; recalibrate() forgets them and measures every
// model again (for when the backend changes). set_crossover() overrides it.
//
// stats() counts requests, rows, runs per path, batch sizes, latency and
// missed deadlines (inference_stats.h); metrics_text() is their /metrics
// text.
//
// Thread-safety: every method may be called from any thread; accelerator
// runs of one model are serialised (they share its device scratch buffers).
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <limits>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "accel/backend.h"
#include "base/clock.h"
#include "base/strong_id.h"
#include "malv/result.h"
#include "mlaas/inference_stats.h"
#include "mlaas/mlp.h"

namespace malv::mlaas {

struct ModelTag {};
using ModelId = StrongId<ModelTag>;

enum class InferencePath { kAuto, kCpu, kAccelerator };

inline constexpr std::size_t kNeverAccelerate = std::numeric_limits<std::size_t>::max();

enum class CallerBatching {
  kOff,   // every call runs on its own
  kOn,    // kAuto calls are batched across callers
  kAuto,  // batched when the model's crossover is within max_batch_rows
};

struct InferenceOptions {
  bool calibrate = true;
  // Measure on the service's thread, not in add() (what `malv serve` does).
  bool calibrate_in_background = false;
  std::vector<std::size_t> calibration_batches{1, 8, 64, 512, 4096};
  int calibration_runs = 3;  // best of

  CallerBatching batching = CallerBatching::kAuto;
  // How long the first caller of a batch waits for others (see above).
  std::chrono::nanoseconds batch_window{0};
  std::size_t max_batch_rows = 1024;
  int max_concurrent_runs = 1;  // per model
};

struct CalibrationPoint {
  std::size_t batch = 0;
  double cpu_us = 0;
  double accelerator_us = 0;
};

struct Crossover {
  std::size_t batch = kNeverAccelerate;  // accelerator from this batch on
  bool overridden = false;
  bool measured = false;
  std::vector<CalibrationPoint> points;
};

struct ModelInfo {
  std::size_t input_dim = 0;
  std::size_t output_dim = 0;
  std::string shape;
  bool accelerator_capable = false;
  bool calibration_pending = false;  // queued for the background measurement
  Crossover crossover;
};

class InferenceService {
 public:
  explicit InferenceService(accel::Backend* backend, InferenceOptions options = {});
  ~InferenceService();
  InferenceService(const InferenceService&) = delete;
  InferenceService& operator=(const InferenceService&) = delete;

  [[nodiscard]] Result<ModelId> load(const std::string& safetensors_path);
  [[nodiscard]] Result<ModelId> add(Mlp model);
  void release(ModelId model);

  [[nodiscard]] Result<ModelInfo> info(ModelId model) const;

  // Online learning (model_train): Mlp::train_sgd on a copy of the model's
  // weights, which then replace them (the accelerator's copy before its next
  // run of the model: train() never waits for the device). Trainings of one
  // model are serialised; inference goes on meanwhile with the old weights
  // or the new ones, never a mix within one run. Returns the loss before the
  // first step.
  [[nodiscard]] Result<float> train(ModelId model, const float* in, const float* targets,
                                    std::size_t batch, float learning_rate, std::uint32_t steps);
  // The weights in force now (what model_save writes).
  [[nodiscard]] Result<std::shared_ptr<const Mlp>> weights(ModelId model) const;

  // batch rows of input_dim floats in, batch rows of output_dim out. kAuto
  // calls are batched across callers (see above).
  [[nodiscard]] Status infer(ModelId model, const float* in, std::size_t batch, float* out,
                             InferencePath path = InferencePath::kAuto);
  // The same, answered by `deadline` or not at all: kDeadlineExceeded (out
  // is then unspecified). MonoTime::max(): no deadline.
  [[nodiscard]] Status infer(ModelId model, const float* in, std::size_t batch, float* out,
                             MonoTime deadline);

  // Times both paths now (and updates the shape's cached crossover).
  [[nodiscard]] Result<Crossover> calibrate(ModelId model);
  // Forgets every cached crossover and measures every loaded model again
  // (in the background when the service calibrates in the background).
  void recalibrate();
  // Waits until no background measurement is queued or running; false if
  // `timeout` passed first.
  bool wait_for_calibration(Nanos timeout);
  // Accelerator from `batch` on (kNeverAccelerate: CPU only; 1: always).
  [[nodiscard]] Status set_crossover(ModelId model, std::size_t batch);

  // Batching across callers for calls from now on.
  void set_batching(CallerBatching batching);

  bool has_accelerator() const { return backend_ != nullptr; }
  InferenceCounters stats() const { return stats_.snapshot(); }
  std::vector<ModelId> model_ids() const;
  // The Prometheus text of the malv_mlaas_inference_* and malv_mlaas_model_*
  // families (inference_metrics.cpp).
  std::string metrics_text() const;

 private:
  struct Model;

  Result<std::shared_ptr<Model>> find(ModelId id) const;
  Status infer_now(ModelId id, const float* in, std::size_t batch, float* out, InferencePath path,
                   MonoTime deadline);
  bool batches(const Model& model) const;
  Status run_alone(Model& model, const float* in, std::size_t batch, float* out, InferencePath path,
                   MonoTime deadline);
  Status run_batch(Model& model, const float* in, std::size_t batch, float* out);
  Status upload(Model& model);
  Status copy_weights_to_device(Model& model, const Mlp& mlp);  // under model.run_mu
  Status run_accelerator(Model& model, const float* in, std::size_t batch, float* out);
  Result<Crossover> measure(Model& model);
  void store_crossover(Model& model, const Crossover& measured);  // under mu_
  std::string cache_key(const Model& model) const;
  void calibration_loop();

  accel::Backend* backend_;
  InferenceOptions options_;
  accel::QueueId queue_;
  std::string backend_name_;  // backend and device: part of the crossover cache key
  std::atomic<CallerBatching> batching_;
  InferenceStats stats_;

  mutable std::mutex mu_;
  std::map<std::uint64_t, std::shared_ptr<Model>> models_;
  std::map<std::string, Crossover> crossover_cache_;  // by backend + shape
  std::uint64_t next_id_ = 1;

  // Background calibration (options_.calibrate_in_background), under mu_.
  std::condition_variable calibration_cv_;
  std::deque<std::weak_ptr<Model>> calibration_queue_;
  bool calibrating_ = false;
  bool stopping_ = false;
  std::thread calibrator_;
};

}  // namespace malv::mlaas
