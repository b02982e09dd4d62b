// `malv memory replay TRACE`: what each eviction policy would move for a
// recorded access trace at a given device capacity, against Belady's
// furthest-next-use; with --model, the learned policy too (a model `malv
// memory train` wrote). The work is vgpu/trace_replay.h's; this parses and
// prints.
#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <nlohmann/json.hpp>
#include <optional>

#include "cli/commands.h"
#include "cli/option_checks.h"
#include "mlaas/mlp.h"
#include "vgpu/access_trace.h"
#include "vgpu/memory_history.h"
#include "vgpu/trace_replay.h"

namespace malv::cli {
namespace {

struct ReplayFlags {
  std::string trace;
  double capacity_mib = 0;
  std::uint64_t capacity_bytes = 0;
  std::string policy = "all";
  std::uint64_t window_ops = vgpu::kDefaultLookaheadWindowOps;
  std::string model;  // learned's model file
  bool json = false;
};

struct PolicyResult {
  vgpu::ReplayPolicy policy;
  vgpu::ReplayCounts counts;
  std::optional<double> over_belady;
};

std::string mib(std::uint64_t bytes) {
  return fmt::format("{:.1f} MiB", static_cast<double>(bytes) / 1048576.0);
}

std::string label(const PolicyResult& r, std::uint64_t window_ops) {
  if (r.policy != vgpu::ReplayPolicy::kLookahead) return std::string(replay_policy_name(r.policy));
  return fmt::format("lookahead({})", window_ops);
}

void print_json(const ReplayFlags& f, const vgpu::TraceReplay& replay, std::uint64_t capacity,
                const std::vector<PolicyResult>& results) {
  nlohmann::json out = {{"trace", f.trace},
                        {"records", replay.records()},
                        {"ops", replay.ops()},
                        {"buffers", replay.buffers()},
                        {"largest_op_bytes", replay.largest_op_bytes()},
                        {"peak_allocated_bytes", replay.peak_allocated_bytes()},
                        {"capacity_bytes", capacity},
                        {"window_ops", f.window_ops},
                        {"model", f.model.empty() ? nlohmann::json() : nlohmann::json(f.model)},
                        {"results", nlohmann::json::array()}};
  for (const PolicyResult& r : results) {
    out["results"].push_back(
        {{"policy", vgpu::replay_policy_name(r.policy)},
         {"bytes_in", r.counts.bytes_in},
         {"bytes_out", r.counts.bytes_out},
         {"bytes_moved", r.counts.bytes_moved()},
         {"faults", r.counts.faults},
         {"evictions", r.counts.evictions},
         {"bytes_over_belady", r.over_belady ? nlohmann::json(*r.over_belady) : nullptr}});
  }
  fmt::print("{}\n", out.dump(2));
}

void print_table(const ReplayFlags& f, const vgpu::TraceReplay& replay, std::uint64_t capacity,
                 const std::vector<PolicyResult>& results) {
  fmt::print("trace {}: {} records, {} ops, {} buffers; largest op {}, peak allocated {}\n",
             f.trace, replay.records(), replay.ops(), replay.buffers(),
             mib(replay.largest_op_bytes()), mib(replay.peak_allocated_bytes()));
  fmt::print("capacity {} ({} bytes)\n", mib(capacity), capacity);
  fmt::print("{:<16} {:>15} {:>15} {:>15} {:>10} {:>10} {:>12}\n", "POLICY", "BYTES IN",
             "BYTES OUT", "BYTES MOVED", "FAULTS", "EVICTIONS", "OVER BELADY");
  for (const PolicyResult& r : results) {
    fmt::print("{:<16} {:>15} {:>15} {:>15} {:>10} {:>10} {:>12}\n", label(r, f.window_ops),
               r.counts.bytes_in, r.counts.bytes_out, r.counts.bytes_moved(), r.counts.faults,
               r.counts.evictions,
               r.over_belady ? fmt::format("{:.3f}", *r.over_belady) : std::string("-"));
  }
}

Status run_replay(const ReplayFlags& f) {
  const std::uint64_t capacity =
      f.capacity_bytes != 0 ? f.capacity_bytes
                            : static_cast<std::uint64_t>(std::llround(f.capacity_mib * 1048576.0));
  MALV_ASSIGN_OR_RETURN(std::vector<vgpu::AccessRecord> trace, vgpu::read_access_trace(f.trace));
  MALV_ASSIGN_OR_RETURN(vgpu::TraceReplay replay, vgpu::TraceReplay::create(trace, f.trace));
  trace = {};  // the replay holds its own index
  std::vector<vgpu::ReplayPolicy> policies;
  if (f.policy == "all") {
    policies = {vgpu::ReplayPolicy::kLru, vgpu::ReplayPolicy::kLookahead,
                vgpu::ReplayPolicy::kBelady};
    if (!f.model.empty()) policies.push_back(vgpu::ReplayPolicy::kLearned);
  } else {
    policies = {*vgpu::parse_replay_policy(f.policy)};
  }
  std::optional<mlaas::Mlp> model;
  if (std::ranges::find(policies, vgpu::ReplayPolicy::kLearned) != policies.end()) {
    MALV_ASSIGN_OR_RETURN(model, mlaas::Mlp::load(f.model));
    MALV_TRY(vgpu::check_memory_model(*model, f.model));
  }
  MALV_ASSIGN_OR_RETURN(
      vgpu::ReplayCounts belady,
      replay.run({.capacity_bytes = capacity, .policy = vgpu::ReplayPolicy::kBelady}));
  std::vector<PolicyResult> results;
  for (vgpu::ReplayPolicy policy : policies) {
    vgpu::ReplayCounts counts = belady;
    if (policy != vgpu::ReplayPolicy::kBelady) {
      MALV_ASSIGN_OR_RETURN(counts, replay.run({.capacity_bytes = capacity,
                                                .policy = policy,
                                                .window_ops = f.window_ops,
                                                .model = model ? &*model : nullptr}));
    }
    results.push_back({policy, counts, vgpu::bytes_over_belady(counts, belady)});
  }
  if (f.json) {
    print_json(f, replay, capacity, results);
  } else {
    print_table(f, replay, capacity, results);
  }
  return ok_status();
}

void register_replay(CLI::App& memory, int& exit_code) {
  auto f = std::make_shared<ReplayFlags>();
  CLI::App* sub = memory.add_subcommand(
      "replay",
      "Replay a recorded access trace at a device capacity: bytes moved in and out, faults and "
      "evictions under each eviction policy, and each over Belady's at the same capacity");
  sub->add_option("trace", f->trace, "Access trace file, as the host records it")->required();
  CLI::Option* mib_option =
      sub->add_option("--capacity-mib", f->capacity_mib, "Device capacity in MiB")
          ->check(finite_in(1e-6, 1 << 24));
  CLI::Option* bytes_option =
      sub->add_option("--capacity-bytes", f->capacity_bytes, "Device capacity in bytes")
          ->check(whole_number_in(1, std::uint64_t{1} << 62));
  mib_option->excludes(bytes_option);
  bytes_option->excludes(mib_option);
  sub->add_option("--policy", f->policy,
                  "lru, lookahead, belady, learned (needs --model), or all (learned too with "
                  "--model)")
      ->capture_default_str()
      ->check(CLI::IsMember({"lru", "lookahead", "belady", "learned", "all"}));
  sub->add_option("--window", f->window_ops,
                  "Ops of queued work lookahead sees ahead of the op it places")
      ->capture_default_str()
      ->check(whole_number_in(0, std::uint64_t{1} << 62));
  sub->add_option("--model", f->model,
                  "The learned policy's model: a file `malv memory train` wrote (.safetensors)");
  sub->add_flag("--json", f->json, "Print JSON (bytes_over_belady is null where Belady moved 0)");
  sub->footer(
      "Belady here is the furthest-next-use rule over the whole trace: the optimum for faults "
      "when buffers are of one size, a strong reference but not a lower bound otherwise\n"
      "(docs/operations.md, \"Memory traces\").\n"
      "The capacity must hold the largest op's buffers together.\n\n"
      "Example:\n"
      "  malv memory replay vm-a.trace --capacity-mib 512\n"
      "  malv memory replay vm-a.trace --capacity-bytes 268435456 --policy lookahead "
      "--window 16 --json\n"
      "  malv memory replay vm-a.trace --capacity-mib 512 --model evict.safetensors");
  sub->callback([f, sub, mib_option, bytes_option, &exit_code] {
    if (mib_option->count() == 0 && bytes_option->count() == 0) {
      throw CLI::RequiredError(sub->get_name() + ": --capacity-mib or --capacity-bytes");
    }
    if (f->policy == "learned" && f->model.empty()) {
      throw CLI::RequiredError(sub->get_name() + ": --model (for --policy learned)");
    }
    Status done = run_replay(*f);
    if (!done.ok()) fmt::print(stderr, "malv memory replay: {}\n", done.error().message());
    exit_code = done.ok() ? 0 : 1;
  });
}

}  // namespace

void register_memory(CLI::App& app, int& exit_code) {
  CLI::App* memory = app.add_subcommand(
      "memory",
      "Device-memory tools: replay recorded access traces, train the learned eviction policy's "
      "model on them");
  memory->require_subcommand(1);
  register_replay(*memory, exit_code);
  register_memory_train(*memory, exit_code);
}

}  // namespace malv::cli
