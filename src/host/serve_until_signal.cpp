#include "host/serve_until_signal.h"

#include <signal.h>

#include "base/log.h"

namespace malv::host {

Status serve_until_signal(DaemonOptions options, const std::function<void(HostDaemon&)>& on_ready) {
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);  // every thread started later too

  if (options.config.vms.empty() && !options.open_admission) {
    log::warn("serve",
              "no VMs configured: every guest will be refused (add [[vm]] entries, "
              "`malv vm create`, or --open for development)");
  }
  MALV_ASSIGN_OR_RETURN(std::unique_ptr<HostDaemon> daemon, HostDaemon::start(std::move(options)));
  on_ready(*daemon);
  int signal = 0;
  sigwait(&signals, &signal);
  log::info("serve", "signal {} received, shutting down", signal);
  daemon.reset();
  return ok_status();
}

}  // namespace malv::host
