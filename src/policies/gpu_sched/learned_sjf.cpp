// learned-sjf (see learned_sjf.h). Built into malv_sched_basic.so against
// the C ABI only.
#include "learned_sjf.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <new>

namespace malv_sched_basic {
namespace {

constexpr int kKernelBuckets = 16;
constexpr int kInputs = 3 + kKernelBuckets;
constexpr int kHidden = 16;
constexpr float kLearningRate = 0.02f;
constexpr double kMinPredictionNs = 1.0;
constexpr double kMaxPredictionNs = 1e10;
constexpr float kInitialLogNs = 11.5f;  // ~1e5 ns
constexpr float kGradientClip = 5.0f;

struct Model {
  float w1[kHidden][kInputs];
  float b1[kHidden];
  float w2[kHidden];
  float b2;
  std::uint64_t trained = 0;
};

void init_model(Model& m) {
  // Deterministic small weights (a fixed LCG), so runs are reproducible.
  std::uint32_t seed = 12345u;
  auto next = [&seed] {
    seed = seed * 1664525u + 1013904223u;
    return (static_cast<float>(seed >> 8) / static_cast<float>(1u << 24)) - 0.5f;
  };
  for (auto& row : m.w1) {
    for (float& w : row) w = next() * 0.5f;
  }
  for (float& b : m.b1) b = 0.1f;
  for (float& w : m.w2) w = next() * 0.1f;
  m.b2 = kInitialLogNs;
}

void features(const malv_gpu_sched_observation& o, float x[kInputs]) {
  x[0] = static_cast<float>(std::log1p(std::max(0.0, o.est_flops)) / 20.0);
  x[1] = static_cast<float>(std::log1p(std::max(0.0, o.est_bytes)) / 20.0);
  x[2] = o.priority_class == MALV_PRIORITY_BATCH ? 1.0f : 0.0f;
  for (int i = 0; i < kKernelBuckets; ++i) x[3 + i] = 0.0f;
  x[3 + static_cast<int>(o.kernel_id % kKernelBuckets)] = 1.0f;
}

float forward(const Model& m, const float x[kInputs], float hidden[kHidden]) {
  float y = m.b2;
  for (int h = 0; h < kHidden; ++h) {
    float a = m.b1[h];
    for (int i = 0; i < kInputs; ++i) a += m.w1[h][i] * x[i];
    hidden[h] = a > 0.0f ? a : 0.0f;
    y += m.w2[h] * hidden[h];
  }
  return y;
}

void sgd_step(Model& m, const float x[kInputs], float target) {
  float hidden[kHidden];
  float y = forward(m, x, hidden);
  float g = std::clamp(y - target, -kGradientClip, kGradientClip);  // d(0.5 err^2)/dy
  for (int h = 0; h < kHidden; ++h) {
    float gh = hidden[h] > 0.0f ? g * m.w2[h] : 0.0f;
    m.w2[h] -= kLearningRate * g * hidden[h];
    m.b1[h] -= kLearningRate * gh;
    for (int i = 0; i < kInputs; ++i) m.w1[h][i] -= kLearningRate * gh * x[i];
  }
  m.b2 -= kLearningRate * g;
  ++m.trained;
}

int create(const malv_host_services* services, const char* vm_name, void** state) {
  (void)vm_name;
  auto* model = new (std::nothrow) Model;
  if (model == nullptr) return MALV_MLAAS_ERR_NO_MEMORY;
  init_model(*model);
  *state = model;
  if (services != nullptr && services->log != nullptr) {
    services->log(services, MALV_LOG_DEBUG, "learned-sjf: new run-time model");
  }
  return MALV_MLAAS_OK;
}

void destroy(void* state) { delete static_cast<Model*>(state); }

int decide(void* state, const void* observations, size_t n, void* decisions) {
  const auto& model = *static_cast<const Model*>(state);
  const auto* obs = static_cast<const malv_gpu_sched_observation*>(observations);
  auto* out = static_cast<malv_gpu_sched_decision*>(decisions);
  for (size_t i = 0; i < n; ++i) {
    float x[kInputs];
    float hidden[kHidden];
    features(obs[i], x);
    double log_ns = forward(model, x, hidden);
    double predicted = std::exp(std::clamp(log_ns, 0.0, 23.0));
    predicted = std::clamp(predicted, kMinPredictionNs, kMaxPredictionNs);
    out[i].score = predicted - static_cast<double>(std::max<int64_t>(0, obs[i].waited_ns));
  }
  return MALV_MLAAS_OK;
}

void feedback(void* state, const void* outcomes, size_t n) {
  auto& model = *static_cast<Model*>(state);
  const auto* done = static_cast<const malv_gpu_sched_outcome*>(outcomes);
  for (size_t i = 0; i < n; ++i) {
    if (done[i].run_ns <= 0) continue;
    float x[kInputs];
    features(done[i].item, x);
    sgd_step(model, x, static_cast<float>(std::log(static_cast<double>(done[i].run_ns))));
  }
}

}  // namespace

const malv_policy kLearnedSjfPolicy = {
    MALV_POLICY_GPU_SCHED,
    "learned-sjf",
    "shortest predicted run time first; MLP trained online from feedback; aging",
    create,
    destroy,
    decide,
    feedback,
};

}  // namespace malv_sched_basic
