// Backend: the accelerator as the rest of MaLV-OS sees it.
//
// Shaped for a GPU and implemented by the CPU too: device memory is not host
// memory (callers hold DevicePtr values, never dereference them), work is
// queued asynchronously on ordered queues, events mark points in a queue, and
// every queued op reports its own status through a completion callback.
//
//   auto backend = make_cpu_backend({});
//   DevicePtr buf = backend->allocate(4096).value();
//   QueueId q = backend->create_queue(QueuePriority::kNormal).value();
//   backend->enqueue(q, CopyH2D{src, buf, 4096}, Completion{&on_done, ctx, tag});
//
// Thread-safety: every method may be called from any thread. Completion
// callbacks run on backend threads, in queue order for each queue, and must
// not block for long or call back into enqueue() of the same queue (they
// may enqueue on other queues).
//
// Validation is the caller's job (microlake decodes and checks every guest
// input first); a backend trusts its arguments except where only the device
// can know (a kernel finding bad data, e.g. a label out of range), and
// reports those through the op's status.
#pragma once

#include <sys/types.h>

#include <array>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "accel/kernel_registry.h"
#include "base/strong_id.h"
#include "malv/error.h"
#include "malv/result.h"

namespace malv::accel {

struct QueueTag {};
struct EventTag {};
using QueueId = StrongId<QueueTag>;
using EventId = StrongId<EventTag>;

struct DeviceInfo {
  std::string backend;  // "cpu" or "cuda"
  std::string name;     // e.g. "OpenBLAS on 2 cores", "NVIDIA H100 80GB HBM3"
  std::uint64_t total_memory = 0;
  std::uint64_t free_memory = 0;
  std::uint32_t compute_units = 0;
};

enum class QueuePriority { kNormal, kHigh };

// Ops. Pointers into host memory (CopyH2D::src, CopyD2H::dst) must stay valid
// until the op's completion runs.
struct CopyH2D {
  const void* src;
  DevicePtr dst;
  std::size_t bytes;
};
struct CopyD2H {
  DevicePtr src;
  void* dst;
  std::size_t bytes;
};
struct CopyD2D {
  DevicePtr src;
  DevicePtr dst;
  std::size_t bytes;
};
struct Memset {
  DevicePtr dst;
  std::uint8_t value;
  std::size_t bytes;
};
struct Launch {
  KernelId kernel;
  std::array<KernelArgValue, kMaxKernelArgs> args;
  std::uint32_t argc;
};
struct RecordEvent {
  EventId event;
};
// The queue does not proceed past this op until the event's latest record
// (at enqueue time of this op) has completed. An event never recorded is
// complete.
struct WaitEvent {
  EventId event;
};
// Does nothing; its completion marks that everything before it finished.
struct Marker {};
// Host code run by a backend worker in queue order: work that is not a
// kernel of the backend's own, over memory the host addresses directly (a
// PyTorch operator of the ATen executor on the CPU backend's memory:
// accel/aten_operators.h). A backend whose memory the host cannot address
// (CUDA) completes it with kUnimplemented.
class HostTask {
 public:
  virtual ~HostTask() = default;
  virtual ErrorCode run() = 0;
};
struct HostCall {
  std::shared_ptr<HostTask> task;
  // Expected run time, for the scheduler's batches and shares (0: unknown).
  std::int64_t est_ns = 0;
};

using Op = std::variant<CopyH2D, CopyD2H, CopyD2D, Memset, Launch, RecordEvent, WaitEvent, Marker,
                        HostCall>;

// Called on a backend thread once the op has run (or failed).
using CompletionFn = void (*)(void* context, std::uint64_t cookie, ErrorCode status);
struct Completion {
  CompletionFn fn = nullptr;  // may be null: nobody wants to know
  void* context = nullptr;
  std::uint64_t cookie = 0;
};

struct EventState {
  bool complete = false;     // every record enqueued so far has run
  std::int64_t time_ns = 0;  // monotonic time at which the latest record ran
};

class Backend {
 public:
  virtual ~Backend() = default;

  virtual DeviceInfo info() const = 0;

  // Device memory. allocate() fails with kResourceExhausted past capacity.
  // free() of memory with ops still queued is the caller's bug.
  [[nodiscard]] virtual Result<DevicePtr> allocate(std::size_t bytes) = 0;
  virtual void free(DevicePtr ptr) = 0;
  virtual std::uint64_t memory_in_use() const = 0;

  // Copies between device memory and host memory now, on the calling thread,
  // and returns when the copy is done. For memory no queued op uses: the
  // vGPU memory manager's spill (device to host) and fill (host to device)
  // of a VM's buffers. Never call it from a completion callback.
  [[nodiscard]] virtual Status copy_to_device_now(DevicePtr dst, const void* src,
                                                  std::size_t bytes) = 0;
  [[nodiscard]] virtual Status copy_to_host_now(void* dst, DevicePtr src, std::size_t bytes) = 0;

