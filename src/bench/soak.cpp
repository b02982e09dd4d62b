// `malv bench soak`: many short-lived guests against one real host, some
// killed at random moments, while the host's accounting is checked against
// what it actually holds.
//
// A host (`malv serve --backend cpu`) runs as a child process in a private
// temp dir; the bench creates its VMs through the admin API (POST /vms) and
// then keeps up to --concurrency guests alive (`malv bench soak-guest`, see
// bench/soak_guest.cpp: buffers, gemm/add on two streams, a policy switch, a
// checkpoint saved and restored), starting a new one whenever one ends,
// until --seconds have passed and at least --guests have run. A seeded
// fraction of them (--kill-fraction) is sent SIGKILL at a random moment of
// its life. With two VMs or more the last is oversubscribed (2 MiB resident,
// 64 MiB virtual, memory policy lookahead): its guests' buffers spill and
// fill while guests die, and must still come back whole.
//
// Checks, every --sample-ms through GET /metrics:
//  * the VMs' memory (malv_vm_memory_bytes, summed) equals the device memory
//    in use (malv_device_memory_bytes) less what was in use before any guest
//    came; a difference is re-read a few times (the two are read a few
//    microseconds apart while guests allocate) and counted as a mismatch only
//    if it persists; the guests select only the basic gpu_sched policies, as
//    a learned policy's model is device memory of the host's own;
//  * no VM holds more than its quota.
// After the warm-up (the first --warmup-seconds of churn) the bench lets
// every guest end and records the host's RSS with no guest connected; at the
// end it does the same, and then every VM must hold no memory, stream or
// session (GET /vms) and the device must be back where it started.
//
// Goals (exit 1 if one is missed): leaked_bytes 0, crashes 0 (the host
// died, or a guest died of a signal the bench did not send), no accounting
// mismatch, no guest whose call failed or whose check read wrong data
// (wrong_results), host_rss_growth_mb <=
// --max-rss-growth-mb (16).
#include <fcntl.h>
#include <fmt/format.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <fstream>
#include <map>
#include <optional>
#include <random>
#include <thread>

#include "base/clock.h"
#include "bench/bench.h"
#include "bench/soak_probe.h"
#include "harness/admin_client.h"
#include "harness/host_process.h"
#include "harness/private_dir.h"
#include "harness/report.h"

