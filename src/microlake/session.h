// Session: one guest's view of the accelerator on the host, and the
// dispatcher of its commands.
//
// An endpoint (shared-memory rings or a stream socket) takes each command
// record from the guest and calls handle(). Handling follows seL4's split:
// a decode_* step validates everything (structure, handles against the
// capability tables, rights, every offset and length against its object and
// the arena, kernel arguments against the kernel's signature and bounds) and
// returns either an Error or a fully checked plan; only then an invoke_* step
// performs the effect, and it cannot fail. A failed check becomes an error
// completion for that command alone; nothing a guest sends can crash, hang
// or corrupt the host.
//
// Asynchronous commands (transfers, launches, event records and waits) are
// queued on the stream's backend queue and complete from a backend thread.
// Errors are reported against the exact command (its own completion carries
// the status) and also kept as the stream's first unreported error, which the
// next kStreamSync/kSyncAll returns; a later success never masks it.
//
// Threads: handle() is called by one dispatcher thread; completions arrive on
// backend threads. Destruction drains every queue, then frees everything the
// session held.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <unordered_set>

#include "accel/backend.h"
#include "malv/protocol.h"
#include "microlake/capability_table.h"
#include "microlake/completion_sink.h"
#include "microlake/session_objects.h"
#include "microlake/session_services.h"

namespace malv::offload {
class CheckpointWriter;
}

namespace malv::microlake {

struct SessionLimits {
  std::uint32_t max_buffers = 1u << 16;
  std::uint32_t max_streams = 256;
  std::uint32_t max_events = 1u << 14;
  std::uint32_t max_kernels = 1024;
  std::uint64_t max_buffer_bytes = 1ull << 40;
  std::uint32_t max_datasets = 16;
};

struct SessionStats {
  std::uint64_t commands = 0;
  std::uint64_t errors = 0;
};

// What a successful command returns in its completion.
struct Reply {
  std::uint64_t result = 0;
  std::uint64_t result2 = 0;
  std::uint32_t aux = 0;
  proto::ArenaRange arena_out{};
};

class Session {
 public:
  Session(std::string vm_name, accel::Backend& backend, std::span<std::byte> arena,
          CompletionSink& sink, SessionLimits limits = {}, SessionServices services = {});
  ~Session();
  Session(const Session&) = delete;
  Session& operator=(const Session&) = delete;

  // When handle() hands a stream command's op to the backend.
  //  kNow: before it returns.
  //  kLater: the op is staged and goes with the next flush(), in one
  //    enqueue_many() per run of ops for the same stream; an endpoint that
  //    drains many commands at once calls flush() when the ring runs dry.
  //    Staging is bounded (kMaxStagedOps), and every command that is not a
  //    plain stream op (syncs, frees, destroys, queries) flushes first, so
  //    the order of everything the backend sees is the submission order.
  enum class Flush { kNow, kLater };
  static constexpr std::size_t kMaxStagedOps = 256;

  // Handles one command; `extensions` are the bytes of its extension records.
  void handle(const wire::Command& cmd, std::span<const std::byte> extensions,
              Flush flush = Flush::kNow);
  // Hands every staged op to the backend. Dispatcher thread only.
  void flush();

  // Commands taken whose completion has not been posted (or skipped) yet.
  // An endpoint takes a new command only while this is below the free room
  // in its completion ring, so posting never has to wait for the guest.
  std::uint64_t outstanding() const { return outstanding_.load(std::memory_order_acquire); }
  SessionStats stats() const;
  const std::string& vm_name() const { return vm_name_; }

  // Called by backend completion callbacks (see session.cpp).
  void on_op_complete(StreamObject& stream, ErrorCode status);

 private:
  void complete(const wire::Command& cmd, ErrorCode status, const Reply& reply = {});
  void complete_tag(std::uint64_t tag, std::uint16_t opcode, std::uint16_t flags, ErrorCode status,
                    const Reply& reply = {});
  void fail(const wire::Command& cmd, const Error& error);

  // Queues an op on a stream with what to do on completion (staged until
  // the next flush()).
  void enqueue(StreamObject& stream, accel::Op op, PendingOp pending);
  // Runs `then` once every op queued so far on every stream has finished,
  // with the first unreported stream error (taken, when take_errors is set).
  using SyncDone = std::function<void(ErrorCode first_error, std::uint64_t first_tag)>;
  void after_all_streams(bool take_errors, SyncDone then);

