// `malv bench vm`: what a real VM costs a training job whose heavy work the
// host does, in one run.
//
// The same training steps (Fashion-MNIST, mlp:784-256-128-10, adam, batch
// 128, seed 1, --steps steps) three ways:
//   native_s   in this process, the backend driven directly, the dataset in
//              memory;
//   process_s  a guest process of a host (`malv serve`, started here) over
//              the shared-memory channel, its batches staged by the host's
//              data pipeline;
//   qemu_s     `malv guest train` inside a QEMU VM (scripts/vm-boot.sh: KVM
//              when it boots here, else TCG, one vCPU) reaching the same
//              host through its ivshmem device, batches from the pipeline.
// Each is the training loop's time only (the VM's boot, the dataset's load
// and the pipeline's open are not in it); qemu_s is timed by the guest's
// own clock. The same VM then times --pings round trips (kNop) through its
// ivshmem slot: qemu_shm_roundtrip_p50_us, beside a process guest's.
// Times are medians over --repeats rounds; ratios are medians of per-round
// ratios.
#include <fcntl.h>
#include <fmt/format.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

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

constexpr const char* kVm = "bench-vm";

// CPU time of the calling thread (the process guest's trainer runs on it).
double thread_cpu_seconds() {
  timespec t{};
  ::clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
  return static_cast<double>(t.tv_sec) + static_cast<double>(t.tv_nsec) / 1e9;
}

// Runs a program (not this binary) with stdout and stderr to `log`; its
// exit status, or an error when it could not start.
Result<int> run_program(const std::vector<std::string>& args, const std::string& log) {
  std::vector<std::string> storage = args;
  std::vector<char*> argv;
  for (auto& a : storage) argv.push_back(a.data());
  argv.push_back(nullptr);
  const pid_t pid = ::fork();
  if (pid < 0) return errno_error("fork", errno);
  if (pid == 0) {
    const int fd = ::open(log.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd >= 0) {
      ::dup2(fd, STDOUT_FILENO);
      ::dup2(fd, STDERR_FILENO);
    }
    ::execvp(argv[0], argv.data());
    ::_exit(127);
  }
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0) {
    if (errno != EINTR) return errno_error("waitpid", errno);
  }
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

std::string read_file(const std::string& path) {
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

std::string tail(const std::string& text, std::size_t lines = 12) {
  std::size_t pos = text.size();
  for (std::size_t n = 0; n <= lines && pos > 0; ++n) pos = text.rfind('\n', pos - 1);
  return pos == std::string::npos ? text : text.substr(pos + 1);
}

// The JSON lines of a console (the guest's --progress-json and --json
// output), by their "event".
std::map<std::string, nlohmann::json> json_events(const std::string& console) {
  std::map<std::string, nlohmann::json> events;
  std::istringstream lines(console);
  std::string line;
  while (std::getline(lines, line)) {
    const auto brace = line.find('{');
    if (brace == std::string::npos) continue;
    nlohmann::json parsed = nlohmann::json::parse(line.substr(brace), nullptr, false);
    if (parsed.is_object() && parsed.contains("event")) {
      events[parsed["event"].get<std::string>()] = parsed;
    }
  }
  return events;
}

struct VmRound {
  double train_s = 0;
  double train_cpu_s = 0;  // the guest process's CPU time in its loop
  double ping_p50_us = 0;
  double ping_p99_us = 0;
  std::string accel;
};

Result<VmRound> run_in_vm(const VmOptions& flags, const std::string& image,
                          const std::string& socket, const std::string& dir, int round) {
  const std::string console = fmt::format("{}/console-{}.txt", dir, round);
  const std::string log = fmt::format("{}/boot-{}.log", dir, round);
  const std::string command = fmt::format(
      "malv guest train --ivshmem --vm {vm} --host-data fashion-mnist --max-steps {steps} "
      "--log-every 0 --progress-json && malv guest ping --ivshmem --vm {vm} --count {pings} "
      "--json",
      fmt::arg("vm", kVm), fmt::arg("steps", flags.steps), fmt::arg("pings", flags.pings));
  MALV_ASSIGN_OR_RETURN(
      int status,
      run_program({"bash", flags.scripts_dir + "/vm-boot.sh", "--image", image, "--console",
                   console, "--ivshmem-socket", socket, "--vectors", "5", "--accel", flags.accel,
                   "--timeout", "900", "--", "sh", "-c", command},
                  log));
  const std::string output = read_file(console);
  if (status != 0) {
    return Error(ErrorCode::kInternal,
                 fmt::format("the VM's run failed (vm-boot.sh exited {}):\n{}{}", status,
                             tail(read_file(log)), tail(output)));
  }
  const auto events = json_events(output);
  if (!events.count("done") || !events.count("ping")) {
    return Error(ErrorCode::kInternal,
                 fmt::format("the VM's console lacks its results:\n{}", tail(output)));
  }
  VmRound r;
  r.train_s = events.at("done").at("seconds").get<double>();
  r.train_cpu_s = events.at("done").value("cpu_seconds", 0.0);
  r.ping_p50_us = events.at("ping").at("p50_us").get<double>();
  r.ping_p99_us = events.at("ping").at("p99_us").get<double>();
  const std::string boot_log = read_file(log);
  r.accel = boot_log.find("accelerator: kvm") != std::string::npos ? "kvm" : "tcg";
  return r;
}

// Round trips of a process guest, in microseconds, sorted.
Result<std::vector<double>> process_pings(const harness::HostProcess& host, unsigned count) {
  MALV_ASSIGN_OR_RETURN(auto connection,
                        guest::Connection::connect_unix(host.socket_path(), {.vm_name = "ping"}));
  std::vector<double> us;
  for (unsigned i = 0; i < count; ++i) {
    Stopwatch watch;
    MALV_TRY(connection->ping());
    us.push_back(watch.elapsed_s() * 1e6);
  }
  std::sort(us.begin(), us.end());
  return us;
}

}  // namespace