namespace malv::bench {
namespace {

using nlohmann::json;
using Seconds = std::chrono::duration<double>;

constexpr double kMiB = 1024.0 * 1024.0;
constexpr std::uint64_t kVmQuotaBytes = 64ull << 20;
// The oversubscribed VM's resident quota: a few guests' working sets.
constexpr std::uint64_t kSpillingVmResidentBytes = 2ull << 20;
// A difference is re-read this often, kRereadGap apart, before it counts.
constexpr int kMismatchRereads = 20;
constexpr auto kRereadGap = std::chrono::milliseconds(5);
constexpr std::size_t kNotesKept = 10;

std::atomic<int> g_stop_signal{0};
void on_stop_signal(int signal) { g_stop_signal.store(signal); }

std::string vm_name(int k) { return fmt::format("soak-{}", k); }
std::string token_of(int k) { return fmt::format("soak-token-{}", k); }

// ---- the host ------------------------------------------------------------

// With two VMs or more the last one is oversubscribed: its guests' buffers
// spill and fill under a small resident quota while guests are killed.
bool oversubscribed(const SoakOptions& flags, int k) {
  return flags.vms >= 2 && k == flags.vms - 1;
}

Status create_vms(const harness::AdminClient& admin, const SoakOptions& flags) {
  for (int k = 0; k < flags.vms; ++k) {
    // One latency-class VM among batch ones, weights 1 and 2: the guests'
    // policy switches then change real scheduling decisions.
    json vm{{"name", vm_name(k)},
            {"token", token_of(k)},
            {"memory_bytes", kVmQuotaBytes},
            {"weight", 1.0 + k % 2},
            {"priority", k == 0 ? "latency" : "batch"},
            {"max_streams", 256},
            {"gpu_policy", "malv_sched_basic/fair-share"}};
    if (oversubscribed(flags, k)) {
      vm["memory_bytes"] = kSpillingVmResidentBytes;
      vm["virtual_memory_bytes"] = kVmQuotaBytes;
    }
    MALV_TRY(admin.call("POST", "/vms", vm));
    if (oversubscribed(flags, k)) {
      MALV_TRY(admin.call("PUT", fmt::format("/vms/{}/policy/memory", vm_name(k)),
                          {{"policy", "malv_memory_basic/lookahead"}}));
    }
  }
  return ok_status();
}

// ---- the guests -----------------------------------------------------------

struct GuestProcess {
  pid_t pid = -1;
  std::uint64_t index = 0;
  std::string vm;
  std::string log;
  MonoTime started;
  std::optional<MonoTime> kill_at;
  bool kill_sent = false;
};

struct Tally {
  std::uint64_t started = 0;
  std::uint64_t completed = 0;
  std::uint64_t killed = 0;      // died of the SIGKILL we sent
  std::uint64_t kills_late = 0;  // a kill was planned, but the guest had finished
  std::uint64_t failures = 0;    // exited non-zero: a call failed
  std::uint64_t wrong = 0;       // a check found wrong data (kSoakGuestWrongResult)
  std::uint64_t crashes = 0;     // a guest died of another signal, or the host died
  std::uint64_t samples = 0;
  std::uint64_t mismatches = 0;
  std::vector<std::string> failure_notes;
  std::vector<std::string> mismatch_notes;
  double lifetime_sum_s = 0;  // of completed guests
};

void note(std::vector<std::string>& notes, std::string what) {
  if (notes.size() < kNotesKept) notes.push_back(std::move(what));
}

std::string tail_of(const std::string& path) {
  std::ifstream in(path);
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  while (!text.empty() && text.back() == '\n') text.pop_back();
  return text.size() > 400 ? text.substr(text.size() - 400) : text;
}

Result<GuestProcess> spawn_guest(const std::string& socket, const harness::PrivateDir& dir,
                                 const SoakOptions& flags, std::uint64_t index) {
  const int k = static_cast<int>(index % static_cast<std::uint64_t>(flags.vms));
  GuestProcess g;
  g.index = index;
  g.vm = vm_name(k);
  g.log = dir.file(fmt::format("guest-{}.log", index));
  std::vector<std::string> args{"malv",
                                "bench",
                                "soak-guest",
                                "--socket",
                                socket,
                                "--vm",
                                g.vm,
                                "--token",
                                token_of(k),
                                "--seed",
                                std::to_string(flags.seed),
                                "--index",
                                std::to_string(index),
                                "--rounds",
                                std::to_string(flags.rounds)};
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  const int log_fd = ::open(g.log.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (log_fd < 0) return errno_error("open " + g.log, errno);
  const pid_t parent = ::getpid();
  const pid_t pid = ::fork();
  if (pid < 0) {
    ::close(log_fd);
    return errno_error("fork", errno);
  }
  if (pid == 0) {
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);  // never outlive the bench
    if (::getppid() != parent) ::_exit(127);
    const int null_fd = ::open("/dev/null", O_RDWR);
    ::dup2(null_fd, STDIN_FILENO);
    ::dup2(null_fd, STDOUT_FILENO);
    ::dup2(log_fd, STDERR_FILENO);
    ::execv("/proc/self/exe", argv.data());
    ::_exit(127);
  }
  ::close(log_fd);
  g.pid = pid;
  g.started = MonoClock::now();
  return g;
}

// ---- the run --------------------------------------------------------------

class Soak {
 public:
  Soak(const SoakOptions& flags, const harness::PrivateDir& dir, const harness::HostProcess& host,
       const harness::AdminClient& admin)
      : flags_(flags), dir_(dir), host_(host), admin_(admin), rng_(flags.seed) {}

  Status run();
  Status report() const;

 private:
  enum class Phase { kWarmup, kWarmupDrain, kChurn, kFinalDrain, kDone };

  Status tick();
  Status spawn_more(bool allowed);
  void reap();
  void kill_due();
  Status sample();
  Status final_check();
  void progress();
  double elapsed_s() const { return run_clock_.elapsed_s(); }

