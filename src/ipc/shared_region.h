// SharedRegion: a memfd mapped shared, the memory a channel's rings and
// arena live in.
//
// The host creates the region (memfd_create), seals it against shrinking
// and growing so that no one can truncate it under a peer's mapping (which
// would turn the peer's next access into SIGBUS), and passes the fd to the
// guest over a Unix socket (Socket::send_fd). The guest maps the fd it
// received with map_fd(), which checks the size it was told to expect.
//
//   MALV_ASSIGN_OR_RETURN(SharedRegion region, SharedRegion::create("malv-vm1", bytes));
//   socket.send_fd(region.fd(), &reply, sizeof reply);
//   ...
//   MALV_ASSIGN_OR_RETURN(int fd, socket.recv_fd(&reply, sizeof reply));
//   MALV_ASSIGN_OR_RETURN(SharedRegion mine, SharedRegion::map_fd(fd, reply.shm_bytes));
//
// Move-only; the destructor unmaps and closes.
#pragma once

#include <cstddef>
#include <string_view>

#include "malv/result.h"

namespace malv::ipc {

class SharedRegion {
 public:
  SharedRegion() = default;
  ~SharedRegion();
  SharedRegion(SharedRegion&& other) noexcept;
  SharedRegion& operator=(SharedRegion&& other) noexcept;
  SharedRegion(const SharedRegion&) = delete;
  SharedRegion& operator=(const SharedRegion&) = delete;

  // A new zero-filled region of `bytes` (> 0), sealed against resizing.
  [[nodiscard]] static Result<SharedRegion> create(std::string_view name, std::size_t bytes);
  // Maps an fd received from a peer. Takes ownership of fd (closed on
  // failure too). Its size must be exactly expected_bytes (kInvalidArgument
  // otherwise).
  [[nodiscard]] static Result<SharedRegion> map_fd(int fd, std::size_t expected_bytes);

  std::byte* data() const { return data_; }
  std::size_t size() const { return size_; }
  int fd() const { return fd_; }
  bool valid() const { return data_ != nullptr; }

  // True when the fd carries F_SEAL_SHRINK and F_SEAL_GROW, i.e. no one can
  // resize it under our mapping (a guest may want to check this).
  bool sealed_against_resize() const;

 private:
  SharedRegion(int fd, std::byte* data, std::size_t size) : fd_(fd), data_(data), size_(size) {}
  void reset();

  int fd_ = -1;
  std::byte* data_ = nullptr;
  std::size_t size_ = 0;
};

}  // namespace malv::ipc
