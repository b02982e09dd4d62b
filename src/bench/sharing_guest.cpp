#include "bench/sharing_guest.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <cstdio>
#include <nlohmann/json.hpp>
#include <random>
#include <thread>

#include "base/clock.h"
#include "base/thread_priority.h"
#include "malv/connection.h"

namespace malv::bench {
namespace {

using guest::Buffer;
using guest::KernelArg;

constexpr std::int64_t kGemmDim = 256;
constexpr int kGemmWindow = 8;   // launches per event-fenced window
constexpr int kTinyWindow = 64;  // relu launches per window
constexpr std::int64_t kTinyN = 1024;
constexpr std::int64_t kInferIn = 31;
constexpr std::int64_t kInferHidden = 256;
constexpr std::int64_t kInferOut = 2;
constexpr int kInferWarmup = 20;

std::vector<float> random_floats(std::size_t n) {
  std::mt19937 rng(7);
  std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
  std::vector<float> v(n);
  for (float& x : v) x = dist(rng);
  return v;
}

Result<Buffer> upload(guest::Connection& conn, guest::Stream& stream, std::size_t floats) {
  MALV_ASSIGN_OR_RETURN(Buffer b, conn.allocate(floats * sizeof(float)));
  const std::vector<float> data = random_floats(floats);
  MALV_TRY(stream.write(b, 0, std::as_bytes(std::span(data))));
  return b;
}

KernelArg gemm_arg(std::int64_t v) { return KernelArg::i64(v); }

// Reads "go" from stdin (the bench's pipe); false if it closed first.
bool wait_for_go() {
  char line[16] = {0};
  return std::fgets(line, sizeof(line), stdin) != nullptr && std::string_view(line) == "go\n";
}

void announce_ready() {
  std::fputs("ready\n", stdout);
  std::fflush(stdout);
}

// Launches windows of `window` ops (via `launch_one`) until `seconds` have
// passed, keeping two windows in flight so the VM never runs dry.
template <typename LaunchOne>
Result<SharingGuestResult> run_windowed(guest::Connection& conn, guest::Stream& stream, int window,
                                        double seconds, LaunchOne&& launch_one) {
  std::array<guest::Event, 2> fences;
  for (auto& f : fences) {
    MALV_ASSIGN_OR_RETURN(f, conn.create_event());
  }
  auto launch_window = [&](int w) -> Status {
    for (int i = 0; i < window; ++i) MALV_TRY(launch_one());
    return stream.record(fences[static_cast<std::size_t>(w % 2)]);
  };
  MALV_TRY(launch_window(0));  // warm-up: first touch, BLAS set-up
  MALV_TRY(stream.synchronize());
  announce_ready();
  if (!wait_for_go()) return Error(ErrorCode::kAborted, "the bench went away before go");

  SharingGuestResult result;
  Stopwatch watch;
  MALV_TRY(launch_window(0));
  int w = 1;
  while (watch.elapsed_s() < seconds) {
    MALV_TRY(launch_window(w));
    MALV_TRY(guest::synchronize(fences[static_cast<std::size_t>((w - 1) % 2)]));
    result.ops += static_cast<std::uint64_t>(window);
    ++w;
  }
  MALV_TRY(stream.synchronize());
  result.ops += static_cast<std::uint64_t>(window);
  result.seconds = watch.elapsed_s();
  return result;
}

Result<SharingGuestResult> run_gemm(guest::Connection& conn, const SharingGuestSpec& spec) {
  MALV_ASSIGN_OR_RETURN(guest::Kernel gemm, conn.kernel("gemm"));
  MALV_ASSIGN_OR_RETURN(guest::Stream stream, conn.create_stream());
  const auto n = static_cast<std::size_t>(kGemmDim * kGemmDim);
  MALV_ASSIGN_OR_RETURN(Buffer a, upload(conn, stream, n));
  MALV_ASSIGN_OR_RETURN(Buffer b, upload(conn, stream, n));
  MALV_ASSIGN_OR_RETURN(Buffer c, upload(conn, stream, n));
  return run_windowed(conn, stream, kGemmWindow, spec.seconds, [&] {
    return stream.launch(
        gemm, {KernelArg::buffer(a), KernelArg::buffer(b), KernelArg::buffer(c), gemm_arg(kGemmDim),
               gemm_arg(kGemmDim), gemm_arg(kGemmDim), gemm_arg(0), gemm_arg(0),
               KernelArg::f32(1.0f), KernelArg::f32(0.0f)});
  });
}

Result<SharingGuestResult> run_tiny(guest::Connection& conn, const SharingGuestSpec& spec) {
  MALV_ASSIGN_OR_RETURN(guest::Kernel relu, conn.kernel("relu"));
  MALV_ASSIGN_OR_RETURN(guest::Stream stream, conn.create_stream());
  MALV_ASSIGN_OR_RETURN(Buffer x, upload(conn, stream, static_cast<std::size_t>(kTinyN)));
  return run_windowed(conn, stream, kTinyWindow, spec.seconds, [&] {
    return stream.launch(relu,
                         {KernelArg::buffer(x), KernelArg::buffer(x), KernelArg::i64(kTinyN)});
  });
}

Result<SharingGuestResult> run_infer(guest::Connection& conn, const SharingGuestSpec& spec) {
  MALV_ASSIGN_OR_RETURN(guest::Kernel gemm, conn.kernel("gemm"));
  MALV_ASSIGN_OR_RETURN(guest::Kernel relu, conn.kernel("relu"));
  MALV_ASSIGN_OR_RETURN(guest::Stream stream, conn.create_stream());
  MALV_ASSIGN_OR_RETURN(Buffer x, upload(conn, stream, kInferIn));
  MALV_ASSIGN_OR_RETURN(Buffer w1, upload(conn, stream, kInferIn * kInferHidden));
  MALV_ASSIGN_OR_RETURN(Buffer h, upload(conn, stream, kInferHidden));
  MALV_ASSIGN_OR_RETURN(Buffer w2, upload(conn, stream, kInferHidden * kInferOut));
  MALV_ASSIGN_OR_RETURN(Buffer y, upload(conn, stream, kInferOut));
  const std::vector<float> input = random_floats(kInferIn);
  std::array<float, kInferOut> output{};
  auto request = [&]() -> Status {
    MALV_TRY(stream.write(x, 0, std::as_bytes(std::span(input))));
    MALV_TRY(
        stream.launch(gemm, {KernelArg::buffer(x), KernelArg::buffer(w1), KernelArg::buffer(h),
                             gemm_arg(1), gemm_arg(kInferHidden), gemm_arg(kInferIn), gemm_arg(0),
                             gemm_arg(0), KernelArg::f32(1.0f), KernelArg::f32(0.0f)}));
    MALV_TRY(stream.launch(
        relu, {KernelArg::buffer(h), KernelArg::buffer(h), KernelArg::i64(kInferHidden)}));
    MALV_TRY(
        stream.launch(gemm, {KernelArg::buffer(h), KernelArg::buffer(w2), KernelArg::buffer(y),
                             gemm_arg(1), gemm_arg(kInferOut), gemm_arg(kInferHidden), gemm_arg(0),
                             gemm_arg(0), KernelArg::f32(1.0f), KernelArg::f32(0.0f)}));
    MALV_TRY(stream.read(y, 0, std::as_writable_bytes(std::span(output))));
    return stream.synchronize();
  };
  // A latency-sensitive tenant: its thread asks the OS to be run as soon as
  // it wakes (as the hypervisor would configure such a VM's vCPU).
  name_this_thread("malv-infer");
  request_short_slice(kShortSlice);
  for (int i = 0; i < kInferWarmup; ++i) MALV_TRY(request());
  announce_ready();
  if (!wait_for_go()) return Error(ErrorCode::kAborted, "the bench went away before go");

  SharingGuestResult result;
  const auto period = std::chrono::nanoseconds(static_cast<std::int64_t>(1e9 / spec.rate));
  Stopwatch watch;
  MonoTime next = MonoClock::now();
  while (watch.elapsed_s() < spec.seconds) {
    std::this_thread::sleep_until(next);
    Stopwatch one;
    MALV_TRY(request());
    result.latencies_us.push_back(one.elapsed_us());
    ++result.ops;
    // Fixed rate; a request that overran its slot is followed at once.
    next = std::max(next + period, MonoClock::now());
  }
  result.seconds = watch.elapsed_s();
  return result;
}

}  // namespace

Status run_sharing_guest(const SharingGuestSpec& spec) {
  MALV_ASSIGN_OR_RETURN(
      auto conn,
      guest::Connection::connect_unix(spec.socket, {.vm_name = spec.vm, .credential = spec.token}));
  Result<SharingGuestResult> result =
      Error(ErrorCode::kInvalidArgument, "unknown mode " + spec.mode);
  if (spec.mode == "gemm") result = run_gemm(*conn, spec);
  if (spec.mode == "infer") result = run_infer(*conn, spec);
  if (spec.mode == "tiny") result = run_tiny(*conn, spec);
  if (!result.ok()) return result.error();
  nlohmann::json out{
      {"ops", result->ops}, {"seconds", result->seconds}, {"latencies_us", result->latencies_us}};
  std::fputs((out.dump() + "\n").c_str(), stdout);
  std::fflush(stdout);
  return ok_status();
}

Result<std::unique_ptr<SharingGuest>> SharingGuest::spawn(const SharingGuestSpec& spec) {
  std::unique_ptr<SharingGuest> g(new SharingGuest());
  g->vm_ = spec.vm;
  std::vector<std::string> args{"malv",
                                "bench",
                                "sharing-guest",
                                "--socket",
                                spec.socket,
                                "--vm",
                                spec.vm,
                                "--token",
                                spec.token,
                                "--mode",
                                spec.mode,
                                "--seconds",
                                fmt::format("{}", spec.seconds),
                                "--rate",
                                fmt::format("{}", spec.rate)};
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  int in[2];
  int out[2];
  if (::pipe2(in, O_CLOEXEC) != 0) return errno_error("pipe", errno);
  g->to_child_ = in[1];
  if (::pipe2(out, O_CLOEXEC) != 0) {
    ::close(in[0]);
    return errno_error("pipe", errno);
  }
  g->from_child_ = out[0];
  const pid_t pid = ::fork();
  if (pid < 0) {
    ::close(in[0]);
    ::close(out[1]);
    return errno_error("fork", errno);
  }
  if (pid == 0) {
    ::dup2(in[0], STDIN_FILENO);
    ::dup2(out[1], STDOUT_FILENO);
    ::execv("/proc/self/exe", argv.data());
    ::_exit(127);
  }
  ::close(in[0]);
  ::close(out[1]);
  g->pid_ = pid;
  return g;
}

SharingGuest::~SharingGuest() {
  if (to_child_ >= 0) ::close(to_child_);
  if (from_child_ >= 0) ::close(from_child_);
  if (pid_ > 0) {
    int status = 0;
    if (::waitpid(pid_, &status, WNOHANG) == 0) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, &status, 0);
    }
  }
}

