#include "host/feature_publisher.h"

#include <array>
#include <vector>

#include "base/log.h"
#include "base/thread_priority.h"

namespace malv::host {

FeaturePublisher::FeaturePublisher(mlaas::FeatureRegistry& features, vgpu::VgpuService& vgpu,
                                   std::chrono::milliseconds interval)
    : features_(features), vgpu_(vgpu), interval_(interval) {}

Result<std::unique_ptr<FeaturePublisher>> FeaturePublisher::start(
    mlaas::FeatureRegistry& features, vgpu::VgpuService& vgpu, std::chrono::milliseconds interval) {
  if (interval.count() <= 0) {
    return Error(ErrorCode::kInvalidArgument, "the feature interval must be positive");
  }
  std::unique_ptr<FeaturePublisher> p(new FeaturePublisher(features, vgpu, interval));
  MALV_ASSIGN_OR_RETURN(
      p->vm_schema_, features.declare(kVmFeatures,
                                      {"busy_share", "starved_share", "queue_depth", "memory_bytes",
                                       "memory_quota_share", "spilled_bytes", "data_stall_share"},
                                      kFeatureWindow));
  MALV_ASSIGN_OR_RETURN(
      p->device_schema_,
      features.declare(kDeviceFeatures, {"busy_share", "memory_share"}, kFeatureWindow));
  p->last_at_ = std::chrono::steady_clock::now();
  p->thread_ = std::thread([raw = p.get()] {
    name_this_thread("malv-features");
    raw->run();
  });
  return p;
}

FeaturePublisher::~FeaturePublisher() {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

void FeaturePublisher::run() {
  std::unique_lock lock(mu_);
  while (!cv_.wait_for(lock, interval_, [this] { return stopping_; })) {
    lock.unlock();
    publish();
    lock.lock();
  }
}

void FeaturePublisher::publish() {
  std::lock_guard lock(publish_mutex_);
  const auto now = std::chrono::steady_clock::now();
  const double interval_ns = static_cast<double>(
      std::chrono::duration_cast<std::chrono::nanoseconds>(now - last_at_).count());
  last_at_ = now;
  if (interval_ns <= 0) return;
  std::map<std::uint64_t, Last> seen;
  double device_busy = 0;
  for (const std::shared_ptr<vgpu::Vm>& vm : vgpu_.vms().list()) {
    const std::uint64_t id = vm->id().value();
    const vgpu::VmCounters& n = vm->counters();
    const Last now_counts{n.busy_ns.load(), n.accel_starved_ns.load(), n.data_stall_ns.load()};
    const auto before = last_.find(id);
    // A VM first seen this round has no interval behind it yet: 0.
    const Last was = before != last_.end() ? before->second : now_counts;
    seen[id] = now_counts;
    const double busy = static_cast<double>(now_counts.busy_ns - was.busy_ns) / interval_ns;
    const double starved =
        static_cast<double>(now_counts.starved_ns - was.starved_ns) / interval_ns;
    const double data_stall =
        static_cast<double>(now_counts.data_stall_ns - was.data_stall_ns) / interval_ns;
    device_busy += busy;
    const vgpu::MemoryStats memory = vm->memory().stats();
    const std::uint64_t held = vm->device_memory().used() + memory.borrowed_bytes;
    const std::uint64_t quota = vm->config().memory_limit;
    const std::array<float, 7> row{
        static_cast<float>(busy),
        static_cast<float>(starved),
        static_cast<float>(n.queue_depth.load()),
        static_cast<float>(held),
        quota == 0 ? 0.0f
                   : static_cast<float>(static_cast<double>(held) / static_cast<double>(quota)),
        static_cast<float>(memory.spilled_bytes),
        static_cast<float>(data_stall)};
    if (Status pushed = features_.push(vm_schema_, id, row); !pushed.ok()) {
      log::warn("features", "VM {}: {}", vm->name(), pushed.error().to_string());
    }
  }
  // VMs gone since the last round take their windows with them.
  for (const auto& [id, counts] : last_) {
    if (seen.count(id) == 0) features_.remove_vm(id);
  }
  last_ = std::move(seen);
  const accel::DeviceInfo info = vgpu_.device().info();
  const double capacity = static_cast<double>(info.total_memory);
  const std::array<float, 2> device{
      static_cast<float>(device_busy),
      capacity <= 0
          ? 0.0f
          : static_cast<float>(static_cast<double>(vgpu_.device().memory_in_use()) / capacity)};
  (void)features_.push(device_schema_, 0, device);
}

}  // namespace malv::host
