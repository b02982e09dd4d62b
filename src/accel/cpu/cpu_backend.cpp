#include "accel/cpu/cpu_backend.h"

#include <fmt/format.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <latch>
#include <utility>

#include "accel/backend_support.h"
#include "accel/cpu/blas_kernels.h"
#include "accel/cpu/cpu_kernels.h"
#include "accel/kernel_args.h"
#include "base/clock.h"
#include "base/thread_priority.h"

namespace malv::accel::cpu {
namespace {

void* host(DevicePtr ptr) {
  return reinterpret_cast<void*>(static_cast<std::uintptr_t>(ptr.value));
}

// Everything but events, which need the scheduler (run_turn handles them).
ErrorCode run_op(const Op& op) {
  return std::visit(
      Overloaded{
          [](const CopyH2D& c) {
            if (c.bytes > 0) std::memcpy(host(c.dst), c.src, c.bytes);
            return ErrorCode::kOk;
          },
          [](const CopyD2H& c) {
            if (c.bytes > 0) std::memcpy(c.dst, host(c.src), c.bytes);
            return ErrorCode::kOk;
          },
          [](const CopyD2D& c) {
            if (c.bytes > 0) std::memmove(host(c.dst), host(c.src), c.bytes);
            return ErrorCode::kOk;
          },
          [](const Memset& m) {
            if (m.bytes > 0) std::memset(host(m.dst), m.value, m.bytes);
            return ErrorCode::kOk;
          },
          [](const Launch& l) {
            const std::optional<KernelArgs> args = launch_args(l);
            if (!args) return ErrorCode::kInvalidArgument;
            return run_cpu_kernel(l.kernel, *args);
          },
          [](const RecordEvent&) { return ErrorCode::kInternal; },
          [](const WaitEvent&) { return ErrorCode::kInternal; },
          [](const Marker&) { return ErrorCode::kOk; },
          [](const HostCall& h) { return h.task ? h.task->run() : ErrorCode::kInvalidArgument; },
      },
      op);
}

}  // namespace

CpuBackend::CpuBackend(const CpuBackendOptions& options)
    : worker_count_(options.workers != 0 ? options.workers : usable_cpu_count()),
      high_worker_count_(options.high_priority_workers),
      memory_(options.memory_bytes != 0 ? options.memory_bytes : default_cpu_device_memory(),
              options.clear_memory) {
  configure_blas_threads(worker_count_);
  workers_.reserve(worker_count_ + high_worker_count_);
  general_worker_tids_.assign(worker_count_, 0);
  std::latch started(worker_count_);
  for (unsigned i = 0; i < worker_count_; ++i) {
    workers_.emplace_back([this, i, &started, nice = options.worker_nice] {
      name_this_thread("malv-worker");
      lower_thread_priority(nice);
      general_worker_tids_[i] = static_cast<pid_t>(::gettid());
      started.count_down();
      worker_main(/*high_only=*/false);
    });
  }
  started.wait();
  for (unsigned i = 0; i < high_worker_count_; ++i) {
    workers_.emplace_back([this] {
      name_this_thread("malv-worker-hi");
      request_short_slice(kShortSlice);  // wakes straight onto a core
      worker_main(/*high_only=*/true);
    });
  }
}

CpuBackend::~CpuBackend() {
  // Drain first: a queue parked on an event needs a live worker to run the
  // record that frees it.
  synchronize_all();
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
  }
  work_cv_.notify_all();
  high_cv_.notify_all();
  for (std::thread& worker : workers_) worker.join();
}

std::vector<pid_t> CpuBackend::batch_worker_threads() const { return general_worker_tids_; }

DeviceInfo CpuBackend::info() const {
  DeviceInfo info;
  info.backend = "cpu";
  const std::string& kernels = blas_kernels().in_use;
  const char* plural = worker_count_ == 1 ? "" : "s";
  info.name = high_worker_count_ == 0
                  ? fmt::format("OpenBLAS ({}) on {} worker{}", kernels, worker_count_, plural)
                  : fmt::format("OpenBLAS ({}) on {} worker{} (+{} high-priority)", kernels,
                                worker_count_, plural, high_worker_count_);
  info.total_memory = memory_.capacity();
  info.free_memory = memory_.capacity() - memory_.in_use();
  info.compute_units = worker_count_;
  return info;
}

Result<DevicePtr> CpuBackend::allocate(std::size_t bytes) { return memory_.allocate(bytes); }
void CpuBackend::free(DevicePtr ptr) { memory_.free(ptr); }
std::uint64_t CpuBackend::memory_in_use() const { return memory_.in_use(); }

// Device memory is host memory here: a DevicePtr is the address.
Status CpuBackend::copy_to_device_now(DevicePtr dst, const void* src, std::size_t bytes) {
  std::memcpy(reinterpret_cast<void*>(dst.value), src, bytes);
  return ok_status();
}

