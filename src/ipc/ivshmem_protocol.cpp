#include "ipc/ivshmem_protocol.h"

#include <fmt/format.h>
#include <poll.h>
#include <unistd.h>

#include <utility>

namespace malv::ipc {
namespace {

Status send_message(Socket& socket, std::int64_t value, int fd) {
  if (fd < 0) return socket.write_all(&value, sizeof(value));
  return socket.send_fd(fd, &value, sizeof(value));
}

}  // namespace

Status send_ivshmem_setup(Socket& client, std::int64_t client_id, int shm_fd,
                          std::int64_t host_peer_id, std::span<const int> host_vectors,
                          std::span<const int> client_vectors) {
  MALV_TRY_CONTEXT(send_message(client, kIvshmemProtocolVersion, -1), "ivshmem: version");
  MALV_TRY_CONTEXT(send_message(client, client_id, -1), "ivshmem: peer id");
  MALV_TRY_CONTEXT(send_message(client, -1, shm_fd), "ivshmem: shared memory");
  for (const int fd : host_vectors) {
    MALV_TRY_CONTEXT(send_message(client, host_peer_id, fd), "ivshmem: the host's vectors");
  }
  for (const int fd : client_vectors) {
    MALV_TRY_CONTEXT(send_message(client, client_id, fd), "ivshmem: the client's vectors");
  }
  return ok_status();
}

Status send_ivshmem_refusal(Socket& client) { return send_message(client, kIvshmemRefusal, -1); }

IvshmemClientSetup::~IvshmemClientSetup() { close_all(); }

void IvshmemClientSetup::close_all() {
  if (shm_fd >= 0) ::close(shm_fd);
  shm_fd = -1;
  for (auto& [id, fds] : peers) {
    for (const int fd : fds) ::close(fd);
  }
  peers.clear();
}

IvshmemClientSetup& IvshmemClientSetup::operator=(IvshmemClientSetup&& other) noexcept {
  if (this != &other) {
    close_all();
    own_id = other.own_id;
    shm_fd = std::exchange(other.shm_fd, -1);
    peers = std::exchange(other.peers, {});
  }
  return *this;
}

IvshmemClientSetup::IvshmemClientSetup(IvshmemClientSetup&& other) noexcept
    : own_id(other.own_id),
      shm_fd(std::exchange(other.shm_fd, -1)),
      peers(std::exchange(other.peers, {})) {}

Result<IvshmemClientSetup> receive_ivshmem_setup(Socket& server, std::uint32_t vectors,
                                                 std::chrono::steady_clock::time_point deadline) {
  IvshmemClientSetup setup;
  auto next = [&]() -> Result<std::pair<std::int64_t, int>> {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    pollfd pfd{server.fd(), POLLIN, 0};
    if (left.count() <= 0 || ::poll(&pfd, 1, static_cast<int>(left.count())) <= 0) {
      return Error(ErrorCode::kDeadlineExceeded, "ivshmem: the server's set-up did not arrive");
    }
    std::int64_t value = 0;
    MALV_ASSIGN_OR_RETURN(int fd, server.recv_fd(&value, sizeof(value)));
    return std::pair{value, fd};
  };
  MALV_ASSIGN_OR_RETURN(auto version, next());
  if (version.second >= 0) ::close(version.second);
  if (version.first == kIvshmemRefusal) {
    return Error(ErrorCode::kAlreadyExists,
                 "ivshmem: the server refused this client (the VM already has its QEMU attached)");
  }
  if (version.first != kIvshmemProtocolVersion) {
    return Error(ErrorCode::kUnimplemented,
                 fmt::format("ivshmem: server speaks protocol {}, not {}", version.first,
                             kIvshmemProtocolVersion));
  }
  MALV_ASSIGN_OR_RETURN(auto id, next());
  if (id.second >= 0) ::close(id.second);
  if (id.first < 0 || id.first > 0xffff) {
    return Error(ErrorCode::kDataLoss, fmt::format("ivshmem: peer id {} out of range", id.first));
  }
  setup.own_id = id.first;
  MALV_ASSIGN_OR_RETURN(auto shm, next());
  if (shm.first != -1 || shm.second < 0) {
    if (shm.second >= 0) ::close(shm.second);
    return Error(ErrorCode::kDataLoss, "ivshmem: expected the shared memory's fd");
  }
  setup.shm_fd = shm.second;
  // vectors == 0: as many as the other peer has (its come first).
  auto complete = [&] {
    const std::size_t own = setup.peers[setup.own_id].size();
    if (vectors > 0) return own >= vectors;
    for (const auto& [id, fds] : setup.peers) {
      if (id != setup.own_id && own > 0 && own == fds.size()) return true;
    }
    return false;
  };
  while (!complete()) {
    MALV_ASSIGN_OR_RETURN(auto message, next());
    if (message.second < 0) {  // a peer that left
      if (auto it = setup.peers.find(message.first); it != setup.peers.end()) {
        for (const int fd : it->second) ::close(fd);
        setup.peers.erase(it);
      }
      continue;
    }
    setup.peers[message.first].push_back(message.second);
  }
  return setup;
}

}  // namespace malv::ipc
