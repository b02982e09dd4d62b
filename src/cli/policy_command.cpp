// `malv policy list|load|unload|select|allow|host`: MLaaS modules of a
// running host, the VMs' selections, what each VM may select itself, and the
// vGPU scheduler's host level (which VM runs next).
#include <fmt/format.h>

#include "cli/commands.h"
#include "harness/admin_client.h"

namespace malv::cli {
namespace {

struct PolicyFlags {
  std::string admin;
  std::string path;
  std::string module;
  bool force = false;
  std::string vm;
  std::string policy_class = "gpu_sched";
  std::string policy;
  std::vector<std::string> allowed;
  bool any = false;
  bool json = false;
};

int run(const std::string& action, const PolicyFlags& f) {
  harness::AdminClient admin(f.admin.empty() ? harness::default_admin_socket() : f.admin);
  Result<nlohmann::json> reply = Error(ErrorCode::kInternal, "unreachable");
  if (action == "list") {
    reply = admin.call("GET", "/policies");
  } else if (action == "load") {
    reply = admin.call("POST", "/policies", {{"path", f.path}});
  } else if (action == "unload") {
    reply = admin.call("DELETE", "/policies/" + f.module + (f.force ? "?force=1" : ""));
  } else if (action == "select") {
    reply = admin.call("PUT", "/vms/" + f.vm + "/policy/" + f.policy_class, {{"policy", f.policy}});
  } else if (action == "host") {
    reply = f.policy.empty() ? admin.call("GET", "/scheduler")
                             : admin.call("PUT", "/scheduler", {{"host_policy", f.policy}});
  } else if (action == "allow") {
    const nlohmann::json body =
        f.any ? nlohmann::json{{"any", true}} : nlohmann::json{{"policies", f.allowed}};
    reply = admin.call("PUT", "/vms/" + f.vm + "/allowed/" + f.policy_class, body);
  }
  if (!reply.ok()) {
    fmt::print(stderr, "malv policy {}: {}\n", action, reply.error().message());
    return 1;
  }
  if (action != "list" || f.json) {
    fmt::print("{}\n", reply.value().dump(2));
    return 0;
  }
  fmt::print("{:<22} {:<10} {:<14} {:<11} {}\n", "MODULE", "VERSION", "POLICY", "CLASS", "USED BY");
  for (const auto& m : reply.value()) {
    for (const auto& p : m["policies"]) {
      std::string users;
      for (const auto& u : p["used_by"]) {
        if (!users.empty()) users += ',';
        users += u.get<std::string>();
      }
      fmt::print("{:<22} {:<10} {:<14} {:<11} {}\n", m["module"].get<std::string>(),
                 m["version"].get<std::string>(), p["name"].get<std::string>(),
                 p["class"].get<std::string>(), users.empty() ? "-" : users);
    }
  }
  return 0;
}

}  // namespace

void register_policy(CLI::App& app, int& exit_code) {
  auto f = std::make_shared<PolicyFlags>();
  CLI::App* policy = app.add_subcommand(
      "policy", "Load, unload, list and select MLaaS policies on a running host");
  policy->require_subcommand(1);
  policy->add_option("--admin", f->admin, "Admin socket of the host");
  CLI::App* list = policy->add_subcommand("list", "Modules, their policies and the VMs using each");
  list->add_flag("--json", f->json, "Print JSON");
  CLI::App* load = policy->add_subcommand("load", "Load a module (.so) into the running host");
  load->add_option("path", f->path, "Path of the shared object")->required();
  CLI::App* unload = policy->add_subcommand("unload", "Unload a module");
  unload->add_option("module", f->module, "Module name")->required();
  unload->add_flag("--force", f->force, "Move VMs using it to their class baseline first");
  CLI::App* select = policy->add_subcommand("select", "Select a VM's policy of a class");
  select->add_option("vm", f->vm, "VM name")->required();
  select->add_option("policy", f->policy, "Policy name, e.g. fair-share")->required();
  select->add_option("--class", f->policy_class, "gpu_sched, memory, cpu_sched or prefetch")
      ->capture_default_str();
  CLI::App* allow = policy->add_subcommand(
      "allow", "Set which policies of a class a VM may select itself (through the protocol)");
  allow->add_option("vm", f->vm, "VM name")->required();
  allow->add_option("policies", f->allowed,
                    "Policies the guest may select (none: only the class baseline)");
  allow->add_option("--class", f->policy_class, "gpu_sched, memory, cpu_sched or prefetch")
      ->capture_default_str();
  allow->add_flag("--any", f->any, "Lift the restriction: any loaded policy of the class");
  allow->footer(
      "Examples:\n"
      "  malv policy allow train-a learned-sjf fair-share # gpu_sched: these two (and the "
      "baseline)\n"
      "  malv policy allow train-a --class prefetch    # prefetch: the baseline only\n"
      "  malv policy allow train-a --any               # gpu_sched: anything loaded");
  CLI::App* host = policy->add_subcommand(
      "host", "Show or set the vGPU scheduler's host level: which VM the device serves next");
  host->add_option("policy", f->policy,
                   "priority (latency-class VMs first, then batch VMs by weighted fair share), "
                   "fair-share (every VM by weight) or fifo; none: show it")
      ->check(CLI::IsMember({"priority", "fair-share", "fifo"}));
  host->footer(
      "A VM's own gpu_sched policy (malv policy select) orders only that VM's work; the host\n"
      "level decides between VMs, so no VM's choice takes device time from another.");
  for (CLI::App* sub : {list, load, unload, select, allow, host}) {
    sub->callback([f, &exit_code, name = sub->get_name()] { exit_code = run(name, *f); });
  }
}

}  // namespace malv::cli
