// ConnectionCore: the inside of a guest::Connection (libmalv, internal).
//
// The public Connection (include/malv/connection.h) is a handle to one of
// these; Buffer, Stream, Event and HostBuffer hold a pointer to it directly,
// so the command hot path (Stream::launch -> submit -> the channel's ring)
// goes through the same one pointer it went through before the split and
// allocates nothing. Nothing here is installed: it names the channel, the
// arena allocator and the wire records, which are not part of libmalv's ABI.
//
// In-tree code that forges commands (tests of the host's validation) reaches
// the core of a Connection with core_of():
//
//   guest::ConnectionCore& core = guest::core_of(*conn);
//   auto c = core.call(proto::make_command(wire::Opcode::kNop, core.next_tag()));
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <unordered_map>
#include <vector>

#include "guest/arena_allocator.h"
#include "guest/client_channel.h"
#include "malv/connection.h"
#include "malv/protocol.h"
#include "malv/result.h"
#include "proto/request.h"

namespace malv::guest {

// What the client does when a command's completion arrives.
struct PendingCommand {
  std::uint64_t arena_offset = 0;
  std::uint64_t arena_bytes = 0;   // range to release on completion
  std::byte* read_into = nullptr;  // copy arena range here on success
  bool read_on_error = false;      // ... and on failure (a message the host wrote)
  bool staging = false;            // a chunk of an ordinary-memory transfer (staging_allocate)
  bool wanted = false;             // a caller waits for this completion
  bool aten_batch = false;         // a kAtenBatch (counted in flight until it completes)
  bool done = false;
  wire::Completion completion{};
};

class ConnectionCore {
 public:
  using Pending = PendingCommand;

  explicit ConnectionCore(std::unique_ptr<ClientChannel> channel);
  ConnectionCore(const ConnectionCore&) = delete;
  ConnectionCore& operator=(const ConnectionCore&) = delete;

  // Submits records (blocking while the ring is full); `pending` (optional)
  // is kept until the completion arrives.
  [[nodiscard]] Status submit(std::span<const wire::Command> records, proto::ArenaRange publish,
                              const Pending* pending);
  // Submits one command and waits for its completion.
  [[nodiscard]] Result<wire::Completion> call(wire::Command cmd, proto::ArenaRange publish = {},
                                              Pending pending = {});
  // An arena range, waiting for completions to free one if needed.
  [[nodiscard]] Result<std::uint64_t> arena_allocate(std::uint64_t bytes);
  // An arena range to stage a chunk of an ordinary-memory transfer through
  // (its command is submitted with Pending::staging set). Staged chunks in
  // flight are held to staging_window() bytes: a guest running far ahead of
  // the host would otherwise stage each transfer through fresh arena pages,
  // paying a page fault per 4 KiB on both sides and a cache miss per line,
  // where a small window keeps reusing the same hot pages.
  [[nodiscard]] Result<std::uint64_t> staging_allocate(std::uint64_t bytes);
  // Bytes of one staged chunk, and of all chunks in flight at most.
  std::uint64_t staging_chunk_bytes() const;
  std::uint64_t staging_window() const { return 2 * staging_chunk_bytes(); }
  std::uint64_t staging_in_flight() const { return staging_in_flight_; }
  std::span<std::byte> arena() { return channel_->arena(); }
  std::uint64_t arena_bytes() const { return arena_.capacity(); }
  std::uint64_t next_tag() { return ++last_tag_; }
  void flush() { channel_->flush(); }
  std::uint64_t doorbells() const { return channel_->doorbells(); }
  // Processes arrived completions; waits up to `timeout` if none (woken
  // early only by the completion of command `wake_tag`, when not 0).
  [[nodiscard]] Status drain(std::chrono::nanoseconds timeout, std::uint64_t wake_tag = 0);
  // Waits for all work on all streams (kSyncAll); the first unreported error.
  [[nodiscard]] Status synchronize();
  // The first failure seen on a stream since its last synchronize, as an
  // Error naming the command, or ok.
  Status take_stream_error(std::uint64_t stream_handle, ErrorCode status, std::uint64_t tag);
  void release_object(wire::Opcode destroy, std::uint64_t handle);
  void release_arena(std::uint64_t offset, std::uint64_t bytes) { arena_.release(offset, bytes); }
  // The channel failed; every later call says kDisconnected.
  bool broken() const { return broken_; }

  // PyTorch operators queued on the stream (aten_enqueue) travel together
  // as one kAtenBatch: the record of `op` joins the batch, which is sent at
  // once while fewer than two batches are in flight (the host would
  // otherwise be idle, or idle between them), when it is full, and before
  // any other command of this connection (so every command keeps its place
  // in stream order); otherwise it grows while the host runs those in
  // flight. docs/torch.md, "What is asynchronous".
  // Batches the host may hold at once: while it runs one, the next is
  // already there to start (with one, the host idled from each completion
  // until the guest noticed it and sent the next).
  static constexpr std::uint32_t kAtenBatchesInFlight = 2;
  [[nodiscard]] Status queue_aten(std::uint64_t stream, std::uint32_t op,
                                  std::span<const std::uint64_t> record);
  // Sends the operators queued so far, if any.
  [[nodiscard]] Status flush_aten_batch();
  std::uint32_t aten_batches_in_flight() const { return aten_batches_in_flight_; }
  std::uint32_t aten_held() const { return aten_batch_.count; }
  // Batches sent, and the operators they carried (libmalv's counters).
  std::uint64_t aten_batches_sent() const { return aten_batches_sent_; }
  std::uint64_t aten_batched_ops() const { return aten_batched_ops_; }

  // The core that made an event (an Event knows nothing else about it).
  static ConnectionCore& of(const Event& event) { return *event.handle_.core(); }

 private:
  void process(const wire::Completion& completion);

  struct FailedCommand {
    std::uint64_t tag = 0;
    std::uint16_t opcode = 0;
    ErrorCode status = ErrorCode::kOk;
  };

  std::unique_ptr<ClientChannel> channel_;
  ArenaAllocator arena_;
  std::uint64_t last_tag_ = 0;
  std::uint64_t staging_in_flight_ = 0;  // bytes of staged chunks not completed yet
  std::unordered_map<std::uint64_t, Pending> pending_;
  std::unordered_map<std::uint64_t, FailedCommand> stream_errors_;  // by stream handle
  bool broken_ = false;

  struct AtenBatch {
    std::uint64_t stream = 0;
    std::uint32_t count = 0;
    std::vector<std::uint64_t> words;  // per operator: header word, record
  };
  AtenBatch aten_batch_;
  std::uint32_t aten_batches_in_flight_ = 0;
  std::uint64_t aten_batches_sent_ = 0;
  std::uint64_t aten_batched_ops_ = 0;
};

// The core behind a public Connection (a friend of Connection).
ConnectionCore& core_of(Connection& connection);

// The error of a failed completion, naming the command.
Error completion_error(const wire::Completion& completion);

}  // namespace malv::guest
