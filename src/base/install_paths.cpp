#include "base/install_paths.h"

#include <sys/stat.h>
#include <unistd.h>

#include <array>
#include <filesystem>

namespace malv {

std::string executable_dir() {
  std::array<char, 4096> buffer{};
  const ssize_t n = ::readlink("/proc/self/exe", buffer.data(), buffer.size() - 1);
  if (n <= 0) return "";
  std::string path(buffer.data(), static_cast<std::size_t>(n));
  const auto slash = path.rfind('/');
  return slash == std::string::npos ? "" : path.substr(0, slash);
}

std::string installed_path(std::string_view relative) {
  const std::string dir = executable_dir();
  if (dir.empty()) return "";
  // bin/../lib/malv -> lib/malv: names in logs and errors read as installed.
  const std::string path =
      std::filesystem::path(dir + "/" + std::string(relative)).lexically_normal().string();
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0 ? path : "";
}

}  // namespace malv
