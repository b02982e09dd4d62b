// CudaBackend: the accelerator interface on an NVIDIA GPU, through the CUDA
// driver API. Callers cannot tell it from the CPU backend except by speed:
// the same ops, kernels, ordering, completions and error codes.
//
//  * Device: one CudaContext, the device's primary context, shared by every
//    queue and so by every VM (cuda_context.h).
//  * Queues are CUDA streams (non-blocking, at the context's greatest
//    priority for QueuePriority::kHigh, its least for kNormal). enqueue()
//    issues the op on the stream at once: copies are cuMemcpy*Async (true
//    DMA when the host side is registered memory, i.e. a session's shared
//    arena), Memset is cuMemsetD8Async, Launch is cuLaunchKernel or a
//    cuBLAS sgemm, RecordEvent/WaitEvent are cuEventRecord/
//    cuStreamWaitEvent, which have exactly the interface's semantics (a
//    wait covers the records made before it, an event never recorded is
//    complete).
//  * Completions: each queue has a completion thread. An op whose status
//    anybody needs (a completion function, an event record, a status word)
//    gets a pooled CUevent recorded right after it; the thread takes those
//    ops in queue order, waits for each event (spinning briefly on
//    cuEventQuery, then blocking in cuEventSynchronize), and calls the
//    completion. cuLaunchHostFunc is not used because a host function may
//    make no CUDA call (our completions enqueue more work) and is not called
//    at all once the context has an error (a completion would be lost and
//    its caller would hang).
//  * Device memory comes from a stream-ordered pool (cuMemAllocFromPoolAsync
//    and cuMemFreeAsync on one allocation stream, which never stalls the
//    device the way cuMemFree does), or cuMemAlloc where the device has no
//    pools; CudaAllocations keeps the capacity ledger. Every allocation is
//    cleared (cuMemsetD8Async on the allocation stream, which allocate()
//    synchronizes before it returns), so a VM never reads what another
//    freed.
//  * Faults: an error the driver returns while enqueueing becomes that op's
//    status; a label out of range is found by the kernel and reported
//    through the op's status word (cuda_status_slots.h); a sticky error
//    (illegal address, trap, ECC) fails the op that surfaced it and every
//    op in flight with kDeviceReset, and recover() rebuilds the context.
//    Buffers, events and registrations from before a reset are refused with
//    kDeviceReset (cuda_allocations.h says how they are recognised). If the
//    context cannot be rebuilt, every later call fails with kDeviceReset at
//    once: callers get an error, never a hang.
//
// Locks, in the order they may be taken: Queue::submit_mu, then device_mu_
// (shared by every driver call, exclusive only in recover()), then
// events_mu_ / Queue::mu / drain_mu_ / the ledgers' own locks, which are
// never held across a wait. No lock is held while a completion runs.
#pragma once

#include <cublas_v2.h>
#include <cuda.h>

#include <atomic>
#include <condition_variable>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <shared_mutex>
#include <thread>
#include <unordered_map>
#include <vector>

#include "accel/backend.h"
#include "accel/backend_support.h"
#include "accel/cuda/cuda_allocations.h"
#include "accel/cuda/cuda_context.h"
#include "accel/cuda/cuda_launch.h"
#include "accel/cuda/cuda_status_slots.h"

namespace malv::accel::cuda {

class CudaBackend final : public Backend {
 public:
  [[nodiscard]] static Result<std::unique_ptr<CudaBackend>> create(
      const CudaBackendOptions& options);
  ~CudaBackend() override;
  CudaBackend(const CudaBackend&) = delete;
  CudaBackend& operator=(const CudaBackend&) = delete;

  DeviceInfo info() const override;

  Result<DevicePtr> allocate(std::size_t bytes) override;
  void free(DevicePtr ptr) override;
  std::uint64_t memory_in_use() const override;
  Status copy_to_device_now(DevicePtr dst, const void* src, std::size_t bytes) override;
  Status copy_to_host_now(void* dst, DevicePtr src, std::size_t bytes) override;

  Status register_host_memory(void* base, std::size_t bytes) override;
  void unregister_host_memory(void* base) override;

  Result<QueueId> create_queue(QueuePriority priority) override;
  void destroy_queue(QueueId queue) override;

