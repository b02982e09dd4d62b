// PyTorch operators (kAtenIntern, kAtenOp, kAtenBatch): the guest names an operator and
// sends its arguments as a record (malv/aten_record.h); the host checks the
// record whole against the operator's schema and every tensor's view
// against the session's own buffers, then queues the call on the stream,
// where a backend worker runs it in order (accel::HostCall). The completion
// comes when it ran; the host writes back into the record's arena range the
// non-tensor returns (as a record) or PyTorch's message, and puts the bytes
// written in `result`. A call refused at validation completes the same way,
// in its place in the stream. docs/torch.md has the design.
#include <fmt/format.h>

#include <algorithm>
#include <cstring>
#include <memory>
#include <optional>
#include <span>
#include <vector>

#include "accel/aten_operators.h"
#include "base/log.h"
#include "microlake/session.h"
#include "proto/aten_record.h"

namespace malv::microlake {
namespace {

// Longest operator name kAtenIntern takes.
constexpr std::size_t kMaxOperatorName = 256;

}  // namespace

Status Session::aten_available() const {
  if (services_.aten == nullptr) {
    return Error(ErrorCode::kUnimplemented,
                 "this host has no PyTorch executor (built without libtorch-dev)");
  }
  if (services_.aten_refusal) {
    std::string why = services_.aten_refusal();
    if (!why.empty()) return Error(ErrorCode::kUnimplemented, std::move(why));
  }
  return ok_status();
}

Status Session::run(const wire::Command& cmd, const proto::AtenInternRequest& req) {
  MALV_TRY(aten_available());
  MALV_TRY(check_arena(req.name));
  if (req.name.bytes == 0 || req.name.bytes > kMaxOperatorName) {
    return Error(ErrorCode::kInvalidArgument,
                 fmt::format("an operator name of {} bytes, expected 1 to {}", req.name.bytes,
                             kMaxOperatorName));
  }
  const std::string name(reinterpret_cast<const char*>(arena_.data() + req.name.offset),
                         req.name.bytes);
  MALV_ASSIGN_OR_RETURN(const std::uint32_t id, services_.aten->intern(name));
  aten_operators_.insert(id);
  complete(cmd, ErrorCode::kOk, {.result = id});
  return ok_status();
}

Status Session::run(const wire::Command& cmd, const proto::AtenOpRequest& req) {
  MALV_ASSIGN_OR_RETURN(StreamObject * stream, streams_.lookup(req.stream, kRightUse));
  MALV_TRY(check_arena({req.record.offset, req.reply_bytes}));
  std::byte* const out = arena_.data() + req.record.offset;
  const std::size_t room = req.reply_bytes;
  PendingOp pending;
  pending.internal = true;  // on_done completes it, with what it wrote back
  // Writes PyTorch's message (or a refusal) back and completes with it.
  auto finish = [this, stream, out, room, tag = cmd.tag, opcode = cmd.opcode, flags = cmd.flags](
                    ErrorCode status, const std::string& text,
                    const std::vector<wire::AtenValue>& returns) {
    std::size_t written = 0;
    if (status != ErrorCode::kOk) {
      written = std::min(text.size(), room);
      if (written > 0) std::memcpy(out, text.data(), written);
    } else if (!returns.empty()) {
      Result<std::vector<std::uint64_t>> words = proto::encode_aten_record(returns);
      if (words.ok() && words->size() * sizeof(std::uint64_t) <= room) {
        written = words->size() * sizeof(std::uint64_t);
        std::memcpy(out, words->data(), written);
      } else {
        status = ErrorCode::kOutOfRange;  // the guest left no room for the returns
      }
    }
    finish_in_stream(*stream, tag, opcode, flags, status, Reply{.result = written});
  };
  auto refused = [&](const Error& error) {
    log::debug("microlake", "{}: command #{} (aten_op) refused: {}", vm_name_, cmd.tag,
               error.to_string());
    pending.on_done = [finish, code = error.code(), text = error.message()](ErrorCode) {
      finish(code, text, {});
    };
    enqueue(*stream, accel::Marker{}, std::move(pending));
    return ok_status();
  };

  if (req.record.bytes > wire::kAtenMaxRecordBytes) {
    return refused(Error(ErrorCode::kInvalidArgument,
                         fmt::format("an argument record of {} bytes (at most {})",
                                     req.record.bytes, wire::kAtenMaxRecordBytes)));
  }
  std::vector<std::uint64_t> words(req.record.bytes / sizeof(std::uint64_t));
  if (!words.empty()) std::memcpy(words.data(), out, words.size() * sizeof(std::uint64_t));
  Result<std::shared_ptr<accel::AtenTask>> task = prepare_aten(req.op, words);
  if (!task.ok()) return refused(task.error());
  pending.on_done = [finish, task = *task](ErrorCode status) {
    finish(status, task->error_text(), task->returns());
  };
  enqueue(*stream, accel::HostCall{*task, (*task)->estimated_ns()}, std::move(pending));
  return ok_status();
}

Result<std::shared_ptr<accel::AtenTask>> Session::prepare_aten(
    std::uint64_t op, std::span<const std::uint64_t> words) {
  MALV_TRY(aten_available());
  if (op > UINT32_MAX || !aten_operators_.contains(static_cast<std::uint32_t>(op))) {
    return Error(ErrorCode::kNotFound,
                 fmt::format("operator id {} was not interned by this session", op));
  }
  // Decoded into values this thread keeps: once warm, no allocation.
  thread_local std::vector<wire::AtenValue> values;
  MALV_ASSIGN_OR_RETURN(const std::size_t count, proto::decode_aten_record_into(words, values));
  const std::span<const wire::AtenValue> record(values.data(), count);
  // Every tensor names one of this session's buffers, readable and writable.
  const accel::ResolveBuffer resolve = [this](std::uint64_t handle) -> Result<accel::BufferMemory> {
    MALV_ASSIGN_OR_RETURN(BufferObject * buffer, buffers_.lookup(handle, kRightRead | kRightWrite));
    return accel::BufferMemory{
        reinterpret_cast<std::byte*>(static_cast<std::uintptr_t>(buffer->ptr.value)),
        buffer->bytes};
  };
  return services_.aten->prepare_task(static_cast<std::uint32_t>(op), record, resolve);
}

namespace {

// What became of a kAtenBatch, shared by its chunks.
struct BatchOutcome {
  ErrorCode code = ErrorCode::kOk;  // of the first operator that failed or was refused
  std::string text;
};

// A run of consecutive operators of one kAtenBatch, one backend call: the
// batch is cut into chunks of about kChunkNs of expected run time, so that
// the vGPU scheduler weighs, interleaves and charges PyTorch work as finely
// as kernels. Chunks run in stream order; once one operator failed, the
// chunks after it run nothing, and the last one reports the batch's
// outcome. The last chunk also carries a refusal met while checking.
class AtenBatchChunk : public accel::HostTask {
 public:
  AtenBatchChunk(std::shared_ptr<BatchOutcome> outcome, std::size_t first,
                 std::vector<std::shared_ptr<accel::AtenTask>> tasks)
      : outcome_(std::move(outcome)), first_(first), tasks_(std::move(tasks)) {}
  void set_refusal(Error refusal) { refusal_ = std::move(refusal); }