  // Per-request handlers: validate everything, then invoke. Defined in
  // session_handlers.cpp.
  void dispatch(const wire::Command& cmd, const proto::Request& request);
  Status run(const wire::Command& cmd, const proto::NopRequest&);
  Status run(const wire::Command& cmd, const proto::DeviceQueryRequest&);
  Status run(const wire::Command& cmd, const proto::BufferAllocRequest&);
  Status run(const wire::Command& cmd, const proto::BufferFreeRequest&);
  Status run(const wire::Command& cmd, const proto::WriteRequest&);
  Status run(const wire::Command& cmd, const proto::ReadRequest&);
  Status run(const wire::Command& cmd, const proto::CopyRequest&);
  Status run(const wire::Command& cmd, const proto::MemsetRequest&);
  Status run(const wire::Command& cmd, const proto::StreamCreateRequest&);
  Status run(const wire::Command& cmd, const proto::StreamDestroyRequest&);
  Status run(const wire::Command& cmd, const proto::StreamSyncRequest&);
  Status run(const wire::Command& cmd, const proto::SyncAllRequest&);
  Status run(const wire::Command& cmd, const proto::EventCreateRequest&);
  Status run(const wire::Command& cmd, const proto::EventDestroyRequest&);
  Status run(const wire::Command& cmd, const proto::EventRecordRequest&);
  Status run(const wire::Command& cmd, const proto::EventWaitRequest&);
  Status run(const wire::Command& cmd, const proto::EventSyncRequest&);
  Status run(const wire::Command& cmd, const proto::EventElapsedRequest&);
  Status run(const wire::Command& cmd, const proto::KernelLookupRequest&);
  Status run(const wire::Command& cmd, const proto::LaunchRequest&);
  Status run(const wire::Command& cmd, const proto::PolicyListRequest&);
  Status run(const wire::Command& cmd, const proto::PolicySelectRequest&);
  // Offload services: session_dataset.cpp and session_checkpoint.cpp.
  Status run(const wire::Command& cmd, const proto::DatasetOpenRequest&);
  Status run(const wire::Command& cmd, const proto::DatasetNextRequest&);
  Status run(const wire::Command& cmd, const proto::DatasetCloseRequest&);
  Status run(const wire::Command& cmd, const proto::CheckpointSaveRequest&);
  Status run(const wire::Command& cmd, const proto::CheckpointRestoreRequest&);
  // PyTorch operators: session_aten.cpp.
  Status run(const wire::Command& cmd, const proto::AtenInternRequest&);
  Status run(const wire::Command& cmd, const proto::AtenOpRequest&);
  Status run(const wire::Command& cmd, const proto::AtenBatchRequest&);
  // The checked task of operator `op` on `words` (its record), or why not.
  Result<std::shared_ptr<accel::AtenTask>> prepare_aten(std::uint64_t op,
                                                        std::span<const std::uint64_t> words);
  // Whether this session may run PyTorch operators, and if not, why.
  Status aten_available() const;

  // Completes a stream command from its stream's queue; an error also
  // becomes the stream's first unreported error (session_checkpoint.cpp).
  void finish_in_stream(StreamObject& stream, std::uint64_t tag, std::uint16_t opcode,
                        std::uint16_t flags, ErrorCode status, Reply reply);

  Status check_arena(proto::ArenaRange range) const;
  Result<BufferObject*> buffer_range(proto::RawHandle handle, Rights rights, std::uint64_t offset,
                                     std::uint64_t bytes) const;

  const std::string vm_name_;
  accel::Backend& backend_;
  const std::span<std::byte> arena_;
  CompletionSink& sink_;
  const SessionLimits limits_;
  const SessionServices services_;

  CapabilityTable<BufferObject> buffers_;
  CapabilityTable<StreamObject> streams_;
  CapabilityTable<EventHandleObject> events_;
  CapabilityTable<KernelObject> kernels_;
  CapabilityTable<DatasetObject> datasets_;
  // Operators this session interned (kAtenIntern); dispatcher thread only.
  std::unordered_set<std::uint32_t> aten_operators_;

  // Writes this session's checkpoint snapshots to disk; created by the first
  // kCheckpointSave (dispatcher thread). The destructor finishes its writes
  // before anything they report to is gone.
  std::unique_ptr<offload::CheckpointWriter> checkpoint_writer_;

  // Ops staged by enqueue() and not yet handed to the backend, in order;
  // the three vectors are parallel. Dispatcher thread only.
  std::vector<StreamObject*> staged_streams_;
  std::vector<accel::Op> staged_ops_;
  std::vector<PendingOp> staged_pending_;

  std::atomic<std::uint64_t> outstanding_{0};
  std::atomic<std::uint64_t> commands_{0};
  std::atomic<std::uint64_t> errors_{0};
};

}  // namespace malv::microlake