  // Host memory that copies will read or write (a session's shared arena).
  // A GPU backend page-locks it for DMA; the CPU backend needs nothing.
  [[nodiscard]] virtual Status register_host_memory(void* base, std::size_t bytes) = 0;
  virtual void unregister_host_memory(void* base) = 0;

  [[nodiscard]] virtual Result<QueueId> create_queue(QueuePriority priority) = 0;
  // Waits for the queue's pending ops to finish, then destroys it.
  virtual void destroy_queue(QueueId queue) = 0;
  // Ops queued and not yet started complete with kAborted, in queue order,
  // after the op that is running (if any); ops enqueued later are aborted
  // too. For a queue whose owner is gone (a guest that disconnected). The
  // default lets them run: a backend without a queue of its own in front of
  // the device (the CPU and CUDA backends) has nothing cheap to cancel.
  virtual void cancel_queue(QueueId /*queue*/) {}

  // Host-owned device buffers that must stay on the device until released
  // (the data pipeline's staged slots, about to be consumed). A backend
  // whose memory is managed (the vGPU's view of an oversubscribed VM) never
  // evicts a held buffer; it may refuse a hold that would leave too little
  // room for anything else (false: the buffer may be evicted, which costs a
  // copy, never data). Backends of plain device memory keep everything.
  virtual bool hold_resident(DevicePtr /*ptr*/) { return true; }
  virtual void release_resident(DevicePtr /*ptr*/) {}

  [[nodiscard]] virtual Result<EventId> create_event() = 0;
  virtual void destroy_event(EventId event) = 0;
  virtual EventState query_event(EventId event) const = 0;

  // Queues an op; it runs after every op enqueued before it on this queue.
  virtual void enqueue(QueueId queue, Op op, Completion done) = 0;

  // Queues ops in order, exactly as ops.size() calls of enqueue() would, op
  // i completing with cookie done.cookie + i. The ops are moved from. The
  // batch path of the remoting stack: a backend overrides it to take its
  // locks and wake its workers once per batch instead of once per op.
  virtual void enqueue_many(QueueId queue, std::span<Op> ops, Completion done) {
    for (std::size_t i = 0; i < ops.size(); ++i) {
      enqueue(queue, std::move(ops[i]), Completion{done.fn, done.context, done.cookie + i});
    }
  }

  // Blocks until every queue is drained.
  virtual void synchronize_all() = 0;

  // The host threads that run normal-priority (batch) kernels, by Linux
  // thread id: where the device is the host's own CPU, these threads are
  // the device. The host's CPU control keeps them off the cores it
  // dedicates to a latency VM (docs/cpu-control.md). Empty where kernels
  // run elsewhere (a GPU), and for the high-priority workers, which run
  // only latency work.
  virtual std::vector<pid_t> batch_worker_threads() const { return {}; }
};

struct CpuBackendOptions {
  std::uint64_t memory_bytes = 0;  // device memory capacity; 0 = a quarter of RAM
  unsigned workers = 0;            // worker threads for every queue; 0 = cores the host may use
  // Threads that run only QueuePriority::kHigh queues, at the OS priority
  // the backend was created with, while the general workers run at nice
  // `worker_nice` (0: unchanged): high-priority work starts at once and
  // takes a core from the general workers' kernels (cpu/cpu_backend.h).
  unsigned high_priority_workers = 1;
  int worker_nice = 10;
  // Device memory holds zeros when handed out, so no guest reads what
  // another freed (cpu/cpu_device_memory.h says how). false exists ONLY for
  // `malv bench alloc`, which measures what clearing costs; never turn it
  // off where more than one guest shares the backend.
  bool clear_memory = true;
};

std::unique_ptr<Backend> make_cpu_backend(const CpuBackendOptions& options);

// The CUDA backend lives in a plugin (libmalv_accel_cuda.so) that is loaded
// on first use, so nothing that links malv_accel needs the NVIDIA driver to
// start (cuda/cuda_plugin_loader.cpp says how it is found).
struct CudaBackendOptions {
  int device = 0;                  // CUDA device ordinal
  std::uint64_t memory_bytes = 0;  // device memory the backend may allocate; 0 = all of it
};

// kUnavailable ("no CUDA device: ...") without a driver or a device,
// kUnimplemented when this build has no CUDA backend.
[[nodiscard]] Result<std::unique_ptr<Backend>> make_cuda_backend(const CudaBackendOptions& options);
// Whether the CUDA backend plugin was built (the toolkit was found).
bool cuda_backend_built();

struct BackendOptions {
  std::uint64_t memory_bytes = 0;  // device memory capacity; 0 = the backend's default
  unsigned workers = 0;            // CPU backend worker threads; 0 = cores the host may use
  int cpu_worker_nice = 10;        // the CPU backend's general workers (CpuBackendOptions)
  int cuda_device = 0;
};

// The backend named "cpu", "cuda" or "auto" (CUDA when a device is present,
// else the CPU); says in the log which one it picked and why.
[[nodiscard]] Result<std::unique_ptr<Backend>> make_backend(std::string_view name,
                                                            const BackendOptions& options);

}  // namespace malv::accel
