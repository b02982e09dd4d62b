// The host-side objects behind a session's capability handles, and the
// record of an op that is queued on a stream and not yet complete.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <vector>

#include "accel/backend.h"
#include "base/fifo.h"
#include "malv/error.h"
#include "offload/data_pipeline.h"
#include "proto/request.h"

namespace malv::microlake {

struct BufferObject {
  accel::DevicePtr ptr;
  std::uint64_t bytes = 0;
};

struct KernelObject {
  const accel::KernelDef* def = nullptr;
};

// Shared by the event's handle and every queued record/wait op that names it,
// so destroying the handle while ops are in flight is safe.
struct EventObject {
  EventObject(accel::Backend& backend, accel::EventId id) : backend(backend), id(id) {}
  ~EventObject() { backend.destroy_event(id); }
  EventObject(const EventObject&) = delete;
  EventObject& operator=(const EventObject&) = delete;

  accel::Backend& backend;
  const accel::EventId id;
  std::mutex mutex;
  std::condition_variable record_done;      // records_done grew
  std::uint64_t records_enqueued = 0;       // guarded by mutex
  std::uint64_t records_done = 0;           // guarded by mutex
  std::vector<std::uint64_t> sync_waiters;  // tags of kEventSync commands, guarded by mutex
};

struct EventHandleObject {
  std::shared_ptr<EventObject> event;
};

// What to do when a queued op completes. Ops complete in queue order, so the
// stream keeps these in a FIFO and the backend callback pops the front.
struct PendingOp {
  std::uint64_t tag = 0;
  std::uint16_t opcode = 0;
  std::uint16_t flags = 0;
  bool internal = false;                        // not a guest command: post no completion
  ErrorCode forced_error = ErrorCode::kOk;      // a command rejected at validation
  proto::ArenaRange arena_out{};                // arena bytes the op writes (D2H)
  std::shared_ptr<EventObject> recorded_event;  // kEventRecord
  std::function<void(ErrorCode)> on_done;       // sync markers, deferred frees
};

// A dataset opened with kDatasetOpen: the host's pipeline staging its
// batches. Queued copies out of its slots hold the pipeline too, so closing
// the handle while they are in flight is safe.
struct DatasetObject {
  std::shared_ptr<offload::DataPipeline> pipeline;
};

struct StreamObject {
  class Session* session = nullptr;
  accel::QueueId queue;
  proto::RawHandle handle = 0;

  std::mutex mutex;
  Fifo<PendingOp> pending;                 // guarded by mutex
  ErrorCode first_error = ErrorCode::kOk;  // first unreported error, guarded by mutex
  std::uint64_t first_error_tag = 0;       // guarded by mutex
};

}  // namespace malv::microlake
