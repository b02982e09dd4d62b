// Session's per-command handlers. Each validates everything first (every
// MALV_TRY / MALV_ASSIGN_OR_RETURN comes before the first effect), then
// performs the effect, which cannot fail; see session.h.
#include <fmt/format.h>

#include <algorithm>
#include <bit>
#include <chrono>
#include <cstring>

#include "base/log.h"
#include "microlake/session.h"
#include "mlaas/policy_registry.h"
#include "proto/decoder.h"

namespace malv::microlake {

using wire::Opcode;

namespace {

// The completion record of a guest command queued on a stream.
PendingOp pending_for(const wire::Command& cmd, proto::ArenaRange arena_out = {}) {
  PendingOp op;
  op.tag = cmd.tag;
  op.opcode = cmd.opcode;
  op.flags = cmd.flags;
  op.arena_out = arena_out;
  return op;
}

}  // namespace

void Session::dispatch(const wire::Command& cmd, const proto::Request& request) {
  std::visit(
      [&](const auto& req) {
        Status status = run(cmd, req);
        if (status.ok()) return;
        // A rejected stream command fails in its place in the stream: a
        // marker carries its error, so the stream's first error stays the
        // first in submission order and surfaces at the next synchronize.
        constexpr bool kIsStreamOp = requires { req.stream; }
        &&!std::is_same_v<std::decay_t<decltype(req)>, proto::StreamSyncRequest>;
        if constexpr (kIsStreamOp) {
          if (Result<StreamObject*> stream = streams_.lookup(req.stream, kRightUse); stream.ok()) {
            log::debug("microlake", "{}: command #{} ({}) rejected: {}", vm_name_, cmd.tag,
                       proto::opcode_name(cmd.opcode), status.error().to_string());
            PendingOp failed = pending_for(cmd);
            failed.forced_error = status.error().code();
            enqueue(*stream.value(), accel::Marker{}, std::move(failed));
            return;
          }
        }
        fail(cmd, status.error());
      },
      request);
}

Status Session::run(const wire::Command& cmd, const proto::NopRequest&) {
  complete(cmd, ErrorCode::kOk);
  return ok_status();
}

Status Session::run(const wire::Command& cmd, const proto::DeviceQueryRequest& req) {
  MALV_TRY(check_arena(req.out));
  if (req.out.bytes < sizeof(wire::DeviceInfoRecord)) {
    return Error(ErrorCode::kInvalidArgument,
                 fmt::format("device query needs {} bytes, got {}", sizeof(wire::DeviceInfoRecord),
                             req.out.bytes));
  }
  const accel::DeviceInfo info = backend_.info();
  wire::DeviceInfoRecord record{};
  std::snprintf(record.backend, sizeof(record.backend), "%s", info.backend.c_str());
  std::snprintf(record.name, sizeof(record.name), "%s", info.name.c_str());
  record.total_memory = info.total_memory;
  record.free_memory = info.free_memory;
  record.compute_units = info.compute_units;
  std::memcpy(arena_.data() + req.out.offset, &record, sizeof(record));
  complete(cmd, ErrorCode::kOk, {.arena_out = {req.out.offset, sizeof(record)}});
  return ok_status();
}

Status Session::run(const wire::Command& cmd, const proto::BufferAllocRequest& req) {
  if (req.bytes == 0 || req.bytes > limits_.max_buffer_bytes) {
    return Error(ErrorCode::kInvalidArgument, fmt::format("buffer size {} is outside [1, {}]",
                                                          req.bytes, limits_.max_buffer_bytes));
  }
  if (buffers_.size() >= limits_.max_buffers) {
    return Error(ErrorCode::kResourceExhausted,
                 fmt::format("session holds {} buffers, the limit", buffers_.size()));
  }
  MALV_ASSIGN_OR_RETURN(accel::DevicePtr ptr, backend_.allocate(req.bytes));
  auto object = std::make_unique<BufferObject>(BufferObject{ptr, req.bytes});
  Result<RawHandle> handle = buffers_.insert(std::move(object), kRightsAll);
  if (!handle.ok()) {  // cannot happen after the size check; keep the device memory safe anyway
    backend_.free(ptr);
    return std::move(handle).error();
  }
  complete(cmd, ErrorCode::kOk, {.result = handle.value()});
  return ok_status();
}

Status Session::run(const wire::Command& cmd, const proto::BufferFreeRequest& req) {
  MALV_ASSIGN_OR_RETURN(std::unique_ptr<BufferObject> buffer,
                        buffers_.remove(req.buffer, kRightDestroy));
  // The handle is dead from here on; the memory goes back once every op
  // queued before this command, on any stream, has finished with it.
  accel::Backend* backend = &backend_;
  const accel::DevicePtr ptr = buffer->ptr;
  after_all_streams(false, [backend, ptr](ErrorCode, std::uint64_t) { backend->free(ptr); });
  complete(cmd, ErrorCode::kOk);
  return ok_status();
}

Status Session::run(const wire::Command& cmd, const proto::WriteRequest& req) {
  MALV_ASSIGN_OR_RETURN(StreamObject * stream, streams_.lookup(req.stream, kRightUse));
  MALV_ASSIGN_OR_RETURN(BufferObject * buffer,
                        buffer_range(req.buffer, kRightWrite, req.buffer_offset, req.src.bytes));
  MALV_TRY(check_arena(req.src));
  enqueue(*stream,
          accel::CopyH2D{arena_.data() + req.src.offset, buffer->ptr + req.buffer_offset,
                         req.src.bytes},
          pending_for(cmd));
  return ok_status();
}

Status Session::run(const wire::Command& cmd, const proto::ReadRequest& req) {
  MALV_ASSIGN_OR_RETURN(StreamObject * stream, streams_.lookup(req.stream, kRightUse));
  MALV_ASSIGN_OR_RETURN(BufferObject * buffer,
                        buffer_range(req.buffer, kRightRead, req.buffer_offset, req.dst.bytes));
  MALV_TRY(check_arena(req.dst));
  enqueue(*stream,
          accel::CopyD2H{buffer->ptr + req.buffer_offset, arena_.data() + req.dst.offset,
                         req.dst.bytes},
          pending_for(cmd, req.dst));
  return ok_status();
}

Status Session::run(const wire::Command& cmd, const proto::CopyRequest& req) {
  MALV_ASSIGN_OR_RETURN(StreamObject * stream, streams_.lookup(req.stream, kRightUse));
  MALV_ASSIGN_OR_RETURN(BufferObject * src,
                        buffer_range(req.src, kRightRead, req.src_offset, req.bytes));
  MALV_ASSIGN_OR_RETURN(BufferObject * dst,
                        buffer_range(req.dst, kRightWrite, req.dst_offset, req.bytes));
  enqueue(*stream, accel::CopyD2D{src->ptr + req.src_offset, dst->ptr + req.dst_offset, req.bytes},
          pending_for(cmd));
  return ok_status();
}

Status Session::run(const wire::Command& cmd, const proto::MemsetRequest& req) {
  MALV_ASSIGN_OR_RETURN(StreamObject * stream, streams_.lookup(req.stream, kRightUse));
  MALV_ASSIGN_OR_RETURN(BufferObject * buffer,
                        buffer_range(req.buffer, kRightWrite, req.offset, req.bytes));
  enqueue(*stream, accel::Memset{buffer->ptr + req.offset, req.value, req.bytes}, pending_for(cmd));
  return ok_status();
}

Status Session::run(const wire::Command& cmd, const proto::StreamCreateRequest& req) {
  if (streams_.size() >= limits_.max_streams) {
    return Error(ErrorCode::kResourceExhausted,
                 fmt::format("session holds {} streams, the limit", streams_.size()));
  }
  MALV_ASSIGN_OR_RETURN(accel::QueueId queue,
                        backend_.create_queue(req.high_priority ? accel::QueuePriority::kHigh
                                                                : accel::QueuePriority::kNormal));
  auto stream = std::make_unique<StreamObject>();
  StreamObject* raw = stream.get();
  raw->session = this;
  raw->queue = queue;
  Result<RawHandle> handle = streams_.insert(std::move(stream), kRightsAll);
  if (!handle.ok()) {
    backend_.destroy_queue(queue);
    return std::move(handle).error();
  }
  raw->handle = handle.value();
  complete(cmd, ErrorCode::kOk, {.result = handle.value()});
  return ok_status();
}

Status Session::run(const wire::Command& cmd, const proto::StreamDestroyRequest& req) {
  MALV_ASSIGN_OR_RETURN(std::unique_ptr<StreamObject> stream,
                        streams_.remove(req.stream, kRightDestroy));
  backend_.destroy_queue(stream->queue);  // runs what is queued, like cuStreamDestroy
  complete(cmd, ErrorCode::kOk);
  return ok_status();
}

Status Session::run(const wire::Command& cmd, const proto::StreamSyncRequest& req) {
  MALV_ASSIGN_OR_RETURN(StreamObject * stream, streams_.lookup(req.stream, kRightUse));
  const std::uint64_t tag = cmd.tag;
  const std::uint16_t flags = cmd.flags;
  PendingOp marker = pending_for(cmd);
  marker.on_done = [this, stream, tag, flags](ErrorCode) {
    ErrorCode first;
    std::uint64_t first_tag;
    {
      std::lock_guard lock(stream->mutex);
      first = stream->first_error;
      first_tag = stream->first_error_tag;
      stream->first_error = ErrorCode::kOk;
      stream->first_error_tag = 0;
    }
    complete_tag(tag, static_cast<std::uint16_t>(Opcode::kStreamSync), flags, first,
                 {.result = first_tag, .result2 = stream->handle});
  };
  enqueue(*stream, accel::Marker{}, std::move(marker));
  return ok_status();
}

Status Session::run(const wire::Command& cmd, const proto::SyncAllRequest&) {
  const std::uint64_t tag = cmd.tag;
  const std::uint16_t flags = cmd.flags;
  after_all_streams(true, [this, tag, flags](ErrorCode first, std::uint64_t first_tag) {
    complete_tag(tag, static_cast<std::uint16_t>(Opcode::kSyncAll), flags, first,
                 {.result = first_tag});
  });
  return ok_status();
}

Status Session::run(const wire::Command& cmd, const proto::EventCreateRequest&) {
  if (events_.size() >= limits_.max_events) {
    return Error(ErrorCode::kResourceExhausted,
                 fmt::format("session holds {} events, the limit", events_.size()));
  }
  MALV_ASSIGN_OR_RETURN(accel::EventId id, backend_.create_event());
  auto object = std::make_unique<EventHandleObject>();
  object->event = std::make_shared<EventObject>(backend_, id);
  MALV_ASSIGN_OR_RETURN(RawHandle handle, events_.insert(std::move(object), kRightsAll));
  complete(cmd, ErrorCode::kOk, {.result = handle});
  return ok_status();
}

Status Session::run(const wire::Command& cmd, const proto::EventDestroyRequest& req) {
  MALV_TRY(events_.remove(req.event, kRightDestroy));  // ops in flight keep it alive
  complete(cmd, ErrorCode::kOk);
  return ok_status();
}

Status Session::run(const wire::Command& cmd, const proto::EventRecordRequest& req) {
  MALV_ASSIGN_OR_RETURN(StreamObject * stream, streams_.lookup(req.stream, kRightUse));
  MALV_ASSIGN_OR_RETURN(EventHandleObject * handle, events_.lookup(req.event, kRightUse));
  std::shared_ptr<EventObject> event = handle->event;
  {
    std::lock_guard lock(event->mutex);
    ++event->records_enqueued;
  }
  PendingOp pending = pending_for(cmd);
  pending.recorded_event = event;
  enqueue(*stream, accel::RecordEvent{event->id}, std::move(pending));
  return ok_status();
}

Status Session::run(const wire::Command& cmd, const proto::EventWaitRequest& req) {
  MALV_ASSIGN_OR_RETURN(StreamObject * stream, streams_.lookup(req.stream, kRightUse));
  MALV_ASSIGN_OR_RETURN(EventHandleObject * handle, events_.lookup(req.event, kRightUse));
  enqueue(*stream, accel::WaitEvent{handle->event->id}, pending_for(cmd));
  return ok_status();
}

Status Session::run(const wire::Command& cmd, const proto::EventSyncRequest& req) {
  MALV_ASSIGN_OR_RETURN(EventHandleObject * handle, events_.lookup(req.event, kRightUse));
  EventObject& event = *handle->event;
  {
    // Once validated, an event sync can only succeed. With kFlagSkipSuccess
    // that success posts nothing, so there is nothing to wait for: complete
    // (skip) it now rather than park it, since a waiter is completed later
    // by tag alone and would post the success the guest asked not to get.
    std::lock_guard lock(event.mutex);
    if (event.records_done != event.records_enqueued && (cmd.flags & wire::kFlagSkipSuccess) == 0) {
      event.sync_waiters.push_back(cmd.tag);
      return ok_status();
    }
  }
  complete(cmd, ErrorCode::kOk);
  return ok_status();
}

Status Session::run(const wire::Command& cmd, const proto::EventElapsedRequest& req) {
  MALV_ASSIGN_OR_RETURN(EventHandleObject * start, events_.lookup(req.start, kRightUse));
  MALV_ASSIGN_OR_RETURN(EventHandleObject * end, events_.lookup(req.end, kRightUse));
  for (EventObject* e : {start->event.get(), end->event.get()}) {
    std::unique_lock lock(e->mutex);
    if (e->records_enqueued == 0) {
      return Error(ErrorCode::kFailedPrecondition, "event was never recorded");
    }
    // The device may have run the record while its completion is still on
    // its way here: a stream that waited on the event can finish, and its
    // guest ask, first. Then the answer is moments away, not "not yet".
    if (e->records_done != e->records_enqueued && backend_.query_event(e->id).complete) {
      e->record_done.wait_for(lock, std::chrono::milliseconds(20),
                              [e] { return e->records_done == e->records_enqueued; });
    }
    if (e->records_done != e->records_enqueued) {
      return Error(ErrorCode::kUnavailable, "event has not happened yet");
    }
  }
  const std::int64_t t0 = backend_.query_event(start->event->id).time_ns;
  const std::int64_t t1 = backend_.query_event(end->event->id).time_ns;
  complete(cmd, ErrorCode::kOk,
           {.result = static_cast<std::uint64_t>(t1 - t0), .result2 = t1 < t0 ? 1u : 0u});
  return ok_status();
}

Status Session::run(const wire::Command& cmd, const proto::KernelLookupRequest& req) {
  MALV_TRY(check_arena(req.name));
  if (req.name.bytes == 0 || req.name.bytes > 64) {
    return Error(ErrorCode::kInvalidArgument,
                 fmt::format("kernel name of {} bytes, expected 1 to 64", req.name.bytes));
  }
  std::string name(reinterpret_cast<const char*>(arena_.data() + req.name.offset), req.name.bytes);
  const accel::KernelDef* def = accel::find_kernel(name);
  if (def == nullptr) {
    return Error(ErrorCode::kNotFound, fmt::format("no kernel named '{}'", name));
  }
  MALV_ASSIGN_OR_RETURN(RawHandle handle,
                        kernels_.insert(std::make_unique<KernelObject>(KernelObject{def}),
                                        kRightUse | kRightDestroy));
  complete(cmd, ErrorCode::kOk, {.result = handle, .result2 = def->params.size()});
  return ok_status();
}

Status Session::run(const wire::Command& cmd, const proto::LaunchRequest& req) {
  MALV_ASSIGN_OR_RETURN(StreamObject * stream, streams_.lookup(req.stream, kRightUse));
  MALV_ASSIGN_OR_RETURN(KernelObject * kernel, kernels_.lookup(req.kernel, kRightUse));
  accel::Launch launch{};
  launch.kernel = kernel->def->id;
  launch.argc = req.argc;
  for (std::uint32_t i = 0; i < req.argc; ++i) {
    const wire::KernelArg& wire_arg = req.args[i];
    accel::KernelArgValue& arg = launch.args[i];
    switch (static_cast<wire::ArgKind>(wire_arg.kind)) {
      case wire::ArgKind::kBuffer: {
        MALV_ASSIGN_OR_RETURN(
            BufferObject * buffer,
            buffer_range(wire_arg.value, kRightRead | kRightWrite, wire_arg.offset, 0));
        arg.kind = accel::ArgKind::kBuffer;
        arg.ptr = buffer->ptr + wire_arg.offset;
        arg.extent = buffer->bytes - wire_arg.offset;
        break;
      }
      case wire::ArgKind::kI64:
        arg.kind = accel::ArgKind::kI64;
        arg.i64 = static_cast<std::int64_t>(wire_arg.value);
        break;
      case wire::ArgKind::kF32:
        arg.kind = accel::ArgKind::kF32;
        arg.f32 = std::bit_cast<float>(static_cast<std::uint32_t>(wire_arg.value));
        break;
    }
  }
  MALV_TRY(accel::validate_launch(*kernel->def, std::span(launch.args.data(), launch.argc)));
  enqueue(*stream, launch, pending_for(cmd));
  return ok_status();
}

// The policy table: one line per policy a VM could use, in class order,
// "<class> <module>/<policy> <flags>\n" where flags holds 'b' (the class
// baseline), 'a' (this VM may select it), 's' (this VM uses it now), or is
// "-". docs/protocol.md specifies it.
namespace {

std::string policy_table(const mlaas::PolicyRegistry& registry, const std::string& vm) {
  const auto modules = registry.modules();
  std::string table;
  for (mlaas::PolicyClass cls : mlaas::kAllPolicyClasses) {
    const std::string selected = registry.selected(vm, cls);
    const auto allow_list = registry.allow_list(vm, cls);
    for (const mlaas::ModuleInfo& module : modules) {
      for (const mlaas::PolicyInfo& policy : module.policies) {
        if (policy.policy_class != cls) continue;
        const std::string qualified = fmt::format("{}/{}", policy.module, policy.name);
        const bool baseline = module.path == "<built-in>";
        const bool allowed =
            baseline || !allow_list ||
            std::find(allow_list->begin(), allow_list->end(), qualified) != allow_list->end();
        const bool in_use = qualified == selected;
        table += fmt::format("{} {} {}{}{}{}\n", mlaas::policy_class_name(cls), qualified,
                             baseline ? "b" : "", allowed ? "a" : "", in_use ? "s" : "",
                             baseline || allowed || in_use ? "" : "-");
      }
    }
  }
  return table;
}

}  // namespace

Status Session::run(const wire::Command& cmd, const proto::PolicyListRequest& req) {
  MALV_TRY(check_arena(req.out));
  if (services_.policies == nullptr) {
    return Error(ErrorCode::kUnimplemented, "this host offers no policy selection");
  }
  const std::string table = policy_table(*services_.policies, vm_name_);
  const auto rows = static_cast<std::uint64_t>(std::count(table.begin(), table.end(), '\n'));
  if (table.size() > req.out.bytes) {
    // Not an error of the host: the guest retries with the size it needs.
    complete(cmd, ErrorCode::kOutOfRange, {.result = table.size(), .result2 = rows});
    return ok_status();
  }
  std::memcpy(arena_.data() + req.out.offset, table.data(), table.size());
  complete(cmd, ErrorCode::kOk,
           {.result = table.size(), .result2 = rows, .arena_out = {req.out.offset, table.size()}});
  return ok_status();
}

Status Session::run(const wire::Command& cmd, const proto::PolicySelectRequest& req) {
  MALV_TRY(check_arena(req.text));
  if (req.text.bytes == 0 || req.text.bytes > 256) {
    return Error(ErrorCode::kInvalidArgument,
                 fmt::format("policy selection of {} bytes, expected 1 to 256", req.text.bytes));
  }
  if (services_.policies == nullptr) {
    return Error(ErrorCode::kUnimplemented, "this host offers no policy selection");
  }
  const std::string text(reinterpret_cast<const char*>(arena_.data() + req.text.offset),
                         req.text.bytes);
  const auto eq = text.find('=');
  if (eq == std::string::npos || eq == 0 || eq + 1 == text.size()) {
    return Error(ErrorCode::kInvalidArgument, "policy selection is not 'class=policy'");
  }
  MALV_ASSIGN_OR_RETURN(mlaas::PolicyClass cls, mlaas::parse_policy_class(text.substr(0, eq)));
  const std::string name = text.substr(eq + 1);
  MALV_TRY_CONTEXT(services_.policies->select(vm_name_, cls, name, mlaas::Requester::kGuest),
                   fmt::format("VM {} selecting {}", vm_name_, text));
  log::info("microlake", "VM {} selected {} policy {}", vm_name_, mlaas::policy_class_name(cls),
            services_.policies->selected(vm_name_, cls));
  complete(cmd, ErrorCode::kOk);
  return ok_status();
}

}  // namespace malv::microlake