  const SoakOptions& flags_;
  const harness::PrivateDir& dir_;
  const harness::HostProcess& host_;
  const harness::AdminClient& admin_;
  std::mt19937_64 rng_;
  Tally tally_;
  std::vector<GuestProcess> alive_;
  Phase phase_ = Phase::kWarmup;
  Stopwatch run_clock_;
  MonoTime next_sample_;
  MonoTime next_progress_;
  std::uint64_t device_baseline_ = 0;
  std::uint64_t last_device_ = 0;
  std::uint64_t rss_after_warmup_ = 0;
  std::uint64_t rss_end_ = 0;
  std::uint64_t rss_peak_ = 0;
  std::uint64_t leaked_bytes_ = 0;
  std::uint64_t leaked_streams_ = 0;
  std::uint64_t leaked_sessions_ = 0;
  std::uint64_t spilled_bytes_moved_ = 0;  // by the oversubscribed VM's memory manager
  std::uint64_t spilled_faults_ = 0;
  std::string host_died_;
  double run_s_ = 0;
};

Status Soak::run() {
  MALV_ASSIGN_OR_RETURN(MetricsSample before, read_metrics(admin_));
  device_baseline_ = before.device_memory;
  const double warmup =
      flags_.warmup_seconds >= 0 ? flags_.warmup_seconds : std::min(10.0, flags_.seconds / 4);
  fmt::print(stderr,
             "bench soak: {} VMs, up to {} guests at once, {:.0f} s (warm-up {:.0f} s), at least "
             "{} guests, about {:.0f}% killed, seed {}\n",
             flags_.vms, flags_.concurrency, flags_.seconds, warmup, flags_.guests,
             flags_.kill_fraction * 100, flags_.seed);
  run_clock_.restart();
  next_sample_ = MonoClock::now();
  next_progress_ =
      MonoClock::now() + std::chrono::duration_cast<Nanos>(Seconds(flags_.progress_seconds));
  // A run that cannot end (a guest that hangs) is stopped, and reported.
  const double hard_limit = flags_.seconds + 180;
  while (phase_ != Phase::kDone) {
    if (g_stop_signal.load() != 0 || !host_died_.empty() || elapsed_s() > hard_limit) {
      for (GuestProcess& g : alive_) ::kill(g.pid, SIGKILL);
      for (GuestProcess& g : alive_) ::waitpid(g.pid, nullptr, 0);
      alive_.clear();
      if (g_stop_signal.load() != 0) {
        return Error(ErrorCode::kAborted,
                     fmt::format("stopped by signal {}", g_stop_signal.load()));
      }
      if (host_died_.empty()) {
        return Error(ErrorCode::kDeadlineExceeded,
                     fmt::format("guests still running {:.0f} s after the run's end", 180.0));
      }
      break;  // the host died: report what was seen
    }
    MALV_TRY(tick());
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  run_s_ = elapsed_s();
  return ok_status();
}

Status Soak::tick() {
  reap();
  kill_due();
  const double warmup =
      flags_.warmup_seconds >= 0 ? flags_.warmup_seconds : std::min(10.0, flags_.seconds / 4);
  switch (phase_) {
    case Phase::kWarmup:
      MALV_TRY(spawn_more(true));
      if (elapsed_s() >= warmup) phase_ = Phase::kWarmupDrain;
      break;
    case Phase::kWarmupDrain:
      // Every guest of the warm-up gone: the host's RSS with no guest.
      if (alive_.empty()) {
        MALV_TRY(final_check());
        rss_after_warmup_ = rss_bytes(host_.pid());
        fmt::print(stderr, "bench soak: {:6.1f} s  warm-up done, host RSS {:.1f} MiB\n",
                   elapsed_s(), static_cast<double>(rss_after_warmup_) / kMiB);
        phase_ = Phase::kChurn;
      }
      break;
    case Phase::kChurn: {
      const bool more = elapsed_s() < flags_.seconds ||
                        tally_.started < static_cast<std::uint64_t>(flags_.guests);
      MALV_TRY(spawn_more(more));
      if (!more) phase_ = Phase::kFinalDrain;
      break;
    }
    case Phase::kFinalDrain:
      if (alive_.empty()) {
        MALV_TRY(final_check());
        rss_end_ = rss_bytes(host_.pid());
        phase_ = Phase::kDone;
      }
      break;
    case Phase::kDone: break;
  }
  if (MonoClock::now() >= next_sample_ && phase_ != Phase::kDone) {
    MALV_TRY(sample());
    next_sample_ = MonoClock::now() + std::chrono::milliseconds(flags_.sample_ms);
  }
  if (MonoClock::now() >= next_progress_) {
    next_progress_ += std::chrono::duration_cast<Nanos>(Seconds(flags_.progress_seconds));
    progress();
  }
  return ok_status();
}

Status Soak::spawn_more(bool allowed) {
  while (allowed && alive_.size() < static_cast<std::size_t>(flags_.concurrency)) {
    MALV_ASSIGN_OR_RETURN(GuestProcess g,
                          spawn_guest(host_.socket_path(), dir_, flags_, tally_.started));
    ++tally_.started;
    if (std::uniform_real_distribution<double>(0, 1)(rng_) < flags_.kill_fraction) {
      // Somewhere in a typical guest's life (measured so far; 1 s at first),
      // from its start-up to its last round.
      const double life =
          tally_.completed > 0 ? tally_.lifetime_sum_s / static_cast<double>(tally_.completed) : 1;
      const double at = std::uniform_real_distribution<double>(0.01, 0.9 * life)(rng_);
      g.kill_at = g.started + std::chrono::duration_cast<Nanos>(Seconds(at));
    }
    alive_.push_back(std::move(g));
  }
  return ok_status();
}

void Soak::kill_due() {
  const MonoTime now = MonoClock::now();
  for (GuestProcess& g : alive_) {
    if (g.kill_at && !g.kill_sent && now >= *g.kill_at) {
      ::kill(g.pid, SIGKILL);
      g.kill_sent = true;
    }
  }
}

void Soak::reap() {
  for (auto it = alive_.begin(); it != alive_.end();) {
    int status = 0;
    if (::waitpid(it->pid, &status, WNOHANG) != it->pid) {
      ++it;
      continue;
    }
    const double life = Seconds(MonoClock::now() - it->started).count();
    bool keep_log = false;
    if (WIFEXITED(status) && WEXITSTATUS(status) == 0) {
      ++tally_.completed;
      tally_.lifetime_sum_s += life;
      if (it->kill_at) ++tally_.kills_late;
    } else if (WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL && it->kill_sent) {
      ++tally_.killed;
    } else if (WIFSIGNALED(status)) {
      ++tally_.crashes;
      keep_log = true;
      note(tally_.failure_notes, fmt::format("guest {} ({}) died of signal {}: {}", it->index,
                                             it->vm, WTERMSIG(status), tail_of(it->log)));
    } else {
      ++(WEXITSTATUS(status) == kSoakGuestWrongResult ? tally_.wrong : tally_.failures);
      keep_log = true;
      note(tally_.failure_notes, fmt::format("guest {} ({}) exited with {}: {}", it->index, it->vm,
                                             WEXITSTATUS(status), tail_of(it->log)));
    }
    if (!keep_log) ::unlink(it->log.c_str());
    it = alive_.erase(it);
  }
}

Status Soak::sample() {
  if (std::string why = host_.exit_reason(); !why.empty()) {
    host_died_ = why;
    ++tally_.crashes;
    note(tally_.failure_notes, why);
    return ok_status();
  }
  rss_peak_ = std::max(rss_peak_, rss_bytes(host_.pid()));
  ++tally_.samples;
  // The VMs' sum and the device's figure are read microseconds apart while
  // guests allocate and free, so a read can catch an allocation between the
  // two; a real drift shows in every read, so a difference counts only if
  // no read of kMismatchRereads agrees.
  std::string mismatch;
  for (int attempt = 0; attempt < kMismatchRereads; ++attempt) {
    if (attempt > 0) std::this_thread::sleep_for(kRereadGap);
    MALV_ASSIGN_OR_RETURN(MetricsSample m, read_metrics(admin_));
    last_device_ = m.device_memory;
    std::uint64_t sum = 0;
    mismatch.clear();
    for (const auto& [vm, bytes] : m.vm_memory) {
      sum += bytes;
      if (bytes > kVmQuotaBytes) {
        mismatch =
            fmt::format("VM {} holds {} bytes, over its quota of {}", vm, bytes, kVmQuotaBytes);
      }
    }
    const auto device = static_cast<std::int64_t>(m.device_memory - device_baseline_);
    if (mismatch.empty() && static_cast<std::int64_t>(sum) != device) {
      mismatch = fmt::format("VMs hold {} bytes, the device has {} in use for them", sum, device);
    }
    if (mismatch.empty()) return ok_status();
  }
  ++tally_.mismatches;
  note(tally_.mismatch_notes, fmt::format("{:.1f} s: {}", elapsed_s(), mismatch));
  return ok_status();
}

// With no guest left: every VM's memory, streams and sessions back to zero
// and the device back to where it started. Teardown is asynchronous (a
// session ends on its dispatcher thread), so this waits for it a while.
Status Soak::final_check() {
  const Deadline deadline = Deadline::after(std::chrono::seconds(15));
  for (;;) {
    if (std::string why = host_.exit_reason(); !why.empty()) {
      host_died_ = why;
      ++tally_.crashes;
      note(tally_.failure_notes, why);
      return ok_status();
    }
    MALV_ASSIGN_OR_RETURN(auto vms, read_vms(admin_));
    MALV_ASSIGN_OR_RETURN(MetricsSample m, read_metrics(admin_));
    std::uint64_t memory = 0;
    std::uint64_t streams = 0;
    std::uint64_t sessions = 0;
    std::uint64_t bytes_moved = 0;
    std::uint64_t faults = 0;
    for (const auto& [name, vm] : vms) {
      memory += std::max(vm.memory_used, vm.virtual_memory_used);
      streams += vm.streams;
      sessions += vm.sessions;
      bytes_moved += vm.bytes_moved;
      faults += vm.faults;
    }
    spilled_bytes_moved_ = bytes_moved;
    spilled_faults_ = faults;
    const std::uint64_t device =
        m.device_memory > device_baseline_ ? m.device_memory - device_baseline_ : 0;
    leaked_bytes_ = std::max(memory, device);
    leaked_streams_ = streams;
    leaked_sessions_ = sessions;
    if ((leaked_bytes_ == 0 && streams == 0 && sessions == 0) || deadline.expired()) {
      if (leaked_bytes_ != 0 || streams != 0 || sessions != 0) {
        note(tally_.mismatch_notes,
             fmt::format("{:.1f} s, no guest left: VMs hold {} bytes, {} streams, {} sessions; "
                         "the device {} bytes",
                         elapsed_s(), memory, streams, sessions, device));
      }
      return ok_status();
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
}

void Soak::progress() {
  fmt::print(stderr,
             "bench soak: {:6.1f} s  guests {:4} ({:2} alive, {} done, {} killed, {} failed)  "
             "device {:6.1f} MiB  host RSS {:6.1f} MiB  mismatches {}\n",
             elapsed_s(), tally_.started, alive_.size(), tally_.completed, tally_.killed,
             tally_.failures + tally_.wrong + tally_.crashes,
             static_cast<double>(last_device_ - std::min(last_device_, device_baseline_)) / kMiB,
             static_cast<double>(rss_bytes(host_.pid())) / kMiB, tally_.mismatches);
}

Status Soak::report() const {
  const bool host_alive = host_died_.empty();
  const double growth_mb =
      host_alive ? (static_cast<double>(rss_end_) - static_cast<double>(rss_after_warmup_)) / kMiB
                 : 0.0;
  std::vector<std::string> missed;
  if (tally_.crashes != 0) missed.push_back(fmt::format("{} crashes", tally_.crashes));
  if (leaked_bytes_ != 0) missed.push_back(fmt::format("{} bytes leaked", leaked_bytes_));
  if (leaked_streams_ + leaked_sessions_ != 0) {
    missed.push_back(
        fmt::format("{} streams and {} sessions left", leaked_streams_, leaked_sessions_));
  }
  if (tally_.mismatches != 0) {
    missed.push_back(fmt::format("{} accounting mismatches", tally_.mismatches));
  }
  if (tally_.failures != 0) missed.push_back(fmt::format("{} guests failed", tally_.failures));
  if (tally_.wrong != 0) {
    missed.push_back(fmt::format("{} guests read wrong data", tally_.wrong));
  }
  if (growth_mb > flags_.max_rss_growth_mb) {
    missed.push_back(fmt::format("host RSS grew {:.1f} MiB (goal <= {:.0f})", growth_mb,
                                 flags_.max_rss_growth_mb));
  }

  if (flags_.json) {
    json out{{"guests_total", tally_.started},
             {"completed", tally_.completed},
             {"killed", tally_.killed},
             {"kills_late", tally_.kills_late},
             {"guest_failures", tally_.failures},
             {"wrong_results", tally_.wrong},
             {"crashes", tally_.crashes},
             {"leaked_bytes", leaked_bytes_},
             {"leaked_streams", leaked_streams_},
             {"leaked_sessions", leaked_sessions_},
             {"accounting_samples", tally_.samples},
             {"accounting_mismatches", tally_.mismatches},
             {"spill_bytes_moved", spilled_bytes_moved_},
             {"spill_faults", spilled_faults_},
             {"mismatches", tally_.mismatch_notes},
             {"failures", tally_.failure_notes},
             {"host_rss_after_warmup_mb", static_cast<double>(rss_after_warmup_) / kMiB},
             {"host_rss_end_mb", static_cast<double>(rss_end_) / kMiB},
             {"host_rss_peak_mb", static_cast<double>(rss_peak_) / kMiB},
             {"host_rss_growth_mb", growth_mb},
             {"seconds", run_s_},
             {"seed", flags_.seed},
             {"vms", flags_.vms},
             {"concurrency", flags_.concurrency},
             {"goals_met", missed.empty()}};
    fmt::print("{}\n", out.dump(2));
  } else {
    const auto n = [](std::uint64_t v) { return static_cast<double>(v); };
    harness::print_figures(
        "malv bench soak",
        {{"guests_total", n(tally_.started), "", "guest processes that ran"},
         {"completed", n(tally_.completed), "", "ended on their own, every check held"},
         {"killed", n(tally_.killed), "", "SIGKILLed by the bench at a random moment"},
         {"guest_failures", n(tally_.failures), "", "a call failed; goal 0"},
         {"wrong_results", n(tally_.wrong), "", "a guest's check read wrong data; goal 0"},
         {"crashes", n(tally_.crashes), "", "host died or a guest died of another signal; goal 0"},
         {"leaked_bytes", n(leaked_bytes_), "B", "held with no guest left; goal 0"},
         {"leaked_streams", n(leaked_streams_), "", "goal 0"},
         {"leaked_sessions", n(leaked_sessions_), "", "goal 0"},
         {"accounting_samples", n(tally_.samples), "", "VM memory vs device memory, checked"},
         {"accounting_mismatches", n(tally_.mismatches), "", "goal 0"},
         {"spill_bytes_moved", n(spilled_bytes_moved_), "B",
          "spilled and filled by the oversubscribed VM's memory manager"},
         {"spill_faults", n(spilled_faults_), "", "its ops that waited for a fill"},
         {"host_rss_after_warmup_mb", static_cast<double>(rss_after_warmup_) / kMiB, "MiB",
          "no guest connected"},
         {"host_rss_end_mb", static_cast<double>(rss_end_) / kMiB, "MiB", "no guest connected"},
         {"host_rss_peak_mb", static_cast<double>(rss_peak_) / kMiB, "MiB", "during the run"},
         {"host_rss_growth_mb", growth_mb, "MiB",
          fmt::format("end - after warm-up; goal <= {:.0f}", flags_.max_rss_growth_mb)},
         {"seconds", run_s_, "s", ""}},
        false);
    for (const std::string& s : tally_.mismatch_notes) fmt::print("  mismatch: {}\n", s);
    for (const std::string& s : tally_.failure_notes) fmt::print("  failure: {}\n", s);
  }
  if (!missed.empty()) {
    std::string what;
    for (const std::string& m : missed) what += (what.empty() ? "" : ", ") + m;
    return Error(ErrorCode::kFailedPrecondition, "soak goals missed: " + what);
  }
  return ok_status();
}

}  // namespace

Status run_soak(const SoakOptions& flags) {
  ::signal(SIGPIPE, SIG_IGN);
  struct sigaction stop {};
  stop.sa_handler = on_stop_signal;
  ::sigaction(SIGINT, &stop, nullptr);
  ::sigaction(SIGTERM, &stop, nullptr);
  // The host and guests log warnings and errors only (a line per session
  // would bury the progress lines), unless the caller asked for more.
  ::setenv("MALV_LOG", "warn", /*overwrite=*/0);
  MALV_ASSIGN_OR_RETURN(auto dir, harness::PrivateDir::create("soak"));
  MALV_ASSIGN_OR_RETURN(
      auto host,
      harness::HostProcess::spawn({"--backend", "cpu", "--workers", std::to_string(flags.workers),
                                   "--memory-mib", "1024", "--arena-mib", "4", "--checkpoint-dir",
                                   dir->file("checkpoints"), "--socket", dir->file("malv.sock"),
                                   "--admin-socket", dir->file("admin.sock")}));
  const harness::AdminClient admin(dir->file("admin.sock"));
  MALV_TRY(create_vms(admin, flags));
  Soak soak(flags, *dir, *host, admin);
  MALV_TRY(soak.run());
  return soak.report();
}

}  // namespace malv::bench
