#include "harness/host_process.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>

namespace malv::harness {

std::string private_socket_path(const std::string& what) {
  return fmt::format("/tmp/malv-{}-{}.sock", what, ::getpid());
}

Result<std::unique_ptr<HostProcess>> HostProcess::spawn(std::vector<std::string> args) {
  std::unique_ptr<HostProcess> host(new HostProcess());
  bool has_socket = false;
  for (std::size_t i = 0; i < args.size(); ++i) {
    if (args[i] == "--socket" && i + 1 < args.size()) {
      has_socket = true;
      host->socket_path_ = args[i + 1];
    }
  }
  if (!has_socket) {
    host->socket_path_ = private_socket_path("host");
    args.insert(args.begin(), {"--socket", host->socket_path_});
  }
  int out[2];
  if (::pipe2(out, O_CLOEXEC) != 0) return errno_error("pipe", errno);
  std::vector<std::string> argv_storage{"malv", "serve"};
  argv_storage.insert(argv_storage.end(), args.begin(), args.end());
  std::vector<char*> argv;
  for (auto& a : argv_storage) argv.push_back(a.data());
  argv.push_back(nullptr);

  const pid_t parent = ::getpid();
  pid_t pid = ::fork();
  if (pid < 0) return errno_error("fork", errno);
  if (pid == 0) {
    // A host must not outlive the benchmark that started it, however that
    // ends (killed, crashed): the kernel sends SIGTERM when the parent dies.
    ::prctl(PR_SET_PDEATHSIG, SIGTERM);
    if (::getppid() != parent) ::_exit(127);  // the parent died before prctl
    ::dup2(out[1], STDOUT_FILENO);
    ::execv("/proc/self/exe", argv.data());
    ::_exit(127);
  }
  ::close(out[1]);
  host->pid_ = pid;
  FILE* stream = ::fdopen(out[0], "r");
  char line[512] = {0};
  const bool got_line = stream != nullptr && std::fgets(line, sizeof(line), stream) != nullptr;
  if (stream != nullptr) std::fclose(stream);
  if (!got_line || std::strncmp(line, "ready ", 6) != 0) {
    return Error(ErrorCode::kUnavailable, "malv serve exited before it was ready");
  }
  if (const char* port = std::strstr(line, "tcp_port=")) {
    host->tcp_port_ = static_cast<std::uint16_t>(std::atoi(port + 9));
  }
  return host;
}

HostProcess::~HostProcess() {
  if (pid_ > 0) {
    ::kill(pid_, SIGTERM);
    int status = 0;
    ::waitpid(pid_, &status, 0);
  }
}

std::string HostProcess::exit_reason() const {
  siginfo_t info{};
  if (::waitid(P_PID, static_cast<id_t>(pid_), &info, WEXITED | WNOHANG | WNOWAIT) != 0 ||
      info.si_pid == 0) {
    return "";
  }
  if (info.si_code == CLD_EXITED) return fmt::format("the host exited with {}", info.si_status);
  return fmt::format("the host was killed by signal {}", info.si_status);
}

}  // namespace malv::harness
