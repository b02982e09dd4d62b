#include "vgpu/admin_state.h"

#include <fmt/format.h>
#include <sys/stat.h>

#include <cerrno>

#include "base/atomic_file.h"
#include "base/log.h"
#include "vgpu/vm_config_json.h"

namespace malv::vgpu {
namespace {

using nlohmann::json;

constexpr int kStateVersion = 1;

// The settings where `a` and `b` differ, as "key: a -> b".
std::vector<std::string> differences(const VmConfig& a, const VmConfig& b) {
  const json ja = vm_settings_json(a);
  const json jb = vm_settings_json(b);
  std::vector<std::string> out;
  for (const auto& [key, value] : ja.items()) {
    if (key == "token") {
      if (value != jb.at(key)) out.push_back("token: (differs)");
    } else if (value != jb.at(key)) {
      out.push_back(fmt::format("{}: {} -> {}", key, value.dump(), jb.at(key).dump()));
    }
  }
  return out;
}

}  // namespace

const char* vm_origin_name(VmOrigin origin) {
  switch (origin) {
    case VmOrigin::kConfig: return "config";
    case VmOrigin::kAdmin: return "admin";
    case VmOrigin::kConfigChangedByAdmin: return "config+admin";
  }
  return "admin";
}

AdminState::AdminState(std::string dir, VmRegistry& vms, mlaas::PolicyRegistry* policies)
    : dir_(std::move(dir)), vms_(vms), policies_(policies) {}

void AdminState::note_created(const std::string& vm) {
  std::lock_guard lock(mutex_);
  deleted_config_.erase(vm);
  if (config_vms_.contains(vm)) changed_vms_.insert(vm);
}

void AdminState::note_changed(const std::string& vm) {
  std::lock_guard lock(mutex_);
  if (config_vms_.contains(vm)) changed_vms_.insert(vm);
}

void AdminState::note_deleted(const std::string& vm) {
  std::lock_guard lock(mutex_);
  if (config_vms_.contains(vm)) deleted_config_.insert(vm);
  changed_vms_.erase(vm);
}

VmOrigin AdminState::origin(const std::string& vm) const {
  std::lock_guard lock(mutex_);
  if (!config_vms_.contains(vm) || deleted_config_.contains(vm)) return VmOrigin::kAdmin;
  return changed_vms_.contains(vm) ? VmOrigin::kConfigChangedByAdmin : VmOrigin::kConfig;
}

Status AdminState::restore_vm(const json& entry, const VmConfig* from_config) {
  VmConfig config;
  MALV_TRY(apply_vm_fields(entry, config, {"policies", "allowed"}));
  if (from_config != nullptr) {
    for (const std::string& d : differences(*from_config, config)) {
      log::info("serve",
                "VM {}: the admin changed {} (config file says otherwise; the admin's "
                "setting wins)",
                config.name, d);
    }
  }
  MALV_TRY_CONTEXT(vms_.create(config), "VM " + config.name);
  if (policies_ == nullptr) return ok_status();
  if (const auto it = entry.find("policies"); it != entry.end() && it->is_object()) {
    for (const auto& [cls_name, policy] : it->items()) {
      Result<mlaas::PolicyClass> cls = mlaas::parse_policy_class(cls_name);
      if (!cls.ok() || !policy.is_string()) continue;
      if (Status s = policies_->select(config.name, cls.value(), policy.get<std::string>());
          !s.ok()) {
        log::warn("serve", "VM {}: saved {} policy {} not restored ({}); the baseline decides",
                  config.name, cls_name, policy.dump(), s.error().to_string());
      }
    }
  }
  if (const auto it = entry.find("allowed"); it != entry.end() && it->is_object()) {
    for (const auto& [cls_name, list] : it->items()) {
      Result<mlaas::PolicyClass> cls = mlaas::parse_policy_class(cls_name);
      if (!cls.ok() || !list.is_array()) continue;
      std::vector<std::string> names;
      for (const json& n : list) {
        if (n.is_string()) names.push_back(n.get<std::string>());
      }
      if (Status s = policies_->set_allow_list(config.name, cls.value(), names); !s.ok()) {
        log::warn("serve", "VM {}: saved {} allow-list not restored: {}", config.name, cls_name,
                  s.error().to_string());
      }
    }
  }
  return ok_status();
}

Status AdminState::restore(const std::vector<VmConfig>& config_vms) {
  {
    std::lock_guard lock(mutex_);
    for (const VmConfig& vm : config_vms) config_vms_.insert(vm.name);
  }
  json state = json::object();
  Result<std::vector<std::byte>> file = read_file(path());
  if (file.ok()) {
    const auto* text = reinterpret_cast<const char*>(file->data());
    state = json::parse(text, text + file->size(), nullptr, /*allow_exceptions=*/false);
    if (state.is_discarded() || !state.is_object() || !state.contains("vms") ||
        !state.at("vms").is_array()) {
      return Error(
          ErrorCode::kDataLoss,
          fmt::format("{} is not an admin state file (move it away to start afresh)", path()));
    }
    log::info("serve", "restoring the admin's state from {}", path());
  } else if (file.error().code() != ErrorCode::kNotFound) {
    return file.error();
  }
  if (const auto it = state.find("gpu_host_policy"); it != state.end() && scheduler_ != nullptr) {
    const std::optional<HostSchedPolicy> policy =
        it->is_string() ? parse_host_sched_policy(it->get<std::string>()) : std::nullopt;
    if (!policy) {
      return Error(ErrorCode::kDataLoss,
                   fmt::format("{}: gpu_host_policy {} is not fifo, fair-share or priority", path(),
                               it->dump()));
    }
    if (*policy != scheduler_->host_policy()) {
      log::info("serve", "scheduler host level {} (set by the admin; the config says {})",
                host_sched_policy_name(*policy), host_sched_policy_name(scheduler_->host_policy()));
    }
    scheduler_->set_host_policy(*policy);
    std::lock_guard lock(mutex_);
    host_policy_kept_ = true;
  }
  std::set<std::string> deleted;
  if (const auto it = state.find("deleted_config_vms"); it != state.end() && it->is_array()) {
    for (const json& n : *it) {
      if (n.is_string()) deleted.insert(n.get<std::string>());
    }
  }
  std::set<std::string> changed;
  if (const auto it = state.find("changed_config_vms"); it != state.end() && it->is_array()) {
    for (const json& n : *it) {
      if (n.is_string()) changed.insert(n.get<std::string>());
    }
  }
  std::map<std::string, const json*> saved;
  if (state.contains("vms")) {
    for (const json& entry : state.at("vms")) {
      if (!entry.is_object() || !entry.contains("name") || !entry.at("name").is_string()) {
        return Error(ErrorCode::kDataLoss, fmt::format("{}: a VM entry without a name", path()));
      }
      saved[entry.at("name").get<std::string>()] = &entry;
    }
  }
  for (const VmConfig& vm : config_vms) {
    if (deleted.contains(vm.name)) {
      log::info("serve", "VM {} is in the config file but the admin deleted it: not created",
                vm.name);
      std::lock_guard lock(mutex_);
      deleted_config_.insert(vm.name);
      continue;
    }
    auto it = saved.find(vm.name);
    if (it != saved.end()) {
      MALV_TRY_CONTEXT(restore_vm(*it->second, &vm), path());
      if (changed.contains(vm.name)) {
        std::lock_guard lock(mutex_);
        changed_vms_.insert(vm.name);
      }
      saved.erase(it);
      continue;
    }
    MALV_TRY_CONTEXT(vms_.create(vm), "VM " + vm.name);
    if (policies_ == nullptr) continue;
    if (vm.gpu_policy == "fifo" || vm.gpu_policy.empty()) {
      policies_->select_baseline(vm.name, mlaas::PolicyClass::kGpuSched);
    } else {
      MALV_TRY_CONTEXT(policies_->select(vm.name, mlaas::PolicyClass::kGpuSched, vm.gpu_policy),
                       "gpu_policy of VM " + vm.name);
    }
  }
  for (const auto& [name, entry] : saved) MALV_TRY_CONTEXT(restore_vm(*entry, nullptr), path());
  return ok_status();
}

void AdminState::note_host_policy_changed() {
  std::lock_guard lock(mutex_);
  host_policy_kept_ = true;
}

Status AdminState::save() {
  std::lock_guard writer(save_mutex_);
  json out{{"version", kStateVersion}, {"vms", json::array()}};
  for (const auto& vm : vms_.list()) {
    json entry = vm_settings_json(vm->config());
    if (policies_ != nullptr) {
      json selected = json::object();
      json allowed = json::object();
      for (mlaas::PolicyClass cls : mlaas::kAllPolicyClasses) {
        const std::string cls_name(mlaas::policy_class_name(cls));
        selected[cls_name] = policies_->selected(vm->name(), cls);
        if (auto list = policies_->allow_list(vm->name(), cls)) allowed[cls_name] = *list;
      }
      entry["policies"] = selected;
      entry["allowed"] = allowed;
    }
    out["vms"].push_back(std::move(entry));
  }
  {
    std::lock_guard lock(mutex_);
    out["deleted_config_vms"] = deleted_config_;
    out["changed_config_vms"] = changed_vms_;
    if (host_policy_kept_ && scheduler_ != nullptr) {
      out["gpu_host_policy"] = std::string(host_sched_policy_name(scheduler_->host_policy()));
    }
  }
  if (::mkdir(dir_.c_str(), 0700) != 0 && errno != EEXIST) {
    return errno_error(fmt::format("creating state directory {}", dir_), errno);
  }
  const std::string text = out.dump(2) + "\n";
  AtomicWriteOptions options;
  options.mode = 0600;
  return write_file_atomically(
      path(),
      [&](int fd) {
        return write_all(fd, std::as_bytes(std::span(text.data(), text.size())), path());
      },
      options);
}

}  // namespace malv::vgpu
