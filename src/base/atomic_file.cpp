#include "base/atomic_file.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>

namespace malv {

Status write_all(int fd, std::span<const std::byte> bytes, std::string_view what) {
  std::size_t done = 0;
  while (done < bytes.size()) {
    const ssize_t n = ::write(fd, bytes.data() + done, bytes.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return errno_error(fmt::format("write {}", what), errno);
    done += static_cast<std::size_t>(n);
  }
  return ok_status();
}

Status fsync_directory(const std::string& dir) {
  const int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd < 0) return errno_error(fmt::format("open directory {}", dir), errno);
  const int rc = ::fsync(dfd);
  const int err = errno;
  ::close(dfd);
  if (rc != 0) return errno_error(fmt::format("fsync directory {}", dir), err);
  return ok_status();
}

Status write_file_atomically(const std::string& path, const FileFiller& fill,
                             const AtomicWriteOptions& options) {
  const std::string temp =
      options.temp_path.empty() ? fmt::format("{}.tmp.{}", path, ::getpid()) : options.temp_path;
  const int fd = ::open(temp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC,
                        static_cast<mode_t>(options.mode));
  if (fd < 0) return errno_error(fmt::format("create {}", temp), errno);
  // Any failure before the rename removes the temporary file: the target
  // keeps its old content.
  auto abandon = [&](Error error) -> Status {
    ::close(fd);
    ::unlink(temp.c_str());
    return error;
  };
  if (Status filled = fill(fd); !filled.ok()) return abandon(std::move(filled).error());
  if (::fsync(fd) != 0) return abandon(errno_error(fmt::format("fsync {}", temp), errno));
  ::close(fd);
  if (::rename(temp.c_str(), path.c_str()) != 0) {
    const int err = errno;
    ::unlink(temp.c_str());
    return errno_error(fmt::format("rename {} to {}", temp, path), err);
  }
  // Make the rename itself durable.
  const auto slash = path.rfind('/');
  return fsync_directory(slash == std::string::npos ? "." : path.substr(0, slash + 1));
}

Status write_file_atomically(const std::string& path, std::span<const std::byte> bytes) {
  return write_file_atomically(path, [&](int fd) { return write_all(fd, bytes, path); });
}

Result<std::vector<std::byte>> read_file(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return errno_error(fmt::format("open {}", path), errno);
  std::vector<std::byte> data;
  struct stat st {};
  if (::fstat(fd, &st) == 0 && st.st_size > 0) data.reserve(static_cast<std::size_t>(st.st_size));
  std::byte chunk[1 << 16];
  for (;;) {
    const ssize_t n = ::read(fd, chunk, sizeof(chunk));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      const int err = errno;
      ::close(fd);
      return errno_error(fmt::format("read {}", path), err);
    }
    if (n == 0) break;
    data.insert(data.end(), chunk, chunk + n);
  }
  ::close(fd);
  return data;
}

}  // namespace malv
