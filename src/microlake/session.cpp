#include "microlake/session.h"

#include <fmt/format.h>

#include "base/log.h"
#include "offload/checkpoint_writer.h"
#include "proto/decoder.h"

namespace malv::microlake {
namespace {

// Salts tell one session's handles from another's. Handing them out in turn
// (not at random) keeps them distinct across the last 4095 sessions.
std::uint16_t next_salt() {
  static std::atomic<std::uint16_t> counter{0};
  for (;;) {
    std::uint16_t salt = static_cast<std::uint16_t>(counter.fetch_add(1) & 0xfff);
    if (salt != 0) return salt;
  }
}

void backend_callback(void* context, std::uint64_t /*cookie*/, ErrorCode status) {
  auto* stream = static_cast<StreamObject*>(context);
  stream->session->on_op_complete(*stream, status);
}

}  // namespace

Session::Session(std::string vm_name, accel::Backend& backend, std::span<std::byte> arena,
                 CompletionSink& sink, SessionLimits limits, SessionServices services)
    : vm_name_(std::move(vm_name)),
      backend_(backend),
      arena_(arena),
      sink_(sink),
      limits_(limits),
      services_(services),
      buffers_(ObjectType::kBuffer, next_salt(), limits.max_buffers),
      streams_(ObjectType::kStream, next_salt(), limits.max_streams),
      events_(ObjectType::kEvent, next_salt(), limits.max_events),
      kernels_(ObjectType::kKernel, next_salt(), limits.max_kernels),
      datasets_(ObjectType::kDataset, next_salt(), limits.max_datasets) {}

Session::~Session() {
  flush();
  // The guest is gone: what it queued and the device has not started is
  // cancelled (its completions come back kAborted), then every queue drains
  // (an op on the device finishes: it reads buffers and posts a completion).
  auto streams = streams_.take_all();
  for (auto& stream : streams) backend_.cancel_queue(stream->queue);
  for (auto& stream : streams) backend_.destroy_queue(stream->queue);
  streams.clear();
  // Snapshots taken are written (a guest that died after a save loses
  // nothing), and their completions posted, while the sink still exists.
  checkpoint_writer_.reset();
  std::uint64_t released = 0;
  for (auto& buffer : buffers_.take_all()) {
    backend_.free(buffer->ptr);
    released += buffer->bytes;
  }
  events_.take_all();
  kernels_.take_all();
  datasets_.take_all();  // stops their producers; their slots go back to the device
  log::debug("microlake", "session {} closed; released {} bytes", vm_name_, released);
}

SessionStats Session::stats() const {
  return {commands_.load(std::memory_order_relaxed), errors_.load(std::memory_order_relaxed)};
}

namespace {

// Commands whose whole effect is one op queued on a stream: these may stay
// staged. Everything else may look at or change what the backend holds. A
// stream synchronize is a marker op whose completion answers the guest, so
// a request that ends in one goes to the device as one batch.
bool only_queues_stream_ops(const proto::Request& request) {
  return std::holds_alternative<proto::LaunchRequest>(request) ||
         std::holds_alternative<proto::StreamSyncRequest>(request) ||
         std::holds_alternative<proto::WriteRequest>(request) ||
         std::holds_alternative<proto::ReadRequest>(request) ||
         std::holds_alternative<proto::CopyRequest>(request) ||
         std::holds_alternative<proto::MemsetRequest>(request) ||
         std::holds_alternative<proto::EventRecordRequest>(request) ||
         std::holds_alternative<proto::EventWaitRequest>(request);
}

}  // namespace

void Session::handle(const wire::Command& cmd, std::span<const std::byte> extensions,
                     Flush flush_when) {
  outstanding_.fetch_add(1, std::memory_order_acq_rel);
  commands_.fetch_add(1, std::memory_order_relaxed);
  Result<proto::Request> request = proto::decode_command(cmd, extensions);
  if (!request.ok()) {
    fail(cmd, request.error());
    return;
  }
  const bool stage = flush_when == Flush::kLater && only_queues_stream_ops(request.value());
  if (!stage) flush();
  dispatch(cmd, request.value());
  if (!stage || staged_ops_.size() >= kMaxStagedOps) flush();
}

void Session::flush() {
  const std::size_t count = staged_ops_.size();
  for (std::size_t begin = 0; begin < count;) {
    StreamObject& stream = *staged_streams_[begin];
    std::size_t end = begin + 1;
    while (end < count && staged_streams_[end] == &stream) ++end;
    {
      std::lock_guard lock(stream.mutex);
      for (std::size_t i = begin; i < end; ++i)
        stream.pending.push_back(std::move(staged_pending_[i]));
    }
    backend_.enqueue_many(stream.queue, std::span(staged_ops_).subspan(begin, end - begin),
                          accel::Completion{&backend_callback, &stream, 0});
    begin = end;
  }
  staged_streams_.clear();
  staged_ops_.clear();
  staged_pending_.clear();
}

void Session::fail(const wire::Command& cmd, const Error& error) {
  log::debug("microlake", "{}: command #{} ({}) failed: {}", vm_name_, cmd.tag,
             proto::opcode_name(cmd.opcode), error.to_string());
  complete(cmd, error.code());
}

void Session::complete(const wire::Command& cmd, ErrorCode status, const Reply& reply) {
  complete_tag(cmd.tag, cmd.opcode, cmd.flags, status, reply);
}

void Session::complete_tag(std::uint64_t tag, std::uint16_t opcode, std::uint16_t flags,
                           ErrorCode status, const Reply& reply) {
  if (status != ErrorCode::kOk) errors_.fetch_add(1, std::memory_order_relaxed);
  const bool skip = status == ErrorCode::kOk && (flags & wire::kFlagSkipSuccess) != 0;
  if (!skip) {
    wire::Completion c{};
    c.tag = tag;
    c.status = static_cast<std::uint16_t>(status);
    c.opcode = opcode;
    c.result = reply.result;
    c.result2 = reply.result2;
    c.aux = reply.aux;
    sink_.post(c, status == ErrorCode::kOk ? reply.arena_out : proto::ArenaRange{});
  }
  // Only after posting: the endpoint's room check counts this command until now.
  if (outstanding_.fetch_sub(1, std::memory_order_acq_rel) == 1) sink_.settled();
}

void Session::enqueue(StreamObject& stream, accel::Op op, PendingOp pending) {
  staged_streams_.push_back(&stream);
  staged_ops_.push_back(std::move(op));
  staged_pending_.push_back(std::move(pending));
}

void Session::on_op_complete(StreamObject& stream, ErrorCode status) {
  PendingOp op;
  {
    std::lock_guard lock(stream.mutex);
    op = std::move(stream.pending.front());
    stream.pending.pop_front();
    if (op.forced_error != ErrorCode::kOk) status = op.forced_error;
    if (status != ErrorCode::kOk && !op.internal && stream.first_error == ErrorCode::kOk) {
      stream.first_error = status;
      stream.first_error_tag = op.tag;
    }
  }
  if (op.recorded_event) {
    std::vector<std::uint64_t> waiters;
    {
      std::lock_guard lock(op.recorded_event->mutex);
      if (++op.recorded_event->records_done == op.recorded_event->records_enqueued) {
        waiters.swap(op.recorded_event->sync_waiters);
      }
    }
    op.recorded_event->record_done.notify_all();
    for (std::uint64_t tag : waiters) {
      complete_tag(tag, static_cast<std::uint16_t>(wire::Opcode::kEventSync), 0, ErrorCode::kOk);
    }
  }
  if (op.on_done) {
    op.on_done(status);
    return;
  }
  if (op.internal) return;
  Reply reply;
  reply.result2 = stream.handle;
  reply.arena_out = op.arena_out;
  complete_tag(op.tag, op.opcode, op.flags, status, reply);
}

void Session::after_all_streams(bool take_errors, SyncDone then) {
  std::vector<StreamObject*> all;
  streams_.for_each([&](StreamObject& s) { all.push_back(&s); });
  if (all.empty()) {
    then(ErrorCode::kOk, 0);
    return;
  }
  struct Countdown {
    std::atomic<std::size_t> remaining;
    std::mutex mutex;
    ErrorCode first_error = ErrorCode::kOk;  // guarded by mutex
    std::uint64_t first_tag = 0;             // guarded by mutex
    SyncDone then;
  };
  auto countdown = std::make_shared<Countdown>();
  countdown->remaining = all.size();
  countdown->then = std::move(then);
  for (StreamObject* s : all) {
    PendingOp marker;
    marker.internal = true;
    marker.on_done = [countdown, s, take_errors](ErrorCode) {
      if (take_errors) {
        std::scoped_lock lock(s->mutex, countdown->mutex);
        if (s->first_error != ErrorCode::kOk && countdown->first_error == ErrorCode::kOk) {
          countdown->first_error = s->first_error;
          countdown->first_tag = s->first_error_tag;
        }
        s->first_error = ErrorCode::kOk;
        s->first_error_tag = 0;
      }
      if (countdown->remaining.fetch_sub(1) == 1) {
        countdown->then(countdown->first_error, countdown->first_tag);
      }
    };
    enqueue(*s, accel::Marker{}, std::move(marker));
  }
}

Status Session::check_arena(proto::ArenaRange range) const {
  if (!proto::range_fits(range.offset, range.bytes, arena_.size())) {
    return Error(ErrorCode::kOutOfRange,
                 fmt::format("arena range [{}, +{}) is outside the {}-byte arena", range.offset,
                             range.bytes, arena_.size()));
  }
  return ok_status();
}

Result<BufferObject*> Session::buffer_range(proto::RawHandle handle, Rights rights,
                                            std::uint64_t offset, std::uint64_t bytes) const {
  MALV_ASSIGN_OR_RETURN(BufferObject * buffer, buffers_.lookup(handle, rights));
  if (!proto::range_fits(offset, bytes, buffer->bytes)) {
    return Error(
        ErrorCode::kOutOfRange,
        fmt::format("range [{}, +{}) is outside the {}-byte buffer", offset, bytes, buffer->bytes));
  }
  return buffer;
}

}  // namespace malv::microlake
