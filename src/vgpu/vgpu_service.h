// VgpuService: GPU virtualisation on the host side. One accelerator shared
// by many VMs: the VM registry (credentials, quotas), the scheduler across
// VMs, and per-session device views (VmBackend) that enforce both.
//
//   VgpuService vgpu(*device, policies);
//   vgpu.vms().create({.name = "vm-a", .token = "t", .memory_limit = 1 << 30});
//   MALV_ASSIGN_OR_RETURN(auto view, vgpu.open_session("vm-a", "t"));
//   // hand `view` to a Micro-LAKE session as its backend
#pragma once

#include <fmt/format.h>

#include <memory>

#include "accel/backend.h"
#include "vgpu/vgpu_scheduler.h"
#include "vgpu/vm_backend.h"
#include "vgpu/vm_registry.h"

namespace malv::vgpu {

class VgpuService {
 public:
  VgpuService(accel::Backend& device, GpuSchedPolicies& policies, SchedulerOptions options = {})
      : device_(device),
        ledger_(device.info().total_memory),
        scheduler_(device, policies, options) {
    vms_.set_ledger(&ledger_);
  }

  VmRegistry& vms() { return vms_; }
  // The device's memory across VMs: guarantees, the pool, lending.
  DeviceMemoryLedger& ledger() { return ledger_; }
  VgpuScheduler& scheduler() { return scheduler_; }
  accel::Backend& device() { return device_; }
  // The memory policies and options of every VM's memory manager (set
  // before sessions open; null policies: LRU).
  void set_memory_policies(MemoryPolicies* policies, MemoryOptions options = {}) {
    memory_policies_ = policies;
    memory_options_ = options;
  }

  // The device as a session of this VM sees it, after checking its token.
  [[nodiscard]] Result<std::unique_ptr<VmBackend>> open_session(const std::string& vm,
                                                                const std::string& token) {
    MALV_ASSIGN_OR_RETURN(std::shared_ptr<Vm> found, vms_.authenticate(vm, token));
    MALV_TRY(found->open_session_slot());
    return std::make_unique<VmBackend>(device_, scheduler_, std::move(found), memory_policies_,
                                       memory_options_, &ledger_);
  }

  // For a channel the host itself made for one VM (the ivshmem socket its
  // QEMU attached to): the channel, not a token, identifies the VM.
  [[nodiscard]] Result<std::unique_ptr<VmBackend>> open_vouched_session(const std::string& vm) {
    MALV_ASSIGN_OR_RETURN(std::shared_ptr<Vm> found, vms_.find(vm));
    MALV_TRY(found->open_session_slot());
    return std::make_unique<VmBackend>(device_, scheduler_, std::move(found), memory_policies_,
                                       memory_options_, &ledger_);
  }

  // Over AF_VSOCK the peer's context id (vouched for by the hypervisor)
  // identifies the VM; the name in the guest's hello must agree with it.
  [[nodiscard]] Result<std::unique_ptr<VmBackend>> open_vsock_session(
      std::uint32_t cid, const std::string& claimed_name) {
    MALV_ASSIGN_OR_RETURN(std::shared_ptr<Vm> found, vms_.authenticate_vsock(cid));
    if (found->name() != claimed_name) {
      return Error(ErrorCode::kUnauthenticated, fmt::format("vsock CID {} is VM '{}', not '{}'",
                                                            cid, found->name(), claimed_name));
    }
    MALV_TRY(found->open_session_slot());
    return std::make_unique<VmBackend>(device_, scheduler_, std::move(found), memory_policies_,
                                       memory_options_, &ledger_);
  }

 private:
  accel::Backend& device_;
  MemoryPolicies* memory_policies_ = nullptr;
  MemoryOptions memory_options_;
  DeviceMemoryLedger ledger_;  // before vms_, which checks admission against it
  VmRegistry vms_;
  VgpuScheduler scheduler_;  // after vms_: destroyed first
};

}  // namespace malv::vgpu
