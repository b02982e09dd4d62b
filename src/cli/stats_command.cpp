// `malv stats [--watch]`: per-VM statistics of a running host; --watch
// redraws the table every interval until Ctrl-C.
#include <fmt/format.h>
#include <unistd.h>

#include <chrono>
#include <thread>

#include "cli/commands.h"
#include "cli/option_checks.h"
#include "harness/admin_client.h"

namespace malv::cli {
namespace {

struct StatsFlags {
  std::string admin;
  bool watch = false;
  double interval_s = 1.0;
  bool json = false;
  bool metrics = false;
};

Status draw(const harness::AdminClient& admin, bool json) {
  MALV_ASSIGN_OR_RETURN(nlohmann::json health, admin.call("GET", "/health"));
  MALV_ASSIGN_OR_RETURN(nlohmann::json vms, admin.call("GET", "/vms"));
  if (json) {
    fmt::print("{}\n", nlohmann::json{{"host", health}, {"vms", vms}}.dump(2));
    return ok_status();
  }
  fmt::print("backend {} ({}); the host's threads on cores {}\n", health.value("backend", "?"),
             health.value("device", "?"), health.value("host_cpus", "all"));
  fmt::print(
      "{:<14} {:<22} {:>10} {:>10} {:>10} {:>8} {:>10} {:>10} {:>9} {:>12} {:>9} {:>10} {:>10} "
      "{:>7} {:>6} {:>9}\n",
      "VM", "GPU POLICY", "MEM MiB", "LIMIT MiB", "SPILL MiB", "FAULTS", "HOST MiB", "LIMIT MiB",
      "SESSIONS", "CKPT MiB", "CKPTS", "BUSY s", "COMMANDS", "ERRORS", "QUEUE", "FALLBACK");
  for (const auto& vm : vms) {
    const auto& s = vm["stats"];
    const nlohmann::json memory = s.value("memory_manager", nlohmann::json::object());
    std::string policy = vm.contains("policies") ? vm["policies"].value("gpu_sched", "") : "";
    const auto mib = [](std::uint64_t bytes) { return static_cast<double>(bytes) / 1048576.0; };
    fmt::print(
        "{:<14} {:<22} {:>10.1f} {:>10.1f} {:>10.1f} {:>8} {:>10.1f} {:>10.1f} {:>9} {:>12} {:>9} "
        "{:>10.3f} {:>10} {:>7} {:>6} {:>9}\n",
        vm["name"].get<std::string>(), policy, mib(s["memory_used"].get<std::uint64_t>()),
        mib(vm["memory_limit"].get<std::uint64_t>()), mib(memory.value("spilled_bytes", 0ull)),
        memory.value("faults", 0ull), mib(s.value("host_memory_used", 0ull)),
        mib(vm.value("host_memory_limit", 0ull)),
        fmt::format("{}/{}", s.value("sessions", 0u), vm.value("max_sessions", 0u)),
        fmt::format("{:.1f}/{:.0f}", mib(s.value("checkpoint_bytes", 0ull)),
                    mib(vm.value("checkpoint_limit_bytes", 0ull))),
        fmt::format("{}/{}", s.value("checkpoints", 0u), vm.value("max_checkpoints", 0u)),
        s["busy_seconds"].get<double>(), s["commands"].get<std::uint64_t>(),
        s["errors"].get<std::uint64_t>(), s["queue_depth"].get<std::uint64_t>(),
        s["fallbacks"].get<std::uint64_t>());
  }
  return ok_status();
}

int run(const StatsFlags& f) {
  harness::AdminClient admin(f.admin.empty() ? harness::default_admin_socket() : f.admin);
  if (f.metrics) {
    Result<std::string> text = admin.get_text("/metrics");
    if (!text.ok()) {
      fmt::print(stderr, "malv stats: {}\n", text.error().message());
      return 1;
    }
    fmt::print("{}", text.value());
    return 0;
  }
  do {
    if (f.watch) fmt::print("\x1b[H\x1b[2J");  // home + clear: redraw in place
    Status s = draw(admin, f.json);
    if (!s.ok()) {
      fmt::print(stderr, "malv stats: {}\n", s.error().message());
      return 1;
    }
    std::fflush(stdout);
    if (f.watch) {
      std::this_thread::sleep_for(std::chrono::duration<double>(f.interval_s));
    }
  } while (f.watch);
  return 0;
}

}  // namespace

void register_stats(CLI::App& app, int& exit_code) {
  auto f = std::make_shared<StatsFlags>();
  CLI::App* sub = app.add_subcommand("stats", "Per-VM statistics of a running host");
  sub->add_option("--admin", f->admin, "Admin socket of the host");
  sub->add_flag("--watch", f->watch, "Redraw the table until interrupted");
  sub->add_option("--interval", f->interval_s, "Seconds between redraws")
      ->capture_default_str()
      ->check(finite_in(0.1, 86400));
  sub->add_flag("--json", f->json, "Print JSON");
  sub->add_flag("--metrics", f->metrics, "Print the host's /metrics (Prometheus text format) once")
      ->excludes("--watch")
      ->excludes("--json");
  sub->callback([f, &exit_code] { exit_code = run(*f); });
}

}  // namespace malv::cli
