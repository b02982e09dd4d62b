// `malv demo`: the main job. Several VMs share one accelerator, and the OS
// changes how it schedules them while they run.
//
// With no arguments and no configuration: a host (`malv serve`, CPU
// backend) starts on private sockets in a temporary directory; three VMs
// are created through its admin API (train-a and train-b: batch class,
// compute weights 1 and 2; infer: latency class; each with a memory quota);
// a small model is trained natively for the inference VM and checkpointed;
// three guests start as separate processes (this same binary: two
// `guest train --progress-json`, one `guest infer --json`). The scheduler
// is two-level: the host level (the admin's) decides which VM runs next,
// each VM's own gpu_sched policy orders its work. The host starts at the
// host level fifo (a device without a scheduler); train-b's guest selects
// its own policy (fair-share, for its own streams), the others keep fifo.
// Halfway through, the admin switches the host level to priority (and,
// with --cpu-policy, the VMs' CPU shares to that cpu_sched policy) through
// the admin API without stopping. (The training VMs' weights 1:2 do not
// show here: with two device slots and one stream each they never contend;
// docs/operations.md says why; bench sharing shows weights acting.) A live
// table shows each
// VM's policy, progress, throughput, accelerator share, memory and latency;
// at the end the demo prints a per-phase summary and writes
// malv-demo-report.json and malv-demo-report.html.
//
// Every process and file the demo creates goes away when it ends, however
// it ends: children run in process groups of their own and die with the
// demo (harness::ChildProcess), Ctrl-C and SIGTERM stop them in order, and the
// temporary directory (sockets, logs, checkpoint) is removed.
#include "demo/demo.h"

#include <fmt/format.h>
#include <poll.h>
#include <stdlib.h>
#include <unistd.h>

#include <filesystem>
#include <memory>
#include <thread>

#include "base/clock.h"
#include "demo/record.h"
#include "demo/report.h"
#include "demo/stop_signals.h"
#include "demo/table.h"
#include "harness/admin_client.h"
#include "harness/child_process.h"
#include "harness/private_dir.h"

namespace malv::demo {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

constexpr const char* kFifo = "malv_sched_basic/fifo";
// The scheduler's host level before and after the switch.
constexpr const char* kHostBefore = "fifo";
constexpr const char* kHostAfter = "priority";
// The policy train-b selects for its own streams (a VM's choice).
constexpr const char* kTrainBPolicy = "fair-share";
constexpr std::uint64_t kMiB = 1024 * 1024;
constexpr std::int64_t kTrainBatch = 128;
constexpr std::int64_t kInferBatch = 16;
constexpr int kModelSteps = 300;  // the inference VM's model: ~0.83 test accuracy
constexpr auto kStartTimeout = std::chrono::seconds(120);
constexpr double kStallWarningS = 5.0;

Error interrupted() {
  return Error(ErrorCode::kAborted, fmt::format("interrupted by signal {}", stop_signal()));
}

// Waits until one of the children has output, or `until`, or a signal.
void wait_for_output(const std::vector<harness::ChildProcess*>& children, MonoTime until) {
  std::vector<pollfd> fds;
  for (harness::ChildProcess* c : children) {
    if (c->stdout_fd() >= 0) fds.push_back({c->stdout_fd(), POLLIN, 0});
  }
  const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(until - MonoClock::now());
  // Short slices: a child may exit without output, which poll() does not report.
  const int timeout_ms = static_cast<int>(std::clamp<std::int64_t>(left.count(), 0, 100));
  if (fds.empty()) {
    std::this_thread::sleep_for(std::chrono::milliseconds(timeout_ms));
  } else {
    ::poll(fds.data(), fds.size(), timeout_ms);
  }
}

// The JSON object on a line of --progress-json / --json output, or null.
json parse_event(const std::string& line) {
  if (line.empty() || line.front() != '{') return nullptr;
  json event = json::parse(line, nullptr, false);
  return event.is_object() ? event : json(nullptr);
}

Error child_failed(harness::ChildProcess& child, const std::string& what) {
  return Error(ErrorCode::kInternal,
               fmt::format("{} {} ({}); the end of its log:\n{}", child.name(), what,
                           child.exit_description(), child.log_tail()));
}

class Demo {
 public:
  explicit Demo(DemoOptions flags)
      : flags_(std::move(flags)), table_(::isatty(STDOUT_FILENO) != 0) {}
  Status run();
  const DemoRecord& record() const { return record_; }

