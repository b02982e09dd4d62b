// `malv serve`: the host daemon. Starts the accelerator backend and the
// Micro-LAKE server, prints one "ready" line on stdout when guests can
// connect, and shuts down cleanly on SIGINT or SIGTERM.
#include <fmt/format.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>

#include "accel/backend.h"
#include "base/log.h"
#include "cli/commands.h"
#include "microlake/server.h"

namespace malv::cli {
namespace {

struct ServeFlags {
  std::string socket;
  std::string tcp;  // host:port
  std::uint32_t vsock_port = 0;
  std::string backend = "auto";
  std::uint64_t memory_mib = 0;
  unsigned workers = 0;
  std::uint64_t arena_mib = 64;
};

// $XDG_RUNTIME_DIR/malv/malv.sock, else /run/malv/malv.sock (root) or /tmp.
std::string default_socket_path() {
  std::string dir;
  if (const char* xdg = std::getenv("XDG_RUNTIME_DIR"); xdg && *xdg) {
    dir = std::string(xdg) + "/malv";
  } else if (::geteuid() == 0) {
    dir = "/run/malv";
  } else {
    dir = fmt::format("/tmp/malv-{}", ::geteuid());
  }
  ::mkdir(dir.c_str(), 0700);
  return dir + "/malv.sock";
}

Result<std::unique_ptr<accel::Backend>> make_backend(const ServeFlags& flags) {
  if (flags.backend == "cuda") {
    return Error(ErrorCode::kUnimplemented, "the CUDA backend is not built into this malv");
  }
  if (flags.backend != "cpu" && flags.backend != "auto") {
    return Error(ErrorCode::kInvalidArgument,
                 fmt::format("unknown backend '{}' (cpu, cuda, auto)", flags.backend));
  }
  if (flags.backend == "auto") log::info("serve", "backend auto: no GPU backend built, using cpu");
  return accel::make_cpu_backend({flags.memory_mib << 20, flags.workers});
}

int serve(const ServeFlags& flags) {
  // Block the signals in every thread; this one waits for them below.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  auto backend = make_backend(flags);
  if (!backend.ok()) {
    fmt::print(stderr, "malv serve: {}\n", backend.error().to_string());
    return 1;
  }
  microlake::ServerOptions options;
  options.unix_path = flags.socket.empty() ? default_socket_path() : flags.socket;
  options.default_arena_bytes = flags.arena_mib << 20;
  options.max_arena_bytes = std::max<std::uint64_t>(options.max_arena_bytes, flags.arena_mib << 20);
  if (!flags.tcp.empty()) {
    auto colon = flags.tcp.rfind(':');
    if (colon == std::string::npos) {
      fmt::print(stderr, "malv serve: --tcp wants HOST:PORT, got '{}'\n", flags.tcp);
      return 2;
    }
    options.tcp_host = flags.tcp.substr(0, colon);
    options.tcp_port = static_cast<std::uint16_t>(std::stoul(flags.tcp.substr(colon + 1)));
  }
  if (flags.vsock_port != 0) options.vsock_port = flags.vsock_port;
  auto server = microlake::Server::start(*backend.value(), options);
  if (!server.ok()) {
    fmt::print(stderr, "malv serve: {}\n", server.error().to_string());
    return 1;
  }
  const accel::DeviceInfo info = backend.value()->info();
  fmt::print("ready socket={} tcp_port={} backend={} device=\"{}\"\n", options.unix_path,
             server.value()->tcp_port(), info.backend, info.name);
  std::fflush(stdout);
  int signal = 0;
  sigwait(&signals, &signal);
  log::info("serve", "signal {} received, shutting down", signal);
  server.value()->stop();
  return 0;
}

}  // namespace

void register_serve(CLI::App& app, int& exit_code) {
  auto flags = std::make_shared<ServeFlags>();
  CLI::App* sub = app.add_subcommand("serve", "Run the host daemon: Micro-LAKE core and backend");
  sub->add_option("--socket", flags->socket,
                  "Unix socket to listen on (default $XDG_RUNTIME_DIR/malv/malv.sock)");
  sub->add_option("--tcp", flags->tcp, "Also listen on TCP HOST:PORT (port 0: any free port)");
  sub->add_option("--vsock-port", flags->vsock_port, "Also listen on this AF_VSOCK port");
  sub->add_option("--backend", flags->backend, "Accelerator backend: cpu, cuda or auto")
      ->capture_default_str();
  sub->add_option("--memory-mib", flags->memory_mib,
                  "Device memory of the CPU backend in MiB (default: a quarter of RAM)");
  sub->add_option("--workers", flags->workers, "CPU backend worker threads (default: cores)");
  sub->add_option("--arena-mib", flags->arena_mib, "Default data arena per session, MiB")
      ->capture_default_str();
  sub->callback([flags, &exit_code] { exit_code = serve(*flags); });
}

}  // namespace malv::cli
