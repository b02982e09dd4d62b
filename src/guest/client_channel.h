// ClientChannel: the guest end of a channel, as the Connection sees it.
//
// Two implementations: ShmClientChannel (Unix socket + shared memfd: records
// go straight into the submission ring, completions are read from the
// completion ring, the arena is shared memory) and StreamClientChannel (TCP
// or vsock: records and arena ranges travel as frames, the arena is a
// private copy kept in step by those frames). Connection code above is the
// same for both.
#pragma once

#include <chrono>
#include <cstddef>
#include <memory>
#include <span>
#include <string>

#include "base/result.h"
#include "ipc/socket.h"
#include "malv/protocol.h"
#include "proto/request.h"

namespace malv::guest {

class ClientChannel {
 public:
  virtual ~ClientChannel() = default;

  // The arena: where transfer data and other variable-size payloads live.
  virtual std::span<std::byte> arena() = 0;

  // Submits a command and its extension records. `publish` is the arena
  // range the command reads (sent ahead of it on stream channels). Returns
  // false when the submission ring is full (retry after draining).
  [[nodiscard]] virtual Result<bool> try_submit(std::span<const wire::Command> records,
                                                proto::ArenaRange publish) = 0;

  // Takes up to out.size() completions that have arrived; returns how many.
  [[nodiscard]] virtual Result<std::size_t> poll(std::span<wire::Completion> out) = 0;

  // Waits until a completion may be available, or the timeout passes.
  // kDisconnected when the host is gone.
  [[nodiscard]] virtual Status wait(std::chrono::nanoseconds timeout) = 0;
};

struct HelloParams {
  std::string vm_name;
  std::string credential;
  std::uint64_t arena_bytes = 0;  // 0: the host's default
};

[[nodiscard]] Result<std::unique_ptr<ClientChannel>> open_shm_channel(ipc::Socket socket,
                                                                      const HelloParams& params);
[[nodiscard]] Result<std::unique_ptr<ClientChannel>> open_stream_channel(ipc::Socket socket,
                                                                         const HelloParams& params);

// Sends a hello and reads the reply (and its memfd on Unix); an Error carries
// the host's refusal message.
struct HelloResult {
  wire::HelloReply reply;
  int fd = -1;  // memfd for kShm, ours to close
};
[[nodiscard]] Result<HelloResult> exchange_hello(ipc::Socket& socket, const HelloParams& params,
                                                 wire::Transport transport);

}  // namespace malv::guest
