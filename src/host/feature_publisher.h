// FeaturePublisher: the host's producer for the MLaaS feature registry.
// Every interval it pushes, per VM and for the device, what policies would
// otherwise each recompute from their own observations, so that any policy
// reads the same numbers through the host services (`feature_find`,
// `feature_read`; docs/mlaas-abi.md, "Features the host publishes"):
//
//   schema "malv.vm" (one window per VM id, the last 64 intervals):
//     busy_share         accelerator time the VM's work used / the interval
//     starved_share      time the device waited for the VM's CPU side / interval
//     queue_depth        commands of the VM waiting in the vGPU scheduler
//     memory_bytes       device memory the VM holds (its quota's use and borrowed)
//     memory_quota_share memory_bytes / its resident quota (0: no quota)
//     spilled_bytes      its memory-managed buffers held in host memory
//     data_stall_share   time its guests waited for the host's data pipeline
//                        to stage a batch / the interval (may pass 1 with
//                        several pipelines waiting at once)
//   schema "malv.device" (VM id 0):
//     busy_share         accelerator time all VMs used / the interval (may pass 1
//                        on a device that runs several VMs' work at once)
//     memory_share       device memory in use / the device's capacity
//
// A VM that is deleted loses its windows at the next interval.
//
//   MALV_ASSIGN_OR_RETURN(auto publisher, FeaturePublisher::start(features, vgpu, 100ms));
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <thread>

#include "malv/result.h"
#include "mlaas/feature_registry.h"
#include "vgpu/vgpu_service.h"

namespace malv::host {

inline constexpr const char* kVmFeatures = "malv.vm";
inline constexpr const char* kDeviceFeatures = "malv.device";
inline constexpr std::size_t kFeatureWindow = 64;
// What `malv serve` publishes at: 10 rows a second, a window of 6.4 s.
inline constexpr std::chrono::milliseconds kFeatureInterval{100};

class FeaturePublisher {
 public:
  [[nodiscard]] static Result<std::unique_ptr<FeaturePublisher>> start(
      mlaas::FeatureRegistry& features, vgpu::VgpuService& vgpu,
      std::chrono::milliseconds interval);
  ~FeaturePublisher();
  FeaturePublisher(const FeaturePublisher&) = delete;
  FeaturePublisher& operator=(const FeaturePublisher&) = delete;

  // One round now (the thread does one every interval); for tests.
  void publish();

 private:
  FeaturePublisher(mlaas::FeatureRegistry& features, vgpu::VgpuService& vgpu,
                   std::chrono::milliseconds interval);
  void run();

  struct Last {
    std::uint64_t busy_ns = 0, starved_ns = 0, data_stall_ns = 0;
  };
  mlaas::FeatureRegistry& features_;
  vgpu::VgpuService& vgpu_;
  std::chrono::milliseconds interval_;
  mlaas::FeatureSchemaId vm_schema_, device_schema_;
  std::mutex publish_mutex_;  // one round at a time; guards what follows
  std::map<std::uint64_t, Last> last_;
  std::chrono::steady_clock::time_point last_at_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool stopping_ = false;  // guarded by mu_
  std::thread thread_;     // last: started once the rest exists
};

}  // namespace malv::host