Status CpuBackend::copy_to_host_now(void* dst, DevicePtr src, std::size_t bytes) {
  std::memcpy(dst, reinterpret_cast<const void*>(src.value), bytes);
  return ok_status();
}

// Workers read and write host memory directly; there is nothing to pin.
Status CpuBackend::register_host_memory(void*, std::size_t) { return ok_status(); }
void CpuBackend::unregister_host_memory(void*) {}

Result<QueueId> CpuBackend::create_queue(QueuePriority priority) {
  std::lock_guard lock(mu_);
  const std::uint64_t id = next_queue_id_++;
  auto queue = std::make_unique<Queue>();
  queue->priority = priority;
  queues_.emplace(id, std::move(queue));
  return QueueId{id};
}

void CpuBackend::destroy_queue(QueueId id) {
  std::unique_lock lock(mu_);
  auto it = queues_.find(id.value());
  if (it == queues_.end()) return;
  Queue* queue = it->second.get();
  ++idle_waiters_;
  idle_cv_.wait(lock, [queue] { return queue->state == Queue::State::kIdle; });
  --idle_waiters_;
  queues_.erase(id.value());
}

Result<EventId> CpuBackend::create_event() {
  std::lock_guard lock(mu_);
  const std::uint64_t id = next_event_id_++;
  events_.emplace(id, Event{});
  return EventId{id};
}

void CpuBackend::destroy_event(EventId id) {
  Wakeups wake;
  {
    std::lock_guard lock(mu_);
    auto it = events_.find(id.value());
    if (it == events_.end()) return;
    // Queues parked on it proceed: a wait on a destroyed event is satisfied.
    for (Queue* waiter : it->second.waiters) make_ready(waiter, wake);
    events_.erase(it);
  }
  wake_workers(wake);
}

EventState CpuBackend::query_event(EventId id) const {
  std::lock_guard lock(mu_);
  auto it = events_.find(id.value());
  if (it == events_.end()) return EventState{true, 0};
  return it->second.state();
}

void CpuBackend::append_locked(Queue& queue, Op&& op, Completion done, Wakeups& wake) {
  std::uint64_t seq = 0;
  if (const auto* record = std::get_if<RecordEvent>(&op)) {
    auto event = events_.find(record->event.value());
    if (event != events_.end()) seq = event->second.record();
  } else if (const auto* wait = std::get_if<WaitEvent>(&op)) {
    auto event = events_.find(wait->event.value());
    if (event != events_.end()) seq = event->second.recorded;
  }
  // GCC 12 at -O2 with -fsanitize=thread warns that moving the variant's
  // HostCall (a shared_ptr) "may be used uninitialized": a false positive
  // (the variant's active member is always constructed).
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
  queue.pending.push_back(QueuedOp{std::move(op), done, seq});
#pragma GCC diagnostic pop
  if (queue.state != Queue::State::kIdle) return;
  ++busy_queues_;
  make_ready(&queue, wake);
}

void CpuBackend::enqueue(QueueId id, Op op, Completion done) {
  enqueue_many(id, std::span(&op, 1), done);
}

void CpuBackend::enqueue_many(QueueId id, std::span<Op> ops, Completion done) {
  Wakeups wake;
  {
    std::lock_guard lock(mu_);
    auto it = queues_.find(id.value());
    if (it != queues_.end()) {
      Queue& queue = *it->second;
      for (std::size_t i = 0; i < ops.size(); ++i) {
        append_locked(queue, std::move(ops[i]), Completion{done.fn, done.context, done.cookie + i},
                      wake);
      }
      done.fn = nullptr;  // queued: the worker reports them
    }
  }
  wake_workers(wake);
  if (done.fn == nullptr) return;
  for (std::size_t i = 0; i < ops.size(); ++i) {
    done.fn(done.context, done.cookie + i, ErrorCode::kNotFound);
  }
}

void CpuBackend::synchronize_all() {
  std::unique_lock lock(mu_);
  ++idle_waiters_;
  idle_cv_.wait(lock, [this] { return busy_queues_ == 0; });
  --idle_waiters_;
}

void CpuBackend::make_ready(Queue* queue, Wakeups& wake) {
  queue->state = Queue::State::kReady;
  ready_count_.fetch_add(1, std::memory_order_relaxed);
  if (queue->priority == QueuePriority::kHigh) {
    ready_high_.push_back(queue);
    // A sleeping high-priority worker not yet called on, else any worker.
    if (idle_high_workers_ > wake.high) {
      ++wake.high;
      return;
    }
  } else {
    ready_normal_.push_back(queue);
  }
  if (idle_workers_ > wake.general) ++wake.general;
}

void CpuBackend::wake_workers(const Wakeups& wake) {
  for (unsigned i = 0; i < wake.high; ++i) high_cv_.notify_one();
  for (unsigned i = 0; i < wake.general; ++i) work_cv_.notify_one();
}

