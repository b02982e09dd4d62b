// `malv bench sharing`, `malv bench soak` and `malv bench vm`: the flags of
// the benchmarks that run a host and guest processes or VMs, and of those
// guests' hidden subcommands (`sharing-guest`, `soak-guest`); bench/bench.h
// runs them.
#include <fmt/format.h>

#include <CLI/CLI.hpp>
#include <memory>

#include "bench/bench.h"
#include "cli/bench_commands.h"
#include "cli/commands.h"
#include "cli/option_checks.h"

namespace malv::cli {
namespace {

void register_sharing_guest(CLI::App& bench, int& exit_code) {
  auto spec = std::make_shared<bench::SharingGuestSpec>();
  CLI::App* sub = bench.add_subcommand("sharing-guest", "One guest of `malv bench sharing`");
  sub->group("");  // internal: started by `malv bench sharing`
  sub->add_option("--socket", spec->socket)->required();
  sub->add_option("--vm", spec->vm)->required();
  sub->add_option("--token", spec->token);
  sub->add_option("--mode", spec->mode)->check(CLI::IsMember({"gemm", "infer", "tiny"}));
  sub->add_option("--seconds", spec->seconds)->check(finite_in(0, 3600));
  sub->add_option("--rate", spec->rate)->check(finite_in(1e-3, 1e6));
  sub->callback([spec, &exit_code] {
    Status s = bench::run_sharing_guest(*spec);
    if (!s.ok()) {
      fmt::print(stderr, "malv bench sharing-guest {}: {}\n", spec->vm, s.error().to_string());
      exit_code = 1;
    }
  });
}

void register_soak_guest(CLI::App& bench, int& exit_code) {
  auto spec = std::make_shared<bench::SoakGuestSpec>();
  CLI::App* sub = bench.add_subcommand("soak-guest", "One guest of `malv bench soak`");
  sub->group("");  // internal: started by `malv bench soak`
  sub->add_option("--socket", spec->socket)->required();
  sub->add_option("--vm", spec->vm)->required();
  sub->add_option("--token", spec->token);
  sub->add_option("--seed", spec->seed);
  sub->add_option("--index", spec->index);
  sub->add_option("--rounds", spec->rounds)->check(CLI::Range(1, 1000));
  sub->callback([spec, &exit_code] {
    Status s = bench::run_soak_guest(*spec);
    if (!s.ok()) {
      fmt::print(stderr, "malv bench soak-guest {} #{}: {}\n", spec->vm, spec->index,
                 s.error().to_string());
      exit_code = s.error().code() == ErrorCode::kDataLoss ? bench::kSoakGuestWrongResult : 1;
    }
  });
}

}  // namespace

void register_bench_sharing(CLI::App& bench, int& exit_code) {
  auto flags = std::make_shared<bench::SharingOptions>();
  CLI::App* sub = bench.add_subcommand(
      "sharing", "Fair share, latency isolation and policy switch time across VMs, in one run");
  sub->add_flag("--json", flags->json, "Print one JSON object instead of a table");
  sub->add_option("--phase-seconds", flags->phase_seconds, "Length of each timed phase")
      ->capture_default_str()
      ->check(finite_in(1.0, 60.0));
  sub->add_option("--rate", flags->infer_rate, "Latency VM requests per second")
      ->capture_default_str()
      ->check(finite_in(1.0, 10000.0));
  sub->add_option("--workers", flags->workers, "CPU backend worker threads of the host")
      ->capture_default_str()
      ->check(CLI::Range(1, 256));
  sub->add_option("--backend", flags->backend, "The host's accelerator backend: cpu, cuda or auto")
      ->capture_default_str();
  sub->add_option("--switches", flags->switches, "Policy switches timed")
      ->capture_default_str()
      ->check(CLI::Range(1, 1000));
  on_bench_run(
      *sub, [flags] { return bench::run_sharing(*flags); }, exit_code);
  register_sharing_guest(bench, exit_code);
}

void register_bench_soak(CLI::App& bench, int& exit_code) {
  auto flags = std::make_shared<bench::SoakOptions>();
  CLI::App* sub = bench.add_subcommand(
      "soak",
      "Many short-lived guests (some SIGKILLed) against one host, checking that its accounting "
      "matches what it holds and that nothing leaks");
  sub->footer(
      "Starts `malv serve` (CPU backend) in a private temp dir, creates --vms VMs through the "
      "admin API and keeps --concurrency guest processes alive until --seconds have passed and "
      "at least --guests have run. Each guest allocates buffers, runs gemm/add on two streams, "
      "selects its own gpu_sched policy, saves and restores a checkpoint, and disconnects; "
      "about --kill-fraction of them are SIGKILLed at a random moment. Every --sample-ms the "
      "VMs' memory is checked against the device's (GET /metrics); at the end no VM may hold "
      "memory, streams or sessions. Exits 1 if a goal is missed: leaked_bytes 0, crashes 0, no "
      "accounting mismatch, no failed guest and no wrong result (wrong_results), "
      "host_rss_growth_mb <= --max-rss-growth-mb.");
  sub->add_flag("--json", flags->json, "Print one JSON object instead of a table");
  sub->add_option("--seconds", flags->seconds, "How long guests are started")
      ->capture_default_str()
      ->check(CLI::Range(1.0, 86400.0));
  sub->add_option("--guests", flags->guests, "At least this many guests run in all")
      ->capture_default_str()
      ->check(CLI::Range(1, 1000000));
  sub->add_option("--concurrency", flags->concurrency, "Guests alive at once, at most")
      ->capture_default_str()
      ->check(CLI::Range(1, 256));
  sub->add_option("--kill-fraction", flags->kill_fraction, "Share of guests SIGKILLed")
      ->capture_default_str()
      ->check(CLI::Range(0.0, 1.0));
  sub->add_option("--seed", flags->seed, "Seed of who is killed when, and of the guests' work")
      ->capture_default_str();
  sub->add_option("--vms", flags->vms, "VMs the guests are spread over")
      ->capture_default_str()
      ->check(CLI::Range(1, 64));
  sub->add_option("--rounds", flags->rounds, "Work rounds of each guest")
      ->capture_default_str()
      ->check(CLI::Range(1, 100));
  sub->add_option("--sample-ms", flags->sample_ms, "Accounting check interval")
      ->capture_default_str()
      ->check(CLI::Range(50, 60000));
  sub->add_option("--warmup-seconds", flags->warmup_seconds,
                  "Churn before the host's RSS baseline is taken (default: min(10, seconds/4))");
  sub->add_option("--max-rss-growth-mb", flags->max_rss_growth_mb,
                  "Goal: host RSS growth from after the warm-up to the end")
      ->capture_default_str();
  sub->add_option("--workers", flags->workers, "CPU backend worker threads of the host")
      ->capture_default_str()
      ->check(CLI::Range(1, 256));
  on_bench_run(
      *sub, [flags] { return bench::run_soak(*flags); }, exit_code);
  register_soak_guest(bench, exit_code);
}

void register_bench_vm(CLI::App& bench, int& exit_code) {
  auto flags = std::make_shared<bench::VmOptions>();
  CLI::App* sub = bench.add_subcommand(
      "vm",
      "Training in a QEMU VM over ivshmem vs a guest process and native, and the VM's "
      "shared-memory round trip, in one run (qemu_over_native, qemu_over_process)");
  sub->add_flag("--json", flags->json, "Print one JSON object instead of a table");
  sub->add_option("--steps", flags->steps, "Training steps per measured run")
      ->capture_default_str()
      ->check(CLI::Range(10, 100000));
  sub->add_option("--repeats", flags->repeats, "Rounds (each boots the VM once); medians reported")
      ->capture_default_str()
      ->check(CLI::Range(1, 20));
  sub->add_option("--pings", flags->pings, "Round trips timed from inside the VM")
      ->capture_default_str()
      ->check(CLI::Range(10, 1000000));
  sub->add_option("--accel", flags->accel,
                  "The VM's accelerator: auto (KVM when it boots), kvm, tcg")
      ->capture_default_str()
      ->check(CLI::IsMember({"auto", "kvm", "tcg"}));
  sub->add_option("--image", flags->image,
                  "A guest image from scripts/build-guest-image.sh (default: build one)");
  sub->add_option("--scripts", flags->scripts_dir,
                  "Where vm-boot.sh and build-guest-image.sh are (default: the source tree's "
                  "scripts/)");
  sub->add_option("--data-dir", flags->data_dir, "Directory with the Fashion-MNIST .gz files")
      ->capture_default_str();
  sub->add_flag("--keep", flags->keep, "Keep the VM's consoles and boot logs (printed path)");
  on_bench_run(
      *sub, [flags] { return bench::run_vm(*flags); }, exit_code);
}

}  // namespace malv::cli
