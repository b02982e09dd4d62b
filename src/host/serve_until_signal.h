// The host's lifecycle as `malv serve` runs it: start the daemon, say when
// guests can connect, run until SIGINT or SIGTERM, then shut down (queued
// device work gets the configured grace, sessions close, modules unload).
//
//   MALV_TRY(host::serve_until_signal(std::move(options), [](host::HostDaemon& d) {
//     fmt::print("ready socket={}\n", d.server().unix_path());
//   }));
#pragma once

#include <functional>

#include "host/host_daemon.h"
#include "malv/result.h"

namespace malv::host {

// Handles SIGINT and SIGTERM (the daemon's threads block them; a handler
// on whichever thread takes one wakes this one: call before any thread starts),
// starts the daemon, calls on_ready once, waits for one of the two signals
// and destroys the daemon. An error means the daemon did not start.
[[nodiscard]] Status serve_until_signal(DaemonOptions options,
                                        const std::function<void(HostDaemon&)>& on_ready);

}  // namespace malv::host
