#include "vgpu/vm_backend.h"

#include <fmt/format.h>

#include <vector>

namespace malv::vgpu {

VmBackend::VmBackend(accel::Backend& device, VgpuScheduler& scheduler, std::shared_ptr<Vm> vm,
                     MemoryPolicies* memory_policies, MemoryOptions memory_options,
                     DeviceMemoryLedger* ledger)
    : device_(device), scheduler_(scheduler), vm_(std::move(vm)), ledger_(ledger) {
  vm_->memory().attach(device_, memory_policies, memory_options, ledger_);
}

VmBackend::~VmBackend() {
  // The session drained and freed everything already; this is the backstop
  // that keeps the quota and the device exact whatever happened above.
  std::vector<std::uint64_t> queues;
  std::vector<std::pair<std::uint64_t, std::uint64_t>> allocations;
  {
    std::lock_guard lock(mutex_);
    for (auto& [q, live] : queues_) queues.push_back(q);
    allocations.assign(allocations_.begin(), allocations_.end());
  }
  // (A session cancels its queues itself when its guest goes; here they drain.)
  for (std::uint64_t q : queues) destroy_queue(accel::QueueId{q});
  for (auto& [ptr, bytes] : allocations) free(accel::DevicePtr{ptr});
  vm_->host_memory()->release(host_memory_charged_);
  vm_->close_session_slot();
}

accel::DeviceInfo VmBackend::info() const {
  accel::DeviceInfo info = device_.info();
  const std::uint64_t limit = vm_->config().memory_limit;
  if (limit != 0) {
    info.total_memory = std::min(info.total_memory, limit);
    const std::uint64_t used = vm_->device_memory().used();
    info.free_memory = std::min(info.free_memory, limit > used ? limit - used : 0);
  }
  return info;
}

Result<accel::DevicePtr> VmBackend::allocate(std::size_t bytes) {
  MALV_TRY(vm_->virtual_memory().reserve(bytes));
  Result<accel::DevicePtr> ptr = Error(ErrorCode::kInternal, "unset");
  if (vm_->oversubscribed()) {
    // Virtual: device memory (and the resident quota) only while in use.
    ptr = vm_->memory().allocate(bytes);
  } else {
    // A VM without a quota has only what the quotas leave (the pool).
    const bool pooled = ledger_ != nullptr && vm_->device_memory().limit() == 0;
    Status reserved = vm_->reserve_memory(bytes);
    if (reserved.ok() && pooled) {
      reserved = ledger_->pool()->reserve(bytes);
      if (!reserved.ok()) vm_->release_memory(bytes);
    }
    if (!reserved.ok()) {
      ptr = std::move(reserved).error();
    } else {
      // Room that oversubscribed VMs borrowed is taken back if needed.
      ptr =
          ledger_ != nullptr ? ledger_->allocate(device_, bytes, nullptr) : device_.allocate(bytes);
      if (!ptr.ok()) {
        vm_->release_memory(bytes);
        if (pooled) ledger_->pool()->release(bytes);
      } else if (pooled) {
        std::lock_guard lock(mutex_);
        pooled_.insert(ptr->value);
      }
    }
  }
  if (!ptr.ok()) {
    vm_->virtual_memory().release(bytes);
    return ptr;
  }
  std::lock_guard lock(mutex_);
  allocations_.emplace(ptr->value, bytes);
  bytes_in_use_ += bytes;
  return ptr;
}

void VmBackend::free(accel::DevicePtr ptr) {
  std::uint64_t bytes = 0;
  {
    std::lock_guard lock(mutex_);
    auto it = allocations_.find(ptr.value);
    if (it == allocations_.end()) return;  // not ours: never hand it to the device
    bytes = it->second;
    allocations_.erase(it);
    bytes_in_use_ -= bytes;
  }
  if (MemoryManager::is_virtual(ptr)) {
    vm_->memory().free(ptr);  // gives back its resident bytes, if any
  } else {
    device_.free(ptr);
    vm_->release_memory(bytes);
    bool pooled = false;
    {
      std::lock_guard lock(mutex_);
      pooled = pooled_.erase(ptr.value) != 0;
    }
    if (pooled) ledger_->pool()->release(bytes);
  }
  vm_->virtual_memory().release(bytes);
}

bool VmBackend::hold_resident(accel::DevicePtr ptr) {
  return !MemoryManager::is_virtual(ptr) || vm_->memory().hold(ptr);
}

void VmBackend::release_resident(accel::DevicePtr ptr) {
  if (MemoryManager::is_virtual(ptr)) vm_->memory().release_hold(ptr);
}

Status VmBackend::copy_to_device_now(accel::DevicePtr dst, const void* src, std::size_t bytes) {
  if (MemoryManager::is_virtual(dst)) {
    return Error(ErrorCode::kInvalidArgument, "copy_to_device_now of a managed buffer");
  }
  return device_.copy_to_device_now(dst, src, bytes);
}

Status VmBackend::copy_to_host_now(void* dst, accel::DevicePtr src, std::size_t bytes) {
  if (MemoryManager::is_virtual(src)) {
    return Error(ErrorCode::kInvalidArgument, "copy_to_host_now of a managed buffer");
  }
  return device_.copy_to_host_now(dst, src, bytes);
}

std::uint64_t VmBackend::memory_in_use() const {
  std::lock_guard lock(mutex_);
  return bytes_in_use_;
}

Status VmBackend::register_host_memory(void* base, std::size_t bytes) {
  return device_.register_host_memory(base, bytes);
}

void VmBackend::unregister_host_memory(void* base) { device_.unregister_host_memory(base); }

Status VmBackend::charge_host_memory(std::uint64_t bytes) {
  MALV_TRY(vm_->host_memory()->reserve(bytes));
  std::lock_guard lock(mutex_);
  host_memory_charged_ += bytes;
  return ok_status();
}

Result<accel::QueueId> VmBackend::create_queue(accel::QueuePriority priority) {
  const std::uint32_t limit = vm_->config().max_streams;
  auto& streams = vm_->counters().streams;
  if (streams.fetch_add(1) >= limit) {
    streams.fetch_sub(1);
    return Error(ErrorCode::kResourceExhausted,
                 fmt::format("VM '{}' stream quota: {} streams open, limit {}", vm_->config().name,
                             limit, limit));
  }
  // The guest's stream priority is not taken across VMs: the scheduler
  // gives device priority by the VM's class, which the host sets.
  (void)priority;
  Result<accel::QueueId> queue = scheduler_.create_stream(vm_);
  if (!queue.ok()) {
    streams.fetch_sub(1);
    return queue;
  }
  std::lock_guard lock(mutex_);
  queues_.emplace(queue->value(), true);
  return queue;
}

void VmBackend::destroy_queue(accel::QueueId queue) {
  {
    std::lock_guard lock(mutex_);
    if (queues_.erase(queue.value()) == 0) return;
  }
  scheduler_.destroy_stream(queue);
  vm_->counters().streams.fetch_sub(1);
}

void VmBackend::cancel_queue(accel::QueueId queue) {
  {
    std::lock_guard lock(mutex_);
    if (!queues_.contains(queue.value())) return;  // not ours
  }
  scheduler_.cancel_stream(queue);
}

Result<accel::EventId> VmBackend::create_event() { return device_.create_event(); }
void VmBackend::destroy_event(accel::EventId event) {
  device_.destroy_event(event);
  scheduler_.forget_event(event);
}
accel::EventState VmBackend::query_event(accel::EventId event) const {
  return device_.query_event(event);
}

void VmBackend::enqueue(accel::QueueId queue, accel::Op op, accel::Completion done) {
  scheduler_.enqueue_many(queue, std::span(&op, 1), done);
}

void VmBackend::enqueue_many(accel::QueueId queue, std::span<accel::Op> ops,
                             accel::Completion done) {
  scheduler_.enqueue_many(queue, ops, done);
}

void VmBackend::synchronize_all() {
  // Every stream drains when destroyed; callers of a VM view use streams.
  device_.synchronize_all();
}

}  // namespace malv::vgpu
