#include "vgpu/admin_api.h"

#include <fmt/format.h>
#include <httplib.h>
#include <sys/socket.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include "base/clock.h"
#include "base/log.h"
#include "vgpu/vm_config_json.h"

namespace malv::vgpu {
namespace {

using nlohmann::json;

int http_status(ErrorCode code) {
  switch (code) {
    case ErrorCode::kNotFound: return 404;
    case ErrorCode::kAlreadyExists:
    case ErrorCode::kFailedPrecondition: return 409;
    case ErrorCode::kUnauthenticated: return 401;
    case ErrorCode::kPermissionDenied: return 403;
    case ErrorCode::kResourceExhausted: return 429;
    case ErrorCode::kInternal:
    case ErrorCode::kIo: return 500;
    default: return 400;
  }
}

void reply_error(httplib::Response& res, const Error& error) {
  res.status = http_status(error.code());
  res.set_content(
      json{{"error", std::string(error_code_name(error.code()))}, {"message", error.to_string()}}
          .dump(),
      "application/json");
}

void reply(httplib::Response& res, const json& body, int status = 200) {
  res.status = status;
  res.set_content(body.dump(), "application/json");
}

Result<json> parse_body(const httplib::Request& req) {
  json body = json::parse(req.body, nullptr, /*allow_exceptions=*/false);
  if (body.is_discarded() || !body.is_object()) {
    return Error(ErrorCode::kInvalidArgument, "request body is not a JSON object");
  }
  return body;
}

// What a /vms/{vm}/<policy route>/{class} request names: its body, the VM
// (which must exist) and the policy class.
struct PolicyTarget {
  json body;
  std::string vm;
  mlaas::PolicyClass cls;
};
Result<PolicyTarget> policy_target(const AdminContext& ctx, VgpuService& vgpu,
                                   const httplib::Request& req) {
  if (ctx.policies == nullptr) return Error(ErrorCode::kUnimplemented, "no MLaaS subsystem");
  MALV_ASSIGN_OR_RETURN(json body, parse_body(req));
  MALV_ASSIGN_OR_RETURN(std::shared_ptr<Vm> vm, vgpu.vms().find(req.matches[1]));
  MALV_ASSIGN_OR_RETURN(mlaas::PolicyClass cls,
                        mlaas::parse_policy_class(std::string(req.matches[2])));
  return PolicyTarget{std::move(body), vm->name(), cls};
}

// Saves the admin's state after a change; a failure is the reply's error
// (the change itself stands: it is in effect, only not yet on disk).
Status persist(const AdminContext& ctx) {
  if (ctx.state == nullptr) return ok_status();
  Status saved = ctx.state->save();
  if (!saved.ok()) {
    log::error("admin", "admin state not saved: {}", saved.error().to_string());
    return Error(ErrorCode::kIo,
                 "the change is in effect but was not saved (it will be lost on "
                 "restart): " +
                     saved.error().to_string());
  }
  return ok_status();
}

// Selects the VM's gpu_sched policy named in body["gpu_policy"], if any.
Status select_gpu_policy(const AdminContext& ctx, const std::string& vm, const json& body) {
  if (!body.contains("gpu_policy")) return ok_status();
  if (!body.at("gpu_policy").is_string()) {
    return Error(ErrorCode::kInvalidArgument, "field 'gpu_policy' must be a string");
  }
  if (ctx.policies == nullptr) return Error(ErrorCode::kUnimplemented, "no MLaaS subsystem");
  return ctx.policies->select(vm, mlaas::PolicyClass::kGpuSched,
                              body.at("gpu_policy").get<std::string>());
}

json vm_json(Vm& vm, const AdminContext& context) {
  const VmConfig c = vm.config();
  const VmCounters& n = vm.counters();
  json out{{"name", c.name},
           {"id", vm.id().value()},
           {"weight", c.weight},
           {"priority", priority_class_name(c.priority)},
           {"memory_limit", c.memory_limit},
           {"virtual_memory_limit", c.virtual_memory_limit},
           {"max_streams", c.max_streams},
           {"max_handles", c.max_handles},
           {"vsock_cid", c.vsock_cid},
           {"max_sessions", c.max_sessions},
           {"host_memory_limit", c.host_memory_limit},
           {"checkpoint_limit_bytes", c.checkpoint_bytes_limit},
           {"max_checkpoints", c.max_checkpoints},
           {"cpu_weight_limit", c.cpu_weight_limit},
           {"cpu_pid", c.cpu_pid},
           {"origin",
            context.state != nullptr ? vm_origin_name(context.state->origin(c.name)) : "admin"}};
  if (context.policies != nullptr) {
    json policies = json::object();
    for (mlaas::PolicyClass cls : mlaas::kAllPolicyClasses) {
      policies[std::string(mlaas::policy_class_name(cls))] =
          context.policies->selected(c.name, cls);
    }
    out["policies"] = policies;
  }
  if (context.cpu_json) {
    const std::string cpu = context.cpu_json(c.name);
    out["cpu"] = cpu.empty() ? json() : json::parse(cpu);
  }
  if (context.ivshmem_json) {
    const std::string ivshmem = context.ivshmem_json(c.name);
    out["ivshmem"] = ivshmem.empty() ? json() : json::parse(ivshmem);
  }
  const MemoryStats memory = vm.memory().stats();
  // What the VM holds on the device: its quota's use and what it borrowed.
  out["stats"] = {{"memory_used", vm.device_memory().used() + memory.borrowed_bytes},
                  {"busy_seconds", static_cast<double>(n.busy_ns.load()) / 1e9},
                  {"accel_starved_seconds", static_cast<double>(n.accel_starved_ns.load()) / 1e9},
                  {"commands", n.commands.load()},
                  {"errors", n.errors.load()},
                  {"decisions", n.decisions.load()},
                  {"fallbacks", n.fallbacks.load()},
                  {"queue_depth", n.queue_depth.load()},
                  {"streams", n.streams.load()},
                  {"sessions", n.sessions.load()},
                  {"host_memory_used", vm.host_memory()->used()},
                  {"virtual_memory_used", vm.virtual_memory().used()}};
  out["stats"]["memory_manager"] = {{"resident_bytes", memory.resident_bytes},
                                    {"borrowed_bytes", memory.borrowed_bytes},
                                    {"bytes_reclaimed", memory.bytes_reclaimed},
                                    {"spilled_bytes", memory.spilled_bytes},
                                    {"bytes_in", memory.bytes_in},
                                    {"bytes_out", memory.bytes_out},
                                    {"faults", memory.faults},
                                    {"prefetches", memory.prefetches},
                                    {"prefetch_hits", memory.prefetch_hits},
                                    {"evictions", memory.evictions},
                                    {"policy_fallbacks", memory.policy_fallbacks},
                                    {"failed_placements", memory.failed_placements}};
  if (context.checkpoint_usage) {
    const VmDiskUsage disk = context.checkpoint_usage(c.name);
    out["stats"]["checkpoint_bytes"] = disk.checkpoint_bytes;
    out["stats"]["checkpoints"] = disk.checkpoints;
  }
  return out;
}

std::string metrics_text(const AdminContext& ctx, VgpuService& vgpu) {
  struct Metric {
    const char* name;
    const char* type;
    const char* help;
    std::function<double(Vm&)> value;
  };
  const std::vector<Metric> metrics{
      {"malv_vm_memory_bytes", "gauge",
       "Device memory the VM holds (in its quota and borrowed above it)",
       [](Vm& vm) {
         return double(vm.device_memory().used() + vm.memory().stats().borrowed_bytes);
       }},
      {"malv_vm_memory_borrowed_bytes", "gauge",
       "Device memory an oversubscribed VM holds above its quota, lent until needed",
       [](Vm& vm) { return double(vm.memory().stats().borrowed_bytes); }},
      {"malv_vm_memory_reclaimed_bytes_total", "counter",
       "Borrowed bytes the VM gave back because another VM needed them",
       [](Vm& vm) { return double(vm.memory().stats().bytes_reclaimed); }},
      {"malv_vm_memory_limit_bytes", "gauge", "The VM's memory quota (0: none)",
       [](Vm& vm) { return double(vm.config().memory_limit); }},
      {"malv_vm_virtual_memory_bytes", "gauge",
       "Device memory the VM has allocated, resident or spilled",
       [](Vm& vm) { return double(vm.virtual_memory().used()); }},
      {"malv_vm_virtual_memory_limit_bytes", "gauge",
       "The VM's virtual memory limit (0: none; at most the memory quota: no oversubscription)",
       [](Vm& vm) { return double(vm.config().virtual_memory_limit); }},
      {"malv_vm_managed_resident_bytes", "gauge",
       "Memory-managed buffers of the VM on the device now",
       [](Vm& vm) { return double(vm.memory().stats().resident_bytes); }},
      {"malv_vm_spilled_bytes", "gauge", "Memory-managed buffers of the VM held in host memory",
       [](Vm& vm) { return double(vm.memory().stats().spilled_bytes); }},
      {"malv_vm_memory_in_bytes_total", "counter", "Bytes filled back to the device",
       [](Vm& vm) { return double(vm.memory().stats().bytes_in); }},
      {"malv_vm_memory_out_bytes_total", "counter", "Bytes copied out of evicted dirty buffers",
       [](Vm& vm) { return double(vm.memory().stats().bytes_out); }},
      {"malv_vm_memory_faults_total", "counter", "Ops that waited for a buffer to be filled",
       [](Vm& vm) { return double(vm.memory().stats().faults); }},
      {"malv_vm_memory_prefetches_total", "counter",
       "Buffers filled ahead of their use while the batch before ran",
       [](Vm& vm) { return double(vm.memory().stats().prefetches); }},
      {"malv_vm_memory_prefetch_hits_total", "counter", "Uses of buffers brought in ahead of time",
       [](Vm& vm) { return double(vm.memory().stats().prefetch_hits); }},
      {"malv_vm_memory_evictions_total", "counter", "Buffers evicted from the device",
       [](Vm& vm) { return double(vm.memory().stats().evictions); }},
      {"malv_vm_memory_policy_fallbacks_total", "counter",
       "Eviction decisions LRU made because the memory policy failed",
       [](Vm& vm) { return double(vm.memory().stats().policy_fallbacks); }},
      {"malv_vm_memory_failed_placements_total", "counter",
       "Ops not run because their buffers could not all be resident at once",
       [](Vm& vm) { return double(vm.memory().stats().failed_placements); }},
      {"malv_vm_busy_seconds_total", "counter", "Accelerator time used by the VM",
       [](Vm& vm) { return double(vm.counters().busy_ns.load()) / 1e9; }},
      {"malv_vm_data_stall_seconds_total", "counter",
       "Time the VM's guests waited for the host's data pipeline to stage a batch",
       [](Vm& vm) { return double(vm.counters().data_stall_ns.load()) / 1e9; }},
      {"malv_vm_commands_total", "counter", "Device commands queued by the VM",
       [](Vm& vm) { return double(vm.counters().commands.load()); }},
      {"malv_vm_errors_total", "counter", "Device commands of the VM that failed",
       [](Vm& vm) { return double(vm.counters().errors.load()); }},
      {"malv_vm_queue_depth", "gauge", "Commands waiting in the vGPU scheduler",
       [](Vm& vm) { return double(vm.counters().queue_depth.load()); }},
      {"malv_vm_policy_decisions_total", "counter", "Scheduling decisions for the VM",
       [](Vm& vm) { return double(vm.counters().decisions.load()); }},
      {"malv_vm_policy_fallbacks_total", "counter", "Decisions the baseline made instead",
       [](Vm& vm) { return double(vm.counters().fallbacks.load()); }},
      {"malv_vm_host_memory_bytes", "gauge", "Host memory the VM holds (arenas, snapshots)",
       [](Vm& vm) { return double(vm.host_memory()->used()); }},
      {"malv_vm_host_memory_limit_bytes", "gauge", "The VM's host-memory quota (0: none)",
       [](Vm& vm) { return double(vm.config().host_memory_limit); }},
      {"malv_vm_sessions", "gauge", "Sessions the VM has open",
       [](Vm& vm) { return double(vm.counters().sessions.load()); }},
      {"malv_vm_session_limit", "gauge", "Sessions the VM may have open at once (0: no limit)",
       [](Vm& vm) { return double(vm.config().max_sessions); }},
      {"malv_vm_checkpoint_limit_bytes", "gauge", "The VM's checkpoint disk quota (0: none)",
       [](Vm& vm) { return double(vm.config().checkpoint_bytes_limit); }},
      {"malv_vm_checkpoint_count_limit", "gauge", "Checkpoints the VM may keep (0: no limit)",
       [](Vm& vm) { return double(vm.config().max_checkpoints); }},
      {"malv_vm_cpu_weight_limit", "gauge",
       "The highest CPU weight the VM's cpu_sched policy may give it",
       [](Vm& vm) { return double(vm.config().cpu_weight_limit); }},
      {"malv_vm_accel_starved_seconds_total", "counter",
       "Time the accelerator had none of the VM's work while it ran a job (waiting for its CPU "
       "side)",
       [](Vm& vm) { return double(vm.counters().accel_starved_ns.load()) / 1e9; }},
      {"malv_vm_checkpoint_bytes", "gauge", "Bytes of the VM's stored checkpoints",
       [&ctx](Vm& vm) {
         return ctx.checkpoint_usage ? double(ctx.checkpoint_usage(vm.name()).checkpoint_bytes)
                                     : 0.0;
       }},
      {"malv_vm_checkpoints", "gauge", "Checkpoints the VM has stored",
       [&ctx](Vm& vm) {
         return ctx.checkpoint_usage ? double(ctx.checkpoint_usage(vm.name()).checkpoints) : 0.0;
       }},
  };
  std::string out;
  auto vms = vgpu.vms().list();
  for (const Metric& m : metrics) {
    out += fmt::format("# HELP {} {}\n# TYPE {} {}\n", m.name, m.help, m.name, m.type);
    for (auto& vm : vms)
      out += fmt::format("{}{{vm=\"{}\"}} {}\n", m.name, vm->name(), m.value(*vm));
  }
  // After the VMs' figures: what the accelerator itself has handed out, so
  // that a monitor can check the per-VM accounting against it (bench soak).
  out += fmt::format(
      "# HELP malv_device_memory_bytes Device memory in use on the accelerator, all VMs and the "
      "host\n# TYPE malv_device_memory_bytes gauge\nmalv_device_memory_bytes {}\n",
      vgpu.device().memory_in_use());
  const DeviceMemoryLedger& ledger = vgpu.ledger();
  out += fmt::format(
      "# HELP malv_device_memory_capacity_bytes Device memory the VMs share\n"
      "# TYPE malv_device_memory_capacity_bytes gauge\nmalv_device_memory_capacity_bytes {}\n"
      "# HELP malv_device_memory_guaranteed_bytes The VMs' resident quotas, together\n"
      "# TYPE malv_device_memory_guaranteed_bytes gauge\nmalv_device_memory_guaranteed_bytes {}\n"
      "# HELP malv_device_memory_pool_bytes Device memory VMs without a quota hold\n"
      "# TYPE malv_device_memory_pool_bytes gauge\nmalv_device_memory_pool_bytes {}\n"
      "# HELP malv_device_memory_lent_bytes Device memory lent to VMs above their quotas\n"
      "# TYPE malv_device_memory_lent_bytes gauge\nmalv_device_memory_lent_bytes {}\n"
      "# HELP malv_device_memory_reclaimed_bytes_total Lent memory taken back for its owners\n"
      "# TYPE malv_device_memory_reclaimed_bytes_total counter\n"
      "malv_device_memory_reclaimed_bytes_total {}\n",
      ledger.capacity(), ledger.guaranteed(), ledger.pool()->used(), ledger.borrowed_bytes(),
      ledger.reclaimed_bytes());
  if (ctx.host_cpu_count > 0) {
    out += fmt::format(
        "# HELP malv_host_cpus Cores the host's own threads (workers, dispatchers) run on\n"
        "# TYPE malv_host_cpus gauge\nmalv_host_cpus {}\n",
        ctx.host_cpu_count);
  }
  const SchedulerStats sched = vgpu.scheduler().stats();
  out +=
      "# HELP malv_scheduler_host_policy The vGPU scheduler's host level (1: selected)\n"
      "# TYPE malv_scheduler_host_policy gauge\n";
  for (HostSchedPolicy policy : kHostSchedPolicies) {
    out += fmt::format("malv_scheduler_host_policy{{policy=\"{}\"}} {}\n",
                       host_sched_policy_name(policy),
                       policy == vgpu.scheduler().host_policy() ? 1 : 0);
  }
  out += fmt::format(
      "# HELP malv_scheduler_decisions_total Batches the vGPU scheduler chose\n"
      "# TYPE malv_scheduler_decisions_total counter\nmalv_scheduler_decisions_total {}\n"
      "# HELP malv_scheduler_starvation_overrides_total Decisions the starvation bound made\n"
      "# TYPE malv_scheduler_starvation_overrides_total counter\n"
      "malv_scheduler_starvation_overrides_total {}\n"
      "# HELP malv_scheduler_prepared_answers_total Candidates of policy decisions whose "
      "answer was prepared at enqueue, by whether it was ready by the decision\n"
      "# TYPE malv_scheduler_prepared_answers_total counter\n"
      "malv_scheduler_prepared_answers_total{{state=\"ready\"}} {}\n"
      "malv_scheduler_prepared_answers_total{{state=\"missing\"}} {}\n",
      sched.decisions, sched.starvation_overrides, sched.prepared_ready, sched.prepared_missing);
  if (ctx.more_metrics) out += ctx.more_metrics();
  return out;
}

json scheduler_json(VgpuScheduler& scheduler) {
  json policies = json::array();
  for (HostSchedPolicy policy : kHostSchedPolicies) {
    policies.push_back(std::string(host_sched_policy_name(policy)));
  }
  const SchedulerStats stats = scheduler.stats();
  return {{"host_policy", std::string(host_sched_policy_name(scheduler.host_policy()))},
          {"host_policies", policies},
          {"decisions", stats.decisions},
          {"batches", stats.batches},
          {"starvation_overrides", stats.starvation_overrides},
          {"prepared_ready", stats.prepared_ready},
          {"prepared_missing", stats.prepared_missing}};
}

}  // namespace

Result<std::unique_ptr<AdminApi>> AdminApi::start(const std::string& unix_path,
                                                  AdminContext context) {
  std::unique_ptr<AdminApi> api(new AdminApi());
  api->context_ = context;
  api->path_ = unix_path;
  api->server_ = std::make_unique<httplib::Server>();
  api->server_->set_address_family(AF_UNIX);
  api->install_routes();
  ::unlink(unix_path.c_str());
  if (!api->server_->bind_to_port(unix_path.c_str(), 80)) {
    return Error(ErrorCode::kIo, fmt::format("admin API cannot listen on {}", unix_path));
  }
  api->thread_ = std::thread([raw = api.get()] { raw->server_->listen_after_bind(); });
  log::info("admin", "admin API on {}", unix_path);
  return api;
}

AdminApi::~AdminApi() {
  if (server_) server_->stop();
  if (thread_.joinable()) thread_.join();
  ::unlink(path_.c_str());
}

void AdminApi::install_routes() {
  httplib::Server& s = *server_;
  AdminContext& ctx = context_;
  VgpuService& vgpu = *ctx.vgpu;
  // A handler that throws (a JSON field of the wrong type, say) answers 400.
  s.set_exception_handler(
      [](const httplib::Request&, httplib::Response& res, std::exception_ptr thrown) {
        std::string what = "unknown exception";
        try {
          std::rethrow_exception(thrown);
        } catch (const std::exception& e) {
          what = e.what();
        } catch (...) {
        }
        reply_error(res, Error(ErrorCode::kInvalidArgument, what));
      });

  s.Get("/health", [&ctx](const httplib::Request&, httplib::Response& res) {
    reply(res, {{"status", "ok"},
                {"backend", ctx.backend},
                {"device", ctx.device},
                {"cpu_control", ctx.cpu_control},
                {"host_cpus", ctx.host_cpus}});
  });
  s.Get("/vms", [&](const httplib::Request&, httplib::Response& res) {
    json out = json::array();
    for (auto& vm : vgpu.vms().list()) out.push_back(vm_json(*vm, ctx));
    reply(res, out);
  });
  s.Get(R"(/vms/([^/]+))", [&](const httplib::Request& req, httplib::Response& res) {
    auto vm = vgpu.vms().find(req.matches[1]);
    if (!vm.ok()) return reply_error(res, vm.error());
    reply(res, vm_json(*vm.value(), ctx));
  });
  s.Post("/vms", [&](const httplib::Request& req, httplib::Response& res) {
    auto body = parse_body(req);
    if (!body.ok()) return reply_error(res, body.error());
    VmConfig config;
    if (Status s = apply_vm_fields(body.value(), config, {"gpu_policy"}); !s.ok()) {
      return reply_error(res, s.error());
    }
    auto vm = vgpu.vms().create(config);
    if (!vm.ok()) return reply_error(res, vm.error());
    if (Status s = select_gpu_policy(ctx, config.name, body.value()); !s.ok()) {
      (void)vgpu.vms().remove(config.name);
      if (ctx.policies != nullptr) ctx.policies->remove_vm(config.name);
      return reply_error(res, s.error());
    }
    if (ctx.state != nullptr) ctx.state->note_created(config.name);
    if (Status s = persist(ctx); !s.ok()) return reply_error(res, s.error());
    reply(res, vm_json(*vm.value(), ctx), 201);
  });
  s.Patch(R"(/vms/([^/]+))", [&](const httplib::Request& req, httplib::Response& res) {
    auto body = parse_body(req);
    if (!body.ok()) return reply_error(res, body.error());
    auto vm = vgpu.vms().find(req.matches[1]);
    if (!vm.ok()) return reply_error(res, vm.error());
    const VmConfig before = vm.value()->config();
    VmConfig config = before;
    if (Status s = apply_vm_fields(body.value(), config, {"gpu_policy"}); !s.ok()) {
      return reply_error(res, s.error());
    }
    if (Status s = vgpu.vms().update(config.name, config); !s.ok()) {
      return reply_error(res, s.error());
    }
    // All or nothing: a policy that cannot be selected undoes the settings.
    if (Status s = select_gpu_policy(ctx, config.name, body.value()); !s.ok()) {
      (void)vgpu.vms().update(before.name, before);
      return reply_error(res, s.error());
    }
    if (ctx.state != nullptr) ctx.state->note_changed(config.name);
    if (Status s = persist(ctx); !s.ok()) return reply_error(res, s.error());
    reply(res, vm_json(*vm.value(), ctx));
  });
  s.Delete(R"(/vms/([^/]+))", [&](const httplib::Request& req, httplib::Response& res) {
    const std::string name = req.matches[1];
    if (Status s = vgpu.vms().remove(name); !s.ok()) return reply_error(res, s.error());
    if (ctx.policies != nullptr) ctx.policies->remove_vm(name);
    if (ctx.state != nullptr) ctx.state->note_deleted(name);
    if (Status s = persist(ctx); !s.ok()) return reply_error(res, s.error());
    reply(res, {{"deleted", name}});
  });
  s.Put(R"(/vms/([^/]+)/policy/([^/]+))", [&](const httplib::Request& req, httplib::Response& res) {
    auto target = policy_target(ctx, vgpu, req);
    if (!target.ok()) return reply_error(res, target.error());
    const auto& [body, name, cls] = target.value();
    const std::string policy = body.value("policy", std::string());
    const std::int64_t before = vgpu.scheduler().last_decision_ns();
    if (Status s = ctx.policies->select(name, cls, policy); !s.ok()) {
      return reply_error(res, s.error());
    }
    if (ctx.state != nullptr) ctx.state->note_changed(name);
    if (Status s = persist(ctx); !s.ok()) return reply_error(res, s.error());
    reply(res, {{"vm", name},
                {"class", std::string(mlaas::policy_class_name(cls))},
                {"policy", ctx.policies->selected(name, cls)},
                {"selected_at_ns", mono_now_ns()},
                {"last_decision_before_ns", before}});
  });
  // What the guest may select itself (kPolicySelect): {"policies": [...]}
  // sets the allow-list (empty: the baseline only), {"any": true} lifts it.
  s.Put(R"(/vms/([^/]+)/allowed/([^/]+))",
        [&](const httplib::Request& req, httplib::Response& res) {
          auto target = policy_target(ctx, vgpu, req);
          if (!target.ok()) return reply_error(res, target.error());
          const auto& [body_json, name, cls] = target.value();
          const json* body = &body_json;
          if (body->value("any", false)) {
            ctx.policies->clear_allow_list(name, cls);
          } else {
            const auto list = body->find("policies");
            if (list == body->end() || !list->is_array()) {
              return reply_error(res, Error(ErrorCode::kInvalidArgument,
                                            "body needs \"policies\": [names] or \"any\": true"));
            }
            std::vector<std::string> names;
            for (const auto& p : *list) {
              if (!p.is_string()) {
                return reply_error(
                    res, Error(ErrorCode::kInvalidArgument, "policy names must be strings"));
              }
              names.push_back(p.get<std::string>());
            }
            if (Status s = ctx.policies->set_allow_list(name, cls, names); !s.ok()) {
              return reply_error(res, s.error());
            }
          }
          if (ctx.state != nullptr) ctx.state->note_changed(name);
          if (Status s = persist(ctx); !s.ok()) return reply_error(res, s.error());
          const auto allowed = ctx.policies->allow_list(name, cls);
          reply(res, {{"vm", name},
                      {"class", std::string(mlaas::policy_class_name(cls))},
                      {"allowed", allowed ? json(*allowed) : json("any")}});
        });
  s.Get("/policies", [&](const httplib::Request&, httplib::Response& res) {
    if (ctx.policies == nullptr) return reply(res, json::array());
    json out = json::array();
    for (const mlaas::ModuleInfo& m : ctx.policies->modules()) {
      json policies = json::array();
      for (const mlaas::PolicyInfo& p : m.policies) {
        policies.push_back({{"name", p.name},
                            {"class", std::string(mlaas::policy_class_name(p.policy_class))},
                            {"description", p.description},
                            {"used_by", p.used_by}});
      }
      out.push_back(
          {{"module", m.name}, {"version", m.version}, {"path", m.path}, {"policies", policies}});
    }
    reply(res, out);
  });
  s.Post("/policies", [&](const httplib::Request& req, httplib::Response& res) {
    if (ctx.policies == nullptr) {
      return reply_error(res, Error(ErrorCode::kUnimplemented, "no MLaaS subsystem"));
    }
    auto body = parse_body(req);
    if (!body.ok()) return reply_error(res, body.error());
    auto info = ctx.policies->load_module(body->value("path", std::string()));
    if (!info.ok()) return reply_error(res, info.error());
    reply(res, {{"module", info->name}, {"version", info->version}}, 201);
  });
  s.Delete(R"(/policies/([^/]+))", [&](const httplib::Request& req, httplib::Response& res) {
    if (ctx.policies == nullptr) {
      return reply_error(res, Error(ErrorCode::kUnimplemented, "no MLaaS subsystem"));
    }
    const bool force = req.has_param("force") && req.get_param_value("force") != "0";
    Status s = ctx.policies->unload_module(
        std::string(req.matches[1]),
        force ? mlaas::UnloadMode::kForce : mlaas::UnloadMode::kRefuseIfInUse);
    if (!s.ok()) return reply_error(res, s.error());
    reply(res, {{"unloaded", std::string(req.matches[1])}});
  });
  // The scheduler's host level: which VM the device serves next.
  s.Get("/scheduler", [&](const httplib::Request&, httplib::Response& res) {
    reply(res, scheduler_json(vgpu.scheduler()));
  });
  s.Put("/scheduler", [&](const httplib::Request& req, httplib::Response& res) {
    auto body = parse_body(req);
    if (!body.ok()) return reply_error(res, body.error());
    if (!body->contains("host_policy") || !(*body)["host_policy"].is_string()) {
      return reply_error(res, Error(ErrorCode::kInvalidArgument,
                                    "body needs \"host_policy\": fifo, fair-share or priority"));
    }
    const std::string name = (*body)["host_policy"].get<std::string>();
    const std::optional<HostSchedPolicy> policy = parse_host_sched_policy(name);
    if (!policy) {
      return reply_error(res, Error(ErrorCode::kInvalidArgument,
                                    fmt::format("unknown host_policy '{}' (fifo, fair-share, "
                                                "priority)",
                                                name)));
    }
    vgpu.scheduler().set_host_policy(*policy);
    log::info("admin", "scheduler host level: {}", name);
    if (ctx.state != nullptr) ctx.state->note_host_policy_changed();
    if (Status s = persist(ctx); !s.ok()) return reply_error(res, s.error());
    reply(res, scheduler_json(vgpu.scheduler()));
  });
  s.Get("/metrics", [&](const httplib::Request&, httplib::Response& res) {
    res.set_content(metrics_text(ctx, vgpu), "text/plain; version=0.0.4");
  });
}

}  // namespace malv::vgpu
