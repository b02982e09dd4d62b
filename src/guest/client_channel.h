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

#include "ipc/socket.h"
#include "ipc/spsc_ring.h"
#include "malv/protocol.h"
#include "malv/result.h"
#include "proto/request.h"

namespace malv::guest {

// Commands a shared-memory channel submits before it rings the doorbell
// even though the guest has not waited yet.
inline constexpr std::uint32_t kDoorbellBatch = 32;

class ClientChannel {
 public:
  virtual ~ClientChannel() = default;

  // The arena: where transfer data and other variable-size payloads live.
  virtual std::span<std::byte> arena() = 0;

  // Submits a command and its extension records. `publish` is the arena
  // range the command reads (sent ahead of it on stream channels). Returns
  // false when the submission ring is full (retry after draining). The host
  // may not look at it before the next flush() or wait(): the shared-memory
  // channel rings the host's doorbell only then, or every
  // kDoorbellBatch commands, so that a burst of commands wakes the host
  // once, after its last command, instead of at its first.
  [[nodiscard]] virtual Result<bool> try_submit(std::span<const wire::Command> records,
                                                proto::ArenaRange publish) = 0;

  // Makes sure the host will look at everything submitted so far.
  virtual void flush() = 0;

  // Whether a guest that found the submission ring full should submit
  // again: a quarter of it is free (a ring channel), so that a guest far
  // ahead of the host goes on in bursts and does not wait once per command
  // the host takes. Channels without a ring are always ready.
  virtual bool ready_for_a_burst() { return true; }

  // How many times this channel announced new commands to the host (rang
  // its doorbell, a system call only when the host was asleep). Channels
  // that send every command as it is submitted report 0.
  virtual std::uint64_t doorbells() const = 0;

  // Takes up to out.size() completions that have arrived; returns how many.
  [[nodiscard]] virtual Result<std::size_t> poll(std::span<wire::Completion> out) = 0;

  // Flushes, then waits until a completion may be available, or the timeout
  // passes. With `wake_tag` (0: any) the host wakes this wait only for that
  // command's completion (or when the completion ring is half full), so a
  // caller waiting for one command is not woken for each completion before
  // it. kDisconnected when the host is gone.
  [[nodiscard]] virtual Status wait(std::chrono::nanoseconds timeout, std::uint64_t wake_tag) = 0;
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
// For ring channels' ready_for_a_burst(): a quarter of the ring is free
// (or the ring is corrupt, which the next push reports).
inline bool has_burst_room(ipc::RingProducer<wire::Command>& ring) {
  const Result<std::uint32_t> free = ring.free_slots();
  return !free.ok() || free.value() >= ring.capacity() / 4;
}

class IvshmemDevice;
// A session in a free slot of a VM's ivshmem region (guest/ivshmem_device.h);
// the hello goes through the slot (ipc/ivshmem_layout.h).
[[nodiscard]] Result<std::unique_ptr<ClientChannel>> open_ivshmem_channel(
    std::unique_ptr<IvshmemDevice> device, const HelloParams& params);

// Sends a hello and reads the reply (and its memfd on Unix); an Error carries
// the host's refusal message.
struct HelloResult {
  wire::HelloReply reply;
  int fd = -1;  // memfd for kShm, ours to close
};
[[nodiscard]] Result<HelloResult> exchange_hello(ipc::Socket& socket, const HelloParams& params,
                                                 wire::Transport transport);

}  // namespace malv::guest
