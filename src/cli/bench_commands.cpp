// `malv bench ...`: the flags of the benchmarks of one process (ipc, mlaas,
// overhead, cuda, alloc, memory, torch); bench/bench.h runs them.
#include "cli/bench_commands.h"

#include <CLI/CLI.hpp>
#include <memory>

#include "bench/bench.h"
#include "bench/torch_device.h"
#include "cli/commands.h"

namespace malv::cli {

void register_bench_ipc(CLI::App& bench, int& exit_code) {
  auto flags = std::make_shared<bench::IpcOptions>();
  CLI::App* sub = bench.add_subcommand(
      "ipc", "Remoting latency, launch rate and transfer bandwidth vs their baselines");
  sub->add_flag("--json", flags->json, "Print one JSON object instead of a table");
  sub->add_option("--roundtrips", flags->roundtrips, "Blocking round trips per transport")
      ->capture_default_str()
      ->check(CLI::Range(1, 100'000'000));
  sub->add_option("--launches", flags->launches, "Async no-op launches per run")
      ->capture_default_str()
      ->check(CLI::Range(1, 1'000'000'000));
  sub->add_option("--backend", flags->backend, "The host's accelerator backend: cpu, cuda or auto")
      ->capture_default_str();
  sub->add_option("--transfer-mib", flags->transfer_mib, "Transfer size in MiB")
      ->capture_default_str()
      ->check(CLI::Range(1, 4096));
  on_bench_run(
      *sub, [flags] { return bench::run_ipc(*flags); }, exit_code);
}

void register_bench_mlaas(CLI::App& bench, int& exit_code) {
  auto flags = std::make_shared<bench::MlaasOptions>();
  CLI::App* sub = bench.add_subcommand(
      "mlaas", "Policy decision cost, inference crossover, hot swap, learned-sjf vs fifo");
  sub->add_flag("--json", flags->json, "Print one JSON object instead of a table");
  sub->add_flag("--quick", flags->quick, "Tiny sizes: checks that every phase runs (no timings)");
  sub->add_option("--bursts", flags->bursts, "Measured bursts per policy (mixed workload)")
      ->capture_default_str()
      ->check(CLI::Range(1, 1'000'000));
  sub->add_option("--warmup-bursts", flags->warmup_bursts,
                  "Unmeasured bursts per policy first (learned-sjf learns from them)")
      ->capture_default_str()
      ->check(CLI::Range(0, 1'000'000));
  sub->add_option("--swaps", flags->swaps, "Hot swaps (median reported)")
      ->capture_default_str()
      ->check(CLI::Range(1, 10'000));
  sub->add_option("--backend", flags->backend,
                  "Accelerator of the in-process host (inference path): cpu, cuda or auto")
      ->capture_default_str();
  sub->add_option("--caller-ms", flags->caller_ms,
                  "Concurrent callers: milliseconds per measurement")
      ->capture_default_str()
      ->check(CLI::Range(1.0, 60'000.0));
  sub->add_option("--caller-rounds", flags->caller_rounds,
                  "Concurrent callers: rounds of batched and unbatched (median reported)")
      ->capture_default_str()
      ->check(CLI::Range(1, 100));
  sub->add_option("--batch-window-us", flags->batch_window_us,
                  "Concurrent callers: the inference service's batch window")
      ->capture_default_str()
      ->check(CLI::Range(0.0, 100'000.0));
  sub->add_option("--max-concurrent-runs", flags->max_concurrent_runs,
                  "Concurrent callers: batches of one model running at once")
      ->capture_default_str()
      ->check(CLI::Range(1, 64));
  sub->add_flag("--callers-only", flags->callers_only, "Run only the concurrent-callers phase");
  sub->add_option("--prefetch-steps", flags->prefetch_steps,
                  "Prefetch: training steps per run (a VM whose data step varies)")
      ->capture_default_str()
      ->check(CLI::Range(16, 1'000'000));
  sub->add_option("--prefetch-rounds", flags->prefetch_rounds,
                  "Prefetch: runs per policy (fixed, adaptive, learned in rotating order)")
      ->capture_default_str()
      ->check(CLI::Range(1, 100));
  sub->add_option("--prefetch-seed", flags->prefetch_seed,
                  "Prefetch: seed of the data-step schedule (round r uses seed + r)")
      ->capture_default_str()
      ->check(CLI::Range(std::uint64_t{0}, std::uint64_t{1} << 62));
  sub->add_flag("--prefetch-only", flags->prefetch_only, "Run only the prefetch phase")
      ->excludes("--callers-only");
  add_bench_sjf_flags(*sub, *flags);
  on_bench_run(
      *sub, [flags] { return bench::run_mlaas(*flags); }, exit_code);
}

void register_bench_overhead(CLI::App& bench, int& exit_code) {
  auto flags = std::make_shared<bench::OverheadOptions>();
  CLI::App* sub = bench.add_subcommand(
      "overhead",
      "Training time in a VM vs native (vm_over_native), and the host data pipeline vs the "
      "guest loading its own data, in one run");
  sub->add_flag("--json", flags->json, "Print one JSON object instead of a table");
  sub->add_option("--steps", flags->steps, "Training steps per measured run")
      ->capture_default_str()
      ->check(CLI::Range(10, 100000));
  sub->add_option("--repeats", flags->repeats, "Runs of each variant; the median is reported")
      ->capture_default_str()
      ->check(CLI::Range(1, 50));
  sub->add_option("--backend", flags->backend, "Accelerator backend: cpu, cuda or auto")
      ->capture_default_str();
  sub->add_option("--data-dir", flags->data_dir, "Directory with the Fashion-MNIST .gz files")
      ->capture_default_str();
  on_bench_run(
      *sub, [flags] { return bench::run_overhead(*flags); }, exit_code);
}

void register_bench_cuda(CLI::App& bench, int& exit_code) {
  auto flags = std::make_shared<bench::CudaOptions>();
  CLI::App* sub = bench.add_subcommand(
      "cuda",
      "CUDA through a VM vs CUDA directly: sgemm, copies, inference crossover (needs a GPU)");
  sub->add_flag("--json", flags->json, "Print one JSON object instead of a table");
  sub->add_option("--gemm-dim", flags->gemm_dim, "m = n = k of the sgemm")
      ->capture_default_str()
      ->check(CLI::Range(64, 16384));
  sub->add_option("--gemm-iterations", flags->gemm_iterations, "Timed sgemms per path")
      ->capture_default_str()
      ->check(CLI::Range(1, 10000));
  sub->add_option("--transfer-mib", flags->transfer_mib, "Copy size in MiB")
      ->capture_default_str()
      ->check(CLI::Range(1, 4096));
  on_bench_run(
      *sub, [flags] { return bench::run_cuda(*flags); }, exit_code);
}

void register_bench_alloc(CLI::App& bench, int& exit_code) {
  auto flags = std::make_shared<bench::AllocOptions>();
  CLI::App* sub = bench.add_subcommand(
      "alloc",
      "Device memory allocation throughput on the CPU backend with freed memory cleared "
      "(as always in service) vs not cleared (a mode only this benchmark uses), in one run: "
      "allocate+free cycles, and allocate+write+free cycles so that clearing lazily cannot "
      "hide its cost");
  sub->add_flag("--json", flags->json, "Print one JSON object instead of a table");
  sub->add_option("--cycles", flags->cycles, "Allocate+free cycles per round")
      ->capture_default_str()
      ->check(CLI::Range(100, 10'000'000));
  sub->add_option("--touch-cycles", flags->touch_cycles,
                  "Allocate+write+free cycles per round (each writes the whole buffer)")
      ->capture_default_str()
      ->check(CLI::Range(10, 1'000'000));
  sub->add_option("--live", flags->live, "Buffers kept allocated; each cycle replaces one")
      ->capture_default_str()
      ->check(CLI::Range(1, 4096));
  sub->add_option("--repeats", flags->repeats,
                  "Rounds, alternating cleared and not cleared; medians are reported")
      ->capture_default_str()
      ->check(CLI::Range(1, 50));
  sub->add_option("--min-bytes", flags->min_bytes, "Smallest buffer (sizes are log-uniform)")
      ->capture_default_str()
      ->check(CLI::Range(std::uint64_t{1}, std::uint64_t{1} << 32));
  sub->add_option("--max-bytes", flags->max_bytes, "Largest buffer")
      ->capture_default_str()
      ->check(CLI::Range(std::uint64_t{1}, std::uint64_t{1} << 32));
  sub->add_option("--seed", flags->seed, "Seed of the size sequence (the same for both)")
      ->capture_default_str();
  on_bench_run(
      *sub, [flags] { return bench::run_alloc(*flags); }, exit_code);
}

void register_bench_torch(CLI::App& bench, int& exit_code) {
  auto flags = std::make_shared<bench::TorchOptions>();
  CLI::App* sub = bench.add_subcommand(
      "torch",
      "The malv torch device against torch on the CPU: ResNet-18 and MLP steps, tiny async "
      "operators, synchronous round trips, a HostDataset epoch against DataLoader, OpInfo "
      "conformance (runs python3 -m malv.bench_torch)");
  sub->add_flag("--json", flags->json, "Print one JSON object instead of a table");
  sub->add_option("--steps", flags->steps, "Timed training steps per side (after 2 warm-up)")
      ->capture_default_str()
      ->check(CLI::Range(1, 10'000));
  sub->add_option("--ops", flags->ops, "Tiny asynchronous operators to time")
      ->capture_default_str()
      ->check(CLI::Range(100, 100'000'000));
  sub->add_option("--epochs", flags->epochs,
                  "Fashion-MNIST epochs per loader (0: leave the data figures out)")
      ->capture_default_str()
      ->check(CLI::Range(0, 100));
  sub->add_option("--opinfo-ops", flags->opinfo_ops,
                  "OpInfo operators to run (0: every one; -1: leave the conformance run out)")
      ->capture_default_str()
      ->check(CLI::Range(-1, 100'000));
  sub->add_option("--host-cpus", flags->host_cpus,
                  "The host's own cores (malv serve --host-cpus): auto (the last core when there "
                  "are two or more, the guest keeping the others), all (no confinement), or a "
                  "CPU list")
      ->capture_default_str();
  sub->add_option("--python", flags->python, "The python3 with PyTorch (Debian's)")
      ->capture_default_str();
  on_bench_run(
      *sub, [flags] { return bench::run_torch(*flags); }, exit_code);
}

void register_bench_memory(CLI::App& bench, int& exit_code) {
  auto flags = std::make_shared<bench::MemoryOptions>();
  CLI::App* sub = bench.add_subcommand(
      "memory",
      "Training on an oversubscribed VM at 1, 1/1.5, 1/2 and 1/3 of its footprint resident, "
      "lru, lookahead and learned, queued and synchronous: time over the run where everything fits "
      "(paced and unpaced spills), bytes moved over Belady's, bit-identical parameters");
  sub->add_flag("--json", flags->json, "Print one JSON object instead of a table");
  sub->add_flag("--quick", flags->quick,
                "Tiny sizes (a smaller model, 3 steps, one round): checks that every phase runs");
  sub->add_option("--steps", flags->steps, "Training steps per run")
      ->capture_default_str()
      ->check(CLI::Range(1, 100000));
  sub->add_option("--rounds", flags->rounds, "Paired rounds; ratios are medians over rounds")
      ->capture_default_str()
      ->check(CLI::Range(1, 50));
  sub->add_option("--model", flags->model,
                  "Model spec (default mlp:784-512-512-512-512-512-10; a third of its footprint "
                  "must hold its largest op)");
  sub->add_option("--link-gbps", flags->link_gbps,
                  "The paced host's --spill-link-gbps (GB/s per direction)")
      ->capture_default_str()
      ->check(CLI::Range(0.001, 1e6));
  sub->add_flag(
      "!--no-prefetch", flags->prefetch,
      "Hosts fill spilled buffers only when an op needs them (`malv serve --no-memory-prefetch`)");
  sub->add_option("--data-dir", flags->data_dir, "Directory with the Fashion-MNIST .gz files")
      ->capture_default_str();
  on_bench_run(
      *sub, [flags] { return bench::run_memory(*flags); }, exit_code);
}

}  // namespace malv::cli
