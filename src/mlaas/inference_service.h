// InferenceService: runs MLaaS models (Mlp) for policies, inline on the CPU
// or on the accelerator, whichever is faster for the batch at hand.
//
//   auto backend = accel::make_cpu_backend({});
//   InferenceService inference(backend.get());           // null: CPU only
//   ModelId model = inference.load("sjf.safetensors").value();
//   inference.infer(model, in.data(), batch, out.data()).value();
//
// Two paths:
//  * CPU: Mlp::infer_cpu on the calling thread (cblas_sgemm per layer). No
//    queueing, so it wins for small batches.
//  * Accelerator: the weights are copied to device memory once, at load;
//    each call copies the input in, queues gemm + bias_add (+ relu) Launch
//    ops per layer on the service's own high-priority queue, copies the
//    output back and waits on a Marker's completion. The kernel registry
//    has no sigmoid/tanh/softmax, so the accelerator path takes models whose
//    hidden layers are relu or identity; the last layer may use any
//    activation, applied on the host after read-back. Other models always
//    run on the CPU.
//
// Crossover: when a model is added (InferenceOptions::calibrate), both
// paths are timed at batch 1, 8, 64, 512, 4096 (best of a few runs) and the
// smallest measured batch from which the accelerator wins at every larger
// measured batch becomes the model's crossover; kAuto uses the accelerator
// from there on. Results are cached per model shape and backend, so loading
// a second model of the same shape measures nothing. set_crossover()
// overrides it.
//
// Thread-safety: every method may be called from any thread; accelerator
// runs of one model are serialised (they share its device scratch buffers).
#pragma once

#include <cstddef>
#include <cstdint>
#include <limits>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "accel/backend.h"
#include "base/strong_id.h"
#include "malv/result.h"
#include "mlaas/mlp.h"

namespace malv::mlaas {

struct ModelTag {};
using ModelId = StrongId<ModelTag>;

enum class InferencePath { kAuto, kCpu, kAccelerator };

inline constexpr std::size_t kNeverAccelerate = std::numeric_limits<std::size_t>::max();

struct InferenceOptions {
  bool calibrate = true;
  std::vector<std::size_t> calibration_batches{1, 8, 64, 512, 4096};
  int calibration_runs = 3;  // best of
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

  // batch rows of input_dim floats in, batch rows of output_dim out.
  [[nodiscard]] Status infer(ModelId model, const float* in, std::size_t batch, float* out,
                             InferencePath path = InferencePath::kAuto);

  // Times both paths now (and updates the shape's cached crossover).
  [[nodiscard]] Result<Crossover> calibrate(ModelId model);
  // Accelerator from `batch` on (kNeverAccelerate: CPU only; 1: always).
  [[nodiscard]] Status set_crossover(ModelId model, std::size_t batch);

  bool has_accelerator() const { return backend_ != nullptr; }

 private:
  struct Model;

  Result<std::shared_ptr<Model>> find(ModelId id) const;
  Status upload(Model& model);
  Status run_accelerator(Model& model, const float* in, std::size_t batch, float* out);
  Result<Crossover> measure(Model& model);

  accel::Backend* backend_;
  InferenceOptions options_;
  accel::QueueId queue_;
  std::string backend_name_;

  mutable std::mutex mu_;
  std::map<std::uint64_t, std::shared_ptr<Model>> models_;
  std::map<std::string, Crossover> crossover_cache_;  // by backend + shape
  std::uint64_t next_id_ = 1;
};

}  // namespace malv::mlaas
