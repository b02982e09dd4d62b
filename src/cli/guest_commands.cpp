// `malv guest train` and `malv guest infer`: the flags of the guest
// workloads (harness/train_workload.h, harness/infer_workload.h run them),
// with the --socket/--tcp/--native, --vm, --token and --policy they share.
#include <fmt/format.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <limits>
#include <memory>
#include <nlohmann/json.hpp>
#include <vector>

#include "base/clock.h"
#include "base/text_parse.h"
#include "cli/commands.h"
#include "cli/option_checks.h"
#include "harness/guest_target.h"
#include "harness/infer_workload.h"
#include "harness/train_workload.h"

namespace malv::cli {
namespace {

// Adds --socket, --tcp, --vsock, --ivshmem and --native (at most one, in a group titled
// `group_title`), --vm, --token and --policy to `sub`, storing them in `target`.
void add_target_options(CLI::App& sub, harness::TargetOptions& target,
                        const std::string& group_title) {
  auto* where = sub.add_option_group("host", group_title);
  where->add_option("--socket", target.socket, "Connect to a host on this Unix socket");
  where->add_option("--tcp", target.tcp, "Connect to a host over TCP, HOST:PORT")
      ->check(host_port(/*allow_port_zero=*/false));
  where
      ->add_option("--vsock", target.vsock,
                   "Connect to a host over AF_VSOCK, CID:PORT (the host's CID is 2)")
      ->check([](const std::string& text) {
        Result<VsockAddress> parsed = parse_vsock_address(text);
        return parsed.ok() ? std::string() : parsed.error().message();
      });
  where
      ->add_option_function<std::vector<std::string>>(
          "--ivshmem",
          [&target](const std::vector<std::string>& device) {
            target.ivshmem = true;
            target.ivshmem_device = device.empty() ? std::string() : device.front();
          },
          "Inside a VM: reach the host through its ivshmem device (the first one, or this PCI "
          "address; on the host, a VM's ivshmem socket stands in for its QEMU). The default "
          "inside a VM that has one")
      ->expected(0, 1)
      ->type_name("[DEVICE]");
  where->add_flag("--native", target.native,
                  "Run in this process on a CPU backend, without a host (the baseline)");
  where->require_option(0, 1);
  sub.add_option("--vm", target.vm, "VM name to connect as")->capture_default_str();
  sub.add_option("--token", target.token, "The VM's token, if the host requires one");
  sub.add_option("--policy", target.policies,
                 "Select this VM's MLaaS policy, class=policy (e.g. gpu_sched=fair-share); "
                 "repeatable; the host's admin decides what is allowed")
      ->type_name("CLASS=NAME");
}

}  // namespace

void register_guest(CLI::App& app, int& exit_code) {
  CLI::App* guest = app.add_subcommand("guest", "Run guest workloads against a host's vGPU");
  guest->require_subcommand(1);
  auto flags = std::make_shared<harness::TrainOptions>();
  CLI::App* sub = guest->add_subcommand(
      "train", "Train an MLP classifier on Fashion-MNIST on a host's vGPU (or natively, --native)");
  sub->footer(
      "Examples:\n"
      "  malv guest train --socket /run/malv/malv.sock --vm train-a --token secret-a\n"
      "  malv guest train --native --epochs 1 --max-steps 200\n"
      "  malv guest train --native --checkpoint run.ckpt      # saved after every epoch\n"
      "  malv guest train --native --resume run.ckpt --checkpoint run.ckpt\n"
      "  malv guest train --checkpoint host:run1     # kept by the host, in its checkpoint_dir\n"
      "  malv guest train --resume host:run1 --checkpoint host:run1\n"
      "  malv guest train --native --augment --augment-noise 0.05   # augments on this CPU\n"
      "A resumed run must use the same --model, --optimizer, --lr, --seed and --batch\n"
      "(and --augment flags); it then continues exactly where the checkpoint left off.");
  add_target_options(*sub, flags->target, "Where to train (default: the host's default socket)");
  sub->add_option("--model", flags->model, "Model: mlp:<inputs>-<hidden>...-<classes>")
      ->capture_default_str();
  sub->add_option("--epochs", flags->epochs, "Passes over the training set")
      ->capture_default_str()
      ->check(whole_number_in(1, 1'000'000));
  sub->add_option("--batch", flags->batch, "Examples per step")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  sub->add_option("--optimizer", flags->optimizer, "adam or sgd")
      ->capture_default_str()
      ->check(CLI::IsMember({"adam", "sgd"}));
  sub->add_option("--lr", flags->lr, "Learning rate (default 0.001 for adam, 0.05 for sgd)")
      ->check(finite_in(1e-12, 1e3));
  sub->add_option("--seed", flags->seed, "Seed of the initial weights and the example order")
      ->capture_default_str()
      ->check(whole_number_in(0, std::numeric_limits<std::uint64_t>::max()));
  sub->add_option("--max-steps", flags->max_steps,
                  "Stop after this many steps in all, even mid-epoch (0: no cap)")
      ->capture_default_str()
      ->check(whole_number_in(0, std::numeric_limits<std::uint64_t>::max()));
  sub->add_option("--log-every", flags->log_every,
                  "Print the mean loss every this many steps (0: at epoch ends only)")
      ->capture_default_str()
      ->check(whole_number_in(0, std::numeric_limits<std::uint64_t>::max()));
  sub->add_option("--checkpoint", flags->checkpoint,
                  "Save parameters, optimizer state and step here after each epoch and at the "
                  "end (atomically); host:NAME has the host save them (not with --native)");
  sub->add_option("--resume", flags->resume,
                  "Continue from a checkpoint saved by --checkpoint (a path or host:NAME)");
  sub->add_option("--data-dir", flags->data_dir, "Directory with the Fashion-MNIST .gz files")
      ->capture_default_str();
  sub->add_option("--host-data", flags->host_data,
                  "Offload data loading: the host's pipeline reads, shuffles and stages the "
                  "training batches of this dataset (a path under the host's data directories, "
                  "e.g. fashion-mnist)")
      ->type_name("DATASET");
  auto* augment =
      sub->add_flag("--augment", flags->augment,
                    "Augment every batch in the guest, on its CPU, before the upload: a random "
                    "crop of the image padded with zeros, a horizontal flip (p=0.5) and "
                    "Gaussian noise; seeded by --seed, the step and the example (not with "
                    "--host-data: the host's pipeline does not augment)");
  sub->add_option("--augment-pad", flags->augmentation.pad,
                  "With --augment: pixels of zero padding on each side before the random crop "
                  "(0: no crop)")
      ->capture_default_str()
      ->check(whole_number_in(0, 27))
      ->type_name("N")
      ->needs(augment);
  sub->add_option("--augment-noise", flags->augmentation.noise_stddev,
                  "With --augment: standard deviation of the Gaussian noise added to each "
                  "pixel (0: none)")
      ->capture_default_str()
      ->check(finite_in(0, 10))
      ->type_name("SIGMA")
      ->needs(augment);
  sub->add_flag("--progress-json", flags->progress_json,
                "Print progress as one JSON object per line on stdout (events start, progress, "
                "done; other messages go to stderr)");
  sub->callback([flags, &exit_code] {
    Status s = harness::train(*flags);
    if (!s.ok()) {
      fmt::print(stderr, "malv guest train: {}\n", s.error().to_string());
      exit_code = 1;
    }
  });
}

void register_guest_infer(CLI::App& guest, int& exit_code) {
  auto flags = std::make_shared<harness::InferOptions>();
  CLI::App* sub = guest.add_subcommand(
      "infer",
      "Serve inference requests with a trained checkpoint at a target rate on a host's vGPU (or "
      "natively, --native); report latency percentiles");
  sub->footer(
      "Examples:\n"
      "  malv guest train --native --max-steps 300 --checkpoint model.ckpt\n"
      "  malv guest infer --native --checkpoint model.ckpt --rate 100 --duration 5\n"
      "  malv guest infer --socket /run/malv/malv.sock --vm infer --token t \\\n"
      "      --checkpoint model.ckpt --rate 50 --batch 32 --arrivals fixed --requests 1000\n"
      "Latency runs from a request's scheduled arrival to its answer, so time spent\n"
      "waiting behind a slow request counts: that is what a client of the service sees.");
  add_target_options(*sub, flags->target, "Where to serve (default: the host's default socket)");
  sub->add_option("--checkpoint", flags->checkpoint,
                  "Model checkpoint written by `malv guest train --checkpoint`")
      ->required();
  sub->add_option("--rate", flags->rate, "Target requests per second")
      ->capture_default_str()
      ->check(finite_in(0.1, 100000.0));
  sub->add_option("--arrivals", flags->arrivals,
                  "poisson (exponential gaps, like independent clients) or fixed (even gaps)")
      ->capture_default_str()
      ->check(CLI::IsMember({"poisson", "fixed"}));
  sub->add_option("--batch", flags->batch, "Test examples per request")
      ->capture_default_str()
      ->check(CLI::Range(1, 10000));
  auto* length = sub->add_option_group("length", "How long to serve");
  length->add_option("--duration", flags->duration_s, "Seconds of requests")
      ->capture_default_str()
      ->check(finite_in(1e-3, 1e9));
  length->add_option("--requests", flags->requests, "Serve this many requests, then stop")
      ->check(whole_number_in(1, std::numeric_limits<std::uint64_t>::max()));
  length->require_option(0, 1);
  sub->add_option("--report-every", flags->report_every_s,
                  "Seconds between periodic reports of the latest window")
      ->capture_default_str()
      ->check(finite_in(1e-3, 1e9));
  sub->add_option("--seed", flags->seed, "Seed of the arrival times and the examples drawn")
      ->capture_default_str()
      ->check(whole_number_in(0, std::numeric_limits<std::uint64_t>::max()));
  sub->add_flag("--json", flags->json,
                "Print one JSON object per line on stdout (events start, progress, done; "
                "other messages go to stderr)");
  sub->add_option("--data-dir", flags->data_dir, "Directory with the Fashion-MNIST .gz files")
      ->capture_default_str();
  sub->callback([flags, &exit_code] {
    Status s = harness::infer(*flags);
    if (!s.ok()) {
      fmt::print(stderr, "malv guest infer: {}\n", s.error().to_string());
      exit_code = 1;
    }
  });
}

namespace {

struct PingFlags {
  harness::TargetOptions target;
  std::uint64_t count = 1000;
  bool json = false;
};

// Times `count` round trips (a kNop each) to the host; prints percentiles.
Status ping(const PingFlags& flags) {
  MALV_ASSIGN_OR_RETURN(harness::GuestTarget target, harness::open_target(flags.target));
  if (!target.connection) {
    return Error(ErrorCode::kInvalidArgument, "ping times round trips to a host, not --native");
  }
  std::vector<double> us;
  us.reserve(flags.count);
  for (std::uint64_t i = 0; i < flags.count; ++i) {
    Stopwatch watch;
    MALV_TRY(target.connection->ping());
    us.push_back(watch.elapsed_s() * 1e6);
  }
  std::sort(us.begin(), us.end());
  const auto at = [&](double q) {
    return us[std::min(us.size() - 1,
                       static_cast<std::size_t>(q * static_cast<double>(us.size())))];
  };
  if (flags.json) {
    fmt::print("{}\n", nlohmann::json{{"event", "ping"},
                                      {"count", us.size()},
                                      {"p50_us", at(0.5)},
                                      {"p99_us", at(0.99)},
                                      {"max_us", us.back()}}
                           .dump());
  } else {
    fmt::print("{} round trips: p50 {:.1f} us, p99 {:.1f} us, max {:.1f} us\n", us.size(), at(0.5),
               at(0.99), us.back());
  }
  return ok_status();
}

}  // namespace

void register_guest_ping(CLI::App& guest, int& exit_code) {
  auto flags = std::make_shared<PingFlags>();
  CLI::App* sub = guest.add_subcommand(
      "ping", "Time round trips to the host (a no-op command each): the channel's latency");
  add_target_options(*sub, flags->target, "Where the host is (default: the host's default socket)");
  sub->add_option("--count", flags->count, "Round trips to time")
      ->capture_default_str()
      ->check(whole_number_in(1, 100000000));
  sub->add_flag("--json", flags->json, "Print one JSON object (event ping) on stdout");
  sub->callback([flags, &exit_code] {
    Status s = ping(*flags);
    if (!s.ok()) {
      fmt::print(stderr, "malv guest ping: {}\n", s.error().to_string());
      exit_code = 1;
    }
  });
}

}  // namespace malv::cli
