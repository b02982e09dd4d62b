// HostProcess: a `malv serve` started as a child process, for the demo and
// the benchmarks (guests and host as real separate processes). The child is
// this same binary (/proc/self/exe); the constructor returns once it has
// printed its "ready" line, and the destructor stops it with SIGTERM (as
// the kernel does if this process dies first: PR_SET_PDEATHSIG).
#pragma once

#include <sys/types.h>

#include <memory>
#include <string>
#include <vector>

#include "malv/result.h"

namespace malv::harness {

class HostProcess {
 public:
  // `args` are passed after `malv serve`; a --socket is chosen if absent.
  [[nodiscard]] static Result<std::unique_ptr<HostProcess>> spawn(std::vector<std::string> args);
  ~HostProcess();

  const std::string& socket_path() const { return socket_path_; }
  std::uint16_t tcp_port() const { return tcp_port_; }
  pid_t pid() const { return pid_; }
  // Why the host is gone ("the host exited with 1", "the host was killed by
  // signal 9"), or "" while it runs. Does not reap it: the destructor does.
  std::string exit_reason() const;

 private:
  HostProcess() = default;
  pid_t pid_ = -1;
  std::string socket_path_;
  std::uint16_t tcp_port_ = 0;
};

// A path for a private socket: /tmp/malv-<what>-<pid>.sock
std::string private_socket_path(const std::string& what);

}  // namespace malv::harness
