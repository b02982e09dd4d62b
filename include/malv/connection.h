// Connection: a guest's session with a MaLV-OS host (libmalv).
//
// The client side of the accelerator API, shaped after the CUDA driver API:
// buffers in device memory, ordered streams, events, and kernels launched by
// name. Work on streams is asynchronous; errors surface at the next
// synchronize of the stream that ran the failing command, naming it.
//
//   MALV_ASSIGN_OR_RETURN(auto conn, Connection::connect_unix(path, {.vm_name = "vm-a"}));
//   MALV_ASSIGN_OR_RETURN(Buffer x, conn->allocate(n * sizeof(float)));
//   MALV_ASSIGN_OR_RETURN(Stream s, conn->create_stream());
//   MALV_ASSIGN_OR_RETURN(Kernel relu, conn->kernel("relu"));
//   MALV_TRY(s.write(x, 0, as_bytes(span(host))));
//   MALV_TRY(s.launch(relu, {KernelArg::buffer(x), KernelArg::buffer(x), KernelArg::i64(n)}));
//   MALV_TRY(s.read(x, 0, as_writable_bytes(span(host))));
//   MALV_TRY(s.synchronize());  // host now holds relu(x)
//
// A Connection and the objects it hands out are used from one thread. The
// objects must not outlive their Connection (hence unique_ptr<Connection>).
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "guest/arena_allocator.h"
#include "guest/client_channel.h"
#include "malv/objects.h"
#include "malv/protocol.h"
#include "malv/result.h"
#include "malv/stream.h"

namespace malv::guest {

struct ConnectOptions {
  std::string vm_name = "guest";
  std::string credential;
  std::uint64_t arena_bytes = 0;  // 0: the host's default
};

struct DeviceInfo {
  std::string backend;
  std::string name;
  std::uint64_t total_memory = 0;
  std::uint64_t free_memory = 0;
  std::uint32_t compute_units = 0;
};

// What the client does when a command's completion arrives.
struct PendingCommand {
  std::uint64_t arena_offset = 0;
  std::uint64_t arena_bytes = 0;   // range to release on completion
  std::byte* read_into = nullptr;  // copy arena range here on success
  bool staging = false;            // a chunk of an ordinary-memory transfer (staging_allocate)
  bool wanted = false;             // a caller waits for this completion
  bool done = false;
  wire::Completion completion{};
};

class Connection {
 public:
  using Pending = PendingCommand;

  [[nodiscard]] static Result<std::unique_ptr<Connection>> connect_unix(
      const std::string& path, const ConnectOptions& options);
  [[nodiscard]] static Result<std::unique_ptr<Connection>> connect_tcp(
      const std::string& host, std::uint16_t port, const ConnectOptions& options);
  [[nodiscard]] static Result<std::unique_ptr<Connection>> connect_vsock(
      std::uint32_t cid, std::uint32_t port, const ConnectOptions& options);
  ~Connection();
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;

  [[nodiscard]] Result<DeviceInfo> device_info();
  // One blocking round trip through the host (a kNop).
  [[nodiscard]] Status ping();
  [[nodiscard]] Result<Buffer> allocate(std::uint64_t bytes);
  // Host memory in the shared arena for zero-copy transfers (at most the
  // arena's size; waits for in-flight transfers to free room).
  [[nodiscard]] Result<HostBuffer> allocate_host(std::uint64_t bytes);
  [[nodiscard]] Result<Stream> create_stream(bool high_priority = false);
  [[nodiscard]] Result<Event> create_event();
  [[nodiscard]] Result<Kernel> kernel(std::string_view name);
  // Waits for all work on all streams; the first unreported error, if any.
  [[nodiscard]] Status synchronize();
  // Nanoseconds between two events that have both happened.
  [[nodiscard]] Result<std::uint64_t> elapsed_ns(const Event& start, const Event& end);
  // Hands every command submitted so far to the host now. Stream work
  // (launch, write, read, copy, memset, record, wait) is otherwise handed
  // over in bursts: at the next call that waits for the host, or every
  // kDoorbellBatch commands, so that a request of several commands wakes the
  // host once, after its last command. Call flush() after queueing work
  // that should start before this thread next waits on the connection.
  void flush() { channel_->flush(); }
  // Times the host was told about new commands (see ClientChannel::doorbells).
  std::uint64_t doorbells() const { return channel_->doorbells(); }

  std::uint64_t arena_bytes() const { return arena_.capacity(); }

  // --- Used by Stream, Buffer, Event; also by tests that forge commands. ---
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
  std::uint64_t next_tag() { return ++last_tag_; }
  // Processes arrived completions; waits up to `timeout` if none (woken
  // early only by the completion of command `wake_tag`, when not 0).
  [[nodiscard]] Status drain(std::chrono::nanoseconds timeout, std::uint64_t wake_tag = 0);
  // The first failure seen on a stream since its last synchronize, as an
  // Error naming the command, or ok.
  Status take_stream_error(std::uint64_t stream_handle, ErrorCode status, std::uint64_t tag);
  void release_object(wire::Opcode destroy, std::uint64_t handle);
  void release_arena(std::uint64_t offset, std::uint64_t bytes) { arena_.release(offset, bytes); }

 private:
  explicit Connection(std::unique_ptr<ClientChannel> channel);
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
};

}  // namespace malv::guest
