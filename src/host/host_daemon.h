// HostDaemon: everything `malv serve` runs, assembled in one place. The
// accelerator backend; the MLaaS subsystem (feature registry, inference
// service on the backend, policy registry with the built-in modules loaded,
// guardrailed runner); the vGPU service (VMs, quotas, scheduler calling the
// VMs' gpu_sched policies); per-VM CPU control (each VM's cpu_sched
// policy sets its CPU share); the Micro-LAKE server admitting guests by VM
// token, and the ivshmem server that VMs' QEMUs attach to; and the
// admin API.
#pragma once

#include <memory>

#include "accel/aten_operators.h"
#include "accel/backend.h"
#include "cpu_control/cpu_share_controller.h"
#include "host/feature_publisher.h"
#include "host/host_config.h"
#include "microlake/ivshmem_server.h"
#include "microlake/server.h"
#include "mlaas/async_inference.h"
#include "mlaas/feature_registry.h"
#include "mlaas/host_services.h"
#include "mlaas/inference_service.h"
#include "mlaas/policy_registry.h"
#include "mlaas/policy_runner.h"
#include "offload/checkpoint_store.h"
#include "offload/dataset_catalog.h"
#include "vgpu/admin_api.h"
#include "vgpu/admin_state.h"
#include "vgpu/mlaas_gpu_sched_policies.h"
#include "vgpu/mlaas_memory_policies.h"
#include "vgpu/vgpu_service.h"

namespace malv::host {

struct DaemonOptions {
  HostConfig config;
  // Admit any VM name without a token, creating it with default quotas on
  // first connect (development and benchmarks only).
  bool open_admission = false;
  vgpu::SchedulerOptions scheduler;
};

class HostDaemon {
 public:
  [[nodiscard]] static Result<std::unique_ptr<HostDaemon>> start(DaemonOptions options);
  ~HostDaemon();

  microlake::Server& server() { return *server_; }
  microlake::IvshmemServer* ivshmem() { return ivshmem_.get(); }
  vgpu::VgpuService& vgpu() { return *vgpu_; }
  mlaas::PolicyRegistry& policies() { return *policies_; }
  mlaas::FeatureRegistry& features() { return features_; }
  accel::Backend& backend() { return *backend_; }
  const std::string& admin_path() const { return admin_path_; }

 private:
  HostDaemon() = default;
  Result<microlake::Admission> admit(const microlake::HelloInfo& info);
  [[nodiscard]] Status start_cpu_control();

  DaemonOptions options_;
  // host_cpus: the cores the host's threads were confined to at start, and
  // those the process had before (which VMs keep); both empty when unset.
  std::vector<int> host_cpus_;
  std::vector<int> cores_at_start_;
  std::unique_ptr<accel::Backend> backend_;
  mlaas::FeatureRegistry features_;
  std::unique_ptr<mlaas::InferenceService> inference_;
  // Items' scores computed as they are queued, batched across every VM.
  std::unique_ptr<mlaas::AsyncInference> enqueue_inference_;
  std::unique_ptr<mlaas::HostServices> services_;
  std::unique_ptr<mlaas::PolicyRegistry> policies_;
  std::unique_ptr<mlaas::PolicyRunner> runner_;
  std::unique_ptr<vgpu::MlaasGpuSchedPolicies> sched_policies_;
  std::unique_ptr<vgpu::MlaasMemoryPolicies> memory_policies_;
  std::unique_ptr<vgpu::VgpuService> vgpu_;
  std::unique_ptr<vgpu::AdminState> state_;
  std::unique_ptr<offload::CheckpointStore> checkpoints_;
  std::unique_ptr<offload::DatasetCatalog> datasets_;
  // PyTorch operators for the torch device; null without libtorch.
  std::unique_ptr<accel::AtenOperators> aten_;
  std::unique_ptr<FeaturePublisher> feature_publisher_;
  // Outlives the server: ending sessions leave their VMs' groups.
  std::unique_ptr<cpu_control::CpuShareController> cpu_;
  std::unique_ptr<microlake::Server> server_;
  std::unique_ptr<microlake::IvshmemServer> ivshmem_;  // null: no VM is served over ivshmem
  std::unique_ptr<vgpu::AdminApi> admin_;
  std::string admin_path_;
};

// A VM's cpu_pid (0: none) must be a running process owned by one of the
// host's allowed users (HostConfig::cpu_allowed_pid_uids).
[[nodiscard]] Status check_cpu_pid(const vgpu::VmConfig& vm,
                                   const std::vector<std::uint32_t>& allowed_uids);

// Picks the backend for --backend cpu|cuda|auto and says which in the log.
[[nodiscard]] Result<std::unique_ptr<accel::Backend>> make_backend(const HostConfig& config);

}  // namespace malv::host
