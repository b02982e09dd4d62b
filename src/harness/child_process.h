// ChildProcess: one process that `malv demo` or a benchmark starts (this
// same binary, through /proc/self/exe).
//
// Each child runs in a process group of its own, so that stopping it stops
// everything it started, and a terminal's Ctrl-C reaches only the demo,
// which then stops its children in order. The kernel sends the child
// SIGKILL should the demo die without cleaning up (PR_SET_PDEATHSIG), so not
// even a killed demo leaves guests behind. The child's stdout comes back
// through a pipe, line by line; its stderr goes to a log file whose tail
// the demo shows when the child fails.
//
//   MALV_ASSIGN_OR_RETURN(auto child, ChildProcess::spawn("train-a", {"guest", "train", ...},
//   log)); while (running) {
//     for (const std::string& line : child->read_lines()) handle(line);
//     if (child->exited()) break;
//   }
//   child->stop();  // SIGTERM to its group, SIGKILL after a grace period; also in ~ChildProcess
#pragma once

#include <sys/types.h>

#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "malv/result.h"

namespace malv::harness {

class ChildProcess {
 public:
  // Runs `/proc/self/exe args...` with stdout to a pipe and stderr to
  // `log_path` (created or truncated).
  [[nodiscard]] static Result<std::unique_ptr<ChildProcess>> spawn(
      std::string name, const std::vector<std::string>& args, const std::string& log_path);
  ~ChildProcess();
  ChildProcess(const ChildProcess&) = delete;
  ChildProcess& operator=(const ChildProcess&) = delete;

  const std::string& name() const { return name_; }
  pid_t pid() const { return pid_; }
  // The read end of the stdout pipe (non-blocking), for poll(); -1 at EOF.
  int stdout_fd() const { return out_fd_; }
  // The complete lines that have arrived since the last call (no waiting).
  std::vector<std::string> read_lines();
  // True once the child has exited and been reaped (checks without waiting).
  bool exited();
  // Its exit status as "exit code N" or "killed by signal N" once exited.
  std::string exit_description() const;
  bool succeeded() const;
  // SIGTERM to the child's process group; SIGKILL if it is still there
  // after `grace`. Returns once it is reaped. Lines it printed meanwhile
  // stay readable with read_lines().
  void stop(std::chrono::milliseconds grace = std::chrono::milliseconds(3000));
  // The last `lines` lines of its log.
  std::string log_tail(std::size_t lines = 8) const;

 private:
  ChildProcess() = default;
  void read_available();

  std::string name_;
  std::string log_path_;
  pid_t pid_ = -1;
  int out_fd_ = -1;
  int wait_status_ = 0;
  bool reaped_ = false;
  std::string buffered_;  // bytes after the last complete line
};

}  // namespace malv::harness
