#include "host/serve_until_signal.h"

#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "base/log.h"

namespace malv::host {
namespace {

// Written by the handler, read by serve_until_signal: a self-pipe, because
// a library may have started threads before main() (OpenBLAS does) with
// the signals unblocked, and a signal the kernel hands to one of those
// must not take the default action (ending the process with no cleanup:
// the VMs' CPU groups and sockets would be left behind).
int g_signal_pipe[2] = {-1, -1};

extern "C" void on_stop_signal(int signal) {
  const int saved = errno;
  const unsigned char byte = static_cast<unsigned char>(signal);
  (void)!::write(g_signal_pipe[1], &byte, 1);
  errno = saved;
}

}  // namespace

Status serve_until_signal(DaemonOptions options, const std::function<void(HostDaemon&)>& on_ready) {
  if (g_signal_pipe[0] < 0 && ::pipe2(g_signal_pipe, O_CLOEXEC) != 0) {
    return errno_error("pipe for SIGINT/SIGTERM", errno);
  }
  struct sigaction action {};
  action.sa_handler = on_stop_signal;
  action.sa_flags = SA_RESTART;
  sigemptyset(&action.sa_mask);
  sigaction(SIGINT, &action, nullptr);
  sigaction(SIGTERM, &action, nullptr);

  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  // The daemon's threads never take the signals: only this one (below) and
  // threads that were there before.
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  if (options.config.vms.empty() && !options.open_admission) {
    log::warn("serve",
              "no VMs configured: every guest will be refused (add [[vm]] entries, "
              "`malv vm create`, or --open for development)");
  }
  MALV_ASSIGN_OR_RETURN(std::unique_ptr<HostDaemon> daemon, HostDaemon::start(std::move(options)));
  on_ready(*daemon);
  pthread_sigmask(SIG_UNBLOCK, &signals, nullptr);
  unsigned char signal = 0;
  while (::read(g_signal_pipe[0], &signal, 1) != 1) {
    if (errno != EINTR) {
      log::warn("serve", "waiting for a signal failed: {}; shutting down", std::strerror(errno));
      break;
    }
  }
  log::info("serve", "signal {} received, shutting down", signal);
  daemon.reset();
  return ok_status();
}

}  // namespace malv::host
