// The C host-services table over the C++ feature registry and inference
// service. Every entry point turns errors into MALV_MLAAS_ERR_* codes and
// catches everything: nothing may unwind into module code.
#include "mlaas/host_services.h"

#include <span>
#include <string>
#include <vector>

#include "base/clock.h"
#include "base/log.h"
#include "mlaas/decision_deadline.h"

namespace malv::mlaas {
namespace {

int to_status(ErrorCode code) {
  switch (code) {
    case ErrorCode::kOk: return MALV_MLAAS_OK;
    case ErrorCode::kNotFound:
    case ErrorCode::kStaleHandle: return MALV_MLAAS_ERR_NOT_FOUND;
    case ErrorCode::kResourceExhausted: return MALV_MLAAS_ERR_NO_MEMORY;
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
      return to_status(
          inference->infer(ModelId{model}, in, batch, out, current_decision_deadline()));
    });
  };
  table_.model_release = [](const malv_host_services* t, malv_model model) {
    InferenceService* inference = self(t).inference_;
    if (inference == nullptr) return;
    try {
      inference->release(ModelId{model});
    } catch (...) {
    }
  };
}

}  // namespace malv::mlaas
