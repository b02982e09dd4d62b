#include "host/host_daemon.h"

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <nlohmann/json.hpp>

#include "accel/aten_plugin_loader.h"
#include "base/log.h"
#include "base/text_parse.h"
#include "base/thread_priority.h"
#include "cpu_control/cpu_list.h"
#include "mlaas/policy_dir.h"

namespace malv::host {
namespace {

// A VM's CPU state for the admin API (GET /vms/{name}: "cpu").
std::string cpu_status_json(const cpu_control::CpuShareController& cpu, const std::string& vm) {
  std::optional<cpu_control::VmCpuStatus> s = cpu.status(vm);
  if (!s) return std::string();
  return nlohmann::json{
      {"policy", s->policy},
      {"managed", s->managed},
      {"weight", s->weight},
      {"placement", s->placement == MALV_CPU_PLACE_DEDICATED ? "dedicated" : "any"},
      {"cpus", s->cpus},
      {"threads", s->threads},
      {"members", s->members},
      {"decisions", s->decisions},
      {"cpu_seconds", static_cast<double>(s->cpu_time_total_ns) / 1e9},
      {"runqueue_delay_seconds", static_cast<double>(s->runqueue_delay_total_ns) / 1e9}}
      .dump();
}

// A VM's ivshmem channel for the admin API (GET /vms/{name}: "ivshmem").
std::string ivshmem_status_json(const microlake::IvshmemServer& ivshmem, const std::string& vm) {
  std::optional<microlake::IvshmemServer::VmStatus> s = ivshmem.status(vm);
  if (!s) return std::string();
  return nlohmann::json{{"socket", s->socket_path},
                        {"attached", s->connected},
                        {"qemu_pid", s->qemu_pid},
                        {"sessions", s->sessions},
                        {"slots", ivshmem.layout().slot_count},
                        {"vectors", ivshmem.vectors()},
                        {"region_bytes", ivshmem.layout().total_bytes},
                        {"attaches", s->connections},
                        {"refused", s->refused}}
      .dump();
}

}  // namespace

// A VM's cpu_pid must be a live process owned by a user the host allows.
Status check_cpu_pid(const vgpu::VmConfig& vm, const std::vector<std::uint32_t>& allowed_uids) {
  if (vm.cpu_pid == 0) return ok_status();
  struct stat st {};
  const std::string proc = fmt::format("/proc/{}", vm.cpu_pid);
  if (::stat(proc.c_str(), &st) != 0) {
    return Error(ErrorCode::kInvalidArgument,
                 fmt::format("VM {}: cpu_pid {} is not a running process", vm.name, vm.cpu_pid));
  }
  if (std::find(allowed_uids.begin(), allowed_uids.end(), st.st_uid) == allowed_uids.end()) {
    return Error(ErrorCode::kPermissionDenied,
                 fmt::format("VM {}: cpu_pid {} belongs to uid {}, which the host does not allow "
                             "(host.cpu_allowed_pid_uids: [{}])",
                             vm.name, vm.cpu_pid, st.st_uid, fmt::join(allowed_uids, ", ")));
  }
  return ok_status();
}

Result<std::unique_ptr<accel::Backend>> make_backend(const HostConfig& config) {
  // The choice (and the "auto" rule and its log line) lives in accel. On
  // cores of the host's own (host_cpus) the general workers keep the
  // dispatchers' priority: a dispatcher polling for its guest's next batch
  // yields its core between polls, and the kernel (EEVDF) hands a yielded
  // core straight back to the poller rather than to a worker at nice 10
  // (every .item() then waited out the whole 50 us poll).
  return accel::make_backend(config.backend,
                             {.memory_bytes = config.memory_mib << 20,
                              .workers = config.workers,
                              .cpu_worker_nice = config.host_cpus.empty() ? 10 : 0});
}

Result<std::unique_ptr<HostDaemon>> HostDaemon::start(DaemonOptions options) {
  std::unique_ptr<HostDaemon> d(new HostDaemon());
  d->options_ = std::move(options);
  const HostConfig& config = d->options_.config;
  if (!config.host_cpus.empty()) {
    // Before any thread of the host starts: each inherits the mask, and
    // the backend sizes its worker pool and OpenBLAS to these cores.
    MALV_ASSIGN_OR_RETURN(d->host_cpus_, host_cpu_list(config.host_cpus));
    MALV_ASSIGN_OR_RETURN(d->cores_at_start_, cpu_control::thread_affinity(0));
    MALV_TRY_CONTEXT(cpu_control::set_process_affinity(d->host_cpus_), "host_cpus");
    log::info("serve", "the host's threads run on cores {}; VMs keep {}",
              cpu_control::format_cpu_list(d->host_cpus_),
              cpu_control::format_cpu_list(d->cores_at_start_));
  }
  MALV_ASSIGN_OR_RETURN(d->backend_, make_backend(config));

  // MLaaS: inference runs on the same accelerator, on its own queue, batched
  // across every policy and VM that asks for the same model. Each model's
  // crossover is measured when it loads, on the service's thread, so that
  // model_load stays fast and no decision waits for it.
  mlaas::InferenceOptions inference_options;
  inference_options.calibrate = true;
  inference_options.calibrate_in_background = true;
  d->inference_ = std::make_unique<mlaas::InferenceService>(d->backend_.get(), inference_options);
  d->services_ = std::make_unique<mlaas::HostServices>(d->features_, d->inference_.get());
  d->policies_ = std::make_unique<mlaas::PolicyRegistry>(d->services_->table());
  const std::string dir = config.policy_dir.empty() ? mlaas::policy_dir() : config.policy_dir;
  MALV_TRY_CONTEXT(d->policies_->load_directory(dir), "loading MLaaS modules from " + dir);
  d->runner_ = std::make_unique<mlaas::PolicyRunner>(*d->policies_);
  // gpu_sched policies that name a model per item (learned-sjf) have it run
  // as the item is queued, batched across VMs, not under the scheduler's
  // lock (see vgpu/mlaas_gpu_sched_policies.h).
  MALV_ASSIGN_OR_RETURN(d->enqueue_inference_,
                        mlaas::AsyncInference::create(*d->inference_, vgpu::kEnqueueScoringQueue));
  d->sched_policies_ = std::make_unique<vgpu::MlaasGpuSchedPolicies>(
      *d->runner_, d->inference_.get(), d->enqueue_inference_.get());
  // PyTorch operators (the torch device): the executor plugin loads when a
  // guest first asks for one.
  d->aten_ = accel::make_aten_operators({.denied = config.aten_denied});
  d->vgpu_ =
      std::make_unique<vgpu::VgpuService>(*d->backend_, *d->sched_policies_, d->options_.scheduler);
  // Oversubscribed VMs' memory managers: eviction by each VM's memory policy;
  // on the CPU backend their copies are paced to the modelled link.
  d->memory_policies_ = std::make_unique<vgpu::MlaasMemoryPolicies>(*d->runner_);
  const bool cpu = d->backend_->info().backend == "cpu";
  d->vgpu_->set_memory_policies(d->memory_policies_.get(),
                                {.link_bytes_per_s = cpu ? config.spill_link_gbps * 1e9 : 0.0,
                                 .lend = config.memory_lending,
                                 .prefetch = config.memory_prefetch,
                                 .trace_dir = config.memory_trace_dir});
  // The config file's VMs, merged with what the admin said before a restart.
  // By default it lives beside the guest socket, so a host started in a
  // private run directory (tests, the demo) keeps its state there.
  const std::string socket_path =
      config.socket.empty() ? default_runtime_dir() + "/malv.sock" : config.socket;
  const std::string state_dir = config.state_dir.empty()
                                    ? socket_path.substr(0, socket_path.rfind('/') + 1) + "state"
                                    : config.state_dir;
  d->vgpu_->vms().set_config_check(
      [allowed = config.cpu_allowed_pid_uids](const vgpu::VmConfig& vm) {
        return check_cpu_pid(vm, allowed);
      });
  // Models that policies keep (model_save) live there too, under models/.
  d->services_->set_state_dir(state_dir);
  // The features policies read through the host services (docs/mlaas-abi.md):
  // declared before any VM's policy is created, since a policy looks its
  // features up when it is created.
  MALV_ASSIGN_OR_RETURN(d->feature_publisher_,
                        FeaturePublisher::start(d->features_, *d->vgpu_, kFeatureInterval));
  d->state_ = std::make_unique<vgpu::AdminState>(state_dir, d->vgpu_->vms(), d->policies_.get());
  d->vgpu_->scheduler().set_host_policy(config.gpu_host_policy);
  d->state_->set_scheduler(&d->vgpu_->scheduler());
  MALV_TRY(d->state_->restore(config.vms));

  // Offload: the data pipeline reads only the configured data directories;
  // each pipeline's staging depth is its VM's prefetch policy's decision.
  offload::CatalogOptions catalog;
  catalog.data_dirs = config.data_dirs;
  if (catalog.data_dirs.empty()) catalog.data_dirs.push_back(kDefaultDataDir);
  // The pipeline knows its VM by name; the policy gets the VM's id.
  auto vm_id = [vgpu = d->vgpu_.get()](std::string_view vm) -> std::uint64_t {
    Result<std::shared_ptr<vgpu::Vm>> found = vgpu->vms().find(std::string(vm));
    return found.ok() ? found.value()->id().value() : 0;
  };
  catalog.prefetch = [runner = d->runner_.get(), vm_id](
                         std::string_view vm, const malv_prefetch_observation& observation) {
    malv_prefetch_observation o = observation;
    o.vm_id = vm_id(vm);
    malv_prefetch_decision decision{};
    runner->decide(vm, std::span(&o, 1), std::span(&decision, 1));
    return decision.depth;
  };
  catalog.prefetch_feedback = [runner = d->runner_.get(), vm_id](
                                  std::string_view vm, const malv_prefetch_outcome& outcome) {
    malv_prefetch_outcome o = outcome;
    o.stream.vm_id = vm_id(vm);
    runner->feedback(vm, mlaas::PolicyClass::kPrefetch, &o, 1);
  };
  d->datasets_ = std::make_unique<offload::DatasetCatalog>(std::move(catalog));

  // Checkpoints: a private directory per VM under the checkpoint root.
  const std::string checkpoint_dir = config.checkpoint_dir.empty()
                                         ? default_runtime_dir() + "/checkpoints"
                                         : config.checkpoint_dir;
  MALV_ASSIGN_OR_RETURN(d->checkpoints_, offload::CheckpointStore::open({.root = checkpoint_dir}));

  if (config.cpu_control) MALV_TRY(d->start_cpu_control());

  microlake::ServerOptions server;
  server.unix_path = config.socket.empty() ? default_runtime_dir() + "/malv.sock" : config.socket;
  server.default_arena_bytes = config.arena_mib << 20;
  server.max_arena_bytes =
      std::max<std::uint64_t>(server.max_arena_bytes, server.default_arena_bytes);
  if (!config.tcp.empty()) {
    MALV_ASSIGN_OR_RETURN(HostPort tcp, parse_host_port(config.tcp, /*allow_port_zero=*/true));
    server.tcp_host = tcp.host;
    server.tcp_port = tcp.port;
  }
  if (config.vsock_port != 0) server.vsock_port = config.vsock_port;
  server.hello_timeout = std::chrono::milliseconds(config.hello_timeout_ms);
  server.max_pending_per_peer = config.max_pending_per_peer;
  server.max_pending = config.max_pending;
  HostDaemon* raw = d.get();
  server.admit = [raw](const microlake::HelloInfo& info) { return raw->admit(info); };
  MALV_ASSIGN_OR_RETURN(d->server_, microlake::Server::start(*d->backend_, server));
  if (!config.ivshmem_sockets.empty()) {
    microlake::IvshmemServerOptions ivshmem;
    const std::string run_dir = server.unix_path.substr(0, server.unix_path.rfind('/') + 1);
    for (const auto& [vm, socket] : config.ivshmem_sockets) {
      ivshmem.vms.push_back({vm, socket.empty() ? run_dir + vm + ".ivshmem" : socket});
    }
    ivshmem.slots = config.ivshmem_slots;
    ivshmem.arena_bytes = config.ivshmem_arena_mib << 20;
    ivshmem.sq_entries = server.sq_entries;
    ivshmem.cq_entries = server.cq_entries;
    ivshmem.admit = server.admit;
    MALV_ASSIGN_OR_RETURN(d->ivshmem_, microlake::IvshmemServer::start(*d->backend_, ivshmem));
  }

  d->admin_path_ = config.admin_socket.empty()
                       ? server.unix_path.substr(0, server.unix_path.rfind('/') + 1) + "admin.sock"
                       : config.admin_socket;
  const accel::DeviceInfo info = d->backend_->info();
  const std::string host_cpus =
      d->host_cpus_.empty() ? std::string("all") : cpu_control::format_cpu_list(d->host_cpus_);
  const unsigned host_cpu_count =
      d->host_cpus_.empty() ? usable_cpu_count() : static_cast<unsigned>(d->host_cpus_.size());
  MALV_ASSIGN_OR_RETURN(
      d->admin_, vgpu::AdminApi::start(
                     d->admin_path_,
                     {.vgpu = d->vgpu_.get(),
                      .state = d->state_.get(),
                      .checkpoint_usage =
                          [store = d->checkpoints_.get()](const std::string& vm) {
                            const offload::CheckpointUsage usage = store->usage(vm);
                            return vgpu::VmDiskUsage{usage.bytes, usage.count};
                          },
                      .policies = d->policies_.get(),
                      .runner = d->runner_.get(),
                      .backend = info.backend,
                      .device = info.name,
                      .more_metrics =
                          [inference = d->inference_.get(), queue = d->enqueue_inference_.get(),
                           sched = d->sched_policies_.get(), cpu = d->cpu_.get(),
                           ivshmem = d->ivshmem_.get()] {
                            std::string text = inference->metrics_text();
                            text += queue->metrics_text();
                            text += sched->metrics_text();
                            if (cpu != nullptr) text += cpu->metrics_text();
                            if (ivshmem != nullptr) text += ivshmem->metrics_text();
                            return text;
                          },
                      .cpu_control = d->cpu_ ? d->cpu_->mechanism() : "off",
                      .host_cpus = host_cpus,
                      .host_cpu_count = host_cpu_count,
                      .cpu_json =
                          [cpu = d->cpu_.get()](const std::string& vm) {
                            return cpu != nullptr ? cpu_status_json(*cpu, vm) : std::string();
                          },
                      .ivshmem_json =
                          [ivshmem = d->ivshmem_.get()](const std::string& vm) {
                            return ivshmem != nullptr ? ivshmem_status_json(*ivshmem, vm)
                                                      : std::string();
                          }}));
  return d;
}

Status HostDaemon::start_cpu_control() {
  cpu_control::HostView view;
  view.vm_names = [vgpu = vgpu_.get()] {
    std::vector<std::string> names;
    for (const auto& vm : vgpu->vms().list()) names.push_back(vm->name());
    return names;
  };
  view.facts = [vgpu =
                    vgpu_.get()](std::string_view name) -> std::optional<cpu_control::VmCpuFacts> {
    Result<std::shared_ptr<vgpu::Vm>> found = vgpu->vms().find(std::string(name));
    if (!found.ok()) return std::nullopt;
    const vgpu::Vm& vm = *found.value();
    const vgpu::VmConfig c = vm.config();
    cpu_control::VmCpuFacts f;
    f.vm_id = vm.id().value();
    f.priority_class =
        c.priority == vgpu::PriorityClass::kLatency ? MALV_PRIORITY_LATENCY : MALV_PRIORITY_BATCH;
    f.vm_weight = c.weight;
    f.weight_limit = c.cpu_weight_limit;
    f.accel_busy_ns = static_cast<std::int64_t>(vm.counters().busy_ns.load());
    f.accel_starved_ns = static_cast<std::int64_t>(vm.counters().accel_starved_ns.load());
    if (c.priority == vgpu::PriorityClass::kLatency) {
      f.pending_latency_requests = static_cast<std::uint32_t>(
          std::min<std::uint64_t>(vm.counters().queue_depth.load(), 0xffffffffu));
    }
    f.config_pid = static_cast<pid_t>(c.cpu_pid);
    return f;
  };
  cpu_control::CpuControlOptions options;
  options.interval = std::chrono::milliseconds(options_.config.cpu_interval_ms);
  options.batch_worker_threads = backend_->batch_worker_threads();
  options.batch_worker_home = host_cpus_;
  options.groups.cpus = cores_at_start_;
  const std::string& mechanism = options_.config.cpu_mechanism;
  for (cpu_control::Mechanism m :
       {cpu_control::Mechanism::kCgroupV2, cpu_control::Mechanism::kCgroupV1,
        cpu_control::Mechanism::kThreadFallback}) {
    if (mechanism == cpu_control::mechanism_name(m)) options.groups.force = m;
  }
  if (mechanism != "auto" && !options.groups.force) {
    return Error(ErrorCode::kInvalidArgument,
                 fmt::format("cpu_mechanism '{}': auto, cgroup-v2, cgroup-v1 or thread-fallback",
                             mechanism));
  }
  MALV_ASSIGN_OR_RETURN(
      cpu_, cpu_control::CpuShareController::start(*policies_, *runner_, std::move(view), options));
  return ok_status();
}

HostDaemon::~HostDaemon() {
  admin_.reset();
  // Queued work gets a short grace to finish; what is left is cancelled
  // when the sessions end.
  if (vgpu_ && server_ &&
      !vgpu_->scheduler().wait_idle(std::chrono::milliseconds(options_.config.shutdown_grace_ms))) {
    log::info("serve", "shutdown: queued device work still waiting after {} ms is cancelled",
              options_.config.shutdown_grace_ms);
  }
  ivshmem_.reset();            // ends every VM's sessions before the services they use go away
  server_.reset();             // ... and every process guest's
  cpu_.reset();                // its thread reads the VMs (and may hold the last of one)
  feature_publisher_.reset();  // reads the VMs
  vgpu_.reset();
  if (!cores_at_start_.empty()) {
    // A daemon run inside a longer process (tests) gives its cores back.
    (void)cpu_control::set_process_affinity(cores_at_start_);
  }
}

Result<microlake::Admission> HostDaemon::admit(const microlake::HelloInfo& info) {
  std::unique_ptr<vgpu::VmBackend> view;
  if (info.via == microlake::HelloInfo::Via::kIvshmem) {
    // The socket its QEMU attached to, not a token, says which VM it is.
    MALV_ASSIGN_OR_RETURN(view, vgpu_->open_vouched_session(info.vm_name));
  } else if (info.via == microlake::HelloInfo::Via::kVsock && !options_.open_admission) {
    // The hypervisor vouches for the peer's CID: it, not a token, is the VM.
    if (!info.vsock_cid) return Error(ErrorCode::kUnauthenticated, "vsock peer without a CID");
    MALV_ASSIGN_OR_RETURN(view, vgpu_->open_vsock_session(*info.vsock_cid, info.vm_name));
  } else {
    if (options_.open_admission && !vgpu_->vms().find(info.vm_name).ok()) {
      (void)vgpu_->vms().create({.name = info.vm_name, .token = info.credential});
    }
    MALV_ASSIGN_OR_RETURN(view, vgpu_->open_session(info.vm_name, info.credential));
  }
  MALV_TRY(view->charge_host_memory(info.arena_bytes));
  const vgpu::VmConfig config = view->vm()->config();
  microlake::Admission admission;
  admission.limits.max_buffers = config.max_handles;
  admission.limits.max_events = config.max_handles;
  admission.limits.max_streams = config.max_streams;
  if (info.peer) {
    log::info("serve", "VM {} admitted ({} pid {}, uid {})", info.vm_name,
              info.via == microlake::HelloInfo::Via::kIvshmem ? "QEMU" : "guest", info.peer->pid,
              info.peer->uid);
  }
  // The guest's process and this thread (the session's dispatcher) work
  // for the VM until the session ends.
  if (cpu_) {
    admission.services.keep_alive =
        cpu_->join(info.vm_name, info.peer ? info.peer->pid : 0, static_cast<pid_t>(::gettid()));
  }
  admission.services.policies = policies_.get();
  admission.services.checkpoints = checkpoints_.get();
  admission.services.host_memory = view->vm()->host_memory();
  admission.services.checkpoint_quota = [vm = view->vm()] {
    const vgpu::VmConfig c = vm->config();
    return offload::CheckpointQuota{c.checkpoint_bytes_limit, c.max_checkpoints};
  };
  admission.services.datasets = datasets_.get();
  admission.services.data_stall = [vm = view->vm()](std::int64_t waited_ns) {
    vm->counters().data_stall_ns.fetch_add(static_cast<std::uint64_t>(waited_ns),
                                           std::memory_order_relaxed);
  };
  admission.services.aten = aten_.get();
  admission.services.aten_refusal = [vm = view->vm(), backend = backend_->info().backend] {
    if (backend != "cpu") {
      return fmt::format(
          "PyTorch operators run on memory the host addresses; the {} backend's "
          "is on the device (docs/torch.md)",
          backend);
    }
    if (vm->oversubscribed() || vm->memory().active()) {
      return fmt::format(
          "VM '{}' oversubscribes its memory: the torch device does not run on "
          "memory the manager moves yet (docs/torch.md)",
          vm->name());
    }
    return std::string();
  };
  admission.backend = std::move(view);
  return admission;
}

}  // namespace malv::host
