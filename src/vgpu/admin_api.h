// AdminApi: the host's control interface, HTTP + JSON on a Unix socket
// (as Firecracker does), served by cpp-httplib on the daemon's control
// thread. `malv vm`, `malv policy` and `malv stats` are its clients.
//
//   GET    /health                      -> status, backend, device, cpu_control, host_cpus
//   GET    /vms                         -> [vm...]   (config + live stats)
//   POST   /vms            {vm}         -> vm        (create)
//   GET    /vms/{name}                  -> vm
//   PATCH  /vms/{name}     {fields}     -> vm        (any setting, gpu_policy)
//   DELETE /vms/{name}
//   PUT    /vms/{name}/policy/{class} {"policy": "fair-share"}
//   GET    /policies                    -> modules, policies, users
//   POST   /policies       {"path": "/x/libfoo.so"}
//   DELETE /policies/{module}[?force=1]
//   GET    /metrics                     -> Prometheus text format
//
// VM settings (POST, PATCH) are vm_config_json.h's; an unknown field is
// refused, never dropped. Every change is saved through AdminState when the
// host has a state directory, so nothing the admin said is lost on restart.
//
// Errors come back as {"error": code name, "message": ...} with a matching
// HTTP status (400 bad input, 401, 404, 409 conflict, 429 quota, 500).
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <thread>

#include "malv/result.h"
#include "mlaas/policy_registry.h"
#include "mlaas/policy_runner.h"
#include "vgpu/admin_state.h"
#include "vgpu/vgpu_service.h"

namespace httplib {
class Server;
}

namespace malv::vgpu {

// What a VM keeps on the host's checkpoint disk.
struct VmDiskUsage {
  std::uint64_t checkpoint_bytes = 0;
  std::uint32_t checkpoints = 0;
};

struct AdminContext {
  VgpuService* vgpu = nullptr;
  AdminState* state = nullptr;  // null: changes are not persisted
  // The VM's checkpoint usage (the store lives with the offload services).
  std::function<VmDiskUsage(const std::string& vm)> checkpoint_usage;
  mlaas::PolicyRegistry* policies = nullptr;
  mlaas::PolicyRunner* runner = nullptr;
  std::string backend;  // "cpu" / "cuda", as chosen at start-up
  std::string device;   // device name
  // More /metrics families, appended as they are (the MLaaS inference
  // service's: InferenceService::metrics_text()).
  std::function<std::string()> more_metrics;
  // CPU control (cpu_control/, which this room cannot see): how the host
  // holds the CPUs, for /health ("off" when it does not), and a VM's CPU
  // state as a JSON object's text, the "cpu" of GET /vms/{name} ("" when
  // the host has none for it).
  std::string cpu_control = "off";
  // The cores the host's own threads run on (`--host-cpus`: "3", "2-3";
  // "all" when not confined), for /health, and how many (the
  // malv_host_cpus gauge).
  std::string host_cpus = "all";
  unsigned host_cpu_count = 0;
  std::function<std::string(const std::string& vm)> cpu_json;
  // A VM served to its QEMU over ivshmem (microlake/ivshmem_server.h): the
  // "ivshmem" of GET /vms/{name} as a JSON object's text ("": not served so).
  std::function<std::string(const std::string& vm)> ivshmem_json;
};

class AdminApi {
 public:
  [[nodiscard]] static Result<std::unique_ptr<AdminApi>> start(const std::string& unix_path,
                                                               AdminContext context);
  ~AdminApi();
  AdminApi(const AdminApi&) = delete;
  AdminApi& operator=(const AdminApi&) = delete;

  const std::string& path() const { return path_; }

 private:
  AdminApi() = default;
  void install_routes();

  AdminContext context_;
  std::string path_;
  std::unique_ptr<httplib::Server> server_;
  std::thread thread_;
};

}  // namespace malv::vgpu
