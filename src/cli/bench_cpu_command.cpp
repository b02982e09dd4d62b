// `malv bench cpu` and its hidden hog process `malv bench cpu-hog`
// (bench/cpu.cpp runs them).
#include <fmt/format.h>

#include <memory>

#include "bench/bench.h"
#include "cli/bench_commands.h"
#include "cli/commands.h"
#include "cli/option_checks.h"

namespace malv::cli {

void register_bench_cpu(CLI::App& bench, int& exit_code) {
  auto flags = std::make_shared<bench::CpuOptions>();
  CLI::App* sub = bench.add_subcommand(
      "cpu",
      "VMs' CPU shares under each cpu_sched policy: an inference VM's latency (alone and beside "
      "two training VMs and a CPU hog), the training VMs' throughput, the accelerator's time "
      "waiting for a guest");
  sub->add_flag("--json", flags->json, "Print one JSON object instead of a table");
  sub->add_option("--seconds", flags->seconds, "Measured window per policy (and alone)")
      ->capture_default_str()
      ->check(finite_in(1, 3600));
  sub->add_option("--warmup", flags->warmup_s, "Seconds every VM runs before the window")
      ->capture_default_str()
      ->check(finite_in(0, 600));
  sub->add_option("--policies", flags->policies,
                  "cpu_sched policies to run, in order (none, class, gpu-aware, mllb)")
      ->delimiter(',')
      ->check(CLI::IsMember({"none", "class", "gpu-aware", "mllb"}))
      ->capture_default_str();
  sub->add_option("--rate", flags->infer_rate, "Inference requests per second")
      ->capture_default_str()
      ->check(finite_in(1, 100000));
  sub->add_option("--hog-threads", flags->hog_threads, "Busy threads of the hog VM")
      ->capture_default_str()
      ->check(CLI::Range(1u, 256u));
  sub->add_option("--workers", flags->workers, "The host's CPU backend workers")
      ->capture_default_str()
      ->check(CLI::Range(1u, 256u));
  sub->add_option("--interval-ms", flags->interval_ms, "The host's --cpu-interval-ms")
      ->capture_default_str()
      ->check(CLI::Range(1u, 60000u));
  sub->add_option("--mechanism", flags->mechanism, "The host's --cpu-mechanism")
      ->capture_default_str()
      ->check(CLI::IsMember({"auto", "cgroup-v2", "cgroup-v1", "thread-fallback"}));
  sub->add_option("--mllb-data", flags->mllb_data,
                  "MLLB's dump of the kernel's decisions (raw CSV) for the held-out accuracy; "
                  "default: $MALV_MLLB_DATA")
      ->check(CLI::ExistingFile);
  sub->add_option("--mllb-decisions", flags->mllb_decisions,
                  "Timed MLLB decisions per path (inline, inference service)")
      ->capture_default_str()
      ->check(CLI::Range(10, 1000000));
  sub->add_option("--data-dir", flags->data_dir, "Directory with the Fashion-MNIST .gz files")
      ->capture_default_str();
  on_bench_run(
      *sub, [flags] { return bench::run_cpu(*flags); }, exit_code);

  auto threads = std::make_shared<unsigned>(2);
  CLI::App* hog = bench.add_subcommand("cpu-hog", "The hog VM's process of `malv bench cpu`");
  hog->group("");  // internal: started by `malv bench cpu`
  hog->add_option("--threads", *threads)->check(CLI::Range(1u, 256u));
  on_bench_run(
      *hog, [threads] { return bench::run_cpu_hog(*threads); }, exit_code);
}

}  // namespace malv::cli
