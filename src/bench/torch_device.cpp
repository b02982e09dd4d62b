// Running python/malv/bench_torch.py (see torch_device.h).
#include "bench/torch_device.h"

#include <fmt/format.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <string>
#include <vector>

#include "base/install_paths.h"

extern char** environ;

namespace malv::bench {
namespace {

namespace fs = std::filesystem;

// Where the malv package is: beside an installed malv, else the build tree.
std::string package_root() {
  std::string installed = installed_path(MALV_INSTALLED_PYTHON_DIR);
  if (!installed.empty() && fs::exists(fs::path(installed) / "malv" / "bench_torch.py")) {
    return installed;
  }
  return MALV_BUILD_PYTHON_DIR;
}

}  // namespace

Status run_torch(const TorchOptions& options) {
  const std::string root = package_root();
  if (!fs::exists(fs::path(root) / "malv" / "bench_torch.py")) {
    return Error(ErrorCode::kNotFound,
                 fmt::format("the malv Python package is not at {} (build malv_python; it needs "
                             "python3-dev and pybind11-dev)",
                             root));
  }
  std::error_code ec;
  const fs::path self = fs::read_symlink("/proc/self/exe", ec);
  if (ec) return Error(ErrorCode::kInternal, "cannot find this malv (/proc/self/exe)");
  std::vector<std::string> args{options.python,
                                "-m",
                                "malv.bench_torch",
                                "--malv",
                                self.string(),
                                "--steps",
                                std::to_string(options.steps),
                                "--ops",
                                std::to_string(options.ops),
                                "--epochs",
                                std::to_string(options.epochs),
                                "--opinfo-ops",
                                std::to_string(options.opinfo_ops)};
  args.emplace_back("--host-cpus");
  args.push_back(options.host_cpus);
  if (options.json) args.emplace_back("--json");
  std::vector<char*> argv;
  for (std::string& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  // The package first on PYTHONPATH; everything else of the environment kept.
  std::vector<std::string> env_strings;
  const char* old_path = std::getenv("PYTHONPATH");
  env_strings.push_back(
      "PYTHONPATH=" + root +
      (old_path != nullptr && old_path[0] != '\0' ? ":" + std::string(old_path) : ""));
  for (char** e = environ; *e != nullptr; ++e) {
    if (std::string_view(*e).starts_with("PYTHONPATH=")) continue;
    env_strings.emplace_back(*e);
  }
  std::vector<char*> envp;
  for (std::string& e : env_strings) envp.push_back(e.data());
  envp.push_back(nullptr);
  pid_t pid = 0;
  const int spawned =
      ::posix_spawn(&pid, options.python.c_str(), nullptr, nullptr, argv.data(), envp.data());
  if (spawned != 0) {
    return Error(ErrorCode::kNotFound,
                 fmt::format("cannot run {}: {} (Debian's python3 with python3-torch is needed)",
                             options.python, std::strerror(spawned)));
  }
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    return Error(
        ErrorCode::kInternal,
        fmt::format("the torch benchmark ({} -m malv.bench_torch) failed ({})", options.python,
                    WIFEXITED(status) ? fmt::format("exit status {}", WEXITSTATUS(status))
                                      : fmt::format("signal {}", WTERMSIG(status))));
  }
  return ok_status();
}

}  // namespace malv::bench
