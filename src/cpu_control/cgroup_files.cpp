#include "cpu_control/cgroup_files.h"

#include <dirent.h>
#include <fcntl.h>
#include <fmt/format.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>

namespace malv::cpu_control {
namespace {

// Closes a file descriptor on every path out.
class FileDescriptor {
 public:
  explicit FileDescriptor(int fd) : fd_(fd) {}
  ~FileDescriptor() {
    if (fd_ >= 0) ::close(fd_);
  }
  FileDescriptor(const FileDescriptor&) = delete;
  FileDescriptor& operator=(const FileDescriptor&) = delete;
  int get() const { return fd_; }

 private:
  int fd_;
};

// write(2) of the whole text at once; returns 0 or errno.
int write_once(const std::string& path, std::string_view text) {
  FileDescriptor fd(::open(path.c_str(), O_WRONLY | O_CLOEXEC));
  if (fd.get() < 0) return errno;
  const ssize_t written = ::write(fd.get(), text.data(), text.size());
  if (written < 0) return errno;
  if (static_cast<std::size_t>(written) != text.size()) return EIO;
  return 0;
}

}  // namespace

Result<std::string> read_text(const std::string& path) {
  FileDescriptor fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (fd.get() < 0) return errno_error(fmt::format("open {}", path), errno);
  std::string text;
  char buffer[4096];
  for (;;) {
    const ssize_t got = ::read(fd.get(), buffer, sizeof(buffer));
    if (got < 0) {
      if (errno == EINTR) continue;
      return errno_error(fmt::format("read {}", path), errno);
    }
    if (got == 0) break;
    text.append(buffer, static_cast<std::size_t>(got));
  }
  return text;
}

Status write_text(const std::string& path, std::string_view text) {
  if (const int error = write_once(path, text); error != 0) {
    return errno_error(fmt::format("write '{}' to {}", text, path), error);
  }
  return ok_status();
}

Result<bool> write_task(const std::string& path, pid_t id) {
  const std::string text = fmt::format("{}", id);
  const int error = write_once(path, text);
  if (error == ESRCH) return false;
  if (error != 0) return errno_error(fmt::format("write task {} to {}", id, path), error);
  return true;
}

Result<std::vector<pid_t>> read_tasks(const std::string& path) {
  MALV_ASSIGN_OR_RETURN(const std::string text, read_text(path));
  std::vector<pid_t> ids;
  std::size_t start = 0;
  while (start < text.size()) {
    std::size_t end = text.find('\n', start);
    if (end == std::string::npos) end = text.size();
    pid_t id = 0;
    const auto [ptr, ec] = std::from_chars(text.data() + start, text.data() + end, id);
    if (ec == std::errc() && ptr == text.data() + end) ids.push_back(id);
    start = end + 1;
  }
  std::sort(ids.begin(), ids.end());
  ids.erase(std::unique(ids.begin(), ids.end()), ids.end());
  return ids;
}

bool has_word(std::string_view text, std::string_view word) {
  std::size_t start = 0;
  while (start < text.size()) {
    const std::size_t end = std::min(text.find_first_of(" \t\n", start), text.size());
    if (text.substr(start, end - start) == word) return true;
    start = end + 1;
  }
  return false;
}

bool is_directory(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}

bool file_exists(const std::string& path) { return ::access(path.c_str(), F_OK) == 0; }

Status make_directory(const std::string& path) {
  if (::mkdir(path.c_str(), 0755) != 0) {
    const int error = errno;
    if (error == EEXIST) {
      return Error(ErrorCode::kAlreadyExists, fmt::format("mkdir {}: it already exists", path));
    }
    return errno_error(fmt::format("mkdir {}", path), error);
  }
  return ok_status();
}

Status remove_directory(const std::string& path) {
  if (::rmdir(path.c_str()) != 0) return errno_error(fmt::format("rmdir {}", path), errno);
  return ok_status();
}

std::vector<std::string> subdirectories(const std::string& path) {
  std::vector<std::string> names;
  DIR* dir = ::opendir(path.c_str());
  if (dir == nullptr) return names;
  while (const dirent* entry = ::readdir(dir)) {
    const std::string_view name = entry->d_name;
    if (name == "." || name == "..") continue;
    if (is_directory(fmt::format("{}/{}", path, name))) names.emplace_back(name);
  }
  ::closedir(dir);
  std::sort(names.begin(), names.end());
  return names;
}

}  // namespace malv::cpu_control
