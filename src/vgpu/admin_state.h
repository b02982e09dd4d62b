// AdminState: what the admin said through the admin API, kept across
// restarts of the host.
//
// After every change the admin API makes (a VM created, changed or deleted,
// a policy selected, an allow-list set) the host writes the whole table to
// <state_dir>/admin-state.json atomically (temporary file, fsync, rename): a
// crash leaves the previous state or the new one. At start the host merges
// it with the config file's [[vm]] tables:
//   * a VM in the state file is restored as the state says (the admin's
//     word is newer than the file's), and every setting where the config
//     file says otherwise is logged, one line each;
//   * a config VM the admin deleted stays deleted (the state file lists it);
//   * a config VM the state file does not know is created from the config.
// The scheduler's host level (PUT /scheduler) is kept the same way: the state
// file's word beats the config file's [host] gpu_host_policy.
// GET /vms shows each VM's "origin" ("config", "admin", or "config+admin"
// when the admin changed a config VM), so an operator sees which is which.
//
//   AdminState state(dir, vms, &policies);
//   MALV_TRY(state.restore(config_vms));   // at start
//   MALV_TRY(state.save());                // after each admin change
#pragma once

#include <mutex>
#include <nlohmann/json.hpp>
#include <set>
#include <string>
#include <vector>

#include "malv/result.h"
#include "mlaas/policy_registry.h"
#include "vgpu/vgpu_scheduler.h"
#include "vgpu/vm_registry.h"

namespace malv::vgpu {

// Where a VM's settings come from (GET /vms shows it).
enum class VmOrigin { kConfig, kAdmin, kConfigChangedByAdmin };
const char* vm_origin_name(VmOrigin origin);

class AdminState {
 public:
  // `dir` is created (0700) on the first save. `policies` may be null.
  AdminState(std::string dir, VmRegistry& vms, mlaas::PolicyRegistry* policies);

  // Creates the config file's VMs and the state file's, as the overview
  // says, selecting their policies and allow-lists. A state file that is not
  // valid JSON fails the start (kDataLoss, naming the file); a policy it
  // names that is no longer loaded is logged and left at the baseline.
  [[nodiscard]] Status restore(const std::vector<VmConfig>& config_vms);

  // The scheduler whose host level is kept (none: not kept). Before restore().
  void set_scheduler(VgpuScheduler* scheduler) { scheduler_ = scheduler; }
  // The admin set the host level (PUT /scheduler): from now it is kept.
  void note_host_policy_changed();

  // Writes the current table; the admin API calls it after every change.
  [[nodiscard]] Status save();

  void note_created(const std::string& vm);
  void note_changed(const std::string& vm);
  void note_deleted(const std::string& vm);
  VmOrigin origin(const std::string& vm) const;

  std::string path() const { return dir_ + "/admin-state.json"; }

 private:
  [[nodiscard]] Status restore_vm(const nlohmann::json& entry, const VmConfig* from_config);

  const std::string dir_;
  VmRegistry& vms_;
  mlaas::PolicyRegistry* policies_;
  VgpuScheduler* scheduler_ = nullptr;
  mutable std::mutex mutex_;
  std::set<std::string> config_vms_;      // guarded by mutex_
  std::set<std::string> changed_vms_;     // config VMs the admin changed, guarded by mutex_
  std::set<std::string> deleted_config_;  // config VMs the admin deleted, guarded by mutex_
  bool host_policy_kept_ = false;         // the admin set the host level, guarded by mutex_
  std::mutex save_mutex_;                 // one writer of the file at a time
};

}  // namespace malv::vgpu
