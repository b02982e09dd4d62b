// `malv guest train`: a guest's training job, on a host's vGPU or natively.
//
// Trains an MLP classifier on Fashion-MNIST (the Debian package
// dataset-fashion-mnist) with nn::Trainer. With --socket or --tcp every
// tensor lives on the host's accelerator and every op is a kernel launch
// through libmalv (the way a VM trains); with --native the same code drives
// an in-process CPU backend directly, the baseline without virtualisation.
// Prints progress while it trains and the test accuracy at the end;
// --checkpoint and --resume make a long run survive interruption. With
// --augment the guest augments each batch of its own data on its own CPU
// (data/augment.h: random crop, flip, noise) before the upload.
#include "harness/train_workload.h"

#include <fmt/format.h>
#include <sys/resource.h>

#include <memory>
#include <nlohmann/json.hpp>

#include "base/clock.h"
#include "data/augment.h"
#include "harness/guest_target.h"
#include "nn/batch_source.h"
#include "nn/mlp.h"
#include "nn/remote_device.h"
#include "nn/trainer.h"

namespace malv::harness {
namespace {

// One --progress-json line: a JSON object with an "event" and its fields.
// User and system CPU time of this process so far.
double process_cpu_seconds() {
  rusage usage{};
  ::getrusage(RUSAGE_SELF, &usage);
  const auto seconds = [](const timeval& t) {
    return static_cast<double>(t.tv_sec) + static_cast<double>(t.tv_usec) / 1e6;
  };
  return seconds(usage.ru_utime) + seconds(usage.ru_stime);
}

void print_json_line(nlohmann::json line) {
  fmt::print("{}\n", line.dump());
  std::fflush(stdout);
}

// Trainer::create(device, train, options) with batches that the guest
// augments (nn::LocalBatches with a data::Augmenter), after the same checks.
Result<std::unique_ptr<nn::Trainer>> create_augmenting_trainer(
    nn::Device& device, const nn::Dataset& train, const nn::TrainOptions& options,
    const data::AugmentOptions& augmentation) {
  if (options.batch <= 0 || options.batch > 0xffffffff) {
    return Error(ErrorCode::kInvalidArgument,
                 fmt::format("batch size must be positive, got {}", options.batch));
  }
  MALV_ASSIGN_OR_RETURN(nn::MlpSpec spec, nn::MlpSpec::parse(options.model));
  if (spec.classes() < train.classes) {
    return Error(ErrorCode::kInvalidArgument,
                 fmt::format("model {} has {} outputs, the data has {} classes", options.model,
                             spec.classes(), train.classes));
  }
  MALV_ASSIGN_OR_RETURN(data::Augmenter augmenter,
                        data::Augmenter::create(augmentation, train.dims));
  return nn::Trainer::create(device,
                             std::make_unique<nn::LocalBatches>(
                                 train, static_cast<std::uint32_t>(options.batch), options.seed,
                                 /*wait_for_upload=*/false, std::move(augmenter)),
                             options);
}

}  // namespace

Status train(const TrainOptions& flags) {
  if (flags.augment && !flags.host_data.empty()) {
    return Error(ErrorCode::kInvalidArgument,
                 "--augment augments batches in the guest, on its own copy of the data; the "
                 "host's data pipeline (--host-data) does not augment, so the two cannot be "
                 "combined: drop one of them");
  }
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
    if (flags.augment) {
      const data::AugmentOptions& a = flags.augmentation;
      fmt::print(text,
                 "data: augmenting every batch on this CPU (random crop with padding {}, "
                 "{}, Gaussian noise sigma {})\n",
                 a.pad, a.flip ? "horizontal flip p=0.5" : "no flip", a.noise_stddev);
      MALV_ASSIGN_OR_RETURN(trainer, create_augmenting_trainer(*target.device, train_set, options,
                                                               flags.augmentation));
    } else {
      MALV_ASSIGN_OR_RETURN(trainer, nn::Trainer::create(*target.device, train_set, options));
    }
  }
  // With the host's pipeline the guest may hold no data at all (a VM's
  // image): then there is no test set here to evaluate on, and it says so.
  Result<nn::Dataset> loaded_test = nn::load_fashion_mnist(flags.data_dir, nn::Split::kTest);
  const bool evaluate = loaded_test.ok() || flags.host_data.empty();
  if (!evaluate) {
    fmt::print(text, "data: no test set in {} ({}): the run is not evaluated\n", flags.data_dir,
               loaded_test.error().message());
  }
  MALV_ASSIGN_OR_RETURN(nn::Dataset test_set,
                        evaluate ? std::move(loaded_test) : Result<nn::Dataset>(nn::Dataset{}));
  if (evaluate) {
    fmt::print(text, "data: {} test examples from {} ({:.1f} s)\n", test_set.count, flags.data_dir,
               load_watch.elapsed_s());
  }

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
  const double cpu_at_start = process_cpu_seconds();
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
  double accuracy = 0.0;
  if (evaluate) {
    MALV_ASSIGN_OR_RETURN(accuracy, trainer->model().evaluate(test_set));
  }
  if (flags.progress_json) {
    // cpu_seconds: this process's CPU time in the loop (what the guest's
    // own side of each step costs, e.g. under emulation in a VM).
    nlohmann::json done{{"event", "done"},
                        {"steps", steps},
                        {"seconds", seconds},
                        {"cpu_seconds", process_cpu_seconds() - cpu_at_start}};
    if (evaluate) {
      done["test_accuracy"] = accuracy;
      done["test_examples"] = test_set.count;
    }
    print_json_line(done);
    return ok_status();
  }
  fmt::print("trained {} steps in {:.1f} s ({:.1f} ms/step)\n", steps, seconds,
             steps == 0 ? 0.0 : seconds * 1e3 / static_cast<double>(steps));
  if (evaluate) fmt::print("test accuracy {:.4f} ({} examples)\n", accuracy, test_set.count);
  return ok_status();
}

}  // namespace malv::harness