Result<std::string> SharingGuest::read_line() {
  // Generous: a guest on a loaded machine may take seconds to start.
  const Deadline deadline = Deadline::after(std::chrono::seconds(120));
  for (;;) {
    if (auto nl = buffered_.find('\n'); nl != std::string::npos) {
      std::string line = buffered_.substr(0, nl);
      buffered_.erase(0, nl + 1);
      return line;
    }
    if (deadline.expired()) {
      return Error(ErrorCode::kDeadlineExceeded, fmt::format("guest {} stopped answering", vm_));
    }
    pollfd pfd{from_child_, POLLIN, 0};
    if (::poll(&pfd, 1, 200) < 0 && errno != EINTR) return errno_error("poll", errno);
    char chunk[4096];
    const ssize_t n = ::read(from_child_, chunk, sizeof(chunk));
    if (n == 0) {
      return Error(ErrorCode::kUnavailable,
                   fmt::format("guest {} exited early (see its message above)", vm_));
    }
    if (n < 0 && errno != EAGAIN && errno != EINTR) return errno_error("read", errno);
    if (n > 0) buffered_.append(chunk, static_cast<std::size_t>(n));
  }
}

Status SharingGuest::wait_ready() {
  MALV_ASSIGN_OR_RETURN(std::string line, read_line());
  if (line != "ready") {
    return Error(ErrorCode::kInternal, fmt::format("guest {} said '{}', not ready", vm_, line));
  }
  return ok_status();
}

Status SharingGuest::go() {
  if (::write(to_child_, "go\n", 3) != 3) return errno_error("write to guest", errno);
  return ok_status();
}

Result<SharingGuestResult> SharingGuest::result() {
  MALV_ASSIGN_OR_RETURN(std::string line, read_line());
  nlohmann::json j = nlohmann::json::parse(line, nullptr, false);
  if (j.is_discarded() || !j.is_object()) {
    return Error(ErrorCode::kInternal, fmt::format("guest {} sent '{}'", vm_, line));
  }
  SharingGuestResult r;
  r.ops = j.value("ops", std::uint64_t{0});
  r.seconds = j.value("seconds", 0.0);
  r.latencies_us = j.value("latencies_us", std::vector<double>{});
  int status = 0;
  ::waitpid(pid_, &status, 0);
  pid_ = -1;
  return r;
}

}  // namespace malv::bench