  ErrorCode run() override {
    if (outcome_->code != ErrorCode::kOk) return outcome_->code;
    for (std::size_t i = 0; i < tasks_.size(); ++i) {
      const ErrorCode status = tasks_[i]->run();
      if (status != ErrorCode::kOk) {
        outcome_->code = status;
        outcome_->text = fmt::format("operator {} of the batch, {}: {}", first_ + i,
                                     tasks_[i]->name(), tasks_[i]->error_text());
        return status;
      }
    }
    if (refusal_) {
      outcome_->code = refusal_->code();
      outcome_->text = fmt::format("operator {} of the batch refused: {}", first_ + tasks_.size(),
                                   refusal_->to_string());
      return outcome_->code;
    }
    return ErrorCode::kOk;
  }

 private:
  std::shared_ptr<BatchOutcome> outcome_;
  std::size_t first_;
  std::vector<std::shared_ptr<accel::AtenTask>> tasks_;
  std::optional<Error> refusal_;
};

// Expected run time per chunk of a batch (the scheduler's batch quantum
// is 2 ms; its starvation bound 5 ms by default).
constexpr std::int64_t kChunkNs = 500'000;

}  // namespace

Status Session::run(const wire::Command& cmd, const proto::AtenBatchRequest& req) {
  MALV_ASSIGN_OR_RETURN(StreamObject * stream, streams_.lookup(req.stream, kRightUse));
  MALV_TRY(check_arena(req.batch));
  std::byte* const out = arena_.data() + req.batch.offset;
  // The whole batch is copied before anything is checked: the guest may
  // write its arena meanwhile. Into a buffer this thread keeps (up to a
  // batch's 1 MiB): a fresh one per batch made glibc's malloc consolidate
  // its free lists every time.
  thread_local std::vector<std::uint64_t> words;
  words.resize(req.batch.bytes / sizeof(std::uint64_t));
  std::memcpy(words.data(), out, words.size() * sizeof(std::uint64_t));
  auto outcome = std::make_shared<BatchOutcome>();
  std::vector<std::pair<std::shared_ptr<AtenBatchChunk>, std::int64_t>> chunks;
  std::vector<std::shared_ptr<accel::AtenTask>> tasks;
  std::int64_t chunk_ns = 0;
  std::size_t chunk_first = 0;
  auto cut = [&] {  // the tasks so far make a chunk; the next starts after them
    const std::size_t count = tasks.size();
    chunks.emplace_back(std::make_shared<AtenBatchChunk>(outcome, chunk_first, std::move(tasks)),
                        chunk_ns);
    chunk_first += count;
    tasks.clear();
    chunk_ns = 0;
  };
  std::optional<Error> refusal;
  std::size_t at = 0;
  for (std::uint64_t i = 0; i < req.count; ++i) {
    if (at >= words.size()) {
      refusal = Error(ErrorCode::kInvalidArgument,
                      fmt::format("the batch ends before its operator {} of {}", i, req.count));
      break;
    }
    const std::uint64_t header = words[at++];
    const std::uint64_t record_words = header >> 32;
    if (record_words > words.size() - at) {
      refusal = Error(ErrorCode::kInvalidArgument,
                      fmt::format("operator {} of the batch: a record of {} words past the "
                                  "batch's end",
                                  i, record_words));
      break;
    }
    Result<std::shared_ptr<accel::AtenTask>> task =
        prepare_aten(header & 0xffffffffu, std::span(words).subspan(at, record_words));
    at += record_words;
    if (!task.ok()) {
      refusal = std::move(task).error();
      break;
    }
    if (!tasks.empty() && chunk_ns >= kChunkNs) cut();
    chunk_ns += (*task)->estimated_ns();
    tasks.push_back(std::move(task).value());
  }
  if (!refusal && at != words.size()) {
    refusal =
        Error(ErrorCode::kInvalidArgument,
              fmt::format("{} words of the batch follow its last operator", words.size() - at));
  }
  cut();  // the last chunk (perhaps of no operator: it reports the outcome)
  if (refusal) {
    log::debug("microlake", "{}: command #{} (aten_batch): {}", vm_name_, cmd.tag,
               refusal->to_string());
    chunks.back().first->set_refusal(std::move(*refusal));
  }
  // Each operator counts as a command still owed a completion until the
  // batch completes: the endpoint takes no more commands from this guest
  // while the completion ring's room is used up, which bounds the
  // operators (and the host memory they hold) a guest has queued.
  const std::uint64_t extra = req.count - 1;
  outstanding_.fetch_add(extra, std::memory_order_acq_rel);
  for (std::size_t c = 0; c + 1 < chunks.size(); ++c) {
    PendingOp pending;
    pending.internal = true;  // the last chunk completes the command
    enqueue(*stream, accel::HostCall{chunks[c].first, chunks[c].second}, std::move(pending));
  }
  PendingOp pending;
  pending.internal = true;  // on_done completes it, with the message written back
  pending.on_done = [this, stream, out, room = req.batch.bytes, outcome, extra, tag = cmd.tag,
                     opcode = cmd.opcode, flags = cmd.flags](ErrorCode status) {
    std::size_t written = 0;
    if (status != ErrorCode::kOk) {
      written = std::min<std::size_t>(outcome->text.size(), room);
      if (written > 0) std::memcpy(out, outcome->text.data(), written);
    }
    finish_in_stream(*stream, tag, opcode, flags, status, Reply{.result = written});
    outstanding_.fetch_sub(extra, std::memory_order_acq_rel);
  };
  enqueue(*stream, accel::HostCall{chunks.back().first, chunks.back().second}, std::move(pending));
  return ok_status();
}

}  // namespace malv::microlake
