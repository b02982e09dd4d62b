// Module table, per-VM selections and allow-lists (see policy_registry.h).
#include "mlaas/policy_registry.h"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <atomic>
#include <filesystem>

#include "base/log.h"
#include "mlaas/baselines.h"
#include "mlaas/module_messages.h"

namespace malv::mlaas {

std::uint64_t PolicyInstance::next_serial() {
  static std::atomic<std::uint64_t> last{0};
  return last.fetch_add(1, std::memory_order_relaxed) + 1;
}

PolicyInstance::~PolicyInstance() {
  if (policy_ != nullptr) policy_->destroy(state_);
}

std::string PolicyInstance::qualified_name() const {
  return fmt::format("{}/{}", module_name(), policy_name());
}

bool PolicyInstance::is_baseline() const { return module_name() == kBuiltinModuleName; }

PolicyRegistry::PolicyRegistry(const malv_host_services* services)
    : services_(services), builtin_(ModuleLoader::wrap_builtin(builtin_module())) {
  for (PolicyClass cls : kAllPolicyClasses) {
    baselines_[slot(cls)] =
        std::make_shared<PolicyInstance>(builtin_, &baseline_policy(cls), nullptr);
  }
}

PolicyRegistry::~PolicyRegistry() {
  // Instances first: their destroy() lives in the modules' code.
  vms_.clear();
  modules_.clear();
}

Result<ModuleInfo> PolicyRegistry::load_module(const std::string& path) {
  MALV_ASSIGN_OR_RETURN(std::shared_ptr<LoadedModule> module, ModuleLoader::open(path));
  std::lock_guard lock(mu_);
  std::string name(module->name());
  if (name == kBuiltinModuleName) {
    return Error(ErrorCode::kAlreadyExists,
                 fmt::format("module {}: the name 'builtin' is reserved for the baselines", path));
  }
  if (auto it = modules_.find(name); it != modules_.end()) {
    return Error(ErrorCode::kAlreadyExists,
                 fmt::format("module {}: a module named '{}' is already loaded from {}", path, name,
                             it->second->path()));
  }
  modules_.emplace(name, module);
  log::info("mlaas", "loaded module {} {} from {} ({} policies)", name, module->version(), path,
            module->descriptor().policy_count);
  return describe_locked(*module);
}

Result<std::vector<ModuleInfo>> PolicyRegistry::load_directory(const std::string& dir) {
  std::error_code ec;
  std::vector<std::string> paths;
  for (const auto& entry : std::filesystem::directory_iterator(dir, ec)) {
    if (entry.path().extension() == ".so") paths.push_back(entry.path().string());
  }
  if (ec) {
    return Error(ErrorCode::kNotFound, fmt::format("policy directory {}: {}", dir, ec.message()));
  }
  std::sort(paths.begin(), paths.end());
  std::vector<ModuleInfo> loaded;
  for (const std::string& path : paths) {
    MALV_ASSIGN_OR_RETURN(ModuleInfo info, load_module(path));
    loaded.push_back(std::move(info));
  }
  return loaded;
}

Status PolicyRegistry::unload_module(std::string_view name, UnloadMode mode) {
  std::vector<std::shared_ptr<PolicyInstance>> dropped;  // destroyed after the lock
  std::shared_ptr<LoadedModule> module;
  {
    std::lock_guard lock(mu_);
    auto it = modules_.find(name);
    if (it == modules_.end()) {
      if (name == kBuiltinModuleName) {
        return Error(ErrorCode::kPermissionDenied, "the built-in baselines cannot be unloaded");
      }
      return Error(ErrorCode::kNotFound, fmt::format("no module named '{}' is loaded", name));
    }
    std::vector<std::string> users = vms_using_locked(name);
    if (!users.empty() && mode != UnloadMode::kForce) {
      return Error(ErrorCode::kFailedPrecondition,
                   fmt::format("module '{}' is in use by VM(s) {}; select another policy for "
                               "them first, or force the unload (moves them to the baseline)",
                               name, fmt::join(users, ", ")));
    }
    for (auto& [vm, entry] : vms_) {
      for (auto& instance : entry.selected) {
        if (instance && instance->module_name() == name) {
          log::warn("mlaas", "VM {}: {} unloaded by force, back to the {} baseline", vm,
                    instance->qualified_name(),
                    policy_class_name(static_cast<PolicyClass>(instance->policy().policy_class)));
          dropped.push_back(std::move(instance));
        }
      }
    }
    module = std::move(it->second);
    modules_.erase(it);
  }
  log::info("mlaas", "unloaded module {}", module->name());
  dropped.clear();
  return ok_status();
}

namespace {

// gpu_sched's `priority` became the scheduler's host level in ABI 5: a VM
// that still asks for it is told where it went.
std::string host_level_hint(PolicyClass cls, std::string_view policy_name) {
  if (cls != PolicyClass::kGpuSched || policy_name != "priority") return {};
  return " (priority is the vGPU scheduler's host level since MLaaS ABI 5, the admin's "
         "choice: [host] gpu_host_policy, PUT /scheduler, `malv policy host priority`)";
}

}  // namespace

Result<std::pair<std::shared_ptr<LoadedModule>, const malv_policy*>> PolicyRegistry::resolve_locked(
    PolicyClass cls, std::string_view name) const {
  auto matches_class = [&](const malv_policy* p) {
    return p != nullptr && p->policy_class == static_cast<std::uint32_t>(cls);
  };
  if (auto slash = name.find('/'); slash != std::string_view::npos) {
    std::string_view module_name = name.substr(0, slash);
    std::string_view policy_name = name.substr(slash + 1);
    std::shared_ptr<LoadedModule> module;
    if (module_name == kBuiltinModuleName) {
      module = builtin_;
    } else if (auto it = modules_.find(module_name); it != modules_.end()) {
      module = it->second;
    } else {
      return Error(ErrorCode::kNotFound,
                   fmt::format("no module named '{}' is loaded", module_name));
    }
    const malv_policy* policy = module->find_policy(policy_name);
    if (policy == nullptr) {
      return Error(ErrorCode::kNotFound,
                   fmt::format("module '{}' has no policy '{}'{}", module_name, policy_name,
                               host_level_hint(cls, policy_name)));
    }
    if (!matches_class(policy)) {
      return Error(ErrorCode::kInvalidArgument,
                   fmt::format("policy '{}' is a {} policy, not {}", name,
                               policy_class_name(static_cast<PolicyClass>(policy->policy_class)),
                               policy_class_name(cls)));
    }
    return std::make_pair(module, policy);
  }
  std::vector<std::pair<std::shared_ptr<LoadedModule>, const malv_policy*>> found;
  auto consider = [&](const std::shared_ptr<LoadedModule>& module) {
    const malv_policy* p = module->find_policy(name);
    if (matches_class(p)) found.emplace_back(module, p);
  };
  consider(builtin_);
  for (const auto& [module_name, module] : modules_) consider(module);
  if (found.empty()) {
    return Error(ErrorCode::kNotFound,
                 fmt::format("no loaded {} policy is named '{}'{}", policy_class_name(cls), name,
                             host_level_hint(cls, name)));
  }
  if (found.size() > 1) {
    std::vector<std::string> names;
    for (const auto& [module, policy] : found)
      names.push_back(fmt::format("{}/{}", module->name(), name));
    return Error(ErrorCode::kInvalidArgument,
                 fmt::format("'{}' is ambiguous; name one of {}", name, fmt::join(names, ", ")));
  }
  return found.front();
}

Status PolicyRegistry::select(std::string_view vm, PolicyClass cls, std::string_view name,
                              Requester who) {
  std::shared_ptr<LoadedModule> module;
  const malv_policy* policy = nullptr;
  {
    std::lock_guard lock(mu_);
    MALV_ASSIGN_OR_RETURN(auto resolved, resolve_locked(cls, name));
    module = std::move(resolved.first);
    policy = resolved.second;
    std::string qualified = fmt::format("{}/{}", module->name(), policy->name);
    if (who == Requester::kGuest && module != builtin_) {
      auto it = vms_.find(vm);
      const auto* allowed = it == vms_.end() ? nullptr : &it->second.allowed[slot(cls)];
      if (allowed != nullptr && allowed->has_value() && !(*allowed)->contains(qualified)) {
        return Error(ErrorCode::kPermissionDenied,
                     fmt::format("VM {} may not select {} policy {}: not on its allow-list", vm,
                                 policy_class_name(cls), qualified));
      }
    }
    if (auto it = vms_.find(vm); it != vms_.end()) {
      const auto& instance = it->second.selected[slot(cls)];
      if (instance && instance->qualified_name() == qualified) {
        return ok_status();  // already selected: keep its state (what it learned)
      }
    }
  }
  std::shared_ptr<PolicyInstance> previous;
  if (module == builtin_) {
    std::lock_guard lock(mu_);
    auto it = vms_.find(vm);
    if (it != vms_.end()) previous = std::move(it->second.selected[slot(cls)]);
    return ok_status();
  }
  // create() may call host services (load a model): not under mu_.
  void* state = nullptr;
  std::string vm_name(vm);
  int status = MALV_MLAAS_ERR_INTERNAL;
  ModuleMessageCapture said;
  try {
    status = policy->create(services_, vm_name.c_str(), &state);
  } catch (...) {
    status = MALV_MLAAS_ERR_INTERNAL;
  }
  if (status != MALV_MLAAS_OK) {
    return Error(status == MALV_MLAAS_ERR_NOT_FOUND ? ErrorCode::kNotFound : ErrorCode::kInternal,
                 fmt::format("VM {}: {}/{} create() failed: {}{}", vm, module->name(), policy->name,
                             module_status_text(status),
                             said.last().empty() ? std::string() : ": " + said.last()));
  }
  auto instance = std::make_shared<PolicyInstance>(module, policy, state);
  std::lock_guard lock(mu_);
  if (!modules_.contains(module->name())) {
    return Error(
        ErrorCode::kAborted,
        fmt::format("module '{}' was unloaded while VM {} selected it", module->name(), vm));
  }
  VmEntry& entry = vms_[vm_name];
  previous = std::move(entry.selected[slot(cls)]);
  entry.selected[slot(cls)] = std::move(instance);
  log::info("mlaas", "VM {}: {} policy is now {}/{}", vm, policy_class_name(cls), module->name(),
            policy->name);
  // `previous` is destroyed after the lock goes (declared before it).
  return ok_status();
}

void PolicyRegistry::select_baseline(std::string_view vm, PolicyClass cls) {
  std::shared_ptr<PolicyInstance> previous;
  std::lock_guard lock(mu_);
  if (auto it = vms_.find(vm); it != vms_.end())
    previous = std::move(it->second.selected[slot(cls)]);
}

std::string PolicyRegistry::selected(std::string_view vm, PolicyClass cls) const {
  return current(vm, cls)->qualified_name();
}

Status PolicyRegistry::set_allow_list(std::string_view vm, PolicyClass cls,
                                      const std::vector<std::string>& policies) {
  std::lock_guard lock(mu_);
  std::set<std::string, std::less<>> allowed;
  for (const std::string& name : policies) {
    MALV_ASSIGN_OR_RETURN(auto resolved, resolve_locked(cls, name));
    allowed.insert(fmt::format("{}/{}", resolved.first->name(), resolved.second->name));
  }
  vms_[std::string(vm)].allowed[slot(cls)] = std::move(allowed);
  return ok_status();
}

void PolicyRegistry::clear_allow_list(std::string_view vm, PolicyClass cls) {
  std::lock_guard lock(mu_);
  if (auto it = vms_.find(vm); it != vms_.end()) it->second.allowed[slot(cls)].reset();
}

std::optional<std::vector<std::string>> PolicyRegistry::allow_list(std::string_view vm,
                                                                   PolicyClass cls) const {
  std::lock_guard lock(mu_);
  auto it = vms_.find(vm);
  if (it == vms_.end() || !it->second.allowed[slot(cls)]) return std::nullopt;
  const auto& set = *it->second.allowed[slot(cls)];
  return std::vector<std::string>(set.begin(), set.end());
}

std::shared_ptr<PolicyInstance> PolicyRegistry::current(std::string_view vm,
                                                        PolicyClass cls) const {
  std::lock_guard lock(mu_);
  auto it = vms_.find(vm);
  if (it != vms_.end() && it->second.selected[slot(cls)]) return it->second.selected[slot(cls)];
  return baselines_[slot(cls)];
}

bool PolicyRegistry::revert_if_current(std::string_view vm, PolicyClass cls,
                                       const PolicyInstance* instance) {
  std::shared_ptr<PolicyInstance> previous;
  std::lock_guard lock(mu_);
  auto it = vms_.find(vm);
  if (it == vms_.end() || it->second.selected[slot(cls)].get() != instance || instance == nullptr) {
    return false;
  }
  previous = std::move(it->second.selected[slot(cls)]);
  return true;
}

void PolicyRegistry::remove_vm(std::string_view vm) {
  std::optional<VmEntry> gone;
  std::lock_guard lock(mu_);
  if (auto it = vms_.find(vm); it != vms_.end()) {
    gone = std::move(it->second);
    vms_.erase(it);
  }
}

std::vector<std::string> PolicyRegistry::vms_using_locked(std::string_view module) const {
  std::vector<std::string> users;
  for (const auto& [vm, entry] : vms_) {
    for (const auto& instance : entry.selected) {
      if (instance && instance->module_name() == module) {
        users.push_back(vm);
        break;
      }
    }
  }
  return users;  // vms_ is ordered, so sorted
}

std::vector<std::string> PolicyRegistry::vms_using(std::string_view module) const {
  std::lock_guard lock(mu_);
  return vms_using_locked(module);
}

ModuleInfo PolicyRegistry::describe_locked(const LoadedModule& module) const {
  ModuleInfo info{std::string(module.name()), std::string(module.version()), module.path(), {}};
  const malv_mlaas_module& d = module.descriptor();
  for (std::uint32_t i = 0; i < d.policy_count; ++i) {
    const malv_policy& p = d.policies[i];
    PolicyInfo policy{info.name,
                      p.name,
                      static_cast<PolicyClass>(p.policy_class),
                      p.description ? p.description : "",
                      {}};
    for (const auto& [vm, entry] : vms_) {
      const auto& instance = entry.selected[slot(policy.policy_class)];
      bool uses = instance
                      ? (instance->module_name() == info.name && instance->policy_name() == p.name)
                      : (&module == builtin_.get() && &p == &baseline_policy(policy.policy_class));
      if (uses) policy.used_by.push_back(vm);
    }
    info.policies.push_back(std::move(policy));
  }
  return info;
}

std::vector<ModuleInfo> PolicyRegistry::modules() const {
  std::lock_guard lock(mu_);
  std::vector<ModuleInfo> out;
  out.push_back(describe_locked(*builtin_));
  for (const auto& [name, module] : modules_) out.push_back(describe_locked(*module));
  return out;
}

}  // namespace malv::mlaas
