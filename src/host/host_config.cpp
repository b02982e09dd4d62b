#include "host/host_config.h"

#include <fmt/format.h>
#include <sys/stat.h>
#include <toml++/toml.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <initializer_list>
#include <iterator>

#include "base/text_parse.h"
#include "cpu_control/cpu_list.h"
#include "ipc/ivshmem_layout.h"

namespace malv::host {

std::string default_runtime_dir() {
  std::string dir;
  if (const char* xdg = std::getenv("XDG_RUNTIME_DIR"); xdg && *xdg) {
    dir = std::string(xdg) + "/malv";
  } else if (::geteuid() == 0) {
    dir = "/run/malv";
  } else {
    dir = fmt::format("/tmp/malv-{}", ::geteuid());
  }
  ::mkdir(dir.c_str(), 0700);
  return dir;
}

namespace {

// An integer key that must fit where it goes: absent gives fallback; a
// value of another type or outside [low, high] is an error naming the key
// (a cast would wrap -1 or 2^32 into something else without a word).
template <typename T>
Result<T> integer(const toml::table& t, std::string_view key, std::int64_t fallback,
                  std::int64_t low, std::int64_t high, const std::string& where) {
  const toml::node* node = t.get(key);
  if (node == nullptr) return static_cast<T>(fallback);
  std::optional<std::int64_t> value = node->value_exact<std::int64_t>();
  if (!value || *value < low || *value > high) {
    return Error(ErrorCode::kInvalidArgument,
                 fmt::format("{}.{} must be an integer from {} to {}", where, key, low, high));
  }
  return static_cast<T>(*value);  // in [low, high], which fits T
}

constexpr std::int64_t kMaxU32 = 0xffffffffll;
constexpr std::int64_t kMaxMib = static_cast<std::int64_t>(kMaxMemoryMib);

// A key the loader does not know is a typo that would otherwise be ignored
// without a word (a `memory_mb` that leaves the VM without a quota).
Status refuse_unknown_keys(const toml::table& t, std::initializer_list<std::string_view> known,
                           const std::string& where) {
  for (const auto& [key, value] : t) {
    if (std::find(known.begin(), known.end(), key.str()) == known.end()) {
      std::string list;
      for (std::string_view k : known) list += (list.empty() ? "" : ", ") + std::string(k);
      return Error(ErrorCode::kInvalidArgument,
                   fmt::format("{}: unknown key '{}' (known: {})", where, key.str(), list));
    }
  }
  return ok_status();
}

Result<vgpu::VmConfig> parse_vm(const toml::table& t, const std::string& path) {
  vgpu::VmConfig vm;
  auto name = t["name"].value<std::string>();
  if (!name)
    return Error(ErrorCode::kInvalidArgument, fmt::format("{}: a [[vm]] has no name", path));
  vm.name = *name;
  vm.token = t["token"].value_or(std::string());
  const std::string where = path + ": vm " + vm.name;
  MALV_TRY(refuse_unknown_keys(
      t,
      {"name", "token", "memory_mib", "virtual_memory_mib", "weight", "max_streams", "max_handles",
       "gpu_policy", "vsock_cid", "max_sessions", "host_memory_mib", "checkpoint_mib",
       "max_checkpoints", "priority", "cpu_weight_limit", "cpu_pid", "ivshmem", "ivshmem_socket"},
      where));
  MALV_ASSIGN_OR_RETURN(vm.memory_limit,
                        integer<std::uint64_t>(t, "memory_mib", 0, 0, kMaxMib, where));
  vm.memory_limit <<= 20;
  MALV_ASSIGN_OR_RETURN(vm.virtual_memory_limit,
                        integer<std::uint64_t>(t, "virtual_memory_mib", 0, 0, kMaxMib, where));
  vm.virtual_memory_limit <<= 20;
  vm.weight = t["weight"].value_or(1.0);
  MALV_ASSIGN_OR_RETURN(vm.max_streams,
                        integer<std::uint32_t>(t, "max_streams", 64, 1, kMaxU32, where));
  MALV_ASSIGN_OR_RETURN(vm.max_handles,
                        integer<std::uint32_t>(t, "max_handles", 1 << 16, 1, kMaxU32, where));
  vm.gpu_policy = t["gpu_policy"].value_or(std::string("fifo"));
  MALV_ASSIGN_OR_RETURN(vm.vsock_cid, integer<std::uint32_t>(t, "vsock_cid", 0, 0, kMaxU32, where));
  MALV_ASSIGN_OR_RETURN(vm.max_sessions, integer<std::uint32_t>(t, "max_sessions", vm.max_sessions,
                                                                0, kMaxU32, where));
  MALV_ASSIGN_OR_RETURN(
      vm.host_memory_limit,
      integer<std::uint64_t>(t, "host_memory_mib", vm.host_memory_limit >> 20, 0, kMaxMib, where));
  vm.host_memory_limit <<= 20;
  MALV_ASSIGN_OR_RETURN(vm.checkpoint_bytes_limit,
                        integer<std::uint64_t>(t, "checkpoint_mib", vm.checkpoint_bytes_limit >> 20,
                                               0, kMaxMib, where));
  vm.checkpoint_bytes_limit <<= 20;
  MALV_ASSIGN_OR_RETURN(
      vm.max_checkpoints,
      integer<std::uint32_t>(t, "max_checkpoints", vm.max_checkpoints, 0, kMaxU32, where));
  MALV_ASSIGN_OR_RETURN(vm.cpu_weight_limit,
                        integer<std::uint32_t>(t, "cpu_weight_limit", vm.cpu_weight_limit,
                                               MALV_CPU_WEIGHT_MIN, MALV_CPU_WEIGHT_MAX, where));
  MALV_ASSIGN_OR_RETURN(vm.cpu_pid, integer<std::uint32_t>(t, "cpu_pid", 0, 0, kMaxU32, where));
  Result<vgpu::PriorityClass> priority =
      vgpu::parse_priority_class(t["priority"].value_or(std::string("batch")));
  if (!priority.ok()) {
    return Error(ErrorCode::kInvalidArgument,
                 fmt::format("{}.priority: {}", where, priority.error().message()));
  }
  vm.priority = priority.value();
  return vm;
}

}  // namespace

Result<HostConfig> load_host_config(const std::string& path) {
  toml::table root;
  try {
    root = toml::parse_file(path);
  } catch (const toml::parse_error& e) {
    return Error(ErrorCode::kInvalidArgument,
                 fmt::format("{}:{}:{}: {}", path, e.source().begin.line, e.source().begin.column,
                             e.description()));
  }
  HostConfig config;
  MALV_TRY(refuse_unknown_keys(root, {"host", "vm"}, path));
  if (const toml::table* host = root["host"].as_table()) {
    config.socket = (*host)["socket"].value_or(std::string());
    config.admin_socket = (*host)["admin_socket"].value_or(std::string());
    config.tcp = (*host)["tcp"].value_or(std::string());
    const std::string where = path + ": host";
    MALV_TRY(refuse_unknown_keys(*host,
                                 {"socket",
                                  "admin_socket",
                                  "tcp",
                                  "vsock_port",
                                  "backend",
                                  "memory_mib",
                                  "workers",
                                  "arena_mib",
                                  "hello_timeout_ms",
                                  "max_pending_per_peer",
                                  "max_pending",
                                  "policy_dir",
                                  "checkpoint_dir",
                                  "state_dir",
                                  "shutdown_grace_ms",
                                  "spill_link_gbps",
                                  "memory_trace_dir",
                                  "memory_prefetch",
                                  "memory_lending",
                                  "cpu_control",
                                  "cpu_interval_ms",
                                  "cpu_mechanism",
                                  "cpu_allowed_pid_uids",
                                  "host_cpus",
                                  "data_dirs",
                                  "ivshmem_slots",
                                  "ivshmem_arena_mib",
                                  "gpu_host_policy",
                                  "aten_denied"},
                                 where));
    MALV_ASSIGN_OR_RETURN(config.vsock_port,
                          integer<std::uint32_t>(*host, "vsock_port", 0, 0, kMaxU32, where));
    config.backend = (*host)["backend"].value_or(std::string("auto"));
    MALV_ASSIGN_OR_RETURN(config.memory_mib,
                          integer<std::uint64_t>(*host, "memory_mib", 0, 0, kMaxMib, where));
    MALV_ASSIGN_OR_RETURN(config.workers,
                          integer<unsigned>(*host, "workers", 0, 0, kMaxWorkers, where));
    MALV_ASSIGN_OR_RETURN(config.arena_mib,
                          integer<std::uint64_t>(*host, "arena_mib", 64, 1, kMaxArenaMib, where));
    MALV_ASSIGN_OR_RETURN(
        config.ivshmem_slots,
        integer<std::uint32_t>(*host, "ivshmem_slots", 4, 1, ipc::kIvshmemMaxSlots, where));
    MALV_ASSIGN_OR_RETURN(config.ivshmem_arena_mib,
                          integer<std::uint64_t>(*host, "ivshmem_arena_mib", 16, 1, 256, where));
    MALV_ASSIGN_OR_RETURN(config.hello_timeout_ms, integer<std::uint64_t>(*host, "hello_timeout_ms",
                                                                          5000, 1, 600000, where));
    MALV_ASSIGN_OR_RETURN(
        config.max_pending_per_peer,
        integer<std::uint32_t>(*host, "max_pending_per_peer", 8, 1, 65536, where));
    MALV_ASSIGN_OR_RETURN(config.max_pending,
                          integer<std::uint32_t>(*host, "max_pending", 64, 1, 65536, where));
    config.policy_dir = (*host)["policy_dir"].value_or(std::string());
    config.checkpoint_dir = (*host)["checkpoint_dir"].value_or(std::string());
    config.state_dir = (*host)["state_dir"].value_or(std::string());
    config.memory_trace_dir = (*host)["memory_trace_dir"].value_or(std::string());
    MALV_ASSIGN_OR_RETURN(config.shutdown_grace_ms,
                          integer<std::uint64_t>(*host, "shutdown_grace_ms",
                                                 config.shutdown_grace_ms, 0, 600000, where));
    if (const toml::node* link = host->get("spill_link_gbps")) {
      std::optional<double> gbps = link->value<double>();
      if (!gbps || !(*gbps >= 0.0) || *gbps > 1e6) {
        return Error(ErrorCode::kInvalidArgument,
                     fmt::format("{}.spill_link_gbps must be a number from 0 to 1e6", where));
      }
      config.spill_link_gbps = *gbps;
    }
    if (const toml::node* prefetch = host->get("memory_prefetch")) {
      std::optional<bool> on = prefetch->value<bool>();
      if (!on || !prefetch->is_boolean()) {
        return Error(ErrorCode::kInvalidArgument,
                     fmt::format("{}.memory_prefetch must be true or false", where));
      }
      config.memory_prefetch = *on;
    }
    if (const toml::node* lending = host->get("memory_lending")) {
      std::optional<bool> on = lending->value<bool>();
      if (!on || !lending->is_boolean()) {
        return Error(ErrorCode::kInvalidArgument,
                     fmt::format("{}.memory_lending must be true or false", where));
      }
      config.memory_lending = *on;
    }
    if (const toml::node* cpu = host->get("cpu_control")) {
      std::optional<bool> on = cpu->value<bool>();
      if (!on || !cpu->is_boolean()) {
        return Error(ErrorCode::kInvalidArgument,
                     fmt::format("{}.cpu_control must be true or false", where));
      }
      config.cpu_control = *on;
    }
    MALV_ASSIGN_OR_RETURN(
        config.cpu_interval_ms,
        integer<std::uint64_t>(*host, "cpu_interval_ms", config.cpu_interval_ms, 1, 60000, where));
    if (const toml::node* level = host->get("gpu_host_policy")) {
      const std::optional<std::string> name = level->value<std::string>();
      const std::optional<vgpu::HostSchedPolicy> policy =
          name && level->is_string() ? vgpu::parse_host_sched_policy(*name) : std::nullopt;
      if (!policy) {
        return Error(ErrorCode::kInvalidArgument,
                     fmt::format("{}.gpu_host_policy must be priority, fair-share or fifo", where));
      }
      config.gpu_host_policy = *policy;
    }
    config.cpu_mechanism = (*host)["cpu_mechanism"].value_or(std::string("auto"));
    if (config.cpu_mechanism != "auto" && config.cpu_mechanism != "cgroup-v2" &&
        config.cpu_mechanism != "cgroup-v1" && config.cpu_mechanism != "thread-fallback") {
      return Error(ErrorCode::kInvalidArgument,
                   fmt::format("{}.cpu_mechanism must be auto, cgroup-v2, cgroup-v1 or "
                               "thread-fallback, not '{}'",
                               where, config.cpu_mechanism));
    }
    if (const toml::node* cpus = host->get("host_cpus")) {
      if (!cpus->is_string()) {
        return Error(
            ErrorCode::kInvalidArgument,
            fmt::format("{}.host_cpus must be a CPU list as a string (\"3\", \"2-3\")", where));
      }
      config.host_cpus = cpus->value_or(std::string());
    }
    if (const toml::array* uids = (*host)["cpu_allowed_pid_uids"].as_array()) {
      for (const toml::node& uid : *uids) {
        std::optional<std::int64_t> v = uid.value<std::int64_t>();
        if (!uid.is_integer() || !v || *v < 0 || *v > kMaxU32) {
          return Error(ErrorCode::kInvalidArgument,
                       fmt::format("{}.cpu_allowed_pid_uids must be a list of user ids", where));
        }
        config.cpu_allowed_pid_uids.push_back(static_cast<std::uint32_t>(*v));
      }
    }
    if (const toml::array* dirs = (*host)["data_dirs"].as_array()) {
      for (const toml::node& dir : *dirs) {
        if (!dir.is_string()) {
          return Error(ErrorCode::kInvalidArgument,
                       fmt::format("{}: host.data_dirs must be a list of strings", path));
        }
        config.data_dirs.push_back(*dir.value<std::string>());
      }
    }
    if (const toml::array* denied = (*host)["aten_denied"].as_array()) {
      for (const toml::node& name : *denied) {
        if (!name.is_string() || name.value<std::string>()->empty()) {
          return Error(ErrorCode::kInvalidArgument,
                       fmt::format("{}: host.aten_denied must be a list of non-empty strings "
                                   "(PyTorch operator names, e.g. \"aten::cumsum\")",
                                   path));
        }
        config.aten_denied.push_back(*name.value<std::string>());
      }
    }
  }
  if (const toml::array* vms = root["vm"].as_array()) {
    for (const toml::node& node : *vms) {
      const toml::table* t = node.as_table();
      if (t == nullptr) {
        return Error(ErrorCode::kInvalidArgument, fmt::format("{}: [[vm]] must be tables", path));
      }
      MALV_ASSIGN_OR_RETURN(vgpu::VmConfig vm, parse_vm(*t, path));
      const std::optional<std::string> socket = (*t)["ivshmem_socket"].value<std::string>();
      const std::optional<bool> ivshmem = (*t)["ivshmem"].value<bool>();
      if ((*t)["ivshmem"] && (!ivshmem || !(*t)["ivshmem"].is_boolean())) {
        return Error(ErrorCode::kInvalidArgument,
                     fmt::format("{}: vm {}: ivshmem must be true or false", path, vm.name));
      }
      if ((*t)["ivshmem_socket"] &&
          (!socket || socket->empty() || !(*t)["ivshmem_socket"].is_string())) {
        return Error(ErrorCode::kInvalidArgument,
                     fmt::format("{}: vm {}: ivshmem_socket must be a path", path, vm.name));
      }
      if (socket || ivshmem.value_or(false)) {
        config.ivshmem_sockets[vm.name] = socket.value_or(std::string());
      }
      config.vms.push_back(std::move(vm));
    }
  }
  return config;
}

Status check_host_config(const HostConfig& config) {
  if (!config.tcp.empty()) {
    Result<HostPort> tcp = parse_host_port(config.tcp, /*allow_port_zero=*/true);
    if (!tcp.ok()) {
      return Error(ErrorCode::kInvalidArgument, "tcp (--tcp): " + tcp.error().message());
    }
  }
  if (config.memory_mib > kMaxMemoryMib) {
    return Error(ErrorCode::kInvalidArgument,
                 fmt::format("memory_mib (--memory-mib) {} is out of range: 0 to {}",
                             config.memory_mib, kMaxMemoryMib));
  }
  if (config.workers > kMaxWorkers) {
    return Error(ErrorCode::kInvalidArgument,
                 fmt::format("workers (--workers) {} is out of range: 0 to {}", config.workers,
                             kMaxWorkers));
  }
  if (config.arena_mib < 1 || config.arena_mib > kMaxArenaMib) {
    return Error(ErrorCode::kInvalidArgument,
                 fmt::format("arena_mib (--arena-mib) {} is out of range: 1 to {}",
                             config.arena_mib, kMaxArenaMib));
  }
  if (!config.host_cpus.empty()) {
    Result<std::vector<int>> cpus = host_cpu_list(config.host_cpus);
    if (!cpus.ok()) {
      return Error(cpus.error().code(), "host_cpus (--host-cpus): " + cpus.error().message());
    }
  }
  return ok_status();
}

Result<std::vector<int>> host_cpu_list(const std::string& text) {
  MALV_ASSIGN_OR_RETURN(std::vector<int> cpus, cpu_control::parse_cpu_list(text));
  if (cpus.empty()) {
    return Error(ErrorCode::kInvalidArgument, fmt::format("'{}' names no CPU", text));
  }
  MALV_ASSIGN_OR_RETURN(const std::vector<int> allowed, cpu_control::thread_affinity(0));
  std::vector<int> missing;
  std::set_difference(cpus.begin(), cpus.end(), allowed.begin(), allowed.end(),
                      std::back_inserter(missing));
  if (!missing.empty()) {
    return Error(
        ErrorCode::kInvalidArgument,
        fmt::format("CPUs {} are not among those this host may run on ({})",
                    cpu_control::format_cpu_list(missing), cpu_control::format_cpu_list(allowed)));
  }
  return cpus;
}

}  // namespace malv::host
