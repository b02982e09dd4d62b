// The C host-services table over the C++ feature registry and inference
// service. Every entry point turns errors into MALV_MLAAS_ERR_* codes and
// catches everything: nothing may unwind into module code.
#include "mlaas/host_services.h"

#include <fmt/format.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <span>
#include <string>
#include <system_error>
#include <vector>

#include "base/atomic_file.h"
#include "base/clock.h"
#include "base/log.h"
#include "mlaas/decision_deadline.h"
#include "mlaas/module_messages.h"

namespace malv::mlaas {
namespace {

int to_status(ErrorCode code) {
  switch (code) {
    case ErrorCode::kOk: return MALV_MLAAS_OK;
    case ErrorCode::kNotFound:
    case ErrorCode::kStaleHandle: return MALV_MLAAS_ERR_NOT_FOUND;
    case ErrorCode::kResourceExhausted: return MALV_MLAAS_ERR_NO_MEMORY;
    case ErrorCode::kIo: return MALV_MLAAS_ERR_IO;
    case ErrorCode::kDataLoss: return MALV_MLAAS_ERR_DIVERGED;
    case ErrorCode::kInvalidArgument:
    case ErrorCode::kOutOfRange:
    case ErrorCode::kAlreadyExists: return MALV_MLAAS_ERR_INVALID;
    default: return MALV_MLAAS_ERR_INTERNAL;
  }
}

template <typename T>
int to_status(const Result<T>& result) {
  if (result.ok()) return MALV_MLAAS_OK;
  log::debug("mlaas-module", "host service call failed: {}", result.error().to_string());
  return to_status(result.error().code());
}

template <typename F>
int guarded(F&& body) {
  try {
    return body();
  } catch (...) {
    return MALV_MLAAS_ERR_INTERNAL;
  }
}

}  // namespace

HostServices& HostServices::self(const malv_host_services* table) {
  return *static_cast<HostServices*>(table->host_context);
}

HostServices::HostServices(FeatureRegistry& features, InferenceService* inference)
    : features_(features), inference_(inference) {
  table_.abi_version = MALV_MLAAS_ABI_VERSION;
  table_.struct_size = sizeof(malv_host_services);
  table_.host_context = this;

  table_.log = [](const malv_host_services*, int level, const char* message) {
    if (message == nullptr) return;
    try {
      note_module_message(level, message);
      switch (level) {
        case MALV_LOG_TRACE: log::trace("mlaas-module", "{}", message); break;
        case MALV_LOG_DEBUG: log::debug("mlaas-module", "{}", message); break;
        case MALV_LOG_INFO: log::info("mlaas-module", "{}", message); break;
        case MALV_LOG_WARN: log::warn("mlaas-module", "{}", message); break;
        default: log::error("mlaas-module", "{}", message); break;
      }
    } catch (...) {
    }
  };
  table_.now_ns = [](const malv_host_services*) -> std::int64_t { return mono_now_ns(); };

  table_.feature_declare = [](const malv_host_services* t, const char* schema_name,
                              const char* const* names, std::size_t count, std::size_t window,
                              malv_feature_schema* out) {
    return guarded([&] {
      if (schema_name == nullptr || out == nullptr || (names == nullptr && count != 0)) {
        return MALV_MLAAS_ERR_INVALID;
      }
      std::vector<std::string> features;
      for (std::size_t i = 0; i < count; ++i) {
        if (names[i] == nullptr) return MALV_MLAAS_ERR_INVALID;
        features.emplace_back(names[i]);
      }
      auto id = self(t).features_.declare(schema_name, features, window);
      if (id.ok()) *out = id->value();
      return to_status(id);
    });
  };
  table_.feature_find = [](const malv_host_services* t, const char* schema_name,
                           malv_feature_schema* out, std::size_t* out_count) {
    return guarded([&] {
      if (schema_name == nullptr || out == nullptr) return MALV_MLAAS_ERR_INVALID;
      auto schema = self(t).features_.find(schema_name);
      if (schema.ok()) {
        *out = schema->id.value();
        if (out_count != nullptr) *out_count = schema->features.size();
      }
      return to_status(schema);
    });
  };
  table_.feature_push = [](const malv_host_services* t, malv_feature_schema schema,
                           std::uint64_t vm, const float* values, std::size_t count) {
    return guarded([&] {
      if (values == nullptr && count != 0) return MALV_MLAAS_ERR_INVALID;
      return to_status(self(t).features_.push(FeatureSchemaId{schema}, vm,
                                              std::span<const float>(values, count)));
    });
  };
  table_.feature_read = [](const malv_host_services* t, malv_feature_schema schema,
                           std::uint64_t vm, float* out, std::size_t max_rows,
                           std::size_t* out_rows) {
    return guarded([&] {
      if (out_rows == nullptr || (out == nullptr && max_rows != 0)) return MALV_MLAAS_ERR_INVALID;
      auto info = self(t).features_.schema(FeatureSchemaId{schema});
      if (!info.ok()) return to_status(info);
      auto rows = self(t).features_.read(FeatureSchemaId{schema}, vm,
                                         std::span<float>(out, max_rows * info->features.size()));
      *out_rows = rows.ok() ? *rows : 0;
      return to_status(rows);
    });
  };

  table_.model_load = [](const malv_host_services* t, const char* path, malv_model* out) {
    return guarded([&] {
      if (path == nullptr || out == nullptr) return MALV_MLAAS_ERR_INVALID;
      InferenceService* inference = self(t).inference_;
      if (inference == nullptr) return MALV_MLAAS_ERR_NOT_FOUND;
      auto model = inference->load(path);
      if (!model.ok()) {
        log::warn("mlaas-module", "model_load({}): {}", path, model.error().to_string());
      } else {
        *out = model->value();
      }
      return to_status(model);
    });
  };
  table_.model_dims = [](const malv_host_services* t, malv_model model, std::size_t* in_dim,
                         std::size_t* out_dim) {
    return guarded([&] {
      InferenceService* inference = self(t).inference_;
      if (inference == nullptr) return MALV_MLAAS_ERR_NOT_FOUND;
      auto info = inference->info(ModelId{model});
      if (info.ok()) {
        if (in_dim != nullptr) *in_dim = info->input_dim;
        if (out_dim != nullptr) *out_dim = info->output_dim;
      }
      return to_status(info);
    });
  };
  table_.model_infer = [](const malv_host_services* t, malv_model model, const float* in,
                          std::size_t batch, float* out) {
    return guarded([&] {
      InferenceService* inference = self(t).inference_;
      if (inference == nullptr) return MALV_MLAAS_ERR_NOT_FOUND;
      // Inside a guarded decide() the decision's deadline applies: no answer
      // comes after it (the module gets an error and the baseline decides).
      Status result = inference->infer(ModelId{model}, in, batch, out, current_decision_deadline());
      if (!result.ok() && result.error().code() == ErrorCode::kDeadlineExceeded) {
        note_decision_deadline_missed();
      }
      return to_status(result);
    });
  };
  table_.model_release = [](const malv_host_services* t, malv_model model) {
    InferenceService* inference = self(t).inference_;
    if (inference == nullptr) return;
    try {
      if (self(t).release_shared_model(model)) return;
      inference->release(ModelId{model});
    } catch (...) {
    }
  };
  init_model_state_calls();
}

void HostServices::set_state_dir(std::string dir) {
  std::lock_guard lock(state_mu_);
  state_dir_ = std::move(dir);
}

std::string HostServices::state_dir() const {
  std::lock_guard lock(state_mu_);
  return state_dir_;
}

Result<std::string> HostServices::model_state_path(std::string_view name) const {
  bool valid = !name.empty() && name.size() <= MALV_MODEL_STATE_NAME_MAX && name.front() != '.';
  for (char c : name) {
    const bool allowed = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
                         (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-';
    valid = valid && allowed;
  }
  if (!valid) {
    return Error(
        ErrorCode::kInvalidArgument,
        fmt::format("model state name '{}' must be 1-{} characters from [A-Za-z0-9._-], "
                    "not starting with '.'",
                    name.substr(0, 2 * MALV_MODEL_STATE_NAME_MAX), MALV_MODEL_STATE_NAME_MAX));
  }
  const std::string dir = state_dir();
  if (dir.empty()) {
    return Error(ErrorCode::kFailedPrecondition, "the host keeps no state directory");
  }
  return fmt::format("{}/models/{}.safetensors", dir, name);
}

namespace {

// The name a module passed, bounded (a string without its NUL stops here).
Result<std::string_view> state_name_arg(const char* name) {
  if (name == nullptr) return Error(ErrorCode::kInvalidArgument, "model state name is null");
  const std::size_t len = strnlen(name, MALV_MODEL_STATE_NAME_MAX + 1);
  return std::string_view(name, len);
}

}  // namespace

int HostServices::open_shared_model(std::string_view name, const char* shipped_path,
                                    malv_model* out, std::uint32_t* out_source) {
  // One open at a time: two VMs opening the name at once must share one load.
  std::lock_guard lock(shared_mu_);
  auto open = shared_.find(name);
  if (open != shared_.end()) {
    ++open->second.refs;
    *out = open->second.model;
    if (out_source != nullptr) *out_source = shared_sources_[open->second.model];
    return MALV_MLAAS_OK;
  }
  Result<std::string> path = model_state_path(name);
  if (!path.ok() && path.error().code() == ErrorCode::kInvalidArgument) {
    log::warn("mlaas-module", "model_open: {}", path.error().message());
    return MALV_MLAAS_ERR_INVALID;
  }
  std::uint32_t source = MALV_MODEL_FROM_SHIPPED;
  Result<ModelId> model = Error(ErrorCode::kNotFound, "no persisted model");
  if (path.ok()) {
    std::error_code ec;
    if (std::filesystem::exists(*path, ec)) {
      model = inference_->load(*path);
      if (model.ok()) {
        source = MALV_MODEL_FROM_STATE;
        log::info("mlaas-module", "model {}: the persisted {}", name, *path);
      } else {
        log::warn("mlaas-module", "model {}: the persisted file is not used ({}); loading {}", name,
                  model.error().to_string(), shipped_path);
      }
    }
  }
  if (!model.ok()) {
    model = inference_->load(shipped_path);
    if (!model.ok()) {
      log::warn("mlaas-module", "model_open({}): {}", name, model.error().to_string());
      return MALV_MLAAS_ERR_NOT_FOUND;
    }
  }
  shared_.emplace(std::string(name), SharedModel{model->value(), 1});
  shared_sources_[model->value()] = source;
  *out = model->value();
  if (out_source != nullptr) *out_source = source;
  return MALV_MLAAS_OK;
}

bool HostServices::release_shared_model(std::uint64_t model) {
  std::lock_guard lock(shared_mu_);
  if (!shared_sources_.contains(model)) return false;
  for (auto it = shared_.begin(); it != shared_.end(); ++it) {
    if (it->second.model != model) continue;
    if (--it->second.refs == 0) {
      shared_.erase(it);
      shared_sources_.erase(model);
      if (inference_ != nullptr) inference_->release(ModelId{model});
    }
    return true;
  }
  return true;
}

std::size_t HostServices::shared_model_refs(std::string_view name) const {
  std::lock_guard lock(shared_mu_);
  auto open = shared_.find(name);
  return open == shared_.end() ? 0 : open->second.refs;
}

void HostServices::init_model_state_calls() {
  table_.model_open = [](const malv_host_services* t, const char* state_name,
                         const char* shipped_path, malv_model* out, std::uint32_t* out_source) {
    return guarded([&] {
      if (out == nullptr || shipped_path == nullptr) return MALV_MLAAS_ERR_INVALID;
      HostServices& host = self(t);
      if (host.inference_ == nullptr) return MALV_MLAAS_ERR_NOT_FOUND;
      Result<std::string_view> name = state_name_arg(state_name);
      if (!name.ok()) return to_status(name);
      return host.open_shared_model(*name, shipped_path, out, out_source);
    });
  };
  table_.model_train = [](const malv_host_services* t, malv_model model, const float* in,
                          const float* targets, std::size_t batch, float learning_rate,
                          std::uint32_t steps, float* out_loss) {
    return guarded([&] {
      InferenceService* inference = self(t).inference_;
      if (inference == nullptr) return MALV_MLAAS_ERR_NOT_FOUND;
      auto refuse = [](std::string message) {
        log::warn("mlaas-module", "model_train: {}", message);
        return MALV_MLAAS_ERR_INVALID;
      };
      if (in == nullptr || targets == nullptr) return refuse("rows or targets are null");
      if (batch == 0 || batch > MALV_MODEL_TRAIN_MAX_ROWS) {
        return refuse(fmt::format("{} rows (1-{})", batch, MALV_MODEL_TRAIN_MAX_ROWS));
      }
      if (steps == 0 || steps > MALV_MODEL_TRAIN_MAX_STEPS) {
        return refuse(fmt::format("{} steps (1-{})", steps, MALV_MODEL_TRAIN_MAX_STEPS));
      }
      if (!std::isfinite(learning_rate) || learning_rate <= 0.0f || learning_rate > 1.0f) {
        return refuse(fmt::format("learning rate {} (within (0, 1])", learning_rate));
      }
      if (current_decision_deadline() != MonoTime::max()) {
        return refuse("called inside decide(); train from feedback() or create()");
      }
      Result<float> loss =
          inference->train(ModelId{model}, in, targets, batch, learning_rate, steps);
      if (!loss.ok()) {
        log::warn("mlaas-module", "model_train({}): {}", model, loss.error().to_string());
        return loss.error().code() == ErrorCode::kUnimplemented ? MALV_MLAAS_ERR_INVALID
                                                                : to_status(loss);
      }
      if (out_loss != nullptr) *out_loss = *loss;
      return MALV_MLAAS_OK;
    });
  };
  table_.model_save = [](const malv_host_services* t, malv_model model, const char* state_name) {
    return guarded([&] {
      HostServices& host = self(t);
      InferenceService* inference = host.inference_;
      if (inference == nullptr) return MALV_MLAAS_ERR_NOT_FOUND;
      Result<std::string_view> name = state_name_arg(state_name);
      if (!name.ok()) return to_status(name);
      Result<std::string> path = host.model_state_path(*name);
      if (!path.ok() && path.error().code() == ErrorCode::kFailedPrecondition) {
        // A host without a state directory (a bench, a test): not a fault.
        log::debug("mlaas-module", "model_save({}): {}", *name, path.error().message());
        return MALV_MLAAS_ERR_NO_STATE;
      }
      if (!path.ok()) {
        log::warn("mlaas-module", "model_save: {}", path.error().message());
        return MALV_MLAAS_ERR_INVALID;
      }
      Result<std::shared_ptr<const Mlp>> weights = inference->weights(ModelId{model});
      if (!weights.ok()) return to_status(weights);
      Result<std::vector<std::uint8_t>> bytes = encode_safetensors((*weights)->to_safetensors());
      if (!bytes.ok()) return to_status(bytes);
      std::lock_guard one_save(host.save_mu_);
      std::error_code ec;
      std::filesystem::create_directories(std::filesystem::path(*path).parent_path(), ec);
      if (ec) {
        log::warn("mlaas-module", "model_save({}): cannot create the directory of {}: {}", *name,
                  *path, ec.message());
        return MALV_MLAAS_ERR_IO;
      }
      Status written = write_file_atomically(
          *path, std::as_bytes(std::span<const std::uint8_t>(bytes->data(), bytes->size())));
      if (!written.ok()) {
        log::warn("mlaas-module", "model_save({}): {}", *name, written.error().to_string());
        return MALV_MLAAS_ERR_IO;
      }
      return MALV_MLAAS_OK;
    });
  };
}

}  // namespace malv::mlaas
