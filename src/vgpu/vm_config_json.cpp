#include "vgpu/vm_config_json.h"

#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <limits>

namespace malv::vgpu {
namespace {

using nlohmann::json;

constexpr std::array<std::string_view, 15> kSettings{"name",
                                                     "token",
                                                     "memory_bytes",
                                                     "virtual_memory_bytes",
                                                     "weight",
                                                     "priority",
                                                     "max_streams",
                                                     "max_handles",
                                                     "vsock_cid",
                                                     "max_sessions",
                                                     "host_memory_bytes",
                                                     "checkpoint_bytes",
                                                     "max_checkpoints",
                                                     "cpu_weight_limit",
                                                     "cpu_pid"};

// An unsigned integer field that fits T, or an error naming the field.
template <typename T>
Status read_unsigned(const json& body, const char* key, T* out) {
  if (!body.contains(key)) return ok_status();
  const json& v = body.at(key);
  if (!v.is_number_unsigned() && !(v.is_number_integer() && v.get<std::int64_t>() >= 0)) {
    return Error(ErrorCode::kInvalidArgument,
                 fmt::format("field '{}' must be a non-negative integer, got {}", key, v.dump()));
  }
  const std::uint64_t value = v.get<std::uint64_t>();
  if (value > std::numeric_limits<T>::max()) {
    return Error(ErrorCode::kInvalidArgument,
                 fmt::format("field '{}' = {} is out of range (at most {})", key, value,
                             std::numeric_limits<T>::max()));
  }
  *out = static_cast<T>(value);
  return ok_status();
}

Status read_string(const json& body, const char* key, std::string* out) {
  if (!body.contains(key)) return ok_status();
  if (!body.at(key).is_string()) {
    return Error(ErrorCode::kInvalidArgument, fmt::format("field '{}' must be a string", key));
  }
  *out = body.at(key).get<std::string>();
  return ok_status();
}

}  // namespace

Status apply_vm_fields(const json& body, VmConfig& config,
                       std::initializer_list<std::string_view> also_allowed) {
  if (!body.is_object()) return Error(ErrorCode::kInvalidArgument, "VM settings must be an object");
  for (const auto& [key, value] : body.items()) {
    const bool known = std::find(kSettings.begin(), kSettings.end(), key) != kSettings.end();
    const bool extra =
        std::find(also_allowed.begin(), also_allowed.end(), key) != also_allowed.end();
    if (!known && !extra) {
      return Error(ErrorCode::kInvalidArgument, fmt::format("unknown VM field '{}'", key));
    }
  }
  if (body.contains("name")) {
    std::string name;
    MALV_TRY(read_string(body, "name", &name));
    if (!config.name.empty() && name != config.name) {
      return Error(ErrorCode::kInvalidArgument,
                   fmt::format("a VM cannot be renamed ('{}' to '{}')", config.name, name));
    }
    config.name = name;
  }
  MALV_TRY(read_string(body, "token", &config.token));
  MALV_TRY(read_unsigned(body, "memory_bytes", &config.memory_limit));
  MALV_TRY(read_unsigned(body, "virtual_memory_bytes", &config.virtual_memory_limit));
  if (body.contains("weight")) {
    if (!body.at("weight").is_number()) {
      return Error(ErrorCode::kInvalidArgument, "field 'weight' must be a number");
    }
    config.weight = body.at("weight").get<double>();
  }
  MALV_TRY(read_unsigned(body, "max_streams", &config.max_streams));
  MALV_TRY(read_unsigned(body, "max_handles", &config.max_handles));
  MALV_TRY(read_unsigned(body, "vsock_cid", &config.vsock_cid));
  MALV_TRY(read_unsigned(body, "max_sessions", &config.max_sessions));
  MALV_TRY(read_unsigned(body, "host_memory_bytes", &config.host_memory_limit));
  MALV_TRY(read_unsigned(body, "checkpoint_bytes", &config.checkpoint_bytes_limit));
  MALV_TRY(read_unsigned(body, "max_checkpoints", &config.max_checkpoints));
  MALV_TRY(read_unsigned(body, "cpu_weight_limit", &config.cpu_weight_limit));
  MALV_TRY(read_unsigned(body, "cpu_pid", &config.cpu_pid));
  if (body.contains("priority")) {
    std::string priority;
    MALV_TRY(read_string(body, "priority", &priority));
    MALV_ASSIGN_OR_RETURN(config.priority, parse_priority_class(priority));
  }
  return ok_status();
}

json vm_settings_json(const VmConfig& c) {
  return {{"name", c.name},
          {"token", c.token},
          {"memory_bytes", c.memory_limit},
          {"virtual_memory_bytes", c.virtual_memory_limit},
          {"weight", c.weight},
          {"priority", priority_class_name(c.priority)},
          {"max_streams", c.max_streams},
          {"max_handles", c.max_handles},
          {"vsock_cid", c.vsock_cid},
          {"max_sessions", c.max_sessions},
          {"host_memory_bytes", c.host_memory_limit},
          {"checkpoint_bytes", c.checkpoint_bytes_limit},
          {"max_checkpoints", c.max_checkpoints},
          {"cpu_weight_limit", c.cpu_weight_limit},
          {"cpu_pid", c.cpu_pid}};
}

}  // namespace malv::vgpu