Status run_vm(const VmOptions& options) {
  VmOptions flags = options;
  if (flags.scripts_dir.empty()) flags.scripts_dir = MALV_SCRIPTS_DIR;
  const auto progress = [&](std::string_view what) {
    if (!flags.json) fmt::print(stderr, "  {}\n", what);
  };
  const std::string dir =
      std::filesystem::temp_directory_path() / fmt::format("malv-bench-vm-{}", ::getpid());
  std::filesystem::create_directories(dir);
  struct Cleanup {
    std::string dir;
    bool keep;
    ~Cleanup() {
      std::error_code ignored;
      if (!keep) std::filesystem::remove_all(dir, ignored);
    }
  } cleanup{dir, flags.keep};

  std::string image = flags.image;
  if (image.empty()) {
    progress("building the guest image (scripts/build-guest-image.sh)");
    image = dir + "/guest.cpio.gz";
    MALV_ASSIGN_OR_RETURN(int built,
                          run_program({"bash", flags.scripts_dir + "/build-guest-image.sh", image,
                                       "--malv", std::filesystem::read_symlink("/proc/self/exe")},
                                      dir + "/image.log"));
    if (built != 0) {
      return Error(ErrorCode::kInternal, fmt::format("building the guest image failed:\n{}",
                                                     tail(read_file(dir + "/image.log"))));
    }
  }
  progress("loading Fashion-MNIST (" + flags.data_dir + ")");
  MALV_ASSIGN_OR_RETURN(nn::Dataset train,
                        nn::load_fashion_mnist(flags.data_dir, nn::Split::kTrain));

  const std::string socket = dir + "/" + kVm + ".ivshmem";
  {
    std::ofstream config(dir + "/malv.toml");
    config << "[host]\nivshmem_slots = 4\n[[vm]]\nname = \"" << kVm << "\"\nivshmem_socket = \""
           << socket << "\"\n";
  }
  progress("starting a host (cpu backend) serving VM " + std::string(kVm) + " over ivshmem");
  MALV_ASSIGN_OR_RETURN(
      auto host, harness::HostProcess::spawn({"--open", "--backend", "cpu", "--config",
                                              dir + "/malv.toml", "--socket", dir + "/malv.sock",
                                              "--admin-socket", dir + "/admin.sock"}));
  accel::BackendOptions backend_options;
  MALV_ASSIGN_OR_RETURN(auto native_backend, accel::make_backend("cpu", backend_options));
  MALV_ASSIGN_OR_RETURN(auto native, nn::NativeDevice::create(*native_backend));

  std::vector<double> native_s, process_s, qemu_s, qemu_p50, qemu_p99, process_cpu_s, qemu_cpu_s;
  std::string accel;
  for (unsigned r = 0; r < flags.repeats; ++r) {
    progress(fmt::format("round {}/{}: native", r + 1, flags.repeats));
    MALV_ASSIGN_OR_RETURN(
        double n, time_steps(nn::Trainer::create(*native, train, reference_training(flags.steps))));
    native_s.push_back(n);
    progress(fmt::format("round {}/{}: process guest", r + 1, flags.repeats));
    {
      MALV_ASSIGN_OR_RETURN(
          auto connection,
          guest::Connection::connect_unix(host->socket_path(), {.vm_name = "bench-process"}));
      MALV_ASSIGN_OR_RETURN(auto device, nn::RemoteDevice::create(*connection));
      guest::DatasetOptions data;
      data.batch = 128;
      data.seed = 1;
      MALV_ASSIGN_OR_RETURN(auto batches, nn::HostBatches::open(*device, data));
      const double cpu_before = thread_cpu_seconds();
      MALV_ASSIGN_OR_RETURN(double p,
                            time_steps(nn::Trainer::create(*device, std::move(batches),
                                                           reference_training(flags.steps))));
      process_cpu_s.push_back(thread_cpu_seconds() - cpu_before);
      process_s.push_back(p);
    }
    progress(fmt::format("round {}/{}: QEMU guest (boot, train, ping)", r + 1, flags.repeats));
    MALV_ASSIGN_OR_RETURN(VmRound vm, run_in_vm(flags, image, socket, dir, static_cast<int>(r)));
    qemu_s.push_back(vm.train_s);
    qemu_cpu_s.push_back(vm.train_cpu_s);
    qemu_p50.push_back(vm.ping_p50_us);
    qemu_p99.push_back(vm.ping_p99_us);
    accel = vm.accel;
  }
  MALV_ASSIGN_OR_RETURN(std::vector<double> pings, process_pings(*host, flags.pings));

  const auto per_step_ms = [&](const std::vector<double>& s) {
    return harness::median(s) * 1e3 / static_cast<double>(flags.steps);
  };
  const std::string steps = fmt::format("{} steps of batch 128", flags.steps);
  harness::print_figures(
      "malv bench vm (Fashion-MNIST, mlp:784-256-128-10, adam, batch 128)",
      {
          {"native_s", harness::median(native_s), "s", steps + ", in-process backend"},
          {"process_s", harness::median(process_s), "s", steps + ", a guest process, host data"},
          {"qemu_s", harness::median(qemu_s), "s",
           steps + ", in a QEMU VM (" + accel + ", 1 vCPU) over ivshmem, host data"},
          {"qemu_over_native", median_ratio(qemu_s, native_s), "x",
           accel == "kvm" ? "goal <= 1.02 under KVM" : "goal <= 1.25 under TCG"},
          {"qemu_over_process", median_ratio(qemu_s, process_s), "x", "the VM against a process"},
          {"native_step_ms", per_step_ms(native_s), "ms", "per step"},
          {"process_step_ms", per_step_ms(process_s), "ms", "per step"},
          {"qemu_step_ms", per_step_ms(qemu_s), "ms", "per step"},
          {"process_guest_cpu_step_ms", per_step_ms(process_cpu_s), "ms",
           "the guest's own CPU per step (encoding, polling), a process"},
          {"qemu_guest_cpu_step_ms", per_step_ms(qemu_cpu_s), "ms",
           "the same inside the VM, by the guest's clock (emulated under TCG)"},
          {"qemu_shm_roundtrip_p50_us", harness::median(qemu_p50), "us",
           "a kNop round trip from inside the VM (ivshmem slot, polled)"},
          {"qemu_shm_roundtrip_p99_us", harness::median(qemu_p99), "us", "the same, p99"},
          {"process_shm_roundtrip_p50_us", pings[pings.size() / 2], "us",
           "a kNop round trip from a process guest (futex doorbells)"},
      },
      flags.json,
      {{"steps", flags.steps},
       {"repeats", flags.repeats},
       {"pings", flags.pings},
       {"accel", accel},
       {"vcpus", 1}});
  return ok_status();
}

}  // namespace malv::bench
