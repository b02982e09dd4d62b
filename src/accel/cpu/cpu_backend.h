// CpuBackend: the accelerator interface on the host CPU.
//
// Device memory is host memory with its own accounting (CpuDeviceMemory);
// kernels are OpenBLAS gemm plus plain loops (cpu_kernels.h). Work runs on a
// pool of worker threads:
//
//  * Each queue holds two op vectors: `pending`, which enqueue() appends to,
//    and `running`, which the one worker holding the queue executes from. A
//    worker takes a queue from the ready list and swaps the two vectors in
//    O(1), so enqueue() is one lock, one append and, only when a queue goes
//    from idle to ready while a worker sleeps, one wake-up; vectors keep
//    their capacity, so steady-state enqueue does not allocate.
//  * A queue is held by at most one worker at a time, so its ops run in
//    order; different queues run on different workers in parallel.
//  * A WaitEvent whose record has not run parks its queue on the event (the
//    worker moves on to other ready queues); the RecordEvent that satisfies
//    it puts the queue back on the ready list. Nothing spins.
//  * A worker runs at most kOpsPerTurn ops of a queue before putting it at
//    the back of the ready list, so one busy queue cannot starve others;
//    high-priority queues are taken before normal ones.
//  * Priority that does not wait for a kernel to end: besides the general
//    workers, `high_priority_workers` threads take only high-priority
//    queues and sleep otherwise, and the general workers lower their own OS
//    priority (`worker_nice`). A kHigh op arriving while every general
//    worker is inside a long kernel starts at once on a high-priority
//    worker, and the kernel (Linux's scheduler) gives that thread the core
//    over the general workers: the CPU's preemption standing in for a GPU's
//    stream priorities.
//
// Lock order: mu_ (scheduling state) is never held while an op or a
// completion runs; CpuDeviceMemory's lock is independent of it.
#pragma once

#include <atomic>
#include <condition_variable>
#include <deque>
#include <memory>
#include <mutex>
#include <thread>
#include <unordered_map>
#include <vector>

#include "accel/backend.h"
#include "accel/backend_support.h"
#include "accel/cpu/cpu_device_memory.h"

namespace malv::accel::cpu {

class CpuBackend final : public Backend {
 public:
  explicit CpuBackend(const CpuBackendOptions& options);
  ~CpuBackend() override;
  CpuBackend(const CpuBackend&) = delete;
  CpuBackend& operator=(const CpuBackend&) = delete;

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

  // An unknown queue id is reported at once, on the calling thread, through
  // the completion with kNotFound.
  void enqueue(QueueId queue, Op op, Completion done) override;
  // One lock and at most one wake-up for the whole batch.
  void enqueue_many(QueueId queue, std::span<Op> ops, Completion done) override;
  void synchronize_all() override;
  std::vector<pid_t> batch_worker_threads() const override;

 private:
  static constexpr std::size_t kOpsPerTurn = 4096;
  static constexpr std::int64_t kSpinNs = 50'000;  // how long an idle worker polls

  struct QueuedOp {
    Op op;
    Completion done;
    // RecordEvent: this record's sequence number (0: event unknown at enqueue).
    // WaitEvent: the record it waits for (0: nothing to wait for).
    std::uint64_t event_seq;
  };

  struct Queue {
    enum class State { kIdle, kReady, kRunning, kBlocked };
    QueuePriority priority;
    State state = State::kIdle;     // guarded by mu_
    std::vector<QueuedOp> pending;  // guarded by mu_
    std::vector<QueuedOp> running;  // owned by the worker holding the queue
    std::size_t next = 0;           // next op in `running`; same owner
  };

  struct Event : EventRecords {
    std::vector<Queue*> waiters;  // queues parked on this event
  };

  // Counts of sleeping workers to wake once mu_ is released.
  struct Wakeups {
    unsigned general = 0;
    unsigned high = 0;
  };

  void worker_main(bool high_only);
  // Runs ops of a queue this worker holds (mu_ released on entry). Returns
  // with `lock` held; true when the queue parked itself on an event.
  bool run_turn(Queue& queue, std::unique_lock<std::mutex>& lock);
  // Takes mu_ through `lock`; true when the queue may proceed past the wait,
  // otherwise the queue is parked (and `lock` stays held).
  bool try_pass_wait(Queue& queue, const WaitEvent& wait, std::uint64_t target,
                     std::unique_lock<std::mutex>& lock);
  ErrorCode run_record(const RecordEvent& record, std::uint64_t seq);

  // Appends an op to a queue (mu_ held), noting a worker to wake if it
  // became ready.
  void append_locked(Queue& queue, Op&& op, Completion done, Wakeups& wake);
  void make_ready(Queue* queue, Wakeups& wake);  // mu_ held
  Queue* take_ready(bool high_only);             // mu_ held
  void wake_workers(const Wakeups& wake);        // mu_ not held

  const unsigned worker_count_;       // general workers
  const unsigned high_worker_count_;  // workers for high-priority queues only
  CpuDeviceMemory memory_;

  mutable std::mutex mu_;
  std::condition_variable work_cv_;  // a queue became ready, or stopping_
  std::condition_variable high_cv_;  // a high-priority queue became ready, or stopping_
  std::condition_variable idle_cv_;  // a queue went idle
  std::unordered_map<std::uint64_t, std::unique_ptr<Queue>> queues_;
  std::unordered_map<std::uint64_t, Event> events_;
  std::deque<Queue*> ready_high_;
  std::deque<Queue*> ready_normal_;
  std::uint64_t next_queue_id_ = 1;
  std::uint64_t next_event_id_ = 1;
  std::size_t busy_queues_ = 0;     // queues not kIdle
  unsigned idle_workers_ = 0;       // workers waiting on work_cv_
  unsigned idle_high_workers_ = 0;  // workers waiting on high_cv_
  unsigned idle_waiters_ = 0;       // threads waiting on idle_cv_
  bool stopping_ = false;
  std::atomic<std::size_t> ready_count_{0};  // queues on the ready lists
  std::atomic<bool> spinner_active_{false};  // a worker is polling

  std::vector<std::thread> workers_;
  std::vector<pid_t> general_worker_tids_;  // written before the constructor returns
};

}  // namespace malv::accel::cpu
