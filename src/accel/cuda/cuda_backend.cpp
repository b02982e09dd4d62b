#include "accel/cuda/cuda_backend.h"

#include <fmt/format.h>

#include <algorithm>
#include <limits>
#include <utility>

#include "accel/backend_support.h"
#include "accel/cuda/cuda_errors.h"
#include "base/clock.h"
#include "base/log.h"

namespace malv::accel::cuda {
namespace {

OpStatus stale_memory(std::string_view op) {
  return OpStatus::failed(
      ErrorCode::kDeviceReset,
      fmt::format("{} names device memory from before the last device reset", op));
}

// What the backend leaves to cuBLAS, the context and the driver when the
// caller did not say how much memory VMs may have.
std::uint64_t default_capacity(std::uint64_t total) {
  return total - std::min<std::uint64_t>(total / 8, std::uint64_t{1} << 30);
}

}  // namespace

Result<std::unique_ptr<CudaBackend>> CudaBackend::create(const CudaBackendOptions& options) {
  const std::uint64_t threshold =
      options.memory_bytes != 0 ? options.memory_bytes : std::numeric_limits<std::uint64_t>::max();
  MALV_ASSIGN_OR_RETURN(std::unique_ptr<CudaContext> context,
                        CudaContext::create(options.device, threshold));
  const DeviceProperties& p = context->properties();
  const std::uint64_t capacity = options.memory_bytes != 0
                                     ? std::min(options.memory_bytes, p.total_memory)
                                     : default_capacity(p.total_memory);
  log::debug("accel", "cuda: {} (sm_{}{}, {} SMs, {} MiB; {} MiB for the backend; {})", p.name,
             p.compute_major, p.compute_minor, p.multiprocessors, p.total_memory >> 20,
             capacity >> 20, context->pool() != nullptr ? "memory pool" : "cuMemAlloc");
  return std::unique_ptr<CudaBackend>(new CudaBackend(std::move(context), capacity));
}

CudaBackend::CudaBackend(std::unique_ptr<CudaContext> context, std::uint64_t capacity)
    : context_(std::move(context)), allocations_(capacity) {}

CudaBackend::~CudaBackend() {
  synchronize_all();
  std::vector<std::shared_ptr<Queue>> queues;
  {
    std::unique_lock lock(queues_mu_);
    for (auto& [id, queue] : queues_) queues.push_back(std::move(queue));
    queues_.clear();
  }
  for (const auto& queue : queues) close_queue(*queue);

  std::unique_lock dev(device_mu_);
  if (failed_ || !context_->bind().ok()) return;  // the context is gone; the driver cleans up
  {
    std::lock_guard lock(events_mu_);
    for (auto& [id, event] : events_) {
      if (event.handle != nullptr && event.generation == generation_) {
        (void)cuEventDestroy(event.handle);
      }
    }
    events_.clear();
  }
  // Whatever callers leaked goes with the backend, as on the CPU.
  for (DevicePtr ptr : allocations_.take_all()) {
    if (context_->pool() != nullptr) {
      (void)cuMemFreeAsync(address_of(ptr), context_->alloc_stream());
    } else {
      (void)cuMemFree(address_of(ptr));
    }
  }
  if (context_->alloc_stream() != nullptr) (void)cuStreamSynchronize(context_->alloc_stream());
  {
    std::lock_guard lock(host_mu_);
    for (const auto& [base, bytes] : host_ranges_) (void)cuMemHostUnregister(base);
    host_ranges_.clear();
  }
  slots_.free_all();
  context_.reset();
}

DeviceInfo CudaBackend::info() const {
  std::shared_lock dev(device_mu_);
  const DeviceProperties& p = context_->properties();
  DeviceInfo info;
  info.backend = "cuda";
  info.name = p.name;
  info.total_memory = allocations_.capacity();
  info.free_memory = allocations_.capacity() - allocations_.in_use();
  info.compute_units = static_cast<std::uint32_t>(p.multiprocessors);
  return info;
}

// ------------------------------------------------------------- memory --

Status CudaBackend::copy_to_device_now(DevicePtr dst, const void* src, std::size_t bytes) {
  std::shared_lock dev(device_mu_);
  if (failed_) return Error(ErrorCode::kDeviceReset, failure_);
  MALV_TRY(context_->bind());
  // Synchronous with respect to the host; the memory manager calls it only
  // for buffers that no queued op uses.
  const CUresult r = cuMemcpyHtoD(static_cast<CUdeviceptr>(dst.value), src, bytes);
  if (r != CUDA_SUCCESS) return cu_error(r, "cuMemcpyHtoD");
  return ok_status();
}

Status CudaBackend::copy_to_host_now(void* dst, DevicePtr src, std::size_t bytes) {
  std::shared_lock dev(device_mu_);
  if (failed_) return Error(ErrorCode::kDeviceReset, failure_);
  MALV_TRY(context_->bind());
  const CUresult r = cuMemcpyDtoH(dst, static_cast<CUdeviceptr>(src.value), bytes);
  if (r != CUDA_SUCCESS) return cu_error(r, "cuMemcpyDtoH");
  return ok_status();
}

Result<DevicePtr> CudaBackend::allocate(std::size_t bytes) {
  std::shared_lock dev(device_mu_);
  if (failed_) return Error(ErrorCode::kDeviceReset, failure_);
  MALV_TRY(context_->bind());
  // Under the device lock, so a reset cannot drop the reservation midway.
  MALV_TRY(allocations_.reserve(bytes));
  const std::uint32_t generation = generation_.load();
  // A zero-byte allocation still gets its own address, as on the CPU.
  const std::size_t request = std::max<std::size_t>(bytes, 1);
  CUdeviceptr address = 0;
  CUresult r = CUDA_SUCCESS;
  const char* call = "cuMemAlloc";
  if (context_->pool() != nullptr) {
    call = "cuMemAllocFromPoolAsync";
    r = cuMemAllocFromPoolAsync(&address, request, context_->pool(), context_->alloc_stream());
  } else {
    r = cuMemAlloc(&address, request);
  }
  if (r == CUDA_SUCCESS) {
    // The pool (and the driver) hand out memory another VM freed with its
    // data still in it. It is cleared on the allocation stream, and the
    // stream is synchronized before allocate() returns: every queue may use
    // the memory from then on, and none can name it earlier, so none sees
    // it before the clear. (A null allocation stream is the legacy default
    // stream, which orders and synchronizes the same way.)
    call = "cuMemsetD8Async(clearing an allocation)";
    r = cuMemsetD8Async(address, 0, request, context_->alloc_stream());
    if (r == CUDA_SUCCESS) {
      call = "cuStreamSynchronize(allocation stream)";
      r = cuStreamSynchronize(context_->alloc_stream());
    }
    if (r != CUDA_SUCCESS) {
      // Freed in stream order, after the clear if it was queued; the
      // address never reaches a caller.
      (void)(context_->pool() != nullptr ? cuMemFreeAsync(address, context_->alloc_stream())
                                         : cuMemFree(address));
    }
  }
  if (r != CUDA_SUCCESS) {
    allocations_.cancel(bytes);
    Error error = cu_error(r, call);
    if (r == CUDA_ERROR_OUT_OF_MEMORY) {
      error = Error(ErrorCode::kResourceExhausted,
                    fmt::format("cuda device memory: the device is out of memory ({} bytes "
                                "requested, {} of {} in use by this backend)",
                                bytes, allocations_.in_use(), allocations_.capacity()));
    }
    dev.unlock();
    if (is_sticky(r)) recover(generation, cu_error_text(r, call));
    return error;
  }
  if ((address & ~kAddressMask) != 0) {
    // Never seen: the generation tag needs the top 8 bits of the address.
    (void)(context_->pool() != nullptr ? cuMemFreeAsync(address, context_->alloc_stream())
                                       : cuMemFree(address));
    allocations_.cancel(bytes);
    return Error(ErrorCode::kInternal,
                 fmt::format("cuda: device address {:#x} uses the top 8 bits", address));
  }
  const DevicePtr ptr = tag(address, generation);
  allocations_.commit(ptr, bytes);
  return ptr;
}

void CudaBackend::free(DevicePtr ptr) {
  std::shared_lock dev(device_mu_);
  const std::uint32_t generation = generation_.load();
  if (generation_of(ptr) != generation) {
    log::debug("accel", "cuda: free of {:#x}, from before the device reset, ignored", ptr.value);
    return;
  }
  if (!allocations_.release(ptr)) {
    log::warn("accel", "cuda device memory: free of unknown pointer {:#x} ignored", ptr.value);
    return;
  }
  if (failed_ || !context_->bind().ok()) return;
  // Stream-ordered: unlike cuMemFree, this does not wait for the device to
  // go idle, so one VM freeing a buffer never stalls another's work.
  const CUresult r = context_->pool() != nullptr
                         ? cuMemFreeAsync(address_of(ptr), context_->alloc_stream())
                         : cuMemFree(address_of(ptr));
  if (r == CUDA_SUCCESS) return;
  const std::string what = cu_error_text(r, "free of device memory");
  log::warn("accel", "cuda: {}", what);
  dev.unlock();
  if (is_sticky(r)) recover(generation, what);
}

std::uint64_t CudaBackend::memory_in_use() const { return allocations_.in_use(); }

Status CudaBackend::register_host_memory(void* base, std::size_t bytes) {
  if (bytes == 0) return ok_status();
  std::shared_lock dev(device_mu_);
  if (failed_) return Error(ErrorCode::kDeviceReset, failure_);
  MALV_TRY(context_->bind());
  const std::uint32_t generation = generation_.load();
  const CUresult r = cuMemHostRegister(base, bytes, CU_MEMHOSTREGISTER_PORTABLE);
  if (r == CUDA_SUCCESS) {
    std::lock_guard lock(host_mu_);
    host_ranges_[base] = bytes;
    return ok_status();
  }
  const std::string what = cu_error_text(r, "cuMemHostRegister");
  if (is_sticky(r)) {
    dev.unlock();
    recover(generation, what);
    return Error(ErrorCode::kDeviceReset, what);
  }
  // Still correct without it: the driver stages copies from pageable memory.
  log::warn("accel", "cuda: {} ({} bytes at {}); copies from it will be staged, not DMA", what,
            bytes, base);
  return ok_status();
}

void CudaBackend::unregister_host_memory(void* base) {
  std::shared_lock dev(device_mu_);
  {
    std::lock_guard lock(host_mu_);
    if (host_ranges_.erase(base) == 0) return;
  }
  if (failed_ || !context_->bind().ok()) return;
  const CUresult r = cuMemHostUnregister(base);
  if (r != CUDA_SUCCESS) log::warn("accel", "cuda: {}", cu_error_text(r, "cuMemHostUnregister"));
}

// ------------------------------------------------------------- queues --

Result<QueueId> CudaBackend::create_queue(QueuePriority priority) {
  auto queue = std::make_shared<Queue>();
  queue->priority = priority;
  {
    std::shared_lock dev(device_mu_);
    if (failed_) return Error(ErrorCode::kDeviceReset, failure_);
    MALV_TRY(context_->bind());
    OpStatus s = ensure_stream(*queue);
    if (!s.ok()) return Error(s.code, s.detail);
  }
  {
    std::unique_lock lock(queues_mu_);
    queue->id = next_queue_id_++;
  }
  // The thread holds the queue too, and runs before anyone can name it.
  queue->completer = std::thread([this, queue] { completion_main(queue.get()); });
  {
    std::unique_lock lock(queues_mu_);
    queues_.emplace(queue->id, queue);
  }
  return QueueId{queue->id};
}

void CudaBackend::destroy_queue(QueueId id) {
  std::shared_ptr<Queue> queue;
  {
    std::unique_lock lock(queues_mu_);
    auto it = queues_.find(id.value());
    if (it == queues_.end()) return;
    queue = std::move(it->second);
    queues_.erase(it);
  }
  close_queue(*queue);
}

void CudaBackend::close_queue(Queue& queue) {
  {
    std::lock_guard submit(queue.submit_mu);
    queue.closed = true;
  }
  {
    std::unique_lock lock(queue.mu);
    queue.idle_cv.wait(lock, [&] { return queue.in_flight == 0; });
    queue.stopping = true;
  }
  queue.work_cv.notify_all();
  if (queue.completer.joinable()) queue.completer.join();

  std::lock_guard submit(queue.submit_mu);
  std::shared_lock dev(device_mu_);
  const bool live = !failed_ && queue.stream_generation == generation_ && context_->bind().ok();
  if (live && queue.stream != nullptr) {
    // Ops that nobody asked to hear about may still be running.
    (void)cuStreamSynchronize(queue.stream);
    if (queue.blas != nullptr) (void)cublasDestroy(queue.blas);
    (void)cuStreamDestroy(queue.stream);
  }
  std::lock_guard lock(queue.mu);
  if (live) {
    for (CUevent event : queue.spare_events) (void)cuEventDestroy(event);
  }
  queue.spare_events.clear();
  queue.stream = nullptr;
  queue.blas = nullptr;
}

std::shared_ptr<CudaBackend::Queue> CudaBackend::find_queue(std::uint64_t id) const {
  std::shared_lock lock(queues_mu_);
  auto it = queues_.find(id);
  return it == queues_.end() ? nullptr : it->second;
}

OpStatus CudaBackend::ensure_stream(Queue& queue) {
  const std::uint32_t generation = generation_.load();
  if (queue.stream != nullptr && queue.stream_generation == generation) return {};
  // A stream from before a reset died with its context (its cuBLAS handle
  // is abandoned, not destroyed: see recover()).
  queue.stream = nullptr;
  queue.blas = nullptr;
  const DeviceProperties& p = context_->properties();
  const int priority =
      queue.priority == QueuePriority::kHigh ? p.greatest_priority : p.least_priority;
  CUstream stream = nullptr;
  const CUresult r = cuStreamCreateWithPriority(&stream, CU_STREAM_NON_BLOCKING, priority);
  if (r != CUDA_SUCCESS) return OpStatus::driver(r, "cuStreamCreateWithPriority");
  queue.stream = stream;
  queue.stream_generation = generation;
  return {};
}

// ------------------------------------------------------------- events --

Result<EventId> CudaBackend::create_event() {
  std::lock_guard lock(events_mu_);
  const std::uint64_t id = next_event_id_++;
  events_.emplace(id, Event{});
  return EventId{id};
}

void CudaBackend::destroy_event(EventId id) {
  std::shared_lock dev(device_mu_);
  CUevent handle = nullptr;
  {
    std::lock_guard lock(events_mu_);
    auto it = events_.find(id.value());
    if (it == events_.end()) return;
    if (it->second.generation == generation_) handle = it->second.handle;
    events_.erase(it);
  }
  // Safe with records still in flight: the driver frees it once they ran.
  if (handle != nullptr && !failed_ && context_->bind().ok()) (void)cuEventDestroy(handle);
}

EventState CudaBackend::query_event(EventId id) const {
  std::lock_guard lock(events_mu_);
  auto it = events_.find(id.value());
  if (it == events_.end()) return EventState{true, 0};
  return it->second.state();
}

OpStatus CudaBackend::submit_record(Queue& queue, const RecordEvent& record, PendingOp& pending) {
  std::lock_guard lock(events_mu_);
  auto it = events_.find(record.event.value());
  if (it == events_.end()) {
    return OpStatus::failed(ErrorCode::kNotFound,
                            fmt::format("record of unknown event {}", record.event.value()));
  }
  Event& event = it->second;
  const std::uint32_t generation = generation_.load();
  if (event.handle == nullptr || event.generation != generation) {
    // Timing is off: time_ns is the host's clock when the record is seen done.
    CUevent handle = nullptr;
    const CUresult r = cuEventCreate(&handle, CU_EVENT_DISABLE_TIMING);
    if (r != CUDA_SUCCESS) return OpStatus::driver(r, "cuEventCreate");
    event.handle = handle;
    event.generation = generation;
  }
  // Under events_mu_, so record numbers and the driver's "latest record"
  // agree even when two queues record the same event at once.
  const CUresult r = cuEventRecord(event.handle, queue.stream);
  if (r != CUDA_SUCCESS) return OpStatus::driver(r, "cuEventRecord");
  pending.event = record.event.value();
  pending.event_seq = event.record();
  return {};
}

OpStatus CudaBackend::submit_wait(Queue& queue, const WaitEvent& wait) {
  std::lock_guard lock(events_mu_);
  auto it = events_.find(wait.event.value());
  // Unknown, never recorded, or recorded only before a reset: nothing to wait for.
  if (it == events_.end() || it->second.recorded == 0 || it->second.handle == nullptr ||
      it->second.generation != generation_.load()) {
    return {};
  }
  const CUresult r = cuStreamWaitEvent(queue.stream, it->second.handle, CU_EVENT_WAIT_DEFAULT);
  if (r != CUDA_SUCCESS) return OpStatus::driver(r, "cuStreamWaitEvent");
  return {};
}

// ---------------------------------------------------------------- ops --

void CudaBackend::enqueue(QueueId id, Op op, Completion done) {
  std::shared_ptr<Queue> queue = find_queue(id.value());
  bool unknown = queue == nullptr;
  bool sticky = false;
  std::uint32_t sticky_generation = 0;
  std::string sticky_what;
  if (!unknown) {
    std::lock_guard submit_lock(queue->submit_mu);
    unknown = queue->closed;
    if (!unknown) {
      std::shared_lock dev(device_mu_);
      PendingOp pending;
      pending.done = done;
      pending.generation = generation_.load();
      OpStatus s;
      if (failed_) {
        s = OpStatus::failed(ErrorCode::kDeviceReset, failure_);
      } else if (Status bound = context_->bind(); !bound.ok()) {
        s = OpStatus::failed(bound.error().code(), bound.error().message());
      } else {
        s = ensure_stream(*queue);
        if (s.ok()) s = submit(*queue, op, pending);
      }
      const bool tracked = done.fn != nullptr || pending.has_slot || pending.event != 0;
      if (s.ok() && tracked) {
        Result<CUevent> fired = take_event(*queue);
        CUresult r = fired.ok() ? cuEventRecord(*fired, queue->stream) : CUDA_SUCCESS;
        if (!fired.ok()) {
          s = OpStatus::failed(fired.error().code(), fired.error().message());
        } else if (r != CUDA_SUCCESS) {
          s = OpStatus::driver(r, "cuEventRecord");
          (void)cuEventDestroy(*fired);
        } else {
          pending.fired = *fired;
        }
      }
      if (!s.ok()) {
        pending.known = s.code;
        // A kernel of this launch may already be queued and write the word
        // later: the slot is abandoned rather than reused.
        pending.has_slot = false;
        if (is_sticky(s.result)) {
          sticky = true;
          sticky_generation = pending.generation;
          sticky_what = s.detail;
        } else if (s.code != ErrorCode::kDeviceReset && s.code != ErrorCode::kNotFound) {
          log::warn("accel", "cuda: queue {}: {}", queue->id, s.detail);
        }
      }
      if (tracked) push(*queue, std::move(pending));
    }
  }
  if (unknown && done.fn != nullptr) done.fn(done.context, done.cookie, ErrorCode::kNotFound);
  if (sticky) recover(sticky_generation, sticky_what);
}

OpStatus CudaBackend::submit(Queue& queue, const Op& op, PendingOp& pending) {
  const std::uint32_t generation = generation_.load();
  auto stale = [generation](DevicePtr ptr) { return generation_of(ptr) != generation; };
  CUstream stream = queue.stream;
  return std::visit(
      Overloaded{
          [&](const CopyH2D& c) -> OpStatus {
            if (c.bytes == 0) return {};
            if (stale(c.dst)) return stale_memory("copy to device");
            const CUresult r = cuMemcpyHtoDAsync(address_of(c.dst), c.src, c.bytes, stream);
            return r == CUDA_SUCCESS ? OpStatus{} : OpStatus::driver(r, "cuMemcpyHtoDAsync");
          },
          [&](const CopyD2H& c) -> OpStatus {
            if (c.bytes == 0) return {};
            if (stale(c.src)) return stale_memory("copy from device");
            const CUresult r = cuMemcpyDtoHAsync(c.dst, address_of(c.src), c.bytes, stream);
            return r == CUDA_SUCCESS ? OpStatus{} : OpStatus::driver(r, "cuMemcpyDtoHAsync");
          },
          [&](const CopyD2D& c) -> OpStatus {
            if (c.bytes == 0) return {};
            if (stale(c.src) || stale(c.dst)) return stale_memory("device copy");
            return submit_copy_d2d(queue, c);
          },
          [&](const Memset& m) -> OpStatus {
            if (m.bytes == 0) return {};
            if (stale(m.dst)) return stale_memory("memset");
            const CUresult r = cuMemsetD8Async(address_of(m.dst), m.value, m.bytes, stream);
            return r == CUDA_SUCCESS ? OpStatus{} : OpStatus::driver(r, "cuMemsetD8Async");
          },
          [&](const Launch& l) -> OpStatus {
            if (needs_status_slot(l.kernel)) {
              Result<StatusSlot> slot = slots_.take();
              if (!slot.ok()) return OpStatus::failed(slot.error().code(), slot.error().message());
              pending.slot = *slot;
              pending.has_slot = true;
            }
            LaunchTarget target;
            target.kernels = &context_->kernels();
            target.stream = stream;
            target.blas = &queue.blas;
            target.generation = generation;
            target.max_blocks =
                static_cast<unsigned>(std::max(1, context_->properties().multiprocessors * 32));
            return launch_builtin(target, l, pending.has_slot ? &pending.slot : nullptr);
          },
          [&](const RecordEvent& r) { return submit_record(queue, r, pending); },
          [&](const WaitEvent& w) { return submit_wait(queue, w); },
          [](const Marker&) { return OpStatus{}; },
          [](const HostCall&) {
            // Host code over device memory: the host cannot address it.
            return OpStatus::failed(ErrorCode::kUnimplemented,
                                    "host tasks (PyTorch operators) need memory the host "
                                    "addresses; the CUDA backend's is on the device");
          },
      },
      op);
}

// memmove semantics, as on the CPU: overlapping ranges go through a
// stream-ordered temporary, or without a pool in chunks no longer than the
// distance between them, in the direction that reads before it overwrites.
OpStatus CudaBackend::submit_copy_d2d(Queue& queue, const CopyD2D& copy) {
  const CUdeviceptr src = address_of(copy.src);
  const CUdeviceptr dst = address_of(copy.dst);
  const std::uint64_t bytes = copy.bytes;
  if (src == dst) return {};
  CUstream stream = queue.stream;
  const bool overlap = src < dst + bytes && dst < src + bytes;
  if (!overlap) {
    const CUresult r = cuMemcpyDtoDAsync(dst, src, bytes, stream);
    return r == CUDA_SUCCESS ? OpStatus{} : OpStatus::driver(r, "cuMemcpyDtoDAsync");
  }
  if (context_->pool() != nullptr) {
    CUdeviceptr temp = 0;
    CUresult r = cuMemAllocFromPoolAsync(&temp, bytes, context_->pool(), stream);
    if (r != CUDA_SUCCESS) return OpStatus::driver(r, "cuMemAllocFromPoolAsync(overlapping copy)");
    r = cuMemcpyDtoDAsync(temp, src, bytes, stream);
    if (r == CUDA_SUCCESS) r = cuMemcpyDtoDAsync(dst, temp, bytes, stream);
    const CUresult freed = cuMemFreeAsync(temp, stream);
    if (r == CUDA_SUCCESS) r = freed;
    return r == CUDA_SUCCESS ? OpStatus{} : OpStatus::driver(r, "overlapping cuMemcpyDtoDAsync");
  }
  const std::uint64_t distance = src > dst ? src - dst : dst - src;
  std::uint64_t done = 0;
  while (done < bytes) {
    const std::uint64_t chunk = std::min(distance, bytes - done);
    // Forward when the destination is below the source, else from the end.
    const std::uint64_t offset = dst < src ? done : bytes - done - chunk;
    const CUresult r = cuMemcpyDtoDAsync(dst + offset, src + offset, chunk, stream);
    if (r != CUDA_SUCCESS) return OpStatus::driver(r, "overlapping cuMemcpyDtoDAsync");
    done += chunk;
  }
  return {};
}

Result<CUevent> CudaBackend::take_event(Queue& queue) {
  {
    std::lock_guard lock(queue.mu);
    if (!queue.spare_events.empty()) {
      CUevent event = queue.spare_events.back();
      queue.spare_events.pop_back();
      return event;
    }
  }
  // Blocking sync: the completion thread sleeps in cuEventSynchronize
  // rather than spinning for the length of a long kernel.
  CUevent event = nullptr;
  const CUresult r = cuEventCreate(&event, CU_EVENT_DISABLE_TIMING | CU_EVENT_BLOCKING_SYNC);
  if (r != CUDA_SUCCESS) return cu_error(r, "cuEventCreate");
  return event;
}

void CudaBackend::push(Queue& queue, PendingOp pending) {
  {
    std::lock_guard lock(drain_mu_);
    ++outstanding_;
  }
  {
    std::lock_guard lock(queue.mu);
    queue.pending.push_back(std::move(pending));
    ++queue.in_flight;
  }
  queue.work_cv.notify_one();
}

void CudaBackend::synchronize_all() {
  {
    std::unique_lock lock(drain_mu_);
    drain_cv_.wait(lock, [this] { return outstanding_ == 0; });
  }
  // Ops enqueued without a completion are not tracked: wait for the streams.
  std::vector<std::shared_ptr<Queue>> queues;
  {
    std::shared_lock lock(queues_mu_);
    for (const auto& [id, queue] : queues_) queues.push_back(queue);
  }
  for (const auto& queue : queues) {
    std::uint32_t generation = 0;
    CUresult r = CUDA_SUCCESS;
    {
      std::lock_guard submit(queue->submit_mu);
      std::shared_lock dev(device_mu_);
      generation = generation_.load();
      if (failed_ || queue->stream == nullptr || queue->stream_generation != generation ||
          !context_->bind().ok()) {
        continue;
      }
      r = cuStreamSynchronize(queue->stream);
    }
    if (is_sticky(r)) recover(generation, cu_error_text(r, "cuStreamSynchronize"));
  }
}

// --------------------------------------------------------- completions --

void CudaBackend::completion_main(Queue* queue) {
  for (;;) {
    PendingOp op;
    {
      std::unique_lock lock(queue->mu);
      queue->work_cv.wait(lock, [&] { return !queue->pending.empty() || queue->stopping; });
      if (queue->pending.empty()) return;
      op = std::move(queue->pending.front());
      queue->pending.pop_front();
    }
    const ErrorCode status = op.fired != nullptr ? wait_for(*queue, op) : op.known;
    if (op.event != 0) finish_record(op);
    if (op.done.fn != nullptr) op.done.fn(op.done.context, op.done.cookie, status);
    recycle(*queue, op);
    {
      std::lock_guard lock(queue->mu);
      if (--queue->in_flight == 0) queue->idle_cv.notify_all();
    }
    {
      std::lock_guard lock(drain_mu_);
      if (--outstanding_ == 0) drain_cv_.notify_all();
    }
  }
}

ErrorCode CudaBackend::wait_for(const Queue& queue, const PendingOp& op) {
  std::shared_lock dev(device_mu_);
  // Ops of a context that was reset since are gone with it.
  if (op.generation != generation_.load() || failed_) return ErrorCode::kDeviceReset;
  if (!context_->bind().ok()) return ErrorCode::kInternal;
  // Most ops finish within microseconds of the previous one: poll briefly
  // before paying for a sleep and a wake-up.
  CUresult r = CUDA_ERROR_NOT_READY;
  spin_until(
      [&] {
        r = cuEventQuery(op.fired);
        return r != CUDA_ERROR_NOT_READY;
      },
      kSpinNs);
  if (r == CUDA_ERROR_NOT_READY) r = cuEventSynchronize(op.fired);
  if (r == CUDA_SUCCESS) {
    if (!op.has_slot) return ErrorCode::kOk;
#if !defined(__SANITIZE_THREAD__)
    // The slot is read only after the event query that says the kernel is
    // done. ThreadSanitizer does not support fences (GCC rejects them with
    // -fsanitize=thread), and a device's store is invisible to it anyway.
    std::atomic_thread_fence(std::memory_order_acquire);
#endif
    return op.slot.read();
  }
  const std::string what = cu_error_text(r, fmt::format("an op on queue {}", queue.id));
  if (is_sticky(r)) {
    dev.unlock();
    recover(op.generation, what);
    return ErrorCode::kDeviceReset;
  }
  log::warn("accel", "cuda: {}", what);
  return cu_error_code(r);
}

void CudaBackend::finish_record(const PendingOp& op) {
  const std::int64_t now = mono_now_ns();
  std::lock_guard lock(events_mu_);
  auto it = events_.find(op.event);
  if (it == events_.end()) return;  // destroyed since: nobody can ask
  it->second.complete(op.event_seq, now);
}

void CudaBackend::recycle(Queue& queue, const PendingOp& op) {
  std::shared_lock dev(device_mu_);
  // After a reset the event and the status word went with the old context.
  if (op.generation != generation_.load() || failed_) return;
  if (op.has_slot) slots_.give_back(op.slot);
  if (op.fired != nullptr) {
    std::lock_guard lock(queue.mu);
    queue.spare_events.push_back(op.fired);
  }
}

// ------------------------------------------------------------ recovery --

void CudaBackend::recover(std::uint32_t generation, const std::string& what) {
  std::unique_lock dev(device_mu_);
  if (generation_.load() != generation || failed_) return;  // somebody else did
  const std::uint32_t next = generation + 1;
  log::error("accel",
             "cuda: {}: the context is lost; resetting the device (every op in flight fails "
             "with device_reset, every buffer and event is gone)",
             what);
  // From here on, everything issued before is recognised as stale.
  generation_.store(next);
  allocations_.drop_all();
  slots_.forget_all();
  {
    std::shared_lock lock(queues_mu_);
    for (const auto& [id, queue] : queues_) {
      // Streams are re-created on their next op. cuBLAS handles are
      // abandoned: destroying one whose context was reset under it is not
      // something the library promises to survive.
      queue->stream = nullptr;
      queue->blas = nullptr;
      std::lock_guard queue_lock(queue->mu);
      queue->spare_events.clear();
    }
  }
  {
    std::lock_guard lock(events_mu_);
    for (auto& [id, event] : events_) event.handle = nullptr;
  }
  if (next >= kMaxResets || next >= kMaxGenerations) {
    failed_ = true;
    failure_ =
        fmt::format("the CUDA device failed {} times and was given up (last: {})", next, what);
    log::error("accel", "cuda: {}", failure_);
    return;
  }
  Status rebuilt = context_->rebuild();
  if (!rebuilt.ok()) {
    failed_ = true;
    failure_ = fmt::format("the CUDA device could not be rebuilt after {}: {}", what,
                           rebuilt.error().to_string());
    log::error("accel", "cuda: {}; restart malv serve", failure_);
    return;
  }
  std::lock_guard lock(host_mu_);
  for (const auto& [base, bytes] : host_ranges_) {
    const CUresult r = cuMemHostRegister(base, bytes, CU_MEMHOSTREGISTER_PORTABLE);
    if (r != CUDA_SUCCESS) {
      log::warn("accel", "cuda: after the reset, {}", cu_error_text(r, "cuMemHostRegister"));
    }
  }
  log::info("accel", "cuda: {} rebuilt after reset {}", context_->properties().name, next);
}

}  // namespace malv::accel::cuda
