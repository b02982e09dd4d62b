// `malv bench memory`: what oversubscribing a VM's device memory costs a
// real training job, and how far each memory policy is from Belady.
//
// The job: the Fashion-MNIST trainer (Adam, batch 128, --steps steps) on a
// RemoteDevice, its final checkpoint (parameters and optimiser state) saved
// to a file. Phases, each on hosts started as child processes:
//  1. probe: one run on a VM that is oversubscribed in name only (resident
//     quota far above its needs, virtual limit above that, so the memory
//     manager runs and records its trace); after the host stops, the trace
//     gives the footprint (the most bytes allocated at once) and the largest
//     op (the bytes one op needs resident together, which the smallest quota
//     must hold).
//  2. a paced host (--spill-link-gbps G) and then an unpaced one (0). On
//     each, --rounds rounds; a round trains, for each variant (queued: the
//     trainer as it is, queueing work ahead; sync: RemoteDevice waits for each
//     op, so the host sees nothing ahead), once on a "fits" VM (as in the
//     probe) and once per policy (lru, lookahead, learned: its shipped
//     model, trained on other models' traces) and resident fraction (1,
//     0.667, 0.5, 0.333 of the footprint; virtual limit: the footprint, MiB
//     above) on a fresh VM. The runs of a round go in a rotating order.
//  3. the hosts stop (their traces flush) and each paced run's trace is
//     replayed under Belady (and lru, lookahead) at the run's resident quota.
// Per run: time_over_fit, the median over rounds of train time / the same
// round's fits time of its variant (paced; time_over_fit_unpaced likewise);
// bytes_moved (bytes in + out, admin API), faults, prefetch_hits: the
// paced runs' median over rounds (nearest rank: a measured value);
// bytes_over_belady: bytes_moved over Belady's on the run's own trace;
// bit_identical: every round's checkpoint equals the first fits run's.
// Times exclude connecting, the dataset load and the model's creation.
#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <vector>

#include "base/atomic_file.h"
#include "base/clock.h"
#include "bench/bench.h"
#include "bench/training_runs.h"
#include "harness/admin_client.h"
#include "harness/host_process.h"
#include "harness/private_dir.h"
#include "harness/report.h"
#include "malv/connection.h"
#include "nn/remote_device.h"
#include "nn/trainer.h"
#include "vgpu/access_trace.h"
#include "vgpu/trace_replay.h"

namespace malv::bench {
namespace {

using nlohmann::json;

constexpr std::uint64_t kMiB = 1ull << 20;
constexpr const char* kDefaultModel = "mlp:784-512-512-512-512-512-10";
// Quick: four hidden layers of 512 (the first, 784x512, is still the
// largest op's layer; a third of the footprint holds its Adam step).
constexpr const char* kQuickModel = "mlp:784-512-512-512-512-10";
constexpr double kFractions[] = {1.0, 0.667, 0.5, 0.333};
constexpr const char* kPolicies[] = {"lru", "lookahead", "learned"};

// The module policy a short name selects.
std::string qualified_policy(const std::string& policy) {
  return policy == "learned" ? "malv_memory_learned/learned" : "malv_memory_basic/" + policy;
}
constexpr const char* kVariants[] = {"queued", "sync"};

std::string token_of(const std::string& vm) { return "bench-memory-" + vm; }

// One training run of the benchmark: which VM, what it measured.
struct RunSpec {
  std::string policy;  // "" for the fits run of its variant
  std::string variant;
  double fraction = 1.0;
};

struct Measured {
  double train_s = 0;
  json memory;  // stats.memory_manager
  bool identical = false;
  std::string trace;
  std::uint64_t resident_quota = 0;
};

// A key for a run's samples across rounds.
std::string key_of(const RunSpec& s) {
  return fmt::format("{}/{}/{}", s.policy, s.variant, s.fraction);
}

class MemoryBench {
 public:
  MemoryBench(const MemoryOptions& flags, const nn::Dataset& train, harness::PrivateDir& dir)
      : flags_(flags), train_(train), dir_(dir) {}

  Status run();

 private:
  struct Host {
    std::unique_ptr<harness::HostProcess> process;
    std::unique_ptr<harness::AdminClient> admin;
    std::string trace_dir;
  };

  // The reference job (bench/training_runs.h) on this benchmark's model.
  nn::TrainOptions train_options() const {
    nn::TrainOptions o = reference_training(steps_);
    o.model = model_;
    return o;
  }

