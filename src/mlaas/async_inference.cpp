// Asynchronous, batched callers of the inference service (see
// async_inference.h).
//
// Invariants. A batch is in exactly one place until it completes: a lane's
// open batch, a lane's sealed queue, or a Job (taken, counted in running_).
// Only the thread holding the Job writes its entries' outcomes and its out
// buffer, then publishes them with one release store of `done` (readers
// acquire it): no lock on the read side. queued_ counts the requests of
// open and sealed batches.
#include "mlaas/async_inference.h"

#include <fmt/format.h>

#include <algorithm>
#include <cstring>
#include <optional>
#include <string>

namespace malv::mlaas {

namespace detail {

enum class Outcome : std::uint8_t { kAnswered, kExpiredBeforeRun, kLate, kAborted, kFailed };

struct AsyncBatch {
  struct Entry {
    std::size_t first_row = 0;
    std::size_t rows = 0;
    MonoTime deadline = MonoTime::max();
    Outcome outcome = Outcome::kAnswered;
  };

  std::size_t out_dim = 0;
  std::vector<float> in;
  std::vector<float> out;
  std::vector<Entry> entries;
  std::size_t rows = 0;
  MonoTime opened{};
  MonoTime earliest_deadline = MonoTime::max();
  std::optional<Error> failure;  // the run's error (Outcome::kFailed)
  std::atomic<std::uint32_t> done{0};
};

}  // namespace detail

using detail::AsyncBatch;
using detail::Outcome;

// ---- InferenceTicket ----

bool InferenceTicket::ready() const {
  return batch_ != nullptr && batch_->done.load(std::memory_order_acquire) != 0;
}

void InferenceTicket::wait() const {
  if (batch_ == nullptr) return;
  while (batch_->done.load(std::memory_order_acquire) == 0) {
    batch_->done.wait(0, std::memory_order_acquire);
  }
}

Status InferenceTicket::status() const {
  if (batch_ == nullptr) return Error(ErrorCode::kFailedPrecondition, "empty inference ticket");
  if (!ready()) return Error(ErrorCode::kFailedPrecondition, "the inference is not answered yet");
  switch (batch_->entries[index_].outcome) {
    case Outcome::kAnswered: return ok_status();
    case Outcome::kExpiredBeforeRun:
      return Error(ErrorCode::kDeadlineExceeded,
                   "the request's deadline passed before its batch ran");
    case Outcome::kLate:
      return Error(ErrorCode::kDeadlineExceeded,
                   "the request's answer was ready only after its deadline (dropped)");
    case Outcome::kAborted:
      return Error(ErrorCode::kAborted, "the inference queue shut down before the request ran");
    case Outcome::kFailed: return *batch_->failure;
  }
  return Error(ErrorCode::kInternal, "unknown inference outcome");
}

std::span<const float> InferenceTicket::output() const {
  if (!ready() || batch_->entries[index_].outcome != Outcome::kAnswered) return {};
  const AsyncBatch::Entry& e = batch_->entries[index_];
  return {batch_->out.data() + e.first_row * batch_->out_dim, e.rows * batch_->out_dim};
}

// ---- AsyncInference ----

struct AsyncInference::Lane {
  ModelId model;
  std::size_t in_dim = 0;
  std::size_t out_dim = 0;
  std::shared_ptr<AsyncBatch> open;
  std::deque<std::shared_ptr<AsyncBatch>> sealed;
  std::size_t last_rows = 1;  // rows of the last batch taken
  double ns_per_row = 0;      // recent runs (0: none yet)
};

struct AsyncInference::Job {
  ModelId model;
  std::shared_ptr<AsyncBatch> batch;
};

Result<std::unique_ptr<AsyncInference>> AsyncInference::create(InferenceService& service,
                                                               AsyncInferenceOptions options) {
  if (options.max_batch_rows == 0) {
    return Error(ErrorCode::kInvalidArgument, "async inference: max_batch_rows must be >= 1");
  }
  if (options.max_pending_requests == 0) {
    return Error(ErrorCode::kInvalidArgument, "async inference: max_pending_requests must be >= 1");
  }
  if (options.window.count() < 0) {
    return Error(ErrorCode::kInvalidArgument, "async inference: the window must not be negative");
  }
  return std::unique_ptr<AsyncInference>(new AsyncInference(service, options));
}

AsyncInference::AsyncInference(InferenceService& service, AsyncInferenceOptions options)
    : service_(service), options_(options) {
  if (options_.batching_thread) thread_ = std::thread([this] { batching_loop(); });
}

AsyncInference::~AsyncInference() { shutdown(); }

Result<AsyncInference::Lane*> AsyncInference::lane_for(ModelId model) {
  auto it = lanes_.find(model.value());
  if (it != lanes_.end()) return it->second.get();
  Result<ModelInfo> info = service_.info(model);
  if (!info.ok()) {
    return Error(ErrorCode::kNotFound,
                 fmt::format("async inference: model {} is not loaded in the inference service",
                             model.value()));
  }
  auto lane = std::make_unique<Lane>();
  lane->model = model;
  lane->in_dim = info->input_dim;
  lane->out_dim = info->output_dim;
  Lane* raw = lane.get();
  lanes_.emplace(model.value(), std::move(lane));
  return raw;
}

Result<InferenceTicket> AsyncInference::submit(ModelId model, const float* in, std::size_t rows,
                                               MonoTime deadline) {
  if (rows == 0 || rows > options_.max_batch_rows) {
    return Error(ErrorCode::kInvalidArgument,
                 fmt::format("async inference: {} rows (1 to max_batch_rows {})", rows,
                             options_.max_batch_rows));
  }
  if (in == nullptr) return Error(ErrorCode::kInvalidArgument, "async inference: null input");
  const MonoTime now = MonoClock::now();
  bool wake = false;
  InferenceTicket ticket;
  {
    std::lock_guard lock(mu_);
    if (stopping_) {
      return Error(ErrorCode::kAborted, "async inference: the queue is shut down");
    }
    MALV_ASSIGN_OR_RETURN(Lane * lane, lane_for(model));
    if (queued_ >= options_.max_pending_requests) {
      rejected_.fetch_add(1, std::memory_order_relaxed);
      return Error(ErrorCode::kResourceExhausted,
                   fmt::format("async inference: {} requests pending (max_pending_requests {}); "
                               "retry when answers come back",
                               queued_, options_.max_pending_requests));
    }
    if (lane->open != nullptr && lane->open->rows + rows > options_.max_batch_rows) {
      lane->sealed.push_back(std::move(lane->open));
      lane->open = nullptr;
      wake = true;  // a sealed batch runs at once
    }
    if (lane->open == nullptr) {
      lane->open = std::make_shared<AsyncBatch>();
      AsyncBatch& b = *lane->open;
      b.out_dim = lane->out_dim;
      b.opened = now;
      const std::size_t expect = std::max(lane->last_rows, rows);
      b.in.reserve(expect * lane->in_dim);
      b.entries.reserve(expect);
    }
    AsyncBatch& b = *lane->open;
    b.entries.push_back({.first_row = b.rows, .rows = rows, .deadline = deadline});
    b.in.insert(b.in.end(), in, in + rows * lane->in_dim);
    b.rows += rows;
    b.earliest_deadline = std::min(b.earliest_deadline, deadline);
    ++queued_;
    ticket = InferenceTicket(lane->open, b.entries.size() - 1, rows, now);
    // Wake the batching thread only if it sleeps past when this lane is due.
    if (sleeps_until_ != MonoTime::min() && (wake || due(*lane) < sleeps_until_))
      wake = true;
    else
      wake = false;
  }
  submitted_.fetch_add(1, std::memory_order_relaxed);
  if (wake) cv_.notify_one();
  return ticket;
}

MonoTime AsyncInference::due(const Lane& lane) const {
  if (!lane.sealed.empty()) return MonoTime::min();
  if (lane.open == nullptr) return MonoTime::max();
  const AsyncBatch& b = *lane.open;
  const std::size_t target = std::min(lane.last_rows, options_.max_batch_rows);
  if (b.rows >= target) return MonoTime::min();
  MonoTime at = b.opened + options_.window;
  if (b.earliest_deadline != MonoTime::max()) {
    // Leave the estimated run time before the earliest deadline.
    const auto run_ns = static_cast<std::int64_t>(lane.ns_per_row * static_cast<double>(b.rows));
    at = std::min(at, b.earliest_deadline - Nanos(run_ns));
  }
  return at;
}

bool AsyncInference::take(MonoTime now, bool all, Job& job, MonoTime& next) {
  next = MonoTime::max();
  if (lanes_.empty()) return false;
  // Round robin over the lanes, starting after the one served last.
  auto start = lanes_.upper_bound(cursor_);
  auto it = start;
  for (std::size_t n = 0; n < lanes_.size(); ++n, ++it) {
    if (it == lanes_.end()) it = lanes_.begin();
    Lane& lane = *it->second;
    std::shared_ptr<AsyncBatch> batch;
    if (!lane.sealed.empty()) {
      batch = std::move(lane.sealed.front());
      lane.sealed.pop_front();
    } else if (lane.open != nullptr) {
      const MonoTime at = due(lane);
      if (all || at <= now) {
        batch = std::move(lane.open);
        lane.open = nullptr;
      } else {
        next = std::min(next, at);
      }
    }
    if (batch != nullptr) {
      cursor_ = it->first;
      queued_ -= batch->entries.size();
      lane.last_rows = batch->rows;
      job.model = lane.model;
      job.batch = std::move(batch);
      ++running_;
      return true;
    }
  }
  return false;
}

void AsyncInference::run(Job& job) {
  AsyncBatch& b = *job.batch;
  const MonoTime start = MonoClock::now();
  std::size_t live = 0;
  for (AsyncBatch::Entry& e : b.entries) {
    if (e.deadline <= start) {
      e.outcome = Outcome::kExpiredBeforeRun;
    } else {
      ++live;
    }
  }
  double ns_per_row = 0;
  if (live != 0) {
    b.out.resize(b.rows * b.out_dim);
    Status status = service_.infer(job.model, b.in.data(), b.rows, b.out.data());
    const MonoTime end = MonoClock::now();
    ns_per_row = static_cast<double>((end - start).count()) / static_cast<double>(b.rows);
    if (!status.ok()) b.failure = std::move(status).error();
    for (AsyncBatch::Entry& e : b.entries) {
      if (e.outcome != Outcome::kAnswered) continue;
      if (b.failure) {
        e.outcome = Outcome::kFailed;
      } else if (e.deadline < end) {
        e.outcome = Outcome::kLate;
      }
    }
    batches_.fetch_add(1, std::memory_order_relaxed);
    batch_rows_.fetch_add(b.rows, std::memory_order_relaxed);
    std::uint64_t largest = largest_batch_.load(std::memory_order_relaxed);
    while (b.rows > largest &&
           !largest_batch_.compare_exchange_weak(largest, b.rows, std::memory_order_relaxed)) {
    }
  }
  for (const AsyncBatch::Entry& e : b.entries) {
    switch (e.outcome) {
      case Outcome::kAnswered: answered_.fetch_add(1, std::memory_order_relaxed); break;
      case Outcome::kExpiredBeforeRun:
      case Outcome::kLate: deadline_exceeded_.fetch_add(1, std::memory_order_relaxed); break;
      case Outcome::kAborted: aborted_.fetch_add(1, std::memory_order_relaxed); break;
      case Outcome::kFailed: failed_.fetch_add(1, std::memory_order_relaxed); break;
    }
  }
  b.done.store(1, std::memory_order_release);
  b.done.notify_all();
  {
    std::lock_guard lock(mu_);
    if (ns_per_row > 0) {
      auto it = lanes_.find(job.model.value());
      if (it != lanes_.end()) {
        double& avg = it->second->ns_per_row;
        avg = avg == 0 ? ns_per_row : 0.8 * avg + 0.2 * ns_per_row;
      }
    }
    --running_;
    if (stopping_ && running_ == 0) idle_cv_.notify_all();
  }
  job.batch.reset();
}

std::size_t AsyncInference::run_pending() {
  std::size_t completed = 0;
  while (true) {
    Job job;
    {
      std::lock_guard lock(mu_);
      MonoTime next;
      if (stopping_ || !take(MonoClock::now(), /*all=*/true, job, next)) break;
    }
    completed += job.batch->entries.size();
    run(job);
  }
  return completed;
}

void AsyncInference::batching_loop() {
  std::unique_lock lock(mu_);
  while (!stopping_) {
    Job job;
    MonoTime next;
    if (take(MonoClock::now(), /*all=*/false, job, next)) {
      lock.unlock();
      run(job);
      lock.lock();
      continue;
    }
    sleeps_until_ = next;
    if (next == MonoTime::max()) {
      cv_.wait(lock);
    } else {
      cv_.wait_until(lock, next);
    }
    sleeps_until_ = MonoTime::min();
  }
}

void AsyncInference::shutdown() {
  std::vector<std::shared_ptr<AsyncBatch>> abandoned;
  {
    std::lock_guard lock(mu_);
    if (!stopping_) {
      stopping_ = true;
      for (auto& [id, lane] : lanes_) {
        for (auto& b : lane->sealed) abandoned.push_back(std::move(b));
        lane->sealed.clear();
        if (lane->open != nullptr) abandoned.push_back(std::move(lane->open));
        lane->open = nullptr;
      }
      queued_ = 0;
    }
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
  for (auto& b : abandoned) {
    for (AsyncBatch::Entry& e : b->entries) e.outcome = Outcome::kAborted;
    aborted_.fetch_add(b->entries.size(), std::memory_order_relaxed);
    b->done.store(1, std::memory_order_release);
    b->done.notify_all();
  }
  std::unique_lock lock(mu_);
  idle_cv_.wait(lock, [&] { return running_ == 0; });
}

AsyncInferenceCounters AsyncInference::stats() const {
  AsyncInferenceCounters c;
  c.submitted = submitted_.load(std::memory_order_relaxed);
  c.rejected = rejected_.load(std::memory_order_relaxed);
  c.answered = answered_.load(std::memory_order_relaxed);
  c.deadline_exceeded = deadline_exceeded_.load(std::memory_order_relaxed);
  c.aborted = aborted_.load(std::memory_order_relaxed);
  c.failed = failed_.load(std::memory_order_relaxed);
  c.batches = batches_.load(std::memory_order_relaxed);
  c.batch_rows = batch_rows_.load(std::memory_order_relaxed);
  c.largest_batch = largest_batch_.load(std::memory_order_relaxed);
  return c;
}

}  // namespace malv::mlaas