 private:
  void say(const std::string& message);
  Status start_host();
  Status create_vms();
  Status wait_for_model(harness::ChildProcess& trainer);
  Status start_guests(const std::string& checkpoint);
  Status wait_until_running();
  Status run_phases();
  Status tick(double t);
  // The admin switches the scheduler's host level (and, with --cpu-policy, every VM's
  // cpu_sched policy); the VMs keep their own gpu_sched policies.
  Status switch_host_level(double t, const std::string& level);
  void handle_line(std::size_t vm, const std::string& line, double t);
  Status check_guests();
  void stop_guests();
  std::string token(const std::string& vm) const { return fmt::format("demo-{}-{}", vm, pid_); }
  std::string status_text() const;
  // Seconds since every guest was running (0 before).
  double run_time() const {
    return run_start_ == MonoTime{}
               ? 0.0
               : std::chrono::duration<double>(MonoClock::now() - run_start_).count();
  }

  DemoOptions flags_;
  LiveTable table_;
  Stopwatch since_launch_;
  pid_t pid_ = ::getpid();
  std::unique_ptr<harness::PrivateDir> dir_;
  std::unique_ptr<harness::ChildProcess> host_;
  std::unique_ptr<harness::AdminClient> admin_;
  std::vector<std::unique_ptr<harness::ChildProcess>> guests_;  // in record_.vms order
  DemoRecord record_;
  MonoTime run_start_;
  std::vector<double> previous_busy_;
  std::vector<std::uint64_t> previous_examples_;
  std::vector<std::pair<std::uint64_t, double>> previous_progress_;  // step, guest time
  double previous_tick_t_ = 0;
  std::vector<std::pair<std::uint64_t, double>> stalled_since_;  // step, t it was first seen
  std::vector<bool> stall_reported_;
};

void Demo::say(const std::string& message) {
  table_.note(fmt::format("[{:5.1f} s] {}", since_launch_.elapsed_s(), message));
}

Status Demo::start_host() {
  const std::string socket = dir_->file("malv.sock");
  const std::string admin = dir_->file("admin.sock");
  say(fmt::format("starting the host: malv serve --backend cpu --socket {}", socket));
  MALV_ASSIGN_OR_RETURN(
      host_, harness::ChildProcess::spawn(
                 "host",
                 {"serve", "--backend", "cpu", "--socket", socket, "--admin-socket", admin,
                  "--memory-mib", "1024", "--gpu-host-policy", kHostBefore},
                 dir_->file("host.log")));
  const MonoTime deadline = MonoClock::now() + kStartTimeout;
  for (;;) {
    if (stop_requested()) return interrupted();
    for (const std::string& line : host_->read_lines()) {
      if (line.rfind("ready ", 0) == 0) {
        admin_ = std::make_unique<harness::AdminClient>(admin);
        MALV_ASSIGN_OR_RETURN(json health, admin_->call("GET", "/health"));
        record_.backend = health.value("backend", std::string("?"));
        record_.device = health.value("device", std::string("?"));
        say(fmt::format("host ready (pid {}): backend {} ({}); admin API on {}", host_->pid(),
                        record_.backend, record_.device, admin));
        return ok_status();
      }
    }
    if (host_->exited()) return child_failed(*host_, "exited before it was ready");
    if (MonoClock::now() > deadline) return child_failed(*host_, "did not get ready in time");
    wait_for_output({host_.get()}, deadline);
  }
}

Status Demo::create_vms() {
  record_.initial_policy = kFifo;
  record_.initial_host_policy = kHostBefore;
  record_.vms = {
      {"train-a", VmRole::kTrain, "batch", 1.0, 64 * kMiB, kTrainBatch},
      // Oversubscribed: a quota below its footprint, the rest on the host's
      // memory manager (borrowed while the device has room).
      {"train-b", VmRole::kTrain, "batch", 2.0, 4 * kMiB, kTrainBatch, 64 * kMiB},
      {"infer", VmRole::kInfer, "latency", 1.0, 16 * kMiB, kInferBatch},
  };
  record_.live.assign(record_.vms.size(), VmLive{});
  for (const DemoVmSpec& vm : record_.vms) {
    json request{
        {"name", vm.name},     {"token", token(vm.name)}, {"memory_bytes", vm.memory_quota},
        {"weight", vm.weight}, {"priority", vm.priority}, {"gpu_policy", kFifo}};
    if (vm.virtual_memory != 0) request["virtual_memory_bytes"] = vm.virtual_memory;
    MALV_ASSIGN_OR_RETURN(json created, admin_->call("POST", "/vms", request));
    say(
        fmt::format("created VM {:<7}  class {:<7}  weight {:g}  memory quota {} MiB  "
                    "gpu_sched {}",
                    vm.name, vm.priority, vm.weight, vm.memory_quota / kMiB,
                    short_policy_name(created["policies"].value("gpu_sched", kFifo))));
  }
  return ok_status();
}

Status Demo::wait_for_model(harness::ChildProcess& trainer) {
  for (;;) {
    if (stop_requested()) return interrupted();
    for (const std::string& line : trainer.read_lines()) {
      json event = parse_event(line);
      if (!event.is_null() && event.value("event", "") == "done") {
        record_.inference_model = {{"steps", event.value("steps", 0)},
                                   {"seconds", event.value("seconds", 0.0)},
                                   {"test_accuracy", event.value("test_accuracy", 0.0)},
                                   {"how", "malv guest train --native"},
                                   {"rate", flags_.infer_rate},
                                   {"batch", kInferBatch},
                                   {"arrivals", "poisson"}};
      }
    }
    if (trainer.exited()) {
      trainer.read_lines();
      if (!trainer.succeeded() || record_.inference_model.is_null()) {
        return child_failed(trainer, "could not train the inference model");
      }
      say(fmt::format("inference model ready: {} native steps in {:.1f} s, test accuracy {:.3f}",
                      record_.inference_model.value("steps", 0),
                      record_.inference_model.value("seconds", 0.0),
                      record_.inference_model.value("test_accuracy", 0.0)));
      return ok_status();
    }
    wait_for_output({&trainer}, MonoClock::now() + std::chrono::milliseconds(100));
  }
}

Status Demo::start_guests(const std::string& checkpoint) {
  const std::string socket = dir_->file("malv.sock");
  for (std::size_t v = 0; v < record_.vms.size(); ++v) {
    const DemoVmSpec& vm = record_.vms[v];
    std::vector<std::string> args;
    if (vm.role == VmRole::kTrain) {
      // A budget well beyond what the run reaches (a CPU host trains about half an
      // epoch per second per VM); the demo stops them at the end. The host's data
      // pipeline reads, shuffles and stages their batches (offload): the guests
      // never load the training set.
      args = {"guest",          "train",
              "--epochs",       std::to_string(static_cast<int>(2 * flags_.duration_s) + 10),
              "--batch",        std::to_string(vm.batch),
              "--seed",         std::to_string(v + 1),
              "--log-every",    "5",
              "--host-data",    "fashion-mnist",
              "--progress-json"};
      // A VM picks the policy for its own streams; it takes nothing from
      // the other VMs (the host level decides between VMs).
      if (vm.name == "train-b") {
        args.insert(args.end(), {"--policy", fmt::format("gpu_sched={}", kTrainBPolicy)});
      }
    } else {
      // Runs past the demo's end; the demo stops it and reads its totals.
      args = {"guest",          "infer",
              "--checkpoint",   checkpoint,
              "--rate",         fmt::format("{}", flags_.infer_rate),
              "--batch",        std::to_string(vm.batch),
              "--duration",     fmt::format("{}", flags_.duration_s + 600),
              "--report-every", "0.5",
              "--json"};
    }
    for (const std::string& a : {std::string("--socket"), socket, std::string("--vm"), vm.name,
                                 std::string("--token"), token(vm.name)}) {
      args.push_back(a);
    }
    MALV_ASSIGN_OR_RETURN(
        auto guest, harness::ChildProcess::spawn(vm.name, args, dir_->file(vm.name + ".log")));
    say(fmt::format("started guest {:<7} (pid {}): malv {} {}", vm.name, guest->pid(), args[0],
                    args[1]));
    guests_.push_back(std::move(guest));
  }
  return ok_status();
}

void Demo::handle_line(std::size_t v, const std::string& line, double t) {
  json event = parse_event(line);
  if (event.is_null()) return;
  const std::string kind = event.value("event", "");
  VmLive& live = record_.live[v];
  const DemoVmSpec& spec = record_.vms[v];
  if (kind == "start") {
    live.state = "running";
    live.step = event.value("step", std::uint64_t{0});
    live.total_steps = event.value("total_steps", std::uint64_t{0});
    return;
  }
  if (spec.role == VmRole::kTrain && kind == "progress") {
    live.epoch = event.value("epoch", std::uint64_t{0});
    live.step = event.value("step", std::uint64_t{0});
    live.total_steps = event.value("total_steps", std::uint64_t{0});
    live.loss = event.value("loss", 0.0);
    live.guest_elapsed_s = event.value("elapsed_s", 0.0);
    live.examples = live.step * static_cast<std::uint64_t>(spec.batch);
  } else if (spec.role == VmRole::kTrain && kind == "done") {
    live.state = "finished";
    live.finished_at_s = t;
    live.test_accuracy = event.value("test_accuracy", 0.0);
  } else if (spec.role == VmRole::kInfer && (kind == "progress" || kind == "done")) {
    live.requests = event.value("requests", std::uint64_t{0});
    live.examples = live.requests * static_cast<std::uint64_t>(spec.batch);
    live.accuracy = event.value("accuracy", 0.0);
    if (kind == "progress") {
      live.request_rate = event.value("rate", 0.0);
      live.p50_ms = event.value("p50_ms", 0.0);
      live.p99_ms = event.value("p99_ms", 0.0);
      if (run_start_ != MonoTime{}) {
        for (double ms : event.value("latencies_ms", std::vector<double>{})) {
          record_.infer_latencies_ms.emplace_back(t, ms);
        }
      }
    }
  }
}

// A guest that exits on its own before the end has failed, unless it is a
// training guest that reached the end of its budget; so has a host that exits.
Status Demo::check_guests() {
  // The host first: when it dies, the guests fail too, and it is the cause.
  if (host_->exited()) return child_failed(*host_, "stopped unexpectedly");
  for (std::size_t v = 0; v < guests_.size(); ++v) {
    harness::ChildProcess& guest = *guests_[v];
    if (!guest.exited()) continue;
    for (const std::string& line : guest.read_lines()) handle_line(v, line, run_time());
    if (record_.live[v].state == "finished" && guest.succeeded()) continue;
    record_.live[v].state = "failed";
    return child_failed(guest, "stopped unexpectedly");
  }
  return ok_status();
}

Status Demo::wait_until_running() {
  std::vector<harness::ChildProcess*> children;
  for (auto& g : guests_) children.push_back(g.get());
  const MonoTime deadline = MonoClock::now() + kStartTimeout;
  for (;;) {
    if (stop_requested()) return interrupted();
    bool all_running = true;
    for (std::size_t v = 0; v < guests_.size(); ++v) {
      const bool was_starting = record_.live[v].state == "starting";
      for (const std::string& line : guests_[v]->read_lines()) handle_line(v, line, 0);
      if (was_starting && record_.live[v].state == "running") {
        say(fmt::format("guest {} connected to its vGPU and loaded its data", record_.vms[v].name));
      }
      all_running = all_running && record_.live[v].state == "running";
    }
    if (all_running) return ok_status();
    MALV_TRY(check_guests());
    if (MonoClock::now() > deadline) {
      return Error(ErrorCode::kDeadlineExceeded, "the guests did not start within 120 s");
    }
    wait_for_output(children, deadline);
  }
}

std::string Demo::status_text() const {
  const double half = flags_.duration_s / 2;
  if (record_.switches.empty()) {
    return fmt::format("phase 1/2: host level {} (the admin switches it to {} at {:.0f} s)",
                       kHostBefore, kHostAfter, half);
  }
  return fmt::format("phase 2/2: host level {} (since {:.1f} s)", kHostAfter,
                     record_.switches[0].t);
}

Status Demo::tick(double t) {
  MALV_ASSIGN_OR_RETURN(json vms, admin_->call("GET", "/vms"));
  const double dt = t - previous_tick_t_;
  double busy_delta_total = 0;
  std::vector<double> busy_delta(record_.vms.size(), 0.0);
  for (std::size_t v = 0; v < record_.vms.size(); ++v) {
    VmLive& live = record_.live[v];
    for (const json& vm : vms) {
      if (vm.value("name", "") != record_.vms[v].name) continue;
      const json& stats = vm["stats"];
      live.busy_s = stats.value("busy_seconds", 0.0);
      live.memory_used = stats.value("memory_used", std::uint64_t{0});
      live.memory_limit = vm.value("memory_limit", std::uint64_t{0});
      if (stats.contains("memory_manager")) {
        const json& m = stats["memory_manager"];
        live.borrowed_bytes = m.value("borrowed_bytes", std::uint64_t{0});
        live.spilled_bytes = m.value("spilled_bytes", std::uint64_t{0});
        live.bytes_in = m.value("bytes_in", std::uint64_t{0});
      }
      if (vm.contains("policies")) live.policy = vm["policies"].value("gpu_sched", "");
    }
    busy_delta[v] = live.busy_s - previous_busy_[v];
    busy_delta_total += busy_delta[v];
  }
  Tick sample{.t = t, .vms = {}};
  for (std::size_t v = 0; v < record_.vms.size(); ++v) {
    VmLive& live = record_.live[v];
    live.share = busy_delta_total > 0 ? busy_delta[v] / busy_delta_total : 0.0;
    auto& [prev_step, prev_time] = previous_progress_[v];
    if (record_.vms[v].role == VmRole::kTrain) {
      // The guest's own clock between its progress lines: exact, not tick-quantised.
      if (live.guest_elapsed_s > prev_time) {
        live.examples_per_s = static_cast<double>(live.step - prev_step) *
                              static_cast<double>(record_.vms[v].batch) /
                              (live.guest_elapsed_s - prev_time);
        prev_step = live.step;
        prev_time = live.guest_elapsed_s;
      } else if (live.state != "running") {
        live.examples_per_s = 0;
      }
    } else if (dt > 0) {
      live.examples_per_s = static_cast<double>(live.examples - previous_examples_[v]) / dt;
    }
    previous_examples_[v] = live.examples;
    previous_busy_[v] = live.busy_s;
    sample.vms.push_back({.policy = live.policy,
                          .examples_per_s = live.examples_per_s,
                          .examples = live.examples,
                          .share = live.share,
                          .busy_s = live.busy_s,
                          .memory_used = live.memory_used,
                          .loss = live.loss,
                          .p50_ms = live.p50_ms,
                          .p99_ms = live.p99_ms});
  }
  // A training guest that stops making progress while it runs is worth
  // saying out loud once: its row alone would just show zeros.
  for (std::size_t v = 0; v < record_.vms.size(); ++v) {
    const VmLive& live = record_.live[v];
    if (record_.vms[v].role != VmRole::kTrain || live.state != "running") continue;
    if (live.step != stalled_since_[v].first) {
      stalled_since_[v] = {live.step, t};
    } else if (t - stalled_since_[v].second >= kStallWarningS && !stall_reported_[v]) {
      stall_reported_[v] = true;
      say(
          fmt::format("warning: {} has made no progress for {:.0f} s while running: its "
                      "work is not being scheduled (see the host's queue with malv stats)",
                      record_.vms[v].name, t - stalled_since_[v].second));
    }
  }
  record_.ticks.push_back(std::move(sample));
  record_.run_s = t;
  previous_tick_t_ = t;
  // The tick at t = 0 is the baseline the first second is measured against.
  if (t > 0) table_.draw(record_, t, status_text());
  return ok_status();
}

Status Demo::switch_host_level(double t, const std::string& level) {
  say(
      fmt::format("t = {:.1f} s: the admin switches the scheduler's host level to {} (PUT "
                  "/scheduler; guests keep running, each VM keeps its own policy)",
                  t, level));
  MALV_TRY(admin_->call("PUT", "/scheduler", {{"host_policy", level}}));
  PolicySwitch change{.t = t, .host_policy = level, .policies = {}};
  for (std::size_t v = 0; v < record_.vms.size(); ++v) {
    change.policies[record_.vms[v].name] = record_.live[v].policy;
  }
  if (flags_.cpu_policy != "none") {
    // The CPUs too: the guests' processes and the host threads serving them
    // get shares by class, so batch guests stop delaying the latency VM.
    say(fmt::format("t = {:.1f} s: switching every VM's cpu_sched policy to {}", t,
                    flags_.cpu_policy));
    for (const DemoVmSpec& vm : record_.vms) {
      MALV_TRY(admin_->call("PUT", "/vms/" + vm.name + "/policy/cpu_sched",
                            {{"policy", flags_.cpu_policy}}));
    }
  }
  record_.switches.push_back(std::move(change));
  table_.draw(record_, t, status_text());
  return ok_status();
}

Status Demo::run_phases() {
  std::vector<harness::ChildProcess*> children;
  for (auto& g : guests_) children.push_back(g.get());
  run_start_ = MonoClock::now();
  previous_busy_.assign(record_.vms.size(), 0.0);
  previous_examples_.assign(record_.vms.size(), 0);
  previous_progress_.assign(record_.vms.size(), {0, 0.0});
  stalled_since_.assign(record_.vms.size(), {0, 0.0});
  stall_reported_.assign(record_.vms.size(), false);
  for (std::size_t v = 0; v < record_.vms.size(); ++v) {
    previous_examples_[v] = record_.live[v].examples;
    previous_progress_[v] = {record_.live[v].step, record_.live[v].guest_elapsed_s};
  }
  MALV_ASSIGN_OR_RETURN(json vms, admin_->call("GET", "/vms"));
  for (std::size_t v = 0; v < record_.vms.size(); ++v) {
    for (const json& vm : vms) {
      if (vm.value("name", "") == record_.vms[v].name) {
        previous_busy_[v] = vm["stats"].value("busy_seconds", 0.0);
      }
    }
  }
  MALV_TRY(tick(0.0));
  double next_tick = 1.0;
  for (;;) {
    if (stop_requested()) return interrupted();
    wait_for_output(children, run_start_ + std::chrono::duration_cast<Nanos>(
                                               std::chrono::duration<double>(next_tick)));
    const double t = run_time();
    for (std::size_t v = 0; v < guests_.size(); ++v) {
      for (const std::string& line : guests_[v]->read_lines()) handle_line(v, line, t);
    }
    MALV_TRY(check_guests());
    if (t < next_tick) continue;
    const bool last = t >= flags_.duration_s - 1e-3;
    MALV_TRY(tick(last ? std::min(t, flags_.duration_s) : t));
    if (last) return ok_status();
    if (record_.switches.empty() && t >= flags_.duration_s / 2) {
      MALV_TRY(switch_host_level(t, kHostAfter));
    }
    next_tick = std::min(next_tick + 1.0, flags_.duration_s);
  }
}

void Demo::stop_guests() {
  for (std::size_t v = 0; v < guests_.size(); ++v) {
    guests_[v]->stop();
    for (const std::string& line : guests_[v]->read_lines()) {
      handle_line(v, line, record_.run_s);
    }
    VmLive& live = record_.live[v];
    if (live.state == "running") live.state = "stopped";
  }
}

Status Demo::run() {
  install_stop_signals();
  say(
      fmt::format("malv demo: 3 VMs share one accelerator for {:.0f} s; the scheduler's host "
                  "level fifo, then priority from {:.0f} s",
                  flags_.duration_s, flags_.duration_s / 2));
  MALV_ASSIGN_OR_RETURN(dir_, harness::PrivateDir::create("demo"));
  say(fmt::format("run directory {} (sockets, logs, checkpoint; removed at the end)",
                  dir_->path()));
  record_.planned_duration_s = flags_.duration_s;

  // The inference VM's model trains in the background while the host starts.
  const std::string checkpoint = dir_->file("infer-model.ckpt");
  MALV_ASSIGN_OR_RETURN(auto model_trainer, harness::ChildProcess::spawn(
                                                "model training",
                                                {"guest", "train", "--native", "--max-steps",
                                                 std::to_string(kModelSteps), "--log-every", "0",
                                                 "--checkpoint", checkpoint, "--progress-json"},
                                                dir_->file("model.log")));
  say(
      fmt::format("training the inference VM's model: malv guest train --native --max-steps {} "
                  "--checkpoint ... (in the background)",
                  kModelSteps));
  MALV_TRY(start_host());
  MALV_TRY(create_vms());
  MALV_TRY(wait_for_model(*model_trainer));
  model_trainer.reset();
  MALV_TRY(start_guests(checkpoint));
  say("waiting for the guests to connect and load Fashion-MNIST ...");
  MALV_TRY(wait_until_running());
  record_.startup_s = since_launch_.elapsed_s();
  say(fmt::format("every guest is running: phase 1 (fifo) for {:.0f} s", flags_.duration_s / 2));
  const Status ran = run_phases();
  table_.finish();
  if (!ran.ok()) return ran;
  say("stopping the guests");
  stop_guests();
  say("stopping the host");
  host_->stop(std::chrono::milliseconds(5000));
  if (!host_->succeeded()) {
    fmt::print(stderr, "malv demo: the host ended with {}:\n{}", host_->exit_description(),
               host_->log_tail());
  }
  return ok_status();
}

}  // namespace

Status run_demo(const DemoOptions& flags) {
  DemoRecord record;
  {
    // Everything the demo started is stopped and removed when `demo` goes.
    Demo demo(flags);
    MALV_TRY(demo.run());
    record = demo.record();
  }
  fmt::print("{}", demo_summary(record));
  MALV_TRY(write_demo_reports(record, flags.out_dir));
  fmt::print("\nreports: {} and {}\n", (fs::path(flags.out_dir) / kDemoJsonReport).string(),
             (fs::path(flags.out_dir) / kDemoHtmlReport).string());
  return ok_status();
}

}  // namespace malv::demo
