// `malv vm list|show|create|update|delete`: VMs of a running host.
#include <fmt/format.h>

#include "cli/commands.h"
#include "cli/option_checks.h"
#include "harness/admin_client.h"

namespace malv::cli {
namespace {

struct VmFlags {
  std::string admin;
  std::string name;
  std::string token;
  double memory_mib = -1;
  double virtual_memory_mib = -1;
  double weight = -1;
  std::string priority;
  int max_streams = -1;
  std::int64_t max_handles = -1;
  std::int64_t max_sessions = -1;
  double host_memory_mib = -1;
  double checkpoint_mib = -1;
  std::int64_t max_checkpoints = -1;
  std::int64_t cpu_weight_limit = -1;
  std::int64_t cpu_pid = -1;
  std::string gpu_policy;
  bool json = false;
};

nlohmann::json fields(const VmFlags& f) {
  nlohmann::json body = nlohmann::json::object();
  if (!f.token.empty()) body["token"] = f.token;
  if (f.memory_mib >= 0) body["memory_bytes"] = static_cast<std::uint64_t>(f.memory_mib * 1048576);
  if (f.virtual_memory_mib >= 0) {
    body["virtual_memory_bytes"] = static_cast<std::uint64_t>(f.virtual_memory_mib * 1048576);
  }
  if (f.weight >= 0) body["weight"] = f.weight;
  if (!f.priority.empty()) body["priority"] = f.priority;
  if (f.max_streams >= 0) body["max_streams"] = f.max_streams;
  if (f.max_handles >= 0) body["max_handles"] = f.max_handles;
  if (f.max_sessions >= 0) body["max_sessions"] = f.max_sessions;
  if (f.host_memory_mib >= 0) {
    body["host_memory_bytes"] = static_cast<std::uint64_t>(f.host_memory_mib * 1048576);
  }
  if (f.checkpoint_mib >= 0) {
    body["checkpoint_bytes"] = static_cast<std::uint64_t>(f.checkpoint_mib * 1048576);
  }
  if (f.max_checkpoints >= 0) body["max_checkpoints"] = f.max_checkpoints;
  if (f.cpu_weight_limit >= 0) body["cpu_weight_limit"] = f.cpu_weight_limit;
  if (f.cpu_pid >= 0) body["cpu_pid"] = f.cpu_pid;
  if (!f.gpu_policy.empty()) body["gpu_policy"] = f.gpu_policy;
  return body;
}

void print_vm_table(const nlohmann::json& vms) {
  fmt::print("{:<16} {:>7} {:<8} {:>12} {:>12} {:>12} {:>12} {:>9} {:>10} {:<28}\n", "VM", "WEIGHT",
             "CLASS", "MEM USED", "MEM LIMIT", "HOST USED", "HOST LIMIT", "SESSIONS", "BUSY s",
             "GPU POLICY");
  for (const auto& vm : vms) {
    const auto& s = vm["stats"];
    std::string policy = vm.contains("policies") ? vm["policies"].value("gpu_sched", "") : "";
    fmt::print("{:<16} {:>7.2f} {:<8} {:>12} {:>12} {:>12} {:>12} {:>9} {:>10.3f} {:<28}\n",
               vm["name"].get<std::string>(), vm["weight"].get<double>(),
               vm["priority"].get<std::string>(), s["memory_used"].get<std::uint64_t>(),
               vm["memory_limit"].get<std::uint64_t>(), s.value("host_memory_used", 0ull),
               vm.value("host_memory_limit", 0ull),
               fmt::format("{}/{}", s.value("sessions", 0u), vm.value("max_sessions", 0u)),
               s["busy_seconds"].get<double>(), policy);
  }
}

int run(const std::string& action, const VmFlags& f) {
  harness::AdminClient admin(f.admin.empty() ? harness::default_admin_socket() : f.admin);
  Result<nlohmann::json> reply = Error(ErrorCode::kInternal, "unreachable");
  if (action == "list") {
    reply = admin.call("GET", "/vms");
  } else if (action == "show") {
    reply = admin.call("GET", "/vms/" + f.name);
  } else if (action == "create") {
    nlohmann::json body = fields(f);
    body["name"] = f.name;
    reply = admin.call("POST", "/vms", body);
  } else if (action == "update") {
    reply = admin.call("PATCH", "/vms/" + f.name, fields(f));
  } else if (action == "delete") {
    reply = admin.call("DELETE", "/vms/" + f.name);
  }
  if (!reply.ok()) {
    fmt::print(stderr, "malv vm {}: {}\n", action, reply.error().message());
    return 1;
  }
  if (f.json || !(action == "list" || action == "show")) {
    fmt::print("{}\n", reply.value().dump(2));
  } else {
    print_vm_table(reply.value().is_array() ? reply.value()
                                            : nlohmann::json::array({reply.value()}));
  }
  return 0;
}

}  // namespace

void register_vm(CLI::App& app, int& exit_code) {
  auto f = std::make_shared<VmFlags>();
  CLI::App* vm = app.add_subcommand("vm", "Create, list, update and delete VMs on a running host");
  vm->require_subcommand(1);
  vm->add_option("--admin", f->admin,
                 "Admin socket of the host (default: $XDG_RUNTIME_DIR/malv/admin.sock)");
  for (const char* action : {"list", "show", "create", "update", "delete"}) {
    CLI::App* sub = vm->add_subcommand(action, fmt::format("{} VMs", action));
    if (std::string(action) != "list") sub->add_option("name", f->name, "VM name")->required();
    if (std::string(action) == "create" || std::string(action) == "update") {
      sub->add_option("--token", f->token, "Credential the guest must present");
      sub->add_option("--memory-mib", f->memory_mib, "Device-memory quota in MiB (0: none)")
          ->check(finite_in(0, 1 << 24));
      sub->add_option("--virtual-memory-mib", f->virtual_memory_mib,
                      "Device memory the VM may allocate in all, MiB; above --memory-mib the host "
                      "spills what does not fit to host memory (0: no oversubscription)")
          ->check(finite_in(0, 1 << 24));
      sub->add_option("--weight", f->weight, "Compute share weight")->check(finite_in(1e-6, 1e6));
      sub->add_option("--priority", f->priority, "latency or batch");
      sub->add_option("--max-streams", f->max_streams, "Stream quota")
          ->check(CLI::Range(1, std::numeric_limits<int>::max()));
      sub->add_option("--max-handles", f->max_handles, "Buffers and events per session, each")
          ->check(CLI::Range(std::int64_t{1}, std::int64_t{0xffffffff}));
      sub->add_option("--max-sessions", f->max_sessions, "Sessions open at once (0: no limit)")
          ->check(CLI::Range(std::int64_t{0}, std::int64_t{0xffffffff}));
      sub->add_option("--host-memory-mib", f->host_memory_mib,
                      "Host-memory quota in MiB: arenas and checkpoint snapshots (0: none)")
          ->check(finite_in(0, 1 << 24));
      sub->add_option("--checkpoint-mib", f->checkpoint_mib,
                      "Checkpoint disk quota in MiB (0: none)")
          ->check(finite_in(0, 1 << 24));
      sub->add_option("--max-checkpoints", f->max_checkpoints, "Checkpoints kept (0: no limit)")
          ->check(CLI::Range(std::int64_t{0}, std::int64_t{0xffffffff}));
      sub->add_option("--cpu-weight-limit", f->cpu_weight_limit,
                      "Highest CPU weight its cpu_sched policy may give it (100: the default "
                      "share)")
          ->check(CLI::Range(std::int64_t{1}, std::int64_t{10000}));
      sub->add_option("--cpu-pid", f->cpu_pid,
                      "A process working for the VM, e.g. its hypervisor (0: none); its owner "
                      "must be in the host's cpu_allowed_pid_uids")
          ->check(CLI::Range(std::int64_t{0}, std::int64_t{0x7fffffff}));
      sub->add_option(
          "--gpu-policy", f->gpu_policy,
          std::string(action) == "create" ? "gpu_sched policy (default fifo)" : "gpu_sched policy");
    }
    sub->add_flag("--json", f->json, "Print JSON");
    sub->callback([f, &exit_code, name = std::string(action)] { exit_code = run(name, *f); });
  }
}

}  // namespace malv::cli
