// `malv demo`: its flags and how it ends (demo/demo.h runs it).
#include <fmt/format.h>

#include <CLI/CLI.hpp>
#include <memory>

#include "cli/commands.h"
#include "cli/option_checks.h"
#include "demo/demo.h"

namespace malv::cli {

void register_demo(CLI::App& app, int& exit_code) {
  auto flags = std::make_shared<demo::DemoOptions>();
  CLI::App* sub = app.add_subcommand(
      "demo", "Run the main demo: three VMs share one accelerator; the policy changes live");
  sub->footer(
      "What it does, with no arguments and no configuration:\n"
      "  1. starts a host (malv serve, CPU backend) on private sockets in a temporary directory;\n"
      "  2. creates three VMs through the host's admin API: train-a and train-b (batch class,\n"
      "     compute weights 1 and 2, 64 MiB memory quota each) and infer (latency class, 16 MiB);\n"
      "  3. trains a small model natively for the inference VM and saves a checkpoint;\n"
      "  4. starts three guests as separate processes: two `malv guest train` (an MLP on\n"
      "     Fashion-MNIST) and one `malv guest infer` serving Poisson-arriving requests;\n"
      "  5. runs them under the vGPU scheduler's host level fifo (which VM runs next; train-b\n"
      "     picks fair-share for its own streams, the others fifo), then halfway the admin\n"
      "     switches the host level to priority (latency VM first, training VMs by weight)\n"
      "     through the admin API, without stopping anything;\n"
      "  6. shows a live per-VM table (policy, progress, examples/s, accelerator share, memory\n"
      "     used/quota, inference p50/p99), then a per-phase summary, and writes\n"
      "     malv-demo-report.json and malv-demo-report.html (SVG charts) to --out.\n"
      "Every process and socket it starts is gone when it ends, also on Ctrl-C.\n"
      "The whole demo takes about --duration plus 10 s.");
  sub->add_option("--duration", flags->duration_s,
                  "Seconds the guests run together (the switch comes halfway)")
      ->capture_default_str()
      ->check(finite_in(4.0, 3600.0));
  sub->add_option("--out", flags->out_dir, "Directory for the two report files")
      ->capture_default_str();
  sub->add_option("--rate", flags->infer_rate, "Inference requests per second")
      ->capture_default_str()
      ->check(finite_in(1.0, 2000.0));
  sub->add_option(
         "--cpu-policy", flags->cpu_policy,
         "cpu_sched policy every VM switches to halfway, with the host level priority (none: CPUs "
         "left alone)")
      ->capture_default_str()
      ->check(CLI::IsMember({"none", "class", "gpu-aware", "mllb"}));
  sub->callback([flags, &exit_code] {
    Status s = demo::run_demo(*flags);
    if (!s.ok()) {
      if (demo::stop_signal() != 0) {
        fmt::print(stderr,
                   "\nmalv demo: {}; every process it started is stopped and its files "
                   "are removed\n",
                   s.error().message());
        exit_code = 128 + demo::stop_signal();
        return;
      }
      fmt::print(stderr, "malv demo: {}\n", s.error().to_string());
      exit_code = 1;
    }
  });
}

}  // namespace malv::cli
