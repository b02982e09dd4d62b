// PolicyRegistry: which MLaaS modules are loaded, which policy each VM uses
// for each class, and what the admin allows each VM to pick.
//
//   PolicyRegistry registry(host_services.table());
//   registry.load_module(policy_dir() + "/libmalv_sched_basic.so").value();
//   registry.select("vm1", PolicyClass::kGpuSched, "malv_sched_basic/fair-share").value();
//   std::shared_ptr<PolicyInstance> p = registry.current("vm1", PolicyClass::kGpuSched);
//
// Policies are named "module/policy"; a bare "policy" is accepted when one
// loaded policy of the class has that name. The class baselines are the
// module "builtin" (baselines.h) and are what every VM uses until it selects
// something else. Selecting creates the policy's per-VM instance (the
// module's create(services, vm_name, &state)); the previous instance is
// destroyed once no decision uses it. A switch takes effect at the VM's next
// decision, because PolicyRunner asks current() at every decision.
//
// Allow-lists: the admin may restrict, per VM and class, which policies the
// guest may select itself (Requester::kGuest); the baseline is always
// allowed, and the admin (Requester::kAdmin) is never restricted.
//
// Unloading a module that any VM uses is refused with kFailedPrecondition,
// listing the VMs, unless UnloadMode::kForce, which first moves those VMs to
// the baseline. The module's code stays mapped until the last decision in
// flight returns (instances hold the module by shared_ptr).
//
// Thread-safety: every method may be called from any thread. One mutex
// guards the tables; module create()/destroy() run outside it.
#pragma once

#include <array>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "malv/mlaas.h"
#include "malv/result.h"
#include "mlaas/module_loader.h"
#include "mlaas/policy_class.h"

namespace malv::mlaas {

enum class Requester { kAdmin, kGuest };
enum class UnloadMode { kRefuseIfInUse, kForce };

// One policy's state for one VM. The runner locks mutex() around calls into
// a module's instance, so one instance is never entered concurrently.
class PolicyInstance {
 public:
  PolicyInstance(std::shared_ptr<LoadedModule> module, const malv_policy* policy, void* state)
      : module_(std::move(module)), policy_(policy), state_(state), serial_(next_serial()) {}
  ~PolicyInstance();
  PolicyInstance(const PolicyInstance&) = delete;
  PolicyInstance& operator=(const PolicyInstance&) = delete;

  std::string_view module_name() const { return module_->name(); }
  std::string_view policy_name() const { return policy_->name; }
  std::string qualified_name() const;
  bool is_baseline() const;
  const malv_policy& policy() const { return *policy_; }
  void* state() const { return state_; }
  std::mutex& mutex() { return mu_; }
  // Unique among every instance this process creates (never 0): what was
  // computed for one instance is not given to another.
  std::uint64_t serial() const { return serial_; }

 private:
  static std::uint64_t next_serial();

  std::shared_ptr<LoadedModule> module_;
  const malv_policy* policy_;
  void* state_;
  std::uint64_t serial_;
  std::mutex mu_;
};

struct PolicyInfo {
  std::string module;
  std::string name;  // policy name within the module
  PolicyClass policy_class;
  std::string description;
  std::vector<std::string> used_by;  // VMs that select it now
};

struct ModuleInfo {
  std::string name;
  std::string version;
  std::string path;  // "<built-in>" for the baselines
  std::vector<PolicyInfo> policies;
};

class PolicyRegistry {
 public:
  // services is passed to every create(); it must outlive the registry.
  explicit PolicyRegistry(const malv_host_services* services);
  ~PolicyRegistry();
  PolicyRegistry(const PolicyRegistry&) = delete;
  PolicyRegistry& operator=(const PolicyRegistry&) = delete;

  // Loads a module; refuses a name already loaded (kAlreadyExists).
  [[nodiscard]] Result<ModuleInfo> load_module(const std::string& path);
  // Loads every *.so in dir (sorted by name). Stops at the first failure.
  [[nodiscard]] Result<std::vector<ModuleInfo>> load_directory(const std::string& dir);
  [[nodiscard]] Status unload_module(std::string_view name,
                                     UnloadMode mode = UnloadMode::kRefuseIfInUse);

  // Makes `policy` ("module/policy" or a unique bare name) the VM's policy
  // of class cls from its next decision on. Selecting the policy the VM
  // already uses changes nothing (its instance, and what it has learned,
  // stay).
  [[nodiscard]] Status select(std::string_view vm, PolicyClass cls, std::string_view policy,
                              Requester who = Requester::kAdmin);
  // Back to the class baseline.
  void select_baseline(std::string_view vm, PolicyClass cls);
  // Qualified name of the VM's policy of class cls.
  std::string selected(std::string_view vm, PolicyClass cls) const;

  // What the guest may select (qualified or unique bare names, checked
  // now). An empty list allows only the baseline.
  [[nodiscard]] Status set_allow_list(std::string_view vm, PolicyClass cls,
                                      const std::vector<std::string>& policies);
  // Lifts the restriction: the guest may select any loaded policy.
  void clear_allow_list(std::string_view vm, PolicyClass cls);
  // The allow-list, if one is set.
  std::optional<std::vector<std::string>> allow_list(std::string_view vm, PolicyClass cls) const;

  // The instance that decides for (vm, cls) now: the selected one, or the
  // shared baseline instance.
  std::shared_ptr<PolicyInstance> current(std::string_view vm, PolicyClass cls) const;
  // Moves (vm, cls) to the baseline if `instance` is still its policy (the
  // runner's switch-off after repeated failures). True when it did.
  bool revert_if_current(std::string_view vm, PolicyClass cls, const PolicyInstance* instance);
  // A VM went away: drops its selections and allow-lists.
  void remove_vm(std::string_view vm);

  // Modules (the built-in one first) with their policies and users.
  std::vector<ModuleInfo> modules() const;
  // VMs that select any policy of the module, sorted.
  std::vector<std::string> vms_using(std::string_view module) const;

  const malv_host_services* services() const { return services_; }

 private:
  struct VmEntry {
    std::array<std::shared_ptr<PolicyInstance>, 4> selected;  // null: baseline
    std::array<std::optional<std::set<std::string, std::less<>>>, 4> allowed;
  };
  static std::size_t slot(PolicyClass cls) { return static_cast<std::size_t>(cls) - 1; }

  // Resolves a policy name to (module, policy); mu_ held.
  Result<std::pair<std::shared_ptr<LoadedModule>, const malv_policy*>> resolve_locked(
      PolicyClass cls, std::string_view name) const;
  std::vector<std::string> vms_using_locked(std::string_view module) const;
  ModuleInfo describe_locked(const LoadedModule& module) const;

  const malv_host_services* services_;
  std::shared_ptr<LoadedModule> builtin_;
  std::array<std::shared_ptr<PolicyInstance>, 4> baselines_;

  mutable std::mutex mu_;
  std::map<std::string, std::shared_ptr<LoadedModule>, std::less<>> modules_;
  std::map<std::string, VmEntry, std::less<>> vms_;
};

}  // namespace malv::mlaas
