#include "harness/private_dir.h"

#include <stdlib.h>

#include <cerrno>
#include <filesystem>

namespace malv::harness {

Result<std::unique_ptr<PrivateDir>> PrivateDir::create(const std::string& what) {
  std::string pattern =
      (std::filesystem::temp_directory_path() / ("malv-" + what + "-XXXXXX")).string();
  if (::mkdtemp(pattern.data()) == nullptr) return errno_error("mkdtemp", errno);
  return std::unique_ptr<PrivateDir>(new PrivateDir(std::move(pattern)));
}

PrivateDir::~PrivateDir() {
  std::error_code ignored;
  std::filesystem::remove_all(path_, ignored);
}

}  // namespace malv::harness
