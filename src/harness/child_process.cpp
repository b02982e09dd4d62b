#include "harness/child_process.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <deque>
#include <fstream>
#include <thread>

namespace malv::harness {

Result<std::unique_ptr<ChildProcess>> ChildProcess::spawn(std::string name,
                                                          const std::vector<std::string>& args,
                                                          const std::string& log_path) {
  std::unique_ptr<ChildProcess> child(new ChildProcess());
  child->name_ = std::move(name);
  child->log_path_ = log_path;
  std::vector<std::string> storage{"malv"};
  storage.insert(storage.end(), args.begin(), args.end());
  std::vector<char*> argv;
  for (std::string& a : storage) argv.push_back(a.data());
  argv.push_back(nullptr);

  const int log_fd = ::open(log_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (log_fd < 0) return errno_error("open " + log_path, errno);
  int out[2];
  if (::pipe2(out, O_CLOEXEC) != 0) {
    const int saved = errno;
    ::close(log_fd);
    return errno_error("pipe", saved);
  }
  const pid_t parent = ::getpid();
  const pid_t pid = ::fork();
  if (pid < 0) {
    const int saved = errno;
    ::close(log_fd);
    ::close(out[0]);
    ::close(out[1]);
    return errno_error("fork", saved);
  }
  if (pid == 0) {
    // Only async-signal-safe calls from here to exec.
    ::setpgid(0, 0);
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (::getppid() != parent) ::_exit(126);  // the demo died before prctl
    ::signal(SIGINT, SIG_DFL);
    ::signal(SIGTERM, SIG_DFL);
    ::signal(SIGHUP, SIG_DFL);
    ::signal(SIGPIPE, SIG_DFL);
    const int null_fd = ::open("/dev/null", O_RDONLY);
    if (null_fd >= 0) ::dup2(null_fd, STDIN_FILENO);
    ::dup2(out[1], STDOUT_FILENO);
    ::dup2(log_fd, STDERR_FILENO);
    ::execv("/proc/self/exe", argv.data());
    ::_exit(127);
  }
  // Also here, so the group exists before anyone signals it.
  ::setpgid(pid, pid);
  ::close(log_fd);
  ::close(out[1]);
  ::fcntl(out[0], F_SETFL, ::fcntl(out[0], F_GETFL) | O_NONBLOCK);
  child->pid_ = pid;
  child->out_fd_ = out[0];
  return child;
}

ChildProcess::~ChildProcess() {
  stop(std::chrono::milliseconds(1000));
  if (out_fd_ >= 0) ::close(out_fd_);
}

void ChildProcess::read_available() {
  if (out_fd_ < 0) return;
  char chunk[8192];
  for (;;) {
    const ssize_t n = ::read(out_fd_, chunk, sizeof(chunk));
    if (n > 0) {
      buffered_.append(chunk, static_cast<std::size_t>(n));
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n == 0) {  // EOF: the child closed stdout (it has exited)
      ::close(out_fd_);
      out_fd_ = -1;
    }
    return;  // EOF, EAGAIN or an error
  }
}

std::vector<std::string> ChildProcess::read_lines() {
  read_available();
  std::vector<std::string> lines;
  std::size_t start = 0;
  for (std::size_t nl; (nl = buffered_.find('\n', start)) != std::string::npos; start = nl + 1) {
    lines.push_back(buffered_.substr(start, nl - start));
  }
  buffered_.erase(0, start);
  return lines;
}

bool ChildProcess::exited() {
  if (reaped_) return true;
  if (pid_ <= 0) return true;
  const pid_t r = ::waitpid(pid_, &wait_status_, WNOHANG);
  if (r == pid_ || (r < 0 && errno == ECHILD)) reaped_ = true;
  return reaped_;
}

std::string ChildProcess::exit_description() const {
  if (!reaped_) return "still running";
  if (WIFEXITED(wait_status_)) return fmt::format("exit code {}", WEXITSTATUS(wait_status_));
  if (WIFSIGNALED(wait_status_)) return fmt::format("killed by signal {}", WTERMSIG(wait_status_));
  return "ended";
}

bool ChildProcess::succeeded() const {
  return reaped_ && WIFEXITED(wait_status_) && WEXITSTATUS(wait_status_) == 0;
}

void ChildProcess::stop(std::chrono::milliseconds grace) {
  if (exited()) return;
  ::kill(-pid_, SIGTERM);
  const auto deadline = std::chrono::steady_clock::now() + grace;
  while (!exited() && std::chrono::steady_clock::now() < deadline) {
    read_available();  // keep the pipe drained so the child can finish writing
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  if (!exited()) {
    ::kill(-pid_, SIGKILL);
    while (!reaped_) {
      const pid_t r = ::waitpid(pid_, &wait_status_, 0);
      if (r == pid_ || (r < 0 && errno != EINTR)) reaped_ = true;
    }
  }
  // Anything else left in its group (it starts none today) goes too.
  ::kill(-pid_, SIGKILL);
  read_available();
}

std::string ChildProcess::log_tail(std::size_t lines) const {
  std::ifstream in(log_path_);
  std::deque<std::string> tail;
  for (std::string line; std::getline(in, line);) {
    tail.push_back(std::move(line));
    if (tail.size() > lines) tail.pop_front();
  }
  std::string out;
  for (const std::string& line : tail) out += "    " + line + "\n";
  return out;
}

}  // namespace malv::harness
