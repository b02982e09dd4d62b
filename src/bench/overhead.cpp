// `malv bench overhead`: what virtualisation costs a training job, and what
// offloading its data loading to the host gains, in one run.
//
// The experiment of the MaLV-OS paper's motivation: the same training steps
// (Fashion-MNIST, the 784-256-128-10 MLP, batch 128, a fixed number of steps)
//   native_s      in this process, the backend driven directly (no channel);
//   vgpu_s        as one VM of a host process, through the shared-memory
//                 channel; vm_over_native = vgpu_s / native_s (goal <= 1.03);
//   offload_off_s as a VM that reads and decodes the dataset, shuffles and
//                 uploads each batch itself, synchronously (waiting for each
//                 upload, as a blocking copy does);
//   offload_on_s  as a VM whose batches the host's data pipeline reads,
//                 shuffles and stages ahead (offload_on_over_off < 1 is a gain).
// Each time is the median of --repeats runs; each ratio is the median of the
// per-round ratios (the variants of a round run back to back). The step times exclude loading
// the dataset, reported on its own: guest_load_s (the guest reads and decodes
// the files) and host_open_s (the host's pipeline does, at open).
#include <fmt/format.h>

#include <functional>
#include <memory>

#include "base/clock.h"
#include "bench/bench.h"
#include "bench/training_runs.h"
#include "harness/host_process.h"
#include "harness/report.h"
#include "malv/connection.h"
#include "nn/batch_source.h"
#include "nn/native_device.h"
#include "nn/remote_device.h"
#include "nn/trainer.h"

namespace malv::bench {
namespace {

struct Vm {
  std::unique_ptr<guest::Connection> connection;
  std::unique_ptr<nn::RemoteDevice> device;
};

Result<Vm> connect_vm(const harness::HostProcess& host, const std::string& name) {
  Vm vm;
  MALV_ASSIGN_OR_RETURN(vm.connection,
                        guest::Connection::connect_unix(host.socket_path(), {.vm_name = name}));
  MALV_ASSIGN_OR_RETURN(vm.device, nn::RemoteDevice::create(*vm.connection));
  return vm;
}

}  // namespace

Status run_overhead(const OverheadOptions& flags) {
  const auto progress = [&](std::string_view what) {
    if (!flags.json) fmt::print(stderr, "  {}\n", what);
  };
  progress("loading Fashion-MNIST (" + flags.data_dir + ")");
  MALV_ASSIGN_OR_RETURN(nn::Dataset train,
                        nn::load_fashion_mnist(flags.data_dir, nn::Split::kTrain));

  progress("starting a host (" + flags.backend + " backend)");
  MALV_ASSIGN_OR_RETURN(auto host, harness::HostProcess::spawn(
                                       {"--open", "--backend", flags.backend, "--admin-socket",
                                        harness::private_socket_path("overhead-admin")}));
  accel::BackendOptions backend_options;
  MALV_ASSIGN_OR_RETURN(auto native_backend, accel::make_backend(flags.backend, backend_options));
  MALV_ASSIGN_OR_RETURN(auto native, nn::NativeDevice::create(*native_backend));

  std::vector<double> native_s, vgpu_s, off_s, on_s, load_s, open_s;
  // The four variants, run in a rotating order so no variant always runs
  // first (cold) or right after another that left the machine busy.
  const std::function<Status()> variants[] = {
      [&]() -> Status {
        MALV_ASSIGN_OR_RETURN(double n, time_steps(nn::Trainer::create(
                                            *native, train, reference_training(flags.steps))));
        native_s.push_back(n);
        return ok_status();
      },
      [&]() -> Status {
        MALV_ASSIGN_OR_RETURN(Vm vm, connect_vm(*host, "overhead-vgpu"));
        MALV_ASSIGN_OR_RETURN(double v, time_steps(nn::Trainer::create(
                                            *vm.device, train, reference_training(flags.steps))));
        vgpu_s.push_back(v);
        return ok_status();
      },
      [&]() -> Status {
        // Offload off: the guest holds the dataset (it read and decoded the
        // files: guest_load_s) and gathers and uploads every batch itself,
        // waiting for each upload like a blocking copy.
        MALV_ASSIGN_OR_RETURN(Vm vm, connect_vm(*host, "overhead-off"));
        Stopwatch load;
        MALV_ASSIGN_OR_RETURN(nn::Dataset own,
                              nn::load_fashion_mnist(flags.data_dir, nn::Split::kTrain));
        load_s.push_back(load.elapsed_s());
        auto batches = std::make_unique<nn::LocalBatches>(own, 128, 1, /*wait_for_upload=*/true);
        MALV_ASSIGN_OR_RETURN(double off,
                              time_steps(nn::Trainer::create(*vm.device, std::move(batches),
                                                             reference_training(flags.steps))));
        off_s.push_back(off);
        return ok_status();
      },
      [&]() -> Status {
        // Offload on: the host's pipeline reads, shuffles and stages
        // (host_open_s: the open, which decodes the files on the host).
        MALV_ASSIGN_OR_RETURN(Vm vm, connect_vm(*host, "overhead-on"));
        Stopwatch open;
        guest::DatasetOptions data;
        data.batch = 128;
        data.seed = 1;
        MALV_ASSIGN_OR_RETURN(auto batches, nn::HostBatches::open(*vm.device, data));
        open_s.push_back(open.elapsed_s());
        MALV_ASSIGN_OR_RETURN(double on,
                              time_steps(nn::Trainer::create(*vm.device, std::move(batches),
                                                             reference_training(flags.steps))));
        on_s.push_back(on);
        return ok_status();
      },
  };
  constexpr std::size_t kVariants = std::size(variants);
  for (unsigned r = 0; r < flags.repeats; ++r) {
    progress(fmt::format("round {}/{}", r + 1, flags.repeats));
    for (std::size_t i = 0; i < kVariants; ++i) MALV_TRY(variants[(r + i) % kVariants]());
  }
  const double native_med = harness::median(native_s);
  const double vgpu_med = harness::median(vgpu_s);
  const double off_med = harness::median(off_s);
  const double on_med = harness::median(on_s);
  const std::string steps = fmt::format("{} steps of batch 128", flags.steps);
  harness::print_figures(
      "malv bench overhead (Fashion-MNIST, mlp:784-256-128-10)",
      {
          {"native_s", native_med, "s", steps + ", in-process backend"},
          {"vgpu_s", vgpu_med, "s", steps + ", one VM over the shm channel"},
          {"vm_over_native", median_ratio(vgpu_s, native_s), "x",
           "median of per-round ratios; goal <= 1.03"},
          {"offload_off_s", off_med, "s", steps + ", guest gathers and uploads, waiting"},
          {"offload_on_s", on_med, "s", steps + ", host pipeline stages ahead"},
          {"offload_on_over_off", median_ratio(on_s, off_s), "x",
           "median of per-round ratios; below 1: offload helps"},
          {"guest_load_s", harness::median(load_s), "s", "offload off: guest reads the dataset"},
          {"host_open_s", harness::median(open_s), "s", "offload on: host opens the dataset"},
          {"offload_off_step_ms", (off_med)*1e3 / static_cast<double>(flags.steps), "ms",
           "per step, offload off"},
          {"offload_on_step_ms", (on_med)*1e3 / static_cast<double>(flags.steps), "ms",
           "per step, offload on"},
      },
      flags.json,
      {{"steps", flags.steps},
       {"repeats", flags.repeats},
       {"backend", native_backend->info().backend},
       {"device", native_backend->info().name}});
  return ok_status();
}

}  // namespace malv::bench
