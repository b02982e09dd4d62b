// The ivshmem server protocol: what a server says to QEMU's
// ivshmem-doorbell device over its chardev socket (QEMU's
// docs/specs/ivshmem-spec.rst, "Server protocol"). Every message is a
// little-endian int64, some with one file descriptor (SCM_RIGHTS):
//
//   1. the protocol version, 0
//   2. the client's own peer id (no fd)
//   3. -1 with the shared memory's fd
//   4. for every other peer, per interrupt vector: its id with an eventfd
//      (a doorbell the client may ring)
//   5. per vector: the client's own id with an eventfd (the client's own
//      interrupts: the server, or a peer, writes it to interrupt the guest)
//
// Later, "peer id with an fd" announces a peer's new vector and "peer id
// without an fd" says that peer left. QEMU reads 1-3 before its device is
// realised and takes the eventfds as they come (more than its `vectors`
// are dropped with "Too many eventfd received"; fewer leave its higher
// vectors silent), so its `vectors` should equal what the server sends.
//
// MaLV-OS's host is the one other peer QEMU sees: the guest rings the
// host's vectors (ipc/ivshmem_layout.h says which means what).
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <span>
#include <vector>

#include "ipc/socket.h"
#include "malv/result.h"

namespace malv::ipc {

inline constexpr std::int64_t kIvshmemProtocolVersion = 0;
// Sent instead of the version to a client the server turns away (a VM's
// socket that already has its QEMU): QEMU then fails to realise its device
// ("server sent version -2, expecting 0") and exits, where a plain close
// leaves it waiting for ever.
inline constexpr std::int64_t kIvshmemRefusal = -2;

// Server side: refuses a client (kIvshmemRefusal); the caller then closes it.
[[nodiscard]] Status send_ivshmem_refusal(Socket& client);

// Server side, at once after accepting QEMU: steps 1-5 with the host as
// the single other peer. The fds stay the caller's.
[[nodiscard]] Status send_ivshmem_setup(Socket& client, std::int64_t client_id, int shm_fd,
                                        std::int64_t host_peer_id,
                                        std::span<const int> host_vectors,
                                        std::span<const int> client_vectors);

// Client side (what QEMU does; tests, and a host process standing in for a
// VM, use it): reads the set-up until it has `vectors` of its own (0: as
// many as another peer announced), within `deadline`. Every fd received is the caller's (closed by
// the destructor).
struct IvshmemClientSetup {
  std::int64_t own_id = -1;
  int shm_fd = -1;
  std::map<std::int64_t, std::vector<int>> peers;  // other peers' vectors, own id included
  IvshmemClientSetup() = default;
  ~IvshmemClientSetup();
  IvshmemClientSetup(IvshmemClientSetup&& other) noexcept;
  IvshmemClientSetup& operator=(IvshmemClientSetup&& other) noexcept;
  IvshmemClientSetup(const IvshmemClientSetup&) = delete;
  IvshmemClientSetup& operator=(const IvshmemClientSetup&) = delete;

 private:
  void close_all();
};
[[nodiscard]] Result<IvshmemClientSetup> receive_ivshmem_setup(
    Socket& server, std::uint32_t vectors, std::chrono::steady_clock::time_point deadline);

}  // namespace malv::ipc