  Result<EventId> create_event() override;
  void destroy_event(EventId event) override;
  EventState query_event(EventId event) const override;

  // An unknown queue is reported at once, on the calling thread, with kNotFound.
  void enqueue(QueueId queue, Op op, Completion done) override;
  void synchronize_all() override;

 private:
  static constexpr std::int64_t kSpinNs = 20'000;  // completion thread polls, then blocks
  static constexpr std::uint32_t kMaxResets = 16;  // then the device is given up

  // An op the completion thread will report.
  struct PendingOp {
    Completion done;
    CUevent fired = nullptr;           // recorded after the op; null: status is known
    ErrorCode known = ErrorCode::kOk;  // the status when `fired` is null
    bool has_slot = false;             // a launch with a status word
    StatusSlot slot;
    std::uint64_t event = 0;  // RecordEvent: the event and its record number
    std::uint64_t event_seq = 0;
    std::uint32_t generation = 0;  // of the context the op was issued in
  };

  struct Queue {
    std::uint64_t id = 0;
    QueuePriority priority = QueuePriority::kNormal;

    std::mutex submit_mu;  // enqueue order; guards everything down to `closed`
    CUstream stream = nullptr;
    std::uint32_t stream_generation = 0;
    cublasHandle_t blas = nullptr;
    bool closed = false;

    std::mutex mu;  // guards the rest
    std::condition_variable work_cv;
    std::condition_variable idle_cv;
    std::deque<PendingOp> pending;
    std::size_t in_flight = 0;  // pending + the one being reported
    std::vector<CUevent> spare_events;
    bool stopping = false;

    std::thread completer;
  };

  // Records run when the completion thread reports them; time_ns is when
  // it saw the latest one done.
  struct Event : EventRecords {
    CUevent handle = nullptr;
    std::uint32_t generation = 0;  // of `handle`
  };

  CudaBackend(std::unique_ptr<CudaContext> context, std::uint64_t capacity);

  std::shared_ptr<Queue> find_queue(std::uint64_t id) const;
  // Issues `op` on the queue's stream; device_mu_ shared and submit_mu held.
  OpStatus submit(Queue& queue, const Op& op, PendingOp& pending);
  OpStatus submit_copy_d2d(Queue& queue, const CopyD2D& copy);
  OpStatus submit_record(Queue& queue, const RecordEvent& record, PendingOp& pending);
  OpStatus submit_wait(Queue& queue, const WaitEvent& wait);
  // The queue's stream in the current generation (re-created after a reset).
  OpStatus ensure_stream(Queue& queue);
  Result<CUevent> take_event(Queue& queue);
  void push(Queue& queue, PendingOp pending);

  void completion_main(Queue* queue);
  ErrorCode wait_for(const Queue& queue, const PendingOp& op);
  void finish_record(const PendingOp& op);
  void recycle(Queue& queue, const PendingOp& op);

  // After a sticky error seen in `generation`: resets and rebuilds the
  // device, unless another thread already did. Takes device_mu_ exclusively.
  void recover(std::uint32_t generation, const std::string& what);
  void close_queue(Queue& queue);  // stops its completion thread, frees its stream

  std::unique_ptr<CudaContext> context_;  // replaced only under device_mu_ exclusive
  CudaAllocations allocations_;
  StatusSlots slots_;

  mutable std::shared_mutex device_mu_;
  std::atomic<std::uint32_t> generation_{0};  // written under device_mu_ exclusive
  bool failed_ = false;                       // the device could not be rebuilt; same
  std::string failure_;                       // why; same
  std::map<void*, std::size_t> host_ranges_;  // registered host memory; device_mu_ + host_mu_
  std::mutex host_mu_;

  mutable std::shared_mutex queues_mu_;
  std::unordered_map<std::uint64_t, std::shared_ptr<Queue>> queues_;
  std::uint64_t next_queue_id_ = 1;

  mutable std::mutex events_mu_;
  std::unordered_map<std::uint64_t, Event> events_;
  std::uint64_t next_event_id_ = 1;

  std::mutex drain_mu_;
  std::condition_variable drain_cv_;
  std::uint64_t outstanding_ = 0;  // pending ops on all queues; guarded by drain_mu_
};

}  // namespace malv::accel::cuda
