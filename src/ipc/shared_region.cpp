#include "ipc/shared_region.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <string>
#include <utility>

namespace malv::ipc {

namespace {

class FdGuard {
 public:
  explicit FdGuard(int fd) : fd_(fd) {}
  ~FdGuard() {
    if (fd_ >= 0) ::close(fd_);
  }
  FdGuard(const FdGuard&) = delete;
  FdGuard& operator=(const FdGuard&) = delete;
  int get() const { return fd_; }
  int release() { return std::exchange(fd_, -1); }

 private:
  int fd_;
};

Result<std::byte*> map_shared(int fd, std::size_t bytes) {
  void* p = ::mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (p == MAP_FAILED) return errno_error("mmap", errno);
  return static_cast<std::byte*>(p);
}

}  // namespace

SharedRegion::~SharedRegion() { reset(); }

SharedRegion::SharedRegion(SharedRegion&& other) noexcept
    : fd_(std::exchange(other.fd_, -1)),
      data_(std::exchange(other.data_, nullptr)),
      size_(std::exchange(other.size_, 0)) {}

SharedRegion& SharedRegion::operator=(SharedRegion&& other) noexcept {
  if (this != &other) {
    reset();
    fd_ = std::exchange(other.fd_, -1);
    data_ = std::exchange(other.data_, nullptr);
    size_ = std::exchange(other.size_, 0);
  }
  return *this;
}

void SharedRegion::reset() {
  if (data_ != nullptr) ::munmap(data_, size_);
  if (fd_ >= 0) ::close(fd_);
  fd_ = -1;
  data_ = nullptr;
  size_ = 0;
}

Result<SharedRegion> SharedRegion::create(std::string_view name, std::size_t bytes) {
  if (bytes == 0) return Error(ErrorCode::kInvalidArgument, "shared region of zero bytes");
  std::string name_z(name);
  FdGuard fd(::memfd_create(name_z.c_str(), MFD_CLOEXEC | MFD_ALLOW_SEALING));
  if (fd.get() < 0) return errno_error("memfd_create", errno);
  if (::ftruncate(fd.get(), static_cast<off_t>(bytes)) != 0) {
    return errno_error("ftruncate", errno).with_context(fmt::format("size {} bytes", bytes));
  }
  if (::fcntl(fd.get(), F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL) != 0) {
    return errno_error("fcntl(F_ADD_SEALS)", errno);
  }
  MALV_ASSIGN_OR_RETURN(std::byte * data, map_shared(fd.get(), bytes));
  return SharedRegion(fd.release(), data, bytes);
}

Result<SharedRegion> SharedRegion::map_fd(int fd_in, std::size_t expected_bytes) {
  FdGuard fd(fd_in);
  if (fd.get() < 0) return Error(ErrorCode::kInvalidArgument, "no fd to map");
  if (expected_bytes == 0) return Error(ErrorCode::kInvalidArgument, "shared region of zero bytes");
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0) return errno_error("fstat", errno);
  if (st.st_size < 0 || static_cast<std::uint64_t>(st.st_size) != expected_bytes) {
    return Error(ErrorCode::kInvalidArgument,
                 fmt::format("shared region is {} bytes, expected {}", st.st_size, expected_bytes));
  }
  MALV_ASSIGN_OR_RETURN(std::byte * data, map_shared(fd.get(), expected_bytes));
  return SharedRegion(fd.release(), data, expected_bytes);
}

bool SharedRegion::sealed_against_resize() const {
  if (fd_ < 0) return false;
  int seals = ::fcntl(fd_, F_GET_SEALS);
  if (seals < 0) return false;
  return (seals & F_SEAL_SHRINK) != 0 && (seals & F_SEAL_GROW) != 0;
}

}  // namespace malv::ipc