CpuBackend::Queue* CpuBackend::take_ready(bool high_only) {
  for (std::deque<Queue*>* ready : {&ready_high_, &ready_normal_}) {
    if (high_only && ready == &ready_normal_) break;
    if (!ready->empty()) {
      Queue* queue = ready->front();
      ready->pop_front();
      ready_count_.fetch_sub(1, std::memory_order_relaxed);
      return queue;
    }
  }
  return nullptr;
}

void CpuBackend::worker_main(bool high_only) {
  std::unique_lock lock(mu_);
  for (;;) {
    Queue* queue = take_ready(high_only);
    if (queue == nullptr) {
      if (stopping_) return;
      if (high_only) {
        // Sleeps until a high-priority queue is ready; never polls, so it
        // takes no CPU from the general workers while it has nothing to do.
        ++idle_high_workers_;
        high_cv_.wait(lock);
        --idle_high_workers_;
        continue;
      }
      if (!spinner_active_.exchange(true, std::memory_order_acquire)) {
        // One worker at a time polls briefly before sleeping: a host pushing
        // a stream of small ops refills the ready list within microseconds,
        // and waking a sleeping worker would cost the enqueuing thread a
        // futex call per op. Only one, so pollers never crowd out the host
        // thread on a small machine, and it yields its core between polls:
        // the dispatcher that enqueues the next call may need that core.
        lock.unlock();
        spin_until([this] { return ready_count_.load(std::memory_order_relaxed) != 0; }, kSpinNs,
                   /*yielding=*/true);
        spinner_active_.store(false, std::memory_order_release);
        lock.lock();
        if (ready_count_.load(std::memory_order_relaxed) != 0) continue;
        if (stopping_) return;
      }
      // Enqueue wakes a worker only while idle_workers_ > 0, and both sides
      // look under mu_, so no wake-up is lost between the poll and the wait.
      ++idle_workers_;
      work_cv_.wait(lock);
      --idle_workers_;
      continue;
    }
    queue->state = Queue::State::kRunning;
    if (queue->next == queue->running.size()) {
      // Everything taken earlier has run: take everything enqueued since.
      queue->running.clear();
      queue->next = 0;
      queue->running.swap(queue->pending);
    }
    lock.unlock();
    if (run_turn(*queue, lock)) continue;  // parked on an event
    if (queue->next < queue->running.size() || !queue->pending.empty()) {
      Wakeups none;             // this worker takes the next ready queue itself
      make_ready(queue, none);  // more to do: back of the line, for fairness
    } else {
      queue->state = Queue::State::kIdle;
      --busy_queues_;
      if (idle_waiters_ > 0) idle_cv_.notify_all();
    }
  }
}

bool CpuBackend::run_turn(Queue& queue, std::unique_lock<std::mutex>& lock) {
  const std::size_t end = std::min(queue.running.size(), queue.next + kOpsPerTurn);
  while (queue.next < end) {
    QueuedOp& item = queue.running[queue.next];
    ErrorCode status = ErrorCode::kOk;
    if (const auto* wait = std::get_if<WaitEvent>(&item.op)) {
      if (!try_pass_wait(queue, *wait, item.event_seq, lock)) return true;
    } else if (const auto* record = std::get_if<RecordEvent>(&item.op)) {
      status = run_record(*record, item.event_seq);
    } else {
      status = run_op(item.op);
    }
    ++queue.next;
    if (item.done.fn != nullptr) item.done.fn(item.done.context, item.done.cookie, status);
  }
  lock.lock();
  return false;
}

bool CpuBackend::try_pass_wait(Queue& queue, const WaitEvent& wait, std::uint64_t target,
                               std::unique_lock<std::mutex>& lock) {
  if (target == 0) return true;  // nothing was recorded when the wait was enqueued
  lock.lock();
  auto it = events_.find(wait.event.value());
  if (it == events_.end() || it->second.latest_done >= target) {
    lock.unlock();
    return true;
  }
  // Park: the record that reaches `target` puts the queue back on the ready
  // list, and this op is tried again then (queue.next still points at it).
  queue.state = Queue::State::kBlocked;
  it->second.waiters.push_back(&queue);
  return false;
}

ErrorCode CpuBackend::run_record(const RecordEvent& record, std::uint64_t seq) {
  const std::int64_t now = mono_now_ns();
  Wakeups wake;
  {
    std::lock_guard lock(mu_);
    auto it = events_.find(record.event.value());
    if (it == events_.end()) {
      // Unknown when enqueued: a caller bug. Destroyed since: nobody can ask.
      return seq == 0 ? ErrorCode::kNotFound : ErrorCode::kOk;
    }
    Event& event = it->second;
    event.complete(seq, now);
    // Parked queues re-check their own target when they run again.
    for (Queue* waiter : event.waiters) make_ready(waiter, wake);
    event.waiters.clear();
  }
  wake_workers(wake);
  return ErrorCode::kOk;
}

}  // namespace malv::accel::cpu

namespace malv::accel {

std::unique_ptr<Backend> make_cpu_backend(const CpuBackendOptions& options) {
  return std::make_unique<cpu::CpuBackend>(options);
}

}  // namespace malv::accel
