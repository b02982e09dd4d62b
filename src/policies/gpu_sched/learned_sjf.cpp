// learned-sjf (see learned_sjf.h). Built into malv_sched_basic.so against
// the C ABI only; the model lives in the host's inference service.
#include "learned_sjf.h"

#include <malv/sjf_features.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <new>
#include <vector>

#include "module_model.h"

namespace malv_sched_basic {
namespace {

constexpr const char* kStateName = "learned-sjf";
constexpr const char* kModelFile = "malv_learned_sjf.safetensors";
constexpr const char* kModelEnv = "MALV_LEARNED_SJF_MODEL";
constexpr std::size_t kTrainRows = 16;
constexpr std::uint32_t kSteps = 2;
constexpr float kLearningRate = 0.02f;
constexpr std::int64_t kSaveIntervalNs = 30'000'000'000;  // 30 s

// An object in this module, whose address dladdr() maps to its file.
const char kModuleAnchor = 0;

struct LearnedSjf {
  const malv_host_services* services = nullptr;
  malv_model model = 0;
  std::vector<float> in;       // decide(): rows of MALV_SJF_FEATURE_COUNT
  std::vector<float> out;      // decide(): one prediction per row
  std::vector<float> rows;     // feedback(): features of outcomes not trained on yet
  std::vector<float> targets;  // their malv_sjf_target(run_ns)
  std::uint64_t trained = 0;   // model_train calls since the last save
  std::int64_t saved_ns = 0;   // now_ns() of the last save (or of create)
};

void log_line(const malv_host_services* s, int level, const char* message) {
  if (s != nullptr && s->log != nullptr) s->log(s, level, message);
}

void save(LearnedSjf& sjf) {
  const malv_host_services* s = sjf.services;
  sjf.saved_ns = s->now_ns(s);
  const int status = s->model_save(s, sjf.model, kStateName);
  if (status == MALV_MLAAS_OK) {
    sjf.trained = 0;
  } else if (status != MALV_MLAAS_ERR_NO_STATE) {
    char line[96];
    std::snprintf(line, sizeof(line), "learned-sjf: saving the model failed (status %d)", status);
    log_line(s, MALV_LOG_WARN, line);
  }
}

// The model takes MALV_SJF_FEATURE_COUNT inputs and gives 1 output (logged if not).
bool fits(const malv_host_services* services, malv_model model) {
  std::size_t in_dim = 0, out_dim = 0;
  if (services->model_dims(services, model, &in_dim, &out_dim) == MALV_MLAAS_OK &&
      in_dim == MALV_SJF_FEATURE_COUNT && out_dim == 1) {
    return true;
  }
  char line[160];
  std::snprintf(line, sizeof(line),
                "learned-sjf: the model takes %zu inputs and gives %zu outputs; it must take %d "
                "and give 1",
                in_dim, out_dim, MALV_SJF_FEATURE_COUNT);
  log_line(services, MALV_LOG_ERROR, line);
  return false;
}

int create(const malv_host_services* services, const char* vm_name, void** state) {
  (void)vm_name;
  if (services == nullptr || services->struct_size < sizeof(malv_host_services) ||
      services->model_open == nullptr || services->model_train == nullptr ||
      services->model_save == nullptr || services->model_dims == nullptr ||
      services->model_load == nullptr || services->model_infer == nullptr ||
      services->model_release == nullptr || services->now_ns == nullptr) {
    return MALV_MLAAS_ERR_INVALID;
  }
  char path[4096];
  const char* shipped = std::getenv(kModelEnv);
  if (shipped == nullptr || shipped[0] == '\0') {
    if (malv_module_file_path(&kModuleAnchor, kModelFile, path, sizeof(path)) != 0) {
      return MALV_MLAAS_ERR_NOT_FOUND;
    }
    shipped = path;
  }
  auto* sjf = new (std::nothrow) LearnedSjf;
  if (sjf == nullptr) return MALV_MLAAS_ERR_NO_MEMORY;
  sjf->services = services;
  std::uint32_t source = 0;
  int status = services->model_open(services, kStateName, shipped, &sjf->model, &source);
  bool fitting = status == MALV_MLAAS_OK && fits(services, sjf->model);
  if (status == MALV_MLAAS_OK && !fitting && source == MALV_MODEL_FROM_STATE) {
    // A persisted model of another shape (an older version's): the shipped one.
    log_line(services, MALV_LOG_WARN,
             "learned-sjf: the host's persisted model does not fit; using the shipped one");
    services->model_release(services, sjf->model);
    sjf->model = 0;
    source = MALV_MODEL_FROM_SHIPPED;
    status = services->model_load(services, shipped, &sjf->model);
    fitting = status == MALV_MLAAS_OK && fits(services, sjf->model);
  }
  if (status == MALV_MLAAS_OK && !fitting) {
    services->model_release(services, sjf->model);
    status = MALV_MLAAS_ERR_INVALID;
  }
  if (status != MALV_MLAAS_OK) {
    delete sjf;
    return status;
  }
  sjf->saved_ns = services->now_ns(services);
  log_line(services, MALV_LOG_DEBUG,
           source == MALV_MODEL_FROM_STATE ? "learned-sjf: the host's persisted model"
                                           : "learned-sjf: the shipped model");
  *state = sjf;
  return MALV_MLAAS_OK;
}

void destroy(void* state) {
  auto* sjf = static_cast<LearnedSjf*>(state);
  if (sjf == nullptr) return;
  if (sjf->trained > 0) save(*sjf);
  sjf->services->model_release(sjf->services, sjf->model);
  delete sjf;
}

// What the host runs for an item as it is queued: the shared model on the
// item's features (ABI 6). Reads only what create() set.
int enqueue_inputs(void* state, const void* observation, malv_model* out_model, float* row,
                   size_t row_capacity) {
  const auto& sjf = *static_cast<const LearnedSjf*>(state);
  if (row_capacity < MALV_SJF_FEATURE_COUNT) return MALV_MLAAS_ERR_INVALID;
  malv_sjf_features(static_cast<const malv_gpu_sched_observation*>(observation), row);
  *out_model = sjf.model;
  return MALV_MLAAS_OK;
}

int decide(void* state, const void* observations, size_t n, void* decisions) {
  auto& sjf = *static_cast<LearnedSjf*>(state);
  const auto* obs = static_cast<const malv_gpu_sched_observation*>(observations);
  auto* out = static_cast<malv_gpu_sched_decision*>(decisions);
  // Predictions the host computed when the items were queued; the model
  // runs here only for items whose answer was not ready.
  std::size_t missing = 0;
  for (size_t i = 0; i < n; ++i) missing += obs[i].model_output_ready != 0 ? 0 : 1;
  try {
    sjf.in.resize(missing * MALV_SJF_FEATURE_COUNT);
    sjf.out.resize(missing);
  } catch (...) {
    return MALV_MLAAS_ERR_NO_MEMORY;
  }
  if (missing > 0) {
    std::size_t row = 0;
    for (size_t i = 0; i < n; ++i) {
      if (obs[i].model_output_ready != 0) continue;
      malv_sjf_features(&obs[i], &sjf.in[row++ * MALV_SJF_FEATURE_COUNT]);
    }
    const int status =
        sjf.services->model_infer(sjf.services, sjf.model, sjf.in.data(), missing, sjf.out.data());
    if (status != MALV_MLAAS_OK) return status;
  }
  std::size_t row = 0;
  for (size_t i = 0; i < n; ++i) {
    const float y = obs[i].model_output_ready != 0 ? obs[i].model_output : sjf.out[row++];
    const double predicted = malv_sjf_predicted_ns(y);
    if (std::isnan(predicted)) return MALV_MLAAS_ERR_INTERNAL;
    const double waited = static_cast<double>(std::max<std::int64_t>(0, obs[i].waited_ns));
    out[i].score = std::max(0.0, predicted - waited);
  }
  return MALV_MLAAS_OK;
}

void feedback(void* state, const void* outcomes, size_t n) {
  auto& sjf = *static_cast<LearnedSjf*>(state);
  const auto* done = static_cast<const malv_gpu_sched_outcome*>(outcomes);
  const malv_host_services* s = sjf.services;
  try {
    for (size_t i = 0; i < n; ++i) {
      if (done[i].run_ns <= 0) continue;
      const std::size_t at = sjf.rows.size();
      sjf.rows.resize(at + MALV_SJF_FEATURE_COUNT);
      malv_sjf_features(&done[i].item, &sjf.rows[at]);
      sjf.targets.push_back(malv_sjf_target(done[i].run_ns));
      if (sjf.targets.size() < kTrainRows) continue;
      const int status = s->model_train(s, sjf.model, sjf.rows.data(), sjf.targets.data(),
                                        sjf.targets.size(), kLearningRate, kSteps, nullptr);
      sjf.rows.clear();
      sjf.targets.clear();
      if (status != MALV_MLAAS_OK) {
        char line[96];
        std::snprintf(line, sizeof(line), "learned-sjf: training failed (status %d)", status);
        log_line(s, MALV_LOG_WARN, line);
        continue;
      }
      ++sjf.trained;
      if (s->now_ns(s) - sjf.saved_ns >= kSaveIntervalNs) save(sjf);
    }
  } catch (...) {
    sjf.rows.clear();
    sjf.targets.clear();
  }
}

}  // namespace

const malv_policy kLearnedSjfPolicy = {
    MALV_POLICY_GPU_SCHED,
    "learned-sjf",
    "shortest predicted run time first (a shipped MLP through the host's model service, "
    "learning online, kept per host); aging",
    create,
    destroy,
    decide,
    feedback,
    enqueue_inputs,
};

}  // namespace malv_sched_basic
