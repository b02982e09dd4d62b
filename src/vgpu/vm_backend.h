// VmBackend: the accelerator as one VM's session sees it.
//
// It is an accel::Backend, so a Micro-LAKE session runs unchanged on top of
// it, but every call passes through the vGPU service first: allocations are
// charged to the VM's memory quota (a hard cap, checked on the host; or, for
// an oversubscribed VM, to its virtual limit, made resident by the VM's
// memory manager when queued work uses them), stream
// creation to its stream quota, the session's host memory (its arena,
// charge_host_memory() at admission) to its host-memory quota, and every
// queued op goes through the VgpuScheduler instead of straight to the device. A VmBackend
// is one of the VM's session slots: VgpuService takes the slot before it
// makes one, and the destructor gives it back. When the session ends the
// VmBackend returns whatever it still holds to the device and to the quota.
#pragma once

#include <memory>
#include <mutex>
#include <unordered_map>
#include <unordered_set>

#include "accel/backend.h"
#include "vgpu/device_memory_ledger.h"
#include "vgpu/vgpu_scheduler.h"
#include "vgpu/vm_registry.h"

namespace malv::vgpu {

class VmBackend final : public accel::Backend {
 public:
  // memory_policies (may be null: LRU) and memory_options are the VM's
  // memory manager's, set by its first session. With a ledger, a VM without
  // a quota allocates from its pool, and an allocation the device has no
  // room for first reclaims what oversubscribed VMs borrowed.
  VmBackend(accel::Backend& device, VgpuScheduler& scheduler, std::shared_ptr<Vm> vm,
            MemoryPolicies* memory_policies = nullptr, MemoryOptions memory_options = {},
            DeviceMemoryLedger* ledger = nullptr);
  ~VmBackend() override;

  accel::DeviceInfo info() const override;
  Result<accel::DevicePtr> allocate(std::size_t bytes) override;
  void free(accel::DevicePtr ptr) override;
  std::uint64_t memory_in_use() const override;
  Status copy_to_device_now(accel::DevicePtr dst, const void* src, std::size_t bytes) override;
  Status copy_to_host_now(void* dst, accel::DevicePtr src, std::size_t bytes) override;
  Status register_host_memory(void* base, std::size_t bytes) override;
  void unregister_host_memory(void* base) override;
  Result<accel::QueueId> create_queue(accel::QueuePriority priority) override;
  void destroy_queue(accel::QueueId queue) override;
  void cancel_queue(accel::QueueId queue) override;
  bool hold_resident(accel::DevicePtr ptr) override;
  void release_resident(accel::DevicePtr ptr) override;
  Result<accel::EventId> create_event() override;
  void destroy_event(accel::EventId event) override;
  accel::EventState query_event(accel::EventId event) const override;
  void enqueue(accel::QueueId queue, accel::Op op, accel::Completion done) override;
  void enqueue_many(accel::QueueId queue, std::span<accel::Op> ops,
                    accel::Completion done) override;
  void synchronize_all() override;

  const std::shared_ptr<Vm>& vm() const { return vm_; }
  // Charges `bytes` of host memory the session holds for its whole life (its
  // arena) to the VM's host-memory quota, or fails naming usage and limit.
  // Given back when the session ends.
  [[nodiscard]] Status charge_host_memory(std::uint64_t bytes);

 private:
  accel::Backend& device_;
  VgpuScheduler& scheduler_;
  std::shared_ptr<Vm> vm_;
  DeviceMemoryLedger* ledger_;
  mutable std::mutex mutex_;
  std::unordered_map<std::uint64_t, std::uint64_t> allocations_;  // ptr -> bytes
  std::unordered_set<std::uint64_t> pooled_;        // allocations charged to the ledger's pool
  std::unordered_map<std::uint64_t, bool> queues_;  // live stream queues
  std::uint64_t host_memory_charged_ = 0;           // guarded by mutex_
  std::uint64_t bytes_in_use_ = 0;
};

}  // namespace malv::vgpu