  static void progress(const std::string& what) {
    fmt::print(stderr, "bench memory: {}\n", what);
    std::fflush(stderr);
  }

  Result<Host> start_host(const std::string& name, double link_gbps);
  Result<Measured> train_on(Host& host, const std::string& vm, std::uint64_t resident,
                            std::uint64_t virtual_limit, const std::string& policy, bool sync,
                            const std::string& checkpoint);
  Result<Measured> run_one(Host& host, const std::string& prefix, unsigned round,
                           const RunSpec& spec);
  Status probe();
  Status measure(bool paced);
  Result<json> results();
  void print(const json& results) const;

  const MemoryOptions& flags_;
  const nn::Dataset& train_;
  harness::PrivateDir& dir_;
  std::string model_;
  std::uint64_t steps_ = 0;
  unsigned rounds_ = 0;
  std::uint64_t footprint_ = 0;
  std::uint64_t largest_op_ = 0;
  std::string backend_, device_;
  std::string reference_;  // the first fits run's checkpoint
  // Samples by key_of(spec): paced and unpaced, one per round.
  std::map<std::string, std::vector<Measured>> paced_, unpaced_;
  std::map<std::string, std::vector<double>> ratio_paced_, ratio_unpaced_;
};

Result<MemoryBench::Host> MemoryBench::start_host(const std::string& name, double link_gbps) {
  Host host;
  host.trace_dir = dir_.file(name + "-traces");
  std::error_code error;
  std::filesystem::create_directories(host.trace_dir, error);
  if (error)
    return Error(ErrorCode::kIo, "cannot create " + host.trace_dir + ": " + error.message());
  std::vector<std::string> args{"--backend",          "cpu",
                                "--socket",           dir_.file(name + ".sock"),
                                "--admin-socket",     dir_.file(name + "-admin.sock"),
                                "--state-dir",        dir_.file(name + "-state"),
                                "--memory-trace-dir", host.trace_dir,
                                "--spill-link-gbps",  fmt::format("{}", link_gbps)};
  if (!flags_.prefetch) args.emplace_back("--no-memory-prefetch");
  // Each run measures its VM alone at its quota: nothing borrowed. A
  // device of a fixed size (the CPU backend's memory is reserved lazily),
  // whatever the machine, holds the probe's quota and one run's at a time.
  args.emplace_back("--no-memory-lending");
  args.emplace_back("--memory-mib");
  args.emplace_back("2048");
  MALV_ASSIGN_OR_RETURN(host.process, harness::HostProcess::spawn(args));
  host.admin = std::make_unique<harness::AdminClient>(dir_.file(name + "-admin.sock"));
  MALV_ASSIGN_OR_RETURN(json health, host.admin->call("GET", "/health"));
  backend_ = health.value("backend", std::string());
  device_ = health.value("device", std::string());
  return host;
}

Result<Measured> MemoryBench::train_on(Host& host, const std::string& vm, std::uint64_t resident,
                                       std::uint64_t virtual_limit, const std::string& policy,
                                       bool sync, const std::string& checkpoint) {
  MALV_TRY(host.admin->call("POST", "/vms",
                            {{"name", vm},
                             {"token", token_of(vm)},
                             {"memory_bytes", resident},
                             {"virtual_memory_bytes", virtual_limit}}));
  if (!policy.empty()) {
    MALV_TRY(host.admin->call("PUT", "/vms/" + vm + "/policy/memory",
                              {{"policy", qualified_policy(policy)}}));
  }
  Measured out;
  out.resident_quota = resident;
  out.trace = host.trace_dir + "/" + vm + ".trace";
  {
    MALV_ASSIGN_OR_RETURN(auto connection, guest::Connection::connect_unix(
                                               host.process->socket_path(),
                                               {.vm_name = vm, .credential = token_of(vm)}));
    MALV_ASSIGN_OR_RETURN(auto device,
                          nn::RemoteDevice::create(*connection, {.synchronous = sync}));
    MALV_ASSIGN_OR_RETURN(auto trainer, nn::Trainer::create(*device, train_, train_options()));
    Stopwatch watch;
    MALV_TRY(trainer->run());
    out.train_s = watch.elapsed_s();
    MALV_TRY(trainer->save_checkpoint(checkpoint));
  }
  MALV_ASSIGN_OR_RETURN(json info, host.admin->call("GET", "/vms/" + vm));
  out.memory = info["stats"]["memory_manager"];
  // Its quota goes back to the device for the next run (admission); its
  // trace is complete once the VM is gone.
  MALV_TRY(host.admin->call("DELETE", "/vms/" + vm));
  if (reference_.empty()) reference_ = checkpoint;
  MALV_ASSIGN_OR_RETURN(std::vector<std::byte> mine, read_file(checkpoint));
  MALV_ASSIGN_OR_RETURN(std::vector<std::byte> ref, read_file(reference_));
  out.identical = mine == ref;
  return out;
}

Result<Measured> MemoryBench::run_one(Host& host, const std::string& prefix, unsigned round,
                                      const RunSpec& spec) {
  const bool fits = spec.policy.empty();
  const std::string vm =
      fits ? fmt::format("{}-{}-fits-r{}", prefix, spec.variant, round)
           : fmt::format("{}-{}-{}-{}-r{}", prefix, spec.variant, spec.policy,
                         static_cast<int>(std::lround(spec.fraction * 1000)), round);
  // The virtual limit holds the footprint, the next MiB above it (so that
  // even at fraction 1 it is above the resident quota: the manager runs).
  const std::uint64_t virtual_limit = (footprint_ / kMiB + 1) * kMiB;
  const std::uint64_t resident =
      fits ? 2 * virtual_limit
           : static_cast<std::uint64_t>(std::ceil(spec.fraction * static_cast<double>(footprint_)));
  const std::uint64_t vlimit = fits ? 4 * virtual_limit : virtual_limit;
  Result<Measured> m = train_on(host, vm, resident, vlimit, spec.policy, spec.variant == "sync",
                                dir_.file(vm + ".ckpt"));
  if (!m.ok()) {
    const std::string why = host.process->exit_reason();
    return std::move(m).error().with_context(why.empty() ? "run " + vm : "run " + vm + ": " + why);
  }
  const Measured& r = m.value();
  progress(fmt::format("  {:<28} {:7.3f} s  moved {:8.2f} MB  faults {:6}  prefetch {:6}{}", vm,
                       r.train_s,
                       (r.memory.value("bytes_in", 0.0) + r.memory.value("bytes_out", 0.0)) / 1e6,
                       r.memory.value("faults", 0), r.memory.value("prefetch_hits", 0),
                       r.identical ? "" : "  NOT bit-identical"));
  return m;
}

Status MemoryBench::probe() {
  progress(fmt::format("probe: the footprint of {} ({} steps)", model_, steps_));
  MALV_ASSIGN_OR_RETURN(Host host, start_host("probe", 0));
  MALV_ASSIGN_OR_RETURN(Measured m, train_on(host, "probe", 1ull << 30, 2ull << 30, "", false,
                                             dir_.file("probe.ckpt")));
  reference_.clear();    // the benchmark's reference is its first fits run
  host.process.reset();  // stops the host: the trace is flushed
  MALV_ASSIGN_OR_RETURN(std::vector<vgpu::AccessRecord> trace, vgpu::read_access_trace(m.trace));
  MALV_ASSIGN_OR_RETURN(vgpu::TraceReplay replay, vgpu::TraceReplay::create(trace, m.trace));
  footprint_ = replay.peak_allocated_bytes();
  largest_op_ = replay.largest_op_bytes();
  progress(fmt::format("probe: footprint {:.2f} MiB in {} buffers, largest op {:.2f} MiB ({} ops)",
                       static_cast<double>(footprint_) / kMiB, replay.buffers(),
                       static_cast<double>(largest_op_) / kMiB, replay.ops()));
  const auto smallest = static_cast<std::uint64_t>(
      std::ceil(kFractions[std::size(kFractions) - 1] * static_cast<double>(footprint_)));
  if (largest_op_ > smallest) {
    return Error(ErrorCode::kInvalidArgument,
                 fmt::format("model {}: its largest op needs {} bytes resident, more than the "
                             "smallest quota ({} bytes, {} of the footprint {}); pick a model "
                             "whose layers are more alike",
                             model_, largest_op_, smallest, kFractions[std::size(kFractions) - 1],
                             footprint_));
  }
  return ok_status();
}

Status MemoryBench::measure(bool paced) {
  const double gbps = paced ? flags_.link_gbps : 0.0;
  const std::string prefix = paced ? "paced" : "unpaced";
  progress(fmt::format("{} host (--spill-link-gbps {})", prefix, gbps));
  MALV_ASSIGN_OR_RETURN(Host host, start_host(prefix, gbps));
  std::vector<RunSpec> specs;
  for (const char* variant : kVariants) {
    specs.push_back({"", variant, 1.0});
    for (const char* policy : kPolicies) {
      for (double f : kFractions) specs.push_back({policy, variant, f});
    }
  }
  auto& samples = paced ? paced_ : unpaced_;
  auto& ratios = paced ? ratio_paced_ : ratio_unpaced_;
  for (unsigned r = 0; r < rounds_; ++r) {
    progress(fmt::format("{} round {}/{}", prefix, r + 1, rounds_));
    std::map<std::string, Measured> round;
    for (std::size_t i = 0; i < specs.size(); ++i) {
      const RunSpec& spec = specs[(i + r * 5) % specs.size()];
      MALV_ASSIGN_OR_RETURN(round[key_of(spec)], run_one(host, prefix, r, spec));
    }
    for (const RunSpec& spec : specs) {
      const double fit_s = round.at(key_of({"", spec.variant, 1.0})).train_s;
      ratios[key_of(spec)].push_back(round.at(key_of(spec)).train_s / fit_s);
      samples[key_of(spec)].push_back(std::move(round.at(key_of(spec))));
    }
  }
  host.process.reset();  // flushes the traces
  return ok_status();
}

// The nearest-rank median of a stat over rounds.
std::uint64_t median_stat(const std::vector<Measured>& runs, const std::string& key) {
  std::vector<double> values;
  for (const Measured& m : runs) values.push_back(m.memory.value(key, 0.0));
  return static_cast<std::uint64_t>(harness::median(values));
}

Result<json> MemoryBench::results() {
  progress("replaying the paced runs' traces under Belady");
  json out = json::array();
  for (const char* policy : kPolicies) {
    for (const char* variant : kVariants) {
      for (double f : kFractions) {
        const std::string key = key_of({policy, variant, f});
        const std::vector<Measured>& runs = paced_.at(key);
        std::vector<double> over, moved, belady, lru, lookahead;
        bool identical = true;
        for (const Measured& u : unpaced_.at(key)) identical = identical && u.identical;
        for (const Measured& m : runs) {
          identical = identical && m.identical;
          MALV_ASSIGN_OR_RETURN(std::vector<vgpu::AccessRecord> trace,
                                vgpu::read_access_trace(m.trace));
          MALV_ASSIGN_OR_RETURN(vgpu::TraceReplay replay,
                                vgpu::TraceReplay::create(trace, m.trace));
          const auto replayed = [&](vgpu::ReplayPolicy p) {
            return replay.run({.capacity_bytes = m.resident_quota, .policy = p});
          };
          MALV_ASSIGN_OR_RETURN(vgpu::ReplayCounts b, replayed(vgpu::ReplayPolicy::kBelady));
          MALV_ASSIGN_OR_RETURN(vgpu::ReplayCounts l, replayed(vgpu::ReplayPolicy::kLru));
          MALV_ASSIGN_OR_RETURN(vgpu::ReplayCounts a, replayed(vgpu::ReplayPolicy::kLookahead));
          const vgpu::ReplayCounts measured{.bytes_in = m.memory.value("bytes_in", 0ull),
                                            .bytes_out = m.memory.value("bytes_out", 0ull)};
          const std::optional<double> ratio = vgpu::bytes_over_belady(measured, b);
          over.push_back(ratio ? *ratio : INFINITY);
          moved.push_back(static_cast<double>(measured.bytes_moved()));
          belady.push_back(static_cast<double>(b.bytes_moved()));
          lru.push_back(static_cast<double>(l.bytes_moved()));
          lookahead.push_back(static_cast<double>(a.bytes_moved()));
        }
        const double over_med = harness::median(over);
        std::vector<double> train_s;
        for (const Measured& m : runs) train_s.push_back(m.train_s);
        out.push_back({
            {"workload", "mlp"},
            {"policy", policy},
            {"variant", variant},
            {"resident_fraction", f},
            {"time_over_fit", harness::median(ratio_paced_.at(key))},
            {"time_over_fit_unpaced", harness::median(ratio_unpaced_.at(key))},
            {"bytes_moved", static_cast<std::uint64_t>(harness::median(moved))},
            {"bytes_over_belady", std::isfinite(over_med) ? json(over_med) : json(nullptr)},
            {"faults", median_stat(runs, "faults")},
            {"prefetch_hits", median_stat(runs, "prefetch_hits")},
            {"prefetches", median_stat(runs, "prefetches")},
            {"bit_identical", identical},
            {"resident_bytes", runs.front().resident_quota},
            {"train_s", harness::median(train_s)},
            {"belady_bytes", static_cast<std::uint64_t>(harness::median(belady))},
            {"replay_lru_bytes", static_cast<std::uint64_t>(harness::median(lru))},
            {"replay_lookahead_bytes", static_cast<std::uint64_t>(harness::median(lookahead))},
            {"evictions", median_stat(runs, "evictions")},
            {"policy_fallbacks", median_stat(runs, "policy_fallbacks")},
            {"failed_placements", median_stat(runs, "failed_placements")},
        });
      }
    }
  }
  return out;
}

void MemoryBench::print(const json& results) const {
  const json head{{"workload", "mlp"},
                  {"model", model_},
                  {"steps", steps_},
                  {"batch", 128},
                  {"rounds", rounds_},
                  {"footprint_bytes", footprint_},
                  {"largest_op_bytes", largest_op_},
                  {"link_gbps", flags_.link_gbps},
                  {"prefetch", flags_.prefetch},
                  {"backend", backend_},
                  {"device", device_}};
  if (flags_.json) {
    json out = head;
    out["results"] = results;
    fmt::print("{}\n", out.dump(2));
    return;
  }
  fmt::print(
      "malv bench memory ({}, Fashion-MNIST, Adam, batch 128, {} steps, {} rounds)\n"
      "footprint {:.2f} MiB, largest op {:.2f} MiB; paced: {} GB/s per direction; backend {}\n\n",
      model_, steps_, rounds_, static_cast<double>(footprint_) / kMiB,
      static_cast<double>(largest_op_) / kMiB, flags_.link_gbps, backend_);
  fmt::print("{:<10} {:<7} {:>5} {:>9} {:>9} {:>10} {:>9} {:>10} {:>7} {:>8} {:>9}\n", "policy",
             "variant", "frac", "time/fit", "unpaced", "moved MB", "/belady", "belady MB", "faults",
             "prefetch", "identical");
  for (const json& r : results) {
    const json& over = r["bytes_over_belady"];
    fmt::print(
        "{:<10} {:<7} {:>5.3f} {:>9.3f} {:>9.3f} {:>10.2f} {:>9} {:>10.2f} {:>7} {:>8} {:>9}\n",
        r["policy"].get<std::string>(), r["variant"].get<std::string>(),
        r["resident_fraction"].get<double>(), r["time_over_fit"].get<double>(),
        r["time_over_fit_unpaced"].get<double>(), r["bytes_moved"].get<double>() / 1e6,
        over.is_null() ? std::string("inf") : fmt::format("{:.3f}", over.get<double>()),
        r["belady_bytes"].get<double>() / 1e6, r["faults"].get<std::uint64_t>(),
        r["prefetch_hits"].get<std::uint64_t>(), r["bit_identical"].get<bool>() ? "yes" : "NO");
  }
}

Status MemoryBench::run() {
  model_ = !flags_.model.empty() ? flags_.model : flags_.quick ? kQuickModel : kDefaultModel;
  steps_ = flags_.quick ? std::min<std::uint64_t>(flags_.steps, 3) : flags_.steps;
  rounds_ = flags_.quick ? 1 : flags_.rounds;
  MALV_TRY(probe());
  MALV_TRY(measure(/*paced=*/true));
  MALV_TRY(measure(/*paced=*/false));
  MALV_ASSIGN_OR_RETURN(json r, results());
  print(r);
  return ok_status();
}

}  // namespace

Status run_memory(const MemoryOptions& flags) {
  // The hosts' info lines (a session per run) would bury the progress lines.
  ::setenv("MALV_LOG", "warn", /*overwrite=*/0);
  fmt::print(stderr, "bench memory: loading Fashion-MNIST ({})\n", flags.data_dir);
  MALV_ASSIGN_OR_RETURN(nn::Dataset train,
                        nn::load_fashion_mnist(flags.data_dir, nn::Split::kTrain));
  MALV_ASSIGN_OR_RETURN(auto dir, harness::PrivateDir::create("bench-memory"));
  MemoryBench bench(flags, train, *dir);
  return bench.run();
}

}  // namespace malv::bench
