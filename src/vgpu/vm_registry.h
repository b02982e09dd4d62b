// VmRegistry: the host's list of VMs (tenants), their credentials and
// quotas, and the live accounting the host keeps for each.
//
// Every number a quota is checked against lives here, on the host, where no
// guest can reach it. Quotas can be changed while the VM runs; a lower memory
// limit stops new allocations but frees nothing already allocated.
//
// Per-VM limits (docs/operations.md lists them with their defaults):
// device memory, streams and handles per session, sessions open at once,
// host memory (its sessions' arenas and checkpoint snapshots not yet
// written), and the checkpoint disk (bytes and number of checkpoints).
//
//   VmRegistry vms;
//   vms.create({.name = "vm-a", .token = "s3cret", .memory_limit = 1 << 30});
//   MALV_ASSIGN_OR_RETURN(std::shared_ptr<Vm> vm, vms.authenticate("vm-a", "s3cret"));
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "base/byte_quota.h"
#include "base/strong_id.h"
#include "malv/result.h"
#include "vgpu/memory_manager.h"

namespace malv::vgpu {

struct VmTag {};
using VmId = StrongId<VmTag>;

enum class PriorityClass { kLatency = 0, kBatch = 1 };
const char* priority_class_name(PriorityClass c);
Result<PriorityClass> parse_priority_class(std::string_view name);

struct VmConfig {
  std::string name;
  std::string token;               // credential a guest must present
  std::uint64_t memory_limit = 0;  // device-memory bytes held at once (resident); 0 = unlimited
  // Device-memory bytes the VM may allocate in all. Above memory_limit, the
  // host's memory manager keeps what does not fit in host memory and brings
  // it back when queued work needs it (vgpu/memory_manager.h); 0 or at most
  // memory_limit: allocations are capped by memory_limit, as without one.
  std::uint64_t virtual_memory_limit = 0;
  double weight = 1.0;  // compute share weight (> 0)
  PriorityClass priority = PriorityClass::kBatch;
  std::uint32_t max_streams = 64;
  std::uint32_t max_handles = 1u << 16;  // buffers and events each
  std::string gpu_policy = "fifo";       // selected gpu_sched policy
  std::uint32_t vsock_cid = 0;           // the VM's AF_VSOCK context id; 0: none
  // Host-side limits; the defaults let a small host run a few VMs.
  std::uint64_t host_memory_limit = kDefaultHostMemoryLimit;       // arenas + snapshots; 0 = none
  std::uint32_t max_sessions = kDefaultMaxSessions;                // at once; 0 = none
  std::uint64_t checkpoint_bytes_limit = kDefaultCheckpointBytes;  // on disk; 0 = none
  std::uint32_t max_checkpoints = kDefaultMaxCheckpoints;          // stored; 0 = none
  // CPU (cpu_control/): the highest CPU weight the VM's cpu_sched policy may
  // give it (cgroup v2 cpu.weight scale, 100 = the default share), and a
  // process that works for the VM besides its guests' (a real VM's
  // hypervisor process; 0: none), which must be one the host allows.
  std::uint32_t cpu_weight_limit = kDefaultCpuWeightLimit;
  std::uint32_t cpu_pid = 0;

  static constexpr std::uint64_t kDefaultHostMemoryLimit = 1ull << 30;
  static constexpr std::uint32_t kDefaultMaxSessions = 32;
  static constexpr std::uint64_t kDefaultCheckpointBytes = 4ull << 30;
  static constexpr std::uint32_t kDefaultMaxCheckpoints = 256;
  static constexpr std::uint32_t kDefaultCpuWeightLimit = 1000;
};

// Counters the host updates as the VM works. All atomics: read by the admin
// API and metrics while sessions run.
struct VmCounters {
  std::atomic<std::uint64_t> busy_ns{0};
  // Time the device had none of the VM's work while the VM was running a
  // job (gaps up to SchedulerOptions::guest_gap_limit_ns between its work):
  // the accelerator waiting for the guest's CPU side.
  std::atomic<std::uint64_t> accel_starved_ns{0};
  // Time the VM's guests waited for the host's data pipeline to stage a
  // batch (offload::DataPipeline::next(), all its pipelines together).
  std::atomic<std::uint64_t> data_stall_ns{0};
  std::atomic<std::uint64_t> commands{0};
  std::atomic<std::uint64_t> errors{0};
  std::atomic<std::uint64_t> decisions{0};
  std::atomic<std::uint64_t> fallbacks{0};
  std::atomic<std::uint64_t> queue_depth{0};
  std::atomic<std::uint32_t> streams{0};
  std::atomic<std::uint32_t> sessions{0};
};

class Vm {
 public:
  Vm(VmId id, VmConfig config);

