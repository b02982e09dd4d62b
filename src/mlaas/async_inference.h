// AsyncInference: asynchronous callers of the inference service. A caller
// submits rows for a model and gets a ticket at once (it never waits for
// the model); the rows of every caller of one model (any threads, any VMs)
// are gathered into one batch, run as ONE InferenceService::infer call (which
// picks inline CPU or the accelerator by the model's measured crossover), and
// each ticket then reads exactly its own rows of the answer, without a lock.
// This is the issue-20 design: score work when it is enqueued, batched across
// VMs, and let the dispatcher read the scores that are ready.
//
//   auto queue = AsyncInference::create(inference, {}).value();
//   InferenceTicket t = queue->submit(model, row.data(), 1).value();
//   ...                                    // do other work
//   if (t.ready() && t.status().ok()) use(t.output());   // lock-free
//   t.wait();                              // or sleep until it is answered
//
// How a batch forms. Each model has one open batch; submit() copies the rows
// into it (the caller's buffer is free on return). The batching thread runs a
// model's open batch when it holds as many rows as the model's last batch had
// (so a lone caller never waits: its batch had one row), or `window` after its
// first request came, or when its earliest deadline leaves just the estimated
// run time; a batch that would pass max_batch_rows is sealed and runs next.
// Rows keep their order within a batch and each ticket names its own range, so
// two callers' rows never mix. Callers that have nothing better to do may run
// the pending batches on their own thread with run_pending() (with
// batching_thread = false that is the only way they run).
//
// Bounds and errors (submit() never blocks):
//  * rows 0, more than max_batch_rows or a null input: kInvalidArgument.
//  * a model the service does not hold: kNotFound.
//  * max_pending_requests requests accepted and not yet run: kResourceExhausted
//    (back-pressure: the request is not taken, nothing queued is dropped; retry
//    when answers come back).
//  * a deadline (MonoTime::max(): none) that passes before the request's batch
//    runs, or before its answer is ready, completes it with kDeadlineExceeded,
//    never with a late answer.
//  * shutdown() (or the destructor): requests not yet run complete with
//    kAborted; later submit() calls get kAborted. Batches already running end
//    normally first.
//  * a failed run: every request of that batch gets the service's error.
//
// Thread-safety: every method from any thread. A ticket may outlive the queue
// (it shares its batch's answer); one ticket is read by one thread at a time.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <thread>
#include <vector>

#include "base/clock.h"
#include "malv/result.h"
#include "mlaas/inference_service.h"

namespace malv::mlaas {

struct AsyncInferenceOptions {
  std::size_t max_batch_rows = 512;
  // At most this long from a batch's first request to its run.
  std::chrono::nanoseconds window = std::chrono::microseconds(50);
  std::size_t max_pending_requests = 4096;  // accepted and not yet run
  bool batching_thread = true;              // false: run_pending() runs them
};

struct AsyncInferenceCounters {
  std::uint64_t submitted = 0;          // requests accepted
  std::uint64_t rejected = 0;           // refused for back-pressure
  std::uint64_t answered = 0;           // completed with their rows
  std::uint64_t deadline_exceeded = 0;  // completed with kDeadlineExceeded
  std::uint64_t aborted = 0;            // completed with kAborted (shutdown)
  std::uint64_t failed = 0;             // completed with the run's error
  std::uint64_t batches = 0;            // service calls (batches run)
  std::uint64_t batch_rows = 0;         // rows over all batches run
  std::uint64_t largest_batch = 0;      // rows of the largest batch run
};

namespace detail {
struct AsyncBatch;
}

// One request's answer. Empty (valid() false) when default-constructed.
class InferenceTicket {
 public:
  InferenceTicket() = default;

  bool valid() const { return batch_ != nullptr; }
  // True once the request completed (answered or failed); an acquire load.
  bool ready() const;
  // Sleeps until ready() (every accepted request completes: see above).
  void wait() const;
  // The outcome once ready(); kFailedPrecondition before.
  [[nodiscard]] Status status() const;
  // rows() rows of the model's output_dim floats, once ready() with an ok
  // status; empty otherwise. Valid as long as the ticket.
  std::span<const float> output() const;
  std::size_t rows() const { return rows_; }
  // When submit() accepted it.
  MonoTime submitted() const { return submitted_; }

 private:
  friend class AsyncInference;
  InferenceTicket(std::shared_ptr<detail::AsyncBatch> batch, std::size_t index, std::size_t rows,
                  MonoTime submitted)
      : batch_(std::move(batch)), index_(index), rows_(rows), submitted_(submitted) {}

  // The batch's entries are read only once it is done (before, other
  // submissions may still append to them).
  std::shared_ptr<detail::AsyncBatch> batch_;
  std::size_t index_ = 0;
  std::size_t rows_ = 0;
  MonoTime submitted_{};
};

class AsyncInference {
 public:
  // kInvalidArgument for a max_batch_rows or max_pending_requests of 0 or a
  // negative window. `service` must outlive the queue.
  [[nodiscard]] static Result<std::unique_ptr<AsyncInference>> create(
      InferenceService& service, AsyncInferenceOptions options = {});
  ~AsyncInference();
  AsyncInference(const AsyncInference&) = delete;
  AsyncInference& operator=(const AsyncInference&) = delete;

  // rows rows of the model's input_dim floats (copied before it returns).
  [[nodiscard]] Result<InferenceTicket> submit(ModelId model, const float* in, std::size_t rows,
                                               MonoTime deadline = MonoTime::max());

  // Runs every pending batch of every model now, on the calling thread;
  // returns how many requests it completed.
  std::size_t run_pending();

  // Completes every request not yet run with kAborted, waits for the batches
  // running now, stops the batching thread. Idempotent.
  void shutdown();

  AsyncInferenceCounters stats() const;
  // Prometheus families over stats() (inference_metrics.cpp).
  std::string metrics_text() const;

 private:
  struct Lane;
  struct Job;

  AsyncInference(InferenceService& service, AsyncInferenceOptions options);
  Result<Lane*> lane_for(ModelId model);                        // under mu_
  MonoTime due(const Lane& lane) const;                         // under mu_
  bool take(MonoTime now, bool all, Job& job, MonoTime& next);  // under mu_
  void run(Job& job);
  void batching_loop();

  InferenceService& service_;
  const AsyncInferenceOptions options_;

  mutable std::mutex mu_;
  std::condition_variable cv_;       // the batching thread sleeps on it
  std::condition_variable idle_cv_;  // shutdown() waits for running_ == 0
  std::map<std::uint64_t, std::unique_ptr<Lane>> lanes_;
  std::uint64_t cursor_ = 0;  // lane after which the next search starts
  std::size_t queued_ = 0;    // requests accepted and not yet taken to run
  int running_ = 0;           // batches taken and not yet completed
  bool stopping_ = false;
  // When the sleeping batching thread wakes by itself (MonoTime::min(): it
  // is not sleeping; MonoTime::max(): only when notified).
  MonoTime sleeps_until_ = MonoTime::min();
  std::thread thread_;

  std::atomic<std::uint64_t> submitted_{0}, rejected_{0}, answered_{0}, deadline_exceeded_{0},
      aborted_{0}, failed_{0}, batches_{0}, batch_rows_{0}, largest_batch_{0};
};

}  // namespace malv::mlaas
