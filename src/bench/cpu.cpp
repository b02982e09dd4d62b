// `malv bench cpu`: the VMs' CPU shares under each cpu_sched policy.
//
// One host (CPU backend) and four VMs, all real processes sharing the
// machine's cores:
//   infer    latency class: `malv guest infer` at a fixed rate
//   train-a  batch: `malv guest train` fed by the host's data pipeline
//   train-b  batch: `malv guest train --augment`, loading and augmenting its
//            own data on its CPU (the VM whose accelerator starves when its
//            CPU share is short)
//   hog      batch: busy threads (`malv bench cpu-hog`), a process the VM's
//            config names (cpu_pid), as a real VM's hypervisor process is
// First the inference VM alone (its latency without competition), then, for
// each policy, the same window with every VM running and every VM on that
// policy: inference p50/p99, each training VM's steps per second, and the
// accelerator's time waiting for each VM's guest (accel_starved_seconds).
#include <fmt/format.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <thread>
#include <vector>

#include "base/clock.h"
#include "bench/bench.h"
#include "bench/cpu_mllb.h"
#include "harness/admin_client.h"
#include "harness/child_process.h"
#include "harness/host_process.h"
#include "harness/private_dir.h"

namespace malv::bench {
namespace {

using nlohmann::json;
using namespace std::chrono_literals;

// The MLLB authors' agreement with the kernel on their own dumps (APSys '20).
constexpr double kMllbPublishedAccuracy = 0.99;

struct VmSpec {
  const char* name;
  const char* priority;
};
constexpr VmSpec kVms[] = {
    {"infer", "latency"}, {"train-a", "batch"}, {"train-b", "batch"}, {"hog", "batch"}};
constexpr const char* kStarvingVm = "train-b";

std::string token_of(const std::string& vm) { return "bench-cpu-" + vm; }

// The qualified policy a bench name selects.
std::string qualified(const std::string& policy) {
  if (policy == "none") return "builtin/none";
  if (policy == "mllb") return "malv_cpu_mllb/mllb";
  return "malv_cpu_share_basic/" + policy;
}

Result<std::string> write_config(const harness::PrivateDir& dir, const CpuOptions& flags) {
  const std::string path = dir.file("malv.toml");
  std::ofstream out(path);
  out << fmt::format(
      "[host]\nbackend = \"cpu\"\nworkers = {}\nmemory_mib = 1024\narena_mib = 32\n"
      "cpu_allowed_pid_uids = [{}]\ncpu_mechanism = \"{}\"\n",
      flags.workers, ::getuid(), flags.mechanism);
  for (const VmSpec& vm : kVms) {
    // Device scheduling already favours the latency VM (the scheduler's host
    // level priority, the default), so what is left is the CPU side.
    out << fmt::format("\n[[vm]]\nname = \"{}\"\ntoken = \"{}\"\npriority = \"{}\"\n", vm.name,
                       token_of(vm.name), vm.priority);
  }
  out.close();
  if (!out) return Error(ErrorCode::kIo, "cannot write " + path);
  return path;
}

// The JSON object on a line, or null.
json json_line(const std::string& line) {
  json parsed = json::parse(line, nullptr, /*allow_exceptions=*/false);
  return parsed.is_object() ? parsed : json();
}

// Where a training guest was at its latest progress line.
struct TrainMark {
  double step = 0;
  double elapsed_s = 0;
};

struct RunningGuest {
  std::unique_ptr<harness::ChildProcess> child;
  std::optional<TrainMark> latest;  // training guests
  json done;                        // the inference guest's "done" line
};

void drain(RunningGuest& g) {
  for (const std::string& line : g.child->read_lines()) {
    json j = json_line(line);
    if (j.is_null()) continue;
    const std::string event = j.value("event", std::string());
    if (event == "progress" && j.contains("step")) {
      g.latest = TrainMark{j.value("step", 0.0), j.value("elapsed_s", 0.0)};
    } else if (event == "done") {
      g.done = j;
    }
  }
}

Error child_failed(RunningGuest& g) {
  return Error(ErrorCode::kInternal, fmt::format("guest {} stopped ({}): {}", g.child->name(),
                                                 g.child->exit_description(), g.child->log_tail()));
}

std::vector<std::string> guest_args(const std::string& vm, const std::string& socket,
                                    std::vector<std::string> args) {
  for (const std::string& a : {std::string("--socket"), socket, std::string("--vm"), vm,
                               std::string("--token"), token_of(vm)}) {
    args.push_back(a);
  }
  return args;
}

Result<RunningGuest> spawn(const harness::PrivateDir& dir, const std::string& name,
                           const std::vector<std::string>& args) {
  RunningGuest g;
  MALV_ASSIGN_OR_RETURN(g.child, harness::ChildProcess::spawn(name, args, dir.file(name + ".log")));
  return g;
}

Result<RunningGuest> spawn_infer(const harness::PrivateDir& dir, const std::string& socket,
                                 const std::string& checkpoint, const CpuOptions& flags) {
  return spawn(dir, "infer",
               guest_args("infer", socket,
                          {"guest", "infer", "--checkpoint", checkpoint, "--rate",
                           fmt::format("{}", flags.infer_rate), "--batch", "1", "--duration",
                           fmt::format("{}", flags.seconds), "--report-every", "1000", "--json",
                           "--data-dir", flags.data_dir}));
}

// Runs the inference guest to its end; its "done" line.
Result<json> run_infer(RunningGuest& infer, std::vector<RunningGuest*> others) {
  while (!infer.child->exited()) {
    std::this_thread::sleep_for(50ms);
    drain(infer);
    for (RunningGuest* g : others) {
      drain(*g);
      if (g->child->exited()) return child_failed(*g);
    }
  }
  drain(infer);
  if (!infer.child->succeeded() || infer.done.is_null()) return child_failed(infer);
  return infer.done;
}

using StarvedSeconds = std::map<std::string, double>;

Result<StarvedSeconds> read_starved(const harness::AdminClient& admin) {
  MALV_ASSIGN_OR_RETURN(json vms, admin.call("GET", "/vms"));
  StarvedSeconds out;
  for (const json& vm : vms) {
    out[vm.value("name", std::string())] = vm["stats"].value("accel_starved_seconds", 0.0);
  }
  return out;
}

struct PolicyResult {
  double p50_us = 0;
  double p99_us = 0;
  std::map<std::string, double> steps_per_s;  // training VMs
  std::map<std::string, double> starved_s;    // accelerator waiting for each VM's guest
};

double steps_per_s(const std::optional<TrainMark>& from, const std::optional<TrainMark>& to) {
  if (!from || !to || to->elapsed_s <= from->elapsed_s) return 0.0;
  return (to->step - from->step) / (to->elapsed_s - from->elapsed_s);
}

Result<PolicyResult> run_policy(const std::string& policy, const harness::PrivateDir& dir,
                                const harness::HostProcess& host, const harness::AdminClient& admin,
                                const std::string& checkpoint, const CpuOptions& flags) {
  fmt::print(stderr, "bench cpu: {} ({:.0f} s + {:.0f} s warm-up) ...\n", policy, flags.seconds,
             flags.warmup_s);
  for (const VmSpec& vm : kVms) {
    MALV_TRY(admin.call("PUT", fmt::format("/vms/{}/policy/cpu_sched", vm.name),
                        {{"policy", qualified(policy)}}));
  }
  const std::string socket = host.socket_path();
  MALV_ASSIGN_OR_RETURN(
      RunningGuest hog,
      spawn(dir, "hog", {"bench", "cpu-hog", "--threads", std::to_string(flags.hog_threads)}));
  MALV_TRY(admin.call("PATCH", "/vms/hog", {{"cpu_pid", hog.child->pid()}}));
  const std::string epochs = "1000";  // stopped at the end of the window
  MALV_ASSIGN_OR_RETURN(
      RunningGuest train_a,
      spawn(dir, "train-a",
            guest_args("train-a", socket,
                       {"guest", "train", "--epochs", epochs, "--batch", "128", "--seed", "1",
                        "--log-every", "5", "--host-data", "fashion-mnist", "--progress-json",
                        "--data-dir", flags.data_dir})));
  MALV_ASSIGN_OR_RETURN(RunningGuest train_b,
                        spawn(dir, "train-b",
                              guest_args("train-b", socket,
                                         {"guest", "train", "--epochs", epochs, "--batch", "128",
                                          "--seed", "2", "--log-every", "5", "--augment",
                                          "--progress-json", "--data-dir", flags.data_dir})));
  // Warm-up: both trainers have started stepping, then the window begins.
  const MonoTime warm_until =
      MonoClock::now() + std::chrono::duration_cast<std::chrono::nanoseconds>(
                             std::chrono::duration<double>(flags.warmup_s));
  while (MonoClock::now() < warm_until || !train_a.latest || !train_b.latest) {
    std::this_thread::sleep_for(50ms);
    for (RunningGuest* g : {&train_a, &train_b, &hog}) {
      drain(*g);
      if (g->child->exited()) return child_failed(*g);
    }
    if (MonoClock::now() > warm_until + 120s) {
      return Error(ErrorCode::kDeadlineExceeded, "the training guests did not start in 120 s");
    }
  }
  const std::optional<TrainMark> a0 = train_a.latest, b0 = train_b.latest;
  MALV_ASSIGN_OR_RETURN(StarvedSeconds starved0, read_starved(admin));
  MALV_ASSIGN_OR_RETURN(RunningGuest infer, spawn_infer(dir, socket, checkpoint, flags));
  MALV_ASSIGN_OR_RETURN(json done, run_infer(infer, {&train_a, &train_b, &hog}));
  MALV_ASSIGN_OR_RETURN(StarvedSeconds starved1, read_starved(admin));
  PolicyResult r;
  r.p50_us = done.value("p50_ms", 0.0) * 1000;
  r.p99_us = done.value("p99_ms", 0.0) * 1000;
  r.steps_per_s["train-a"] = steps_per_s(a0, train_a.latest);
  r.steps_per_s["train-b"] = steps_per_s(b0, train_b.latest);
  for (const VmSpec& vm : kVms) r.starved_s[vm.name] = starved1[vm.name] - starved0[vm.name];
  for (RunningGuest* g : {&train_a, &train_b, &hog}) g->child->stop();
  MALV_TRY(admin.call("PATCH", "/vms/hog", {{"cpu_pid", 0}}));
  return r;
}

double batch_steps(const PolicyResult& r) {
  double sum = 0;
  for (const auto& [vm, s] : r.steps_per_s) sum += s;
  return sum;
}

double ratio(double ours, double base) { return base > 0 ? ours / base : 0.0; }

}  // namespace

Status run_cpu_hog(unsigned threads) {
  std::vector<std::thread> burners;
  std::atomic<std::uint64_t> sink{0};
  for (unsigned t = 0; t < threads; ++t) {
    burners.emplace_back([&sink] {
      std::uint64_t x = 1;
      for (;;) {
        for (int i = 0; i < 1'000'000; ++i) x = x * 6364136223846793005ull + 1442695040888963407ull;
        sink.fetch_add(x & 1, std::memory_order_relaxed);
      }
    });
  }
  for (std::thread& t : burners) t.join();  // until killed
  return ok_status();
}

Status run_cpu(const CpuOptions& flags) {
  fmt::print(stderr, "bench cpu: MLLB on the kernel's decisions ...\n");
  MALV_ASSIGN_OR_RETURN(json mllb, measure_mllb(flags.mllb_data, flags.mllb_decisions));
  MALV_ASSIGN_OR_RETURN(auto dir, harness::PrivateDir::create("bench-cpu"));
  // The inference VM serves a model: a few native steps make one.
  const std::string checkpoint = dir->file("model.ckpt");
  {
    MALV_ASSIGN_OR_RETURN(
        auto trainer, harness::ChildProcess::spawn(
                          "model",
                          {"guest", "train", "--native", "--max-steps", "20", "--log-every", "0",
                           "--checkpoint", checkpoint, "--data-dir", flags.data_dir},
                          dir->file("model.log")));
    while (!trainer->exited()) std::this_thread::sleep_for(50ms);
    if (!trainer->succeeded()) {
      return Error(ErrorCode::kInternal,
                   "training the inference model failed: " + trainer->log_tail());
    }
  }
  MALV_ASSIGN_OR_RETURN(std::string config, write_config(*dir, flags));
  MALV_ASSIGN_OR_RETURN(auto host, harness::HostProcess::spawn(
                                       {"--config", config, "--socket", dir->file("malv.sock"),
                                        "--cpu-interval-ms", std::to_string(flags.interval_ms)}));
  harness::AdminClient admin(dir->file("admin.sock"));
  MALV_ASSIGN_OR_RETURN(json health, admin.call("GET", "/health"));

  fmt::print(stderr, "bench cpu: the inference VM alone ({:.0f} s) ...\n", flags.seconds);
  MALV_ASSIGN_OR_RETURN(RunningGuest alone,
                        spawn_infer(*dir, host->socket_path(), checkpoint, flags));
  MALV_ASSIGN_OR_RETURN(json alone_done, run_infer(alone, {}));
  const double p99_alone_us = alone_done.value("p99_ms", 0.0) * 1000;
  const double p50_alone_us = alone_done.value("p50_ms", 0.0) * 1000;

  std::map<std::string, PolicyResult> results;
  for (const std::string& policy : flags.policies) {
    MALV_ASSIGN_OR_RETURN(results[policy],
                          run_policy(policy, *dir, *host, admin, checkpoint, flags));
  }
  const PolicyResult* none = results.count("none") != 0 ? &results["none"] : nullptr;

  json policies = json::object();
  for (const auto& [policy, r] : results) {
    policies[policy] = {
        {"p99_us", r.p99_us},
        {"p50_us", r.p50_us},
        {"p99_over_alone", ratio(r.p99_us, p99_alone_us)},
        {"steps_per_s", r.steps_per_s},
        {"accel_starved_s", r.starved_s},
        {"batch_throughput_over_none", none ? ratio(batch_steps(r), batch_steps(*none)) : 0.0},
        {"starving_vm_throughput_over_none",
         none ? ratio(r.steps_per_s.at(kStarvingVm), none->steps_per_s.at(kStarvingVm)) : 0.0}};
  }
  json out{{"cpu_control", health.value("cpu_control", std::string())},
           {"cores", std::thread::hardware_concurrency()},
           {"seconds", flags.seconds},
           {"infer_rate", flags.infer_rate},
           {"p99_alone_us", p99_alone_us},
           {"p50_alone_us", p50_alone_us},
           {"mllb_heldout_accuracy",
            mllb.contains("heldout_all") ? mllb["heldout_all"]["accuracy"] : json()},
           {"mllb_published_accuracy", kMllbPublishedAccuracy},
           {"mllb", mllb},
           {"policies", policies}};
  if (flags.json) {
    fmt::print("{}\n", out.dump(2));
    return ok_status();
  }
  fmt::print("CPU control: {}\n", out["cpu_control"].get<std::string>());
  if (mllb.contains("heldout_all")) {
    const json& h = mllb["heldout_all"];
    fmt::print(
        "MLLB held out ({} rows): accuracy {:.3f} (published on the authors' data {:.2f}), "
        "precision {:.3f}, recall {:.3f}; majority {:.3f}, LAKE's reference {}\n",
        h["rows"].get<std::size_t>(), h["accuracy"].get<double>(), kMllbPublishedAccuracy,
        h["precision"].get<double>(), h["recall"].get<double>(),
        h["majority_accuracy"].get<double>(),
        h["reference_accuracy"].is_null()
            ? std::string("-")
            : fmt::format("{:.3f}", h["reference_accuracy"].get<double>()));
    fmt::print(
        "MLLB decide per observation: inline {:.0f} ns, inference service {:.0f} ns (with "
        "the CPU backend as accelerator {:.0f} ns)\n",
        mllb.value("decide_inline_ns_per_observation", 0.0),
        mllb.value("decide_service_ns_per_observation", 0.0),
        mllb.value("decide_service_accel_ns_per_observation", 0.0));
  } else {
    fmt::print("MLLB: {}\n", mllb.value("skipped", std::string()));
  }
  fmt::print("inference alone: p50 {:.0f} us, p99 {:.0f} us\n", p50_alone_us, p99_alone_us);
  fmt::print("{:<10} {:>9} {:>9} {:>8} {:>10} {:>10} {:>9} {:>9} {:>10}\n", "policy", "p50 us",
             "p99 us", "p99/alone", "train-a/s", "train-b/s", "batch/none", "starv/none",
             "b starved s");
  for (const std::string& policy : flags.policies) {
    const json& j = policies[policy];
    const PolicyResult& r = results[policy];
    fmt::print(
        "{:<10} {:>9.0f} {:>9.0f} {:>8.2f} {:>10.2f} {:>10.2f} {:>9.2f} {:>9.2f} {:>10.2f}\n",
        policy, r.p50_us, r.p99_us, j["p99_over_alone"].get<double>(), r.steps_per_s.at("train-a"),
        r.steps_per_s.at("train-b"), j["batch_throughput_over_none"].get<double>(),
        j["starving_vm_throughput_over_none"].get<double>(), r.starved_s.at(kStarvingVm));
  }
  return ok_status();
}

}  // namespace malv::bench
