#include "cli/host_config.h"

#include <fmt/format.h>
#include <sys/stat.h>
#include <toml++/toml.h>
#include <unistd.h>

#include <cstdlib>

namespace malv::cli {

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

Result<vgpu::VmConfig> parse_vm(const toml::table& t, const std::string& path) {
  vgpu::VmConfig vm;
  auto name = t["name"].value<std::string>();
  if (!name)
    return Error(ErrorCode::kInvalidArgument, fmt::format("{}: a [[vm]] has no name", path));
  vm.name = *name;
  vm.token = t["token"].value_or(std::string());
  vm.memory_limit = t["memory_mib"].value_or<std::int64_t>(0) << 20;
  vm.weight = t["weight"].value_or(1.0);
  vm.max_streams = static_cast<std::uint32_t>(t["max_streams"].value_or<std::int64_t>(64));
  vm.max_handles = static_cast<std::uint32_t>(t["max_handles"].value_or<std::int64_t>(1 << 16));
  vm.gpu_policy = t["gpu_policy"].value_or(std::string("fifo"));
  vm.vsock_cid = static_cast<std::uint32_t>(t["vsock_cid"].value_or<std::int64_t>(0));
  MALV_ASSIGN_OR_RETURN(vm.priority,
                        vgpu::parse_priority_class(t["priority"].value_or(std::string("batch"))));
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
  if (const toml::table* host = root["host"].as_table()) {
    config.socket = (*host)["socket"].value_or(std::string());
    config.admin_socket = (*host)["admin_socket"].value_or(std::string());
    config.tcp = (*host)["tcp"].value_or(std::string());
    config.vsock_port = static_cast<std::uint32_t>((*host)["vsock_port"].value_or<std::int64_t>(0));
    config.backend = (*host)["backend"].value_or(std::string("auto"));
    config.memory_mib = static_cast<std::uint64_t>((*host)["memory_mib"].value_or<std::int64_t>(0));
    config.workers = static_cast<unsigned>((*host)["workers"].value_or<std::int64_t>(0));
    config.arena_mib = static_cast<std::uint64_t>((*host)["arena_mib"].value_or<std::int64_t>(64));
    config.policy_dir = (*host)["policy_dir"].value_or(std::string());
    config.checkpoint_dir = (*host)["checkpoint_dir"].value_or(std::string());
    if (const toml::array* dirs = (*host)["data_dirs"].as_array()) {
      for (const toml::node& dir : *dirs) {
        if (!dir.is_string()) {
          return Error(ErrorCode::kInvalidArgument,
                       fmt::format("{}: host.data_dirs must be a list of strings", path));
        }
        config.data_dirs.push_back(*dir.value<std::string>());
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
      config.vms.push_back(std::move(vm));
    }
  }
  return config;
}

}  // namespace malv::cli
