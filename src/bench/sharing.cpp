// `malv bench sharing`: how the vGPU scheduler shares one accelerator
// between VMs, with real guest processes, in one run.
//
// A host (`malv serve`, CPU backend unless --backend) runs as a child process with four VMs
// from a TOML config in a private temp dir; each guest is its own process
// (`malv bench sharing-guest`, see bench/sharing_guest.h). Phases:
//
//  1. fair-share: batch-a, batch-b, batch-c (weights 1:1:2) run the same
//     GEMM loop under the scheduler's host level fair-share; each VM's share
//     of accelerator busy time (the host's stats.busy_seconds, read over a
//     steady-state window) and Jain's index of share/weight. The same under
//     the host level fifo is the baseline. Then the same VMs on three
//     different gpu_sched policies of their own (fifo, fair-share,
//     learned-sjf): their weighted shares must not change (mixed_policy_jain).
//  2. latency: the infer VM issues small requests at a fixed rate alone,
//     then beside batch-a and batch-b under the host level fifo, then under
//     priority: p99 latency of each, and the batch GEMM throughput priority
//     keeps.
//  3. policy switch: with one VM keeping the scheduler busy, the time from
//     sending the admin PUT to the first scheduling decision made after the
//     new policy was selected (an upper bound, see measure_policy_switch).
#include <fmt/format.h>
#include <signal.h>
#include <stdlib.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <thread>
#include <utility>

#include "base/clock.h"
#include "bench/bench.h"
#include "bench/sharing_guest.h"
#include "harness/admin_client.h"
#include "harness/host_process.h"
#include "harness/private_dir.h"
#include "harness/report.h"

