// `malv guest train`: a guest's training job, on a host's vGPU or natively.
//
// Trains an MLP classifier on Fashion-MNIST (the Debian package
// dataset-fashion-mnist) with nn::Trainer. With --socket or --tcp every
// tensor lives on the host's accelerator and every op is a kernel launch
// through libmalv (the way a VM trains); with --native the same code drives
// an in-process CPU backend directly, the baseline without virtualisation.
// Prints progress while it trains and the test accuracy at the end;
// --checkpoint and --resume make a long run survive interruption.
#include <fmt/format.h>

#include <memory>
#include <nlohmann/json.hpp>

#include "base/clock.h"
#include "cli/commands.h"
#include "cli/guest_target.h"
#include "cli/option_checks.h"
#include "nn/remote_device.h"
#include "nn/trainer.h"

namespace malv::cli {
namespace {

struct TrainFlags {
  TargetFlags target;
  std::string model = "mlp:784-256-128-10";
  std::uint64_t epochs = 5;
  std::int64_t batch = 128;
  float lr = 0.0f;  // 0: the optimizer's default
  std::string optimizer = "adam";
  std::uint64_t seed = 1;
  std::uint64_t max_steps = 0;
  std::uint64_t log_every = 100;
  std::string checkpoint;
  std::string resume;
  std::string data_dir = nn::kFashionMnistDir;
  bool progress_json = false;
  std::string host_data;  // dataset path on the host: its data pipeline feeds the batches
};

// One --progress-json line: a JSON object with an "event" and its fields.
void print_json_line(nlohmann::json line) {
  fmt::print("{}\n", line.dump());
  std::fflush(stdout);
}

Status train(const TrainFlags& flags) {
  nn::TrainOptions options;
  options.model = flags.model;
  MALV_ASSIGN_OR_RETURN(options.optimizer.kind, nn::parse_optimizer(flags.optimizer));
  options.optimizer.lr = flags.lr > 0.0f                                      ? flags.lr
                         : options.optimizer.kind == nn::OptimizerKind::kAdam ? 1e-3f
                                                                              : 0.05f;
  options.epochs = flags.epochs;
  options.batch = flags.batch;
  options.seed = flags.seed;
  options.max_steps = flags.max_steps;
  options.log_every = flags.log_every;
  options.checkpoint_path = flags.checkpoint;

  // Connect first: a missing host is reported before seconds of data loading.
  MALV_ASSIGN_OR_RETURN(GuestTarget target, open_target(flags.target));
  // With --progress-json stdout carries only JSON lines; prose goes to stderr.
  std::FILE* const text = flags.progress_json ? stderr : stdout;
  Stopwatch load_watch;
  nn::Dataset train_set;
  std::unique_ptr<nn::Trainer> trainer;
  if (!flags.host_data.empty()) {
    // Offload: the host reads, shuffles and stages the training batches; this
    // process never holds the training set.
    auto* remote = dynamic_cast<nn::RemoteDevice*>(target.device.get());
    if (remote == nullptr) {
      return Error(ErrorCode::kInvalidArgument,
                   "--host-data uses a host's data pipeline; it needs a host, not --native");
    }
    guest::DatasetOptions data;
    data.features = flags.host_data;
    data.batch = static_cast<std::uint32_t>(options.batch);
    data.seed = options.seed;
    MALV_ASSIGN_OR_RETURN(auto batches, nn::HostBatches::open(*remote, data));
    fmt::print(text, "data: the host's pipeline stages '{}' ({} training examples)\n",
               flags.host_data, batches->examples());
    MALV_ASSIGN_OR_RETURN(trainer,
                          nn::Trainer::create(*target.device, std::move(batches), options));
  } else {
    MALV_ASSIGN_OR_RETURN(train_set, nn::load_fashion_mnist(flags.data_dir, nn::Split::kTrain));
    MALV_ASSIGN_OR_RETURN(trainer, nn::Trainer::create(*target.device, train_set, options));
  }
  MALV_ASSIGN_OR_RETURN(nn::Dataset test_set,
                        nn::load_fashion_mnist(flags.data_dir, nn::Split::kTest));
  fmt::print(text, "data: {} test examples from {} ({:.1f} s)\n", test_set.count, flags.data_dir,
             load_watch.elapsed_s());

  if (!flags.resume.empty()) {
    MALV_TRY(trainer->resume_from(flags.resume));
    fmt::print(text, "resumed from {} at step {}\n", flags.resume, trainer->step_count());
  }
  fmt::print(text, "training {} with {} (lr {}) batch {} seed {} on {}\n", options.model,
             nn::optimizer_name(options.optimizer.kind), options.optimizer.lr, options.batch,
             options.seed, target.device->describe());
  fmt::print(text, "{} steps per epoch, {} steps to go\n", trainer->steps_per_epoch(),
             trainer->total_steps() - std::min(trainer->total_steps(), trainer->step_count()));
  std::fflush(text);
  if (flags.progress_json) {
    print_json_line({{"event", "start"},
                     {"step", trainer->step_count()},
                     {"total_steps", trainer->total_steps()},
                     {"steps_per_epoch", trainer->steps_per_epoch()},
                     {"batch", options.batch},
                     {"device", target.device->describe()}});
  }

  Stopwatch watch;
  const std::uint64_t first_step = trainer->step_count();
  MALV_TRY(trainer->run([&](const nn::Progress& p) {
    if (flags.progress_json) {
      print_json_line({{"event", "progress"},
                       {"epoch", p.epoch},
                       {"epochs", options.epochs},
                       {"step", p.step},
                       {"total_steps", p.total_steps},
                       {"loss", p.loss},
                       {"examples_per_s", p.examples_per_s},
                       {"elapsed_s", watch.elapsed_s()},
                       {"epoch_end", p.epoch_end}});
      return;
    }
    fmt::print("epoch {}/{}  step {}/{}  loss {:.4f}  {:.0f} examples/s{}\n", p.epoch,
               options.epochs, p.step, p.total_steps, p.loss, p.examples_per_s,
               p.epoch_end && !options.checkpoint_path.empty() ? "  (checkpoint saved)" : "");
    std::fflush(stdout);
  }));
  const double seconds = watch.elapsed_s();
  const std::uint64_t steps = trainer->step_count() - first_step;
  MALV_ASSIGN_OR_RETURN(double accuracy, trainer->model().evaluate(test_set));
  if (flags.progress_json) {
    print_json_line({{"event", "done"},
                     {"steps", steps},
                     {"seconds", seconds},
                     {"test_accuracy", accuracy},
                     {"test_examples", test_set.count}});
    return ok_status();
  }
  fmt::print("trained {} steps in {:.1f} s ({:.1f} ms/step)\n", steps, seconds,
             steps == 0 ? 0.0 : seconds * 1e3 / static_cast<double>(steps));
  fmt::print("test accuracy {:.4f} ({} examples)\n", accuracy, test_set.count);
  return ok_status();
}

}  // namespace

void register_guest(CLI::App& app, int& exit_code) {
  CLI::App* guest = app.add_subcommand("guest", "Run guest workloads against a host's vGPU");
  guest->require_subcommand(1);
  auto flags = std::make_shared<TrainFlags>();
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
      "A resumed run must use the same --model, --optimizer, --lr, --seed and --batch;\n"
      "it then continues exactly where the checkpoint left off.");
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
  sub->add_flag("--progress-json", flags->progress_json,
                "Print progress as one JSON object per line on stdout (events start, progress, "
                "done; other messages go to stderr)");
  sub->callback([flags, &exit_code] {
    Status s = train(*flags);
    if (!s.ok()) {
      fmt::print(stderr, "malv guest train: {}\n", s.error().to_string());
      exit_code = 1;
    }
  });
}

}  // namespace malv::cli