  VmId id() const { return id_; }
  const std::string& name() const { return name_; }  // never changes
  VmConfig config() const;
  void set_config(VmConfig config);
  // config().priority without copying the config (the scheduler's hot path).
  PriorityClass priority_class() const { return priority_.load(std::memory_order_relaxed); }
  VmCounters& counters() { return counters_; }
  const VmCounters& counters() const { return counters_; }

  // Reserves `bytes` of the memory quota, or fails naming usage and limit.
  [[nodiscard]] Status reserve_memory(std::uint64_t bytes) { return device_memory_.reserve(bytes); }
  void release_memory(std::uint64_t bytes) { device_memory_.release(bytes); }
  // Device memory the VM holds, against config().memory_limit.
  const ByteQuota& device_memory() const { return device_memory_; }
  // Device memory the VM has allocated, resident or not, against the
  // virtual limit (memory_limit when oversubscription is off).
  ByteQuota& virtual_memory() { return virtual_memory_; }
  const ByteQuota& virtual_memory() const { return virtual_memory_; }
  // Whether new allocations are virtual, made resident by memory() on use.
  bool oversubscribed() const;
  // The VM's memory manager (it has buffers only while oversubscribed() or
  // after it was).
  MemoryManager& memory() { return memory_; }
  const MemoryManager& memory() const { return memory_; }

  // Host memory the VM's sessions hold (arenas, snapshots); shared so that a
  // session's services can hold it past the VM's removal.
  const std::shared_ptr<ByteQuota>& host_memory() const { return host_memory_; }
  // Takes one of the VM's session slots, or fails naming count and limit.
  [[nodiscard]] Status open_session_slot();
  void close_session_slot();

 private:
  const VmId id_;
  const std::string name_;
  std::atomic<PriorityClass> priority_;  // mirrors config_.priority
  mutable std::mutex mutex_;
  VmConfig config_;  // guarded by mutex_
  VmCounters counters_;
  ByteQuota device_memory_;
  ByteQuota virtual_memory_;
  std::shared_ptr<ByteQuota> host_memory_;
  MemoryManager memory_;  // last: it returns device memory to device_memory_
};

class VmRegistry {
 public:
  [[nodiscard]] Result<std::shared_ptr<Vm>> create(VmConfig config);
  [[nodiscard]] Status update(const std::string& name, const VmConfig& config);
  // Removes the VM from the registry; its running sessions keep their Vm.
  [[nodiscard]] Status remove(const std::string& name);
  [[nodiscard]] Result<std::shared_ptr<Vm>> find(const std::string& name) const;
  // The VM named `name` if `token` is its credential.
  [[nodiscard]] Result<std::shared_ptr<Vm>> authenticate(const std::string& name,
                                                         const std::string& token) const;
  // The VM whose vsock_cid is `cid`: over AF_VSOCK the hypervisor vouches
  // for the peer's context id, so the CID, not a token, identifies the VM.
  [[nodiscard]] Result<std::shared_ptr<Vm>> authenticate_vsock(std::uint32_t cid) const;
  std::vector<std::shared_ptr<Vm>> list() const;
  // Admission: with a ledger of known capacity, create() and update()
  // refuse a resident quota that does not fit beside the other VMs' quotas,
  // naming both; the ledger learns the sum after every change.
  void set_ledger(DeviceMemoryLedger* ledger) { ledger_ = ledger; }
  // A check the host adds to every create() and update() (e.g. that a
  // VM's cpu_pid is a process the host allows); set before VMs are made.
  void set_config_check(std::function<Status(const VmConfig&)> check) {
    config_check_ = std::move(check);
  }

 private:
  // Fails if `config`'s quota and the others' (all VMs but `name`'s) exceed
  // the device. Called with mutex_ held.
  [[nodiscard]] Status admit(const std::string& name, const VmConfig& config) const;
  void publish_guaranteed();  // mutex_ held

  DeviceMemoryLedger* ledger_ = nullptr;
  std::function<Status(const VmConfig&)> config_check_;
  mutable std::mutex mutex_;
  std::map<std::string, std::shared_ptr<Vm>> vms_;  // guarded by mutex_
  std::uint64_t next_id_ = 1;                       // guarded by mutex_
};

}  // namespace malv::vgpu