namespace malv::bench {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

constexpr const char* kFifo = "malv_sched_basic/fifo";
constexpr const char* kFairShare = "malv_sched_basic/fair-share";
constexpr const char* kLearnedSjf = "malv_sched_basic/learned-sjf";

struct VmSpec {
  std::string name;
  double weight;
  const char* priority;
};

const std::vector<VmSpec> kVms{{"batch-a", 1.0, "batch"},
                               {"batch-b", 1.0, "batch"},
                               {"batch-c", 2.0, "batch"},
                               {"infer", 1.0, "latency"}};

std::string token_of(const std::string& vm) { return "bench-token-" + vm; }

Result<std::string> write_config(const harness::PrivateDir& dir, const SharingOptions& flags) {
  const std::string path = dir.file("malv.toml");
  std::ofstream out(path);
  out << fmt::format("[host]\nbackend = \"{}\"\nworkers = {}\nmemory_mib = 512\narena_mib = 16\n",
                     flags.backend, flags.workers);
  for (const VmSpec& vm : kVms) {
    out << fmt::format(
        "\n[[vm]]\nname = \"{}\"\ntoken = \"{}\"\nmemory_mib = 64\nweight = {:.1f}\n"
        "priority = \"{}\"\ngpu_policy = \"{}\"\n",
        vm.name, token_of(vm.name), vm.weight, vm.priority, kFifo);
  }
  out.close();
  if (!out) return Error(ErrorCode::kIo, "cannot write " + path);
  return path;
}

// Accelerator busy seconds of every VM, from GET /vms.
Result<std::map<std::string, double>> read_busy(const harness::AdminClient& admin) {
  MALV_ASSIGN_OR_RETURN(json vms, admin.call("GET", "/vms"));
  std::map<std::string, double> busy;
  for (const json& vm : vms) {
    busy[vm.value("name", std::string())] = vm["stats"].value("busy_seconds", 0.0);
  }
  return busy;
}

Status select_policy(const harness::AdminClient& admin, const std::vector<std::string>& vms,
                     const std::string& policy) {
  for (const std::string& vm : vms) {
    MALV_TRY(admin.call("PUT", "/vms/" + vm + "/policy/gpu_sched", {{"policy", policy}}));
  }
  return ok_status();
}

// The scheduler's host level (which VM runs next): fifo, fair-share or priority.
Status set_host_level(const harness::AdminClient& admin, const std::string& level) {
  MALV_TRY(admin.call("PUT", "/scheduler", {{"host_policy", level}}));
  return ok_status();
}

struct PhaseResult {
  std::map<std::string, SharingGuestResult> guests;  // by VM
  std::map<std::string, double> busy_s;              // busy seconds in the window, by VM
  double window_s = 0;
};

struct Workload {
  std::string vm;
  std::string mode;
};

// Starts one guest per workload, releases them together, and reads the
// VMs' busy time over the phase's steady state (after a settling time,
// ending before the first guest stops).
Result<PhaseResult> run_phase(const std::string& what, const harness::HostProcess& host,
                              const harness::AdminClient& admin, const SharingOptions& flags,
                              const std::vector<Workload>& workloads) {
  fmt::print(stderr, "bench sharing: {} ({:.0f} s) ...\n", what, flags.phase_seconds);
  std::vector<std::unique_ptr<SharingGuest>> guests;
  for (const Workload& w : workloads) {
    MALV_ASSIGN_OR_RETURN(auto g, SharingGuest::spawn({.socket = host.socket_path(),
                                                       .vm = w.vm,
                                                       .token = token_of(w.vm),
                                                       .mode = w.mode,
                                                       .seconds = flags.phase_seconds,
                                                       .rate = flags.infer_rate}));
    guests.push_back(std::move(g));
  }
  for (auto& g : guests) MALV_TRY(g->wait_ready());
  const MonoTime start = MonoClock::now();
  for (auto& g : guests) MALV_TRY(g->go());
  const auto settle = std::chrono::duration<double>(std::min(0.5, flags.phase_seconds * 0.15));
  const auto stop_early = std::chrono::duration<double>(std::min(0.3, flags.phase_seconds * 0.1));
  std::this_thread::sleep_until(start + std::chrono::duration_cast<Nanos>(settle));
  MALV_ASSIGN_OR_RETURN(auto before, read_busy(admin));
  Stopwatch window;
  std::this_thread::sleep_until(
      start + std::chrono::duration_cast<Nanos>(std::chrono::duration<double>(flags.phase_seconds) -
                                                stop_early));
  MALV_ASSIGN_OR_RETURN(auto after, read_busy(admin));
  PhaseResult phase;
  phase.window_s = window.elapsed_s();
  for (const auto& [vm, busy] : after) phase.busy_s[vm] = busy - before[vm];
  for (auto& g : guests) {
    MALV_ASSIGN_OR_RETURN(SharingGuestResult r, g->result());
    phase.guests[g->vm()] = std::move(r);
  }
  return phase;
}

double ops_per_s(const SharingGuestResult& r) {
  return r.seconds > 0 ? static_cast<double>(r.ops) / r.seconds : 0.0;
}

// Jain's fairness index of x: (sum x)^2 / (n * sum x^2); 1 is perfectly even.
double jain_index(const std::vector<double>& x) {
  double sum = 0;
  double sum_sq = 0;
  for (double v : x) {
    sum += v;
    sum_sq += v * v;
  }
  return sum_sq > 0 ? sum * sum / (static_cast<double>(x.size()) * sum_sq) : 0.0;
}

struct Shares {
  std::vector<double> share;  // of the batch VMs' total busy time, kVms order
  double jain = 0;
  double utilisation = 0;  // busy time / (window * workers)
};

Shares shares_of(const PhaseResult& phase, const SharingOptions& flags) {
  Shares s;
  double total = 0;
  for (int i = 0; i < 3; ++i) total += phase.busy_s.at(kVms[static_cast<std::size_t>(i)].name);
  std::vector<double> per_weight;
  for (int i = 0; i < 3; ++i) {
    const VmSpec& vm = kVms[static_cast<std::size_t>(i)];
    const double share = total > 0 ? phase.busy_s.at(vm.name) / total : 0.0;
    s.share.push_back(share);
    per_weight.push_back(share / vm.weight);
  }
  s.jain = jain_index(per_weight);
  s.utilisation = total / (phase.window_s * flags.workers);
  return s;
}

struct SwitchTimes {
  std::vector<double> first_decision_us;  // request sent -> first decision after select
  std::vector<double> selected_us;        // request sent -> selection committed
};

// With only one VM active (a "tiny" guest keeping its stream non-empty, so
// the scheduler decides every few microseconds), every scheduling decision
// is that VM's. For each switch: t0 = the client's monotonic clock (the
// host's clock too) just before the PUT; the reply's selected_at_ns is taken
// right after the registry committed the new policy. Then the same PUT is
// repeated (re-selecting the current policy is a no-op) until its
// last_decision_before_ns lies after selected_at_ns: that decision was made
// by the new policy, and the first such one is no later, so
// last_decision_before_ns - t0 bounds policy_switch from above (within one
// probe's round trip).
Result<SwitchTimes> measure_policy_switch(const harness::HostProcess& host,
                                          const harness::AdminClient& admin,
                                          const SharingOptions& flags) {
  fmt::print(stderr, "bench sharing: {} policy switches ...\n", flags.switches);
  const std::string vm = "batch-a";
  const std::string target = "/vms/" + vm + "/policy/gpu_sched";
  MALV_TRY(select_policy(admin, {vm}, kFifo));
  const double seconds = 1.0 + 0.1 * flags.switches;
  MALV_ASSIGN_OR_RETURN(auto guest, SharingGuest::spawn({.socket = host.socket_path(),
                                                         .vm = vm,
                                                         .token = token_of(vm),
                                                         .mode = "tiny",
                                                         .seconds = seconds}));
  MALV_TRY(guest->wait_ready());
  MALV_TRY(guest->go());
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  SwitchTimes times;
  for (int i = 0; i < flags.switches; ++i) {
    const std::string policy = i % 2 == 0 ? kFairShare : kFifo;
    const std::int64_t t0 = mono_now_ns();
    MALV_ASSIGN_OR_RETURN(json reply, admin.call("PUT", target, {{"policy", policy}}));
    const std::int64_t selected = reply.value("selected_at_ns", std::int64_t{0});
    for (int probe = 0; probe < 100; ++probe) {
      MALV_ASSIGN_OR_RETURN(json again, admin.call("PUT", target, {{"policy", policy}}));
      const std::int64_t decided = again.value("last_decision_before_ns", std::int64_t{0});
      if (decided > selected) {
        times.first_decision_us.push_back(static_cast<double>(decided - t0) / 1e3);
        times.selected_us.push_back(static_cast<double>(selected - t0) / 1e3);
        break;
      }
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  MALV_TRY(guest->result());
  if (times.first_decision_us.empty()) {
    return Error(ErrorCode::kInternal, "no scheduling decision followed any policy switch");
  }
  return times;
}

// The three batch VMs on fifo, fair-share and learned-sjf of their own,
// under the host level fair-share (see MixedPolicyFigures).
Result<MixedPolicyFigures> run_mixed_policy_phase(const harness::HostProcess& host,
                                                  const harness::AdminClient& admin,
                                                  const SharingOptions& flags) {
  MixedPolicyFigures out;
  out.policies = {kFifo, kFairShare, kLearnedSjf};
  const std::vector<std::string> batch3{"batch-a", "batch-b", "batch-c"};
  for (std::size_t i = 0; i < batch3.size(); ++i) {
    MALV_TRY(select_policy(admin, {batch3[i]}, out.policies[i]));
  }
  MALV_TRY(set_host_level(admin, "fair-share"));
  MALV_ASSIGN_OR_RETURN(
      PhaseResult phase,
      run_phase("3 batch VMs on fifo, fair-share, learned-sjf; host level fair-share", host, admin,
                flags, {{"batch-a", "gemm"}, {"batch-b", "gemm"}, {"batch-c", "gemm"}}));
  MALV_TRY(select_policy(admin, batch3, kFifo));
  const Shares shares = shares_of(phase, flags);
  out.jain = shares.jain;
  out.shares = shares.share;
  return out;
}

Status measure_all(const harness::HostProcess& host, const harness::AdminClient& admin,
                   const SharingOptions& flags) {
  MALV_ASSIGN_OR_RETURN(json health, admin.call("GET", "/health"));

  const std::vector<std::string> batch3{"batch-a", "batch-b", "batch-c"};
  const std::vector<Workload> batch3_gemm{
      {"batch-a", "gemm"}, {"batch-b", "gemm"}, {"batch-c", "gemm"}};
  MALV_TRY(select_policy(admin, batch3, kFifo));
  MALV_TRY(set_host_level(admin, "fair-share"));
  MALV_ASSIGN_OR_RETURN(PhaseResult fair, run_phase("3 batch VMs, host level fair-share", host,
                                                    admin, flags, batch3_gemm));
  MALV_TRY(set_host_level(admin, "fifo"));
  MALV_ASSIGN_OR_RETURN(PhaseResult fifo3, run_phase("3 batch VMs, host level fifo (baseline)",
                                                     host, admin, flags, batch3_gemm));
  MALV_ASSIGN_OR_RETURN(MixedPolicyFigures mixed_policies,
                        run_mixed_policy_phase(host, admin, flags));

  const std::vector<std::string> mixed{"infer", "batch-a", "batch-b"};
  const std::vector<Workload> mixed_work{
      {"infer", "infer"}, {"batch-a", "gemm"}, {"batch-b", "gemm"}};
  MALV_TRY(select_policy(admin, mixed, kFifo));
  MALV_TRY(set_host_level(admin, "fifo"));
  MALV_ASSIGN_OR_RETURN(PhaseResult alone,
                        run_phase("latency VM alone", host, admin, flags, {{"infer", "infer"}}));
  MALV_ASSIGN_OR_RETURN(PhaseResult with_fifo, run_phase("latency VM + 2 batch VMs, host fifo",
                                                         host, admin, flags, mixed_work));
  MALV_TRY(set_host_level(admin, "priority"));
  MALV_ASSIGN_OR_RETURN(
      PhaseResult with_priority,
      run_phase("latency VM + 2 batch VMs, host priority", host, admin, flags, mixed_work));
  MALV_ASSIGN_OR_RETURN(SwitchTimes switches, measure_policy_switch(host, admin, flags));

  const Shares fs_shares = shares_of(fair, flags);
  const Shares fifo_shares = shares_of(fifo3, flags);
  double p99_alone = harness::percentile(alone.guests.at("infer").latencies_us, 0.99);
  double p50_alone = harness::percentile(alone.guests.at("infer").latencies_us, 0.5);
  double p99_fifo = harness::percentile(with_fifo.guests.at("infer").latencies_us, 0.99);
  double p99_priority = harness::percentile(with_priority.guests.at("infer").latencies_us, 0.99);
  double p50_priority = harness::percentile(with_priority.guests.at("infer").latencies_us, 0.5);
  auto batch_rate = [](const PhaseResult& p) {
    return ops_per_s(p.guests.at("batch-a")) + ops_per_s(p.guests.at("batch-b"));
  };
  const double batch_fifo = batch_rate(with_fifo);
  const double batch_priority = batch_rate(with_priority);

  std::vector<harness::Figure> figures{
      {"share_batch_a", fs_shares.share[0], "", "fair-share, weight 1 (ideal 0.25)"},
      {"share_batch_b", fs_shares.share[1], "", "fair-share, weight 1 (ideal 0.25)"},
      {"share_batch_c", fs_shares.share[2], "", "fair-share, weight 2 (ideal 0.50)"},
      {"jain_index", fs_shares.jain, "", "of share/weight under fair-share; goal >= 0.98"},
      {"jain_index_fifo", fifo_shares.jain, "", "baseline: the same under the host level fifo"},
      {"mixed_policy_jain", mixed_policies.jain, "",
       "the same VMs on fifo, fair-share, learned-sjf of their own; goal >= 0.98"},
      {"share_batch_c_fifo", fifo_shares.share[2], "", "baseline: weight-2 VM's share, fifo"},
      {"busy_fraction_fair_share", fs_shares.utilisation, "",
       "busy time / (window x workers), fair-share"},
      {"p50_alone_us", p50_alone, "us", "latency VM alone"},
      {"p99_alone_us", p99_alone, "us", "latency VM alone"},
      {"p99_fifo_us", p99_fifo, "us", "beside 2 batch VMs, fifo"},
      {"p50_priority_us", p50_priority, "us", "beside 2 batch VMs, priority"},
      {"p99_priority_us", p99_priority, "us", "beside 2 batch VMs, priority"},
      {"p99_priority_over_alone", p99_alone > 0 ? p99_priority / p99_alone : 0.0, "x",
       "goal <= 1.5"},
      {"p99_fifo_over_priority", p99_priority > 0 ? p99_fifo / p99_priority : 0.0, "x",
       "what priority gains over fifo"},
      {"batch_gemm_per_s_fifo", batch_fifo, "ops/s", "2 batch VMs, 256^3 sgemm, fifo"},
      {"batch_gemm_per_s_priority", batch_priority, "ops/s", "the same under priority"},
      {"batch_throughput_kept", batch_fifo > 0 ? batch_priority / batch_fifo : 0.0, "",
       "priority / fifo"},
      {"policy_switch_us", harness::median(switches.first_decision_us), "us",
       "PUT sent -> first decision by the new policy (median, upper bound)"},
      {"policy_switch_p99_us", harness::percentile(switches.first_decision_us, 0.99), "us", ""},
      {"policy_selected_us", harness::median(switches.selected_us), "us",
       "PUT sent -> new policy committed (median)"},
  };
  json extra{{"backend", health.value("backend", std::string())},
             {"device", health.value("device", std::string())},
             {"workers", flags.workers},
             {"phase_seconds", flags.phase_seconds},
             {"infer_rate_per_s", flags.infer_rate},
             {"infer_requests",
              {{"alone", alone.guests.at("infer").ops},
               {"fifo", with_fifo.guests.at("infer").ops},
               {"priority", with_priority.guests.at("infer").ops}}},
             {"switch_samples", switches.first_decision_us.size()},
             {"mixed_policy_shares", mixed_policies.shares},
             {"mixed_policies", mixed_policies.policies}};
  harness::print_figures("malv bench sharing", figures, flags.json, extra);
  return ok_status();
}

// Starts a host with the four VMs and runs `measure` against it; a host
// that died says why.
template <typename Measure>
auto with_sharing_host(const SharingOptions& flags, Measure measure)
    -> decltype(measure(std::declval<const harness::HostProcess&>(),
                        std::declval<const harness::AdminClient&>())) {
  ::signal(SIGPIPE, SIG_IGN);  // a guest that died must not kill the bench
  MALV_ASSIGN_OR_RETURN(auto dir, harness::PrivateDir::create("sharing"));
  MALV_ASSIGN_OR_RETURN(std::string config, write_config(*dir, flags));
  MALV_ASSIGN_OR_RETURN(auto host, harness::HostProcess::spawn(
                                       {"--config", config, "--socket", dir->file("malv.sock"),
                                        "--admin-socket", dir->file("admin.sock")}));
  const harness::AdminClient admin(dir->file("admin.sock"));
  auto measured = measure(*host, admin);
  if (!measured.ok()) {
    const std::string why = host->exit_reason();
    if (!why.empty()) return std::move(measured).error().with_context(why);
  }
  return measured;
}

}  // namespace

Status run_sharing(const SharingOptions& flags) {
  return with_sharing_host(
      flags, [&](const harness::HostProcess& host, const harness::AdminClient& admin) {
        return measure_all(host, admin, flags);
      });
}

Result<MixedPolicyFigures> measure_mixed_policies(const SharingOptions& flags) {
  return with_sharing_host(
      flags, [&](const harness::HostProcess& host, const harness::AdminClient& admin) {
        return run_mixed_policy_phase(host, admin, flags);
      });
}

}  // namespace malv::bench
