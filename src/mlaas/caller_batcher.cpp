// One run for many callers' rows (see caller_batcher.h).
#include "mlaas/caller_batcher.h"

#include <linux/futex.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <bit>
#include <climits>
#include <ctime>

namespace malv::mlaas {
namespace {

static_assert(sizeof(std::atomic<std::uint32_t>) == sizeof(std::uint32_t));

enum RequestState : int {
  kWaiting = 0,  // pending, or its rows are in a running batch
  kDone = 1,     // status (and its rows of output) are final
  kLead = 2,     // it was made the leader of the next batch
};

// Sleeps while `word` still holds `seen`, at most until `until` (the
// steady clock is CLOCK_MONOTONIC). Returns early on any wake-up: callers
// re-check what they wait for.
void futex_wait(std::atomic<std::uint32_t>& word, std::uint32_t seen, MonoTime until) {
  auto* address = reinterpret_cast<std::uint32_t*>(&word);
  if (until == MonoTime::max()) {
    syscall(SYS_futex, address, FUTEX_WAIT_PRIVATE, seen, nullptr, nullptr, 0);
    return;
  }
  const std::int64_t ns = std::chrono::duration_cast<Nanos>(until.time_since_epoch()).count();
  if (ns <= 0) return;
  timespec at{static_cast<time_t>(ns / 1'000'000'000), static_cast<long>(ns % 1'000'000'000)};
  syscall(SYS_futex, address, FUTEX_WAIT_BITSET_PRIVATE, seen, &at, nullptr,
          FUTEX_BITSET_MATCH_ANY);
}

void futex_wake_all(std::atomic<std::uint32_t>& word) {
  word.fetch_add(1, std::memory_order_release);
  syscall(SYS_futex, reinterpret_cast<std::uint32_t*>(&word), FUTEX_WAKE_PRIVATE, INT_MAX, nullptr,
          nullptr, 0);
}

Error deadline_error() {
  return Error(ErrorCode::kDeadlineExceeded, "inference: no answer before the caller's deadline");
}

// Run-time estimates are kept per power-of-two bucket of rows: the cost of
// a row falls steeply with the batch (a GEMM of 1 row vs 64).
std::size_t rows_bucket(std::size_t rows) {
  return std::min<std::size_t>(std::bit_width(rows), 15);
}

}  // namespace

struct CallerBatcher::Request {
  const float* in = nullptr;
  float* out = nullptr;
  std::size_t rows = 0;
  MonoTime deadline = MonoTime::max();
  std::atomic<int> state{kWaiting};
  std::atomic<std::uint32_t> word{0};  // index into words_ it sleeps on
  Status status;                       // final once state is kDone (mu_)
  Batch* batch = nullptr;              // the running batch with its rows (mu_)
  std::size_t index = 0;               // its place in batch->requests (mu_)
};

struct CallerBatcher::Batch {
  std::vector<Request*> requests;  // null: withdrawn while the batch ran
  std::vector<std::size_t> first_row;
};

CallerBatcher::CallerBatcher(CallerBatcherOptions options, RunFn run)
    : options_(std::move(options)), run_(std::move(run)) {}

std::pair<Status, Nanos> CallerBatcher::timed_run(const float* in, std::size_t rows, float* out) {
  const MonoTime started = MonoClock::now();
  Status ran;
  try {
    ran = run_(in, rows, out);
  } catch (...) {
    ran = Error(ErrorCode::kInternal, "inference run threw an exception");
  }
  return {std::move(ran), MonoClock::now() - started};
}

Status CallerBatcher::submit(const float* in, std::size_t rows, float* out, MonoTime deadline) {
  if (rows == 0) return ok_status();
  Request self;
  self.in = in;
  self.out = out;
  self.rows = rows;
  self.deadline = deadline;
  std::unique_lock lock(mu_);
  if (MonoClock::now() >= deadline) return deadline_error();
  if (leader_ == nullptr && running_ < options_.max_runs && rows >= target_rows()) {
    // Alone, and the last batch was no bigger: run at once on the caller's
    // own buffers (no copies). Who comes meanwhile waits for the next run.
    ++running_;
    last_rows_ = rows;
    lock.unlock();
    auto [ran, took] = timed_run(in, rows, out);
    lock.lock();
    --running_;
    if (ran.ok()) note_run(rows, took);
    const bool kick = leader_ != nullptr;
    lock.unlock();
    if (kick) kick_leader();
    self.status = std::move(ran);
    return finish(self);
  }
  self.word.store(collect_seq_ % kWords, std::memory_order_relaxed);
  pending_.push_back(&self);
  const std::size_t before = pending_rows_;
  pending_rows_ += rows;
  if (leader_ == nullptr) {
    leader_ = &self;
    return lead(lock, self);
  }
  // Wake the leader when its batch just became full, or when this caller's
  // deadline needs the run sooner than the leader means to wake.
  const std::size_t target = target_rows();
  bool kick = before < target && pending_rows_ >= target;
  if (deadline != MonoTime::max() && deadline - 2 * estimate(pending_rows_) < leader_wakes_at_) {
    kick = true;
  }
  lock.unlock();
  if (kick) kick_leader();
  return follow(self);
}

Status CallerBatcher::follow(Request& self) {
  for (;;) {
    std::atomic<std::uint32_t>& word = words_[self.word.load(std::memory_order_acquire)];
    const std::uint32_t seen = word.load(std::memory_order_acquire);
    const int state = self.state.load(std::memory_order_acquire);
    if (state == kDone) return finish(self);
    if (state == kLead) {
      std::unique_lock lock(mu_);
      return lead(lock, self);
    }
    if (MonoClock::now() >= self.deadline) {
      std::unique_lock lock(mu_);
      return withdraw(lock, self);
    }
    futex_wait(word, seen, self.deadline);
  }
}

Status CallerBatcher::withdraw(std::unique_lock<std::mutex>& lock, Request& self) {
  const int state = self.state.load(std::memory_order_relaxed);
  if (state == kDone) {
    lock.unlock();
    return finish(self);
  }
  if (state == kLead) return lead(lock, self);  // leaves at once: its deadline passed
  if (self.batch != nullptr) {
    // Its rows are in a running batch: that range is never copied out.
    self.batch->requests[self.index] = nullptr;
    self.batch = nullptr;
  } else {
    remove_pending(&self);
  }
  return deadline_error();
}

Status CallerBatcher::finish(Request& self) const {
  Status status = std::move(self.status);
  if (!status.ok()) return status;
  if (MonoClock::now() > self.deadline) return deadline_error();  // never a late answer
  return ok_status();
}

Status CallerBatcher::lead(std::unique_lock<std::mutex>& lock, Request& self) {
  const MonoTime window_end = MonoClock::now() + options_.window;
  unsigned wake = 0;
  for (;;) {
    const MonoTime now = MonoClock::now();
    const Nanos run = estimate(pending_rows_);
    if (now + run >= self.deadline) {
      // This caller's answer cannot come in time: the next one leads.
      remove_pending(&self);
      leader_ = nullptr;
      wake |= drop_late(now + run, &self);
      if (!pending_.empty()) wake |= 1u << promote_next();
      lock.unlock();
      wake_words(wake);
      return deadline_error();
    }
    wake |= drop_late(now + run, &self);
    // The latest start that still answers everyone waiting, with a margin
    // of one more run; with no run measured yet, one window.
    const Nanos margin = run.count() > 0 ? 2 * run : Nanos(options_.window);
    MonoTime start_by = MonoTime::max();
    MonoTime first_drop = MonoTime::max();
    for (const Request* r : pending_) {
      if (r->deadline == MonoTime::max()) continue;
      start_by = std::min(start_by, r->deadline - margin);
      first_drop = std::min(first_drop, r->deadline - run);
    }
    const bool slot_free = running_ < options_.max_runs;
    if (slot_free && (pending_rows_ >= target_rows() || now >= window_end || now >= start_by)) {
      break;
    }
    const MonoTime wake_at = slot_free ? std::min(window_end, start_by) : first_drop;
    const std::uint32_t seen = kick_.load(std::memory_order_acquire);
    leader_wakes_at_ = wake_at;
    lock.unlock();
    wake_words(wake);
    wake = 0;
    futex_wait(kick_, seen, wake_at);
    lock.lock();
  }

  // Take the batch: this caller's rows first, then who came first, up to
  // max_rows; who does not fit waits for the next batch, led by the first.
  leader_ = nullptr;
  leader_wakes_at_ = MonoTime::max();
  remove_pending(&self);
  Batch batch;
  batch.requests.push_back(&self);
  std::size_t rows = self.rows;
  std::size_t taken = 0;
  while (taken < pending_.size() && rows + pending_[taken]->rows <= options_.max_rows) {
    rows += pending_[taken]->rows;
    batch.requests.push_back(pending_[taken++]);
  }
  pending_.erase(pending_.begin(), pending_.begin() + static_cast<std::ptrdiff_t>(taken));
  pending_rows_ -= rows - self.rows;
  last_rows_ = rows;
  const std::size_t word = collect_seq_ % kWords;
  ++collect_seq_;
  for (Request* r : pending_) r->word.store(collect_seq_ % kWords, std::memory_order_release);
  if (!pending_.empty()) wake |= 1u << promote_next();
  ++running_;

  thread_local std::vector<float> batch_in;
  thread_local std::vector<float> batch_out;
  batch_in.resize(rows * options_.in_dim);
  batch_out.resize(rows * options_.out_dim);
  std::size_t row = 0;
  for (std::size_t i = 0; i < batch.requests.size(); ++i) {
    Request* r = batch.requests[i];
    std::copy_n(r->in, r->rows * options_.in_dim, batch_in.data() + row * options_.in_dim);
    r->batch = &batch;
    r->index = i;
    batch.first_row.push_back(row);
    row += r->rows;
  }
  lock.unlock();
  wake_words(wake);

  auto [ran, took] = timed_run(batch_in.data(), rows, batch_out.data());

  lock.lock();
  --running_;
  if (ran.ok()) note_run(rows, took);
  for (std::size_t i = 0; i < batch.requests.size(); ++i) {
    Request* r = batch.requests[i];
    if (r == nullptr) continue;  // withdrawn: its deadline passed while this ran
    if (ran.ok()) {
      std::copy_n(batch_out.data() + batch.first_row[i] * options_.out_dim,
                  r->rows * options_.out_dim, r->out);
    }
    r->status = ran;
    r->batch = nullptr;
    if (r != &self) r->state.store(kDone, std::memory_order_release);
  }
  const bool kick = leader_ != nullptr;
  lock.unlock();
  wake_words(1u << word);
  if (kick) kick_leader();
  return finish(self);
}

void CallerBatcher::note_run(std::size_t rows, Nanos took) {
  double& per_row = ns_per_row_[rows_bucket(rows)];
  const double sample = static_cast<double>(took.count()) / static_cast<double>(rows);
  per_row = per_row == 0 ? sample : 0.8 * per_row + 0.2 * sample;
}

std::size_t CallerBatcher::promote_next() {
  Request* next = pending_.front();
  leader_ = next;
  next->state.store(kLead, std::memory_order_release);
  return next->word.load(std::memory_order_relaxed);
}

unsigned CallerBatcher::drop_late(MonoTime by, const Request* self) {
  unsigned wake = 0;
  for (std::size_t i = 0; i < pending_.size();) {
    Request* r = pending_[i];
    if (r == self || r->deadline == MonoTime::max() || r->deadline >= by) {
      ++i;
      continue;
    }
    pending_.erase(pending_.begin() + static_cast<std::ptrdiff_t>(i));
    pending_rows_ -= r->rows;
    r->status = deadline_error();
    wake |= 1u << r->word.load(std::memory_order_relaxed);
    r->state.store(kDone, std::memory_order_release);
  }
  return wake;
}

void CallerBatcher::remove_pending(Request* request) {
  auto it = std::find(pending_.begin(), pending_.end(), request);
  if (it == pending_.end()) return;
  pending_.erase(it);
  pending_rows_ -= request->rows;
}

std::size_t CallerBatcher::target_rows() const {
  return std::clamp<std::size_t>(last_rows_, 1, options_.max_rows);
}

Nanos CallerBatcher::estimate(std::size_t rows) const {
  if (rows == 0) return Nanos(0);
  // The bucket's own figure, else the nearest measured one.
  const std::size_t bucket = rows_bucket(rows);
  for (std::size_t d = 0; d < ns_per_row_.size(); ++d) {
    for (std::size_t b : {bucket - std::min(d, bucket), bucket + d}) {
      if (b < ns_per_row_.size() && ns_per_row_[b] > 0) {
        return Nanos(static_cast<std::int64_t>(ns_per_row_[b] * static_cast<double>(rows)));
      }
    }
  }
  return Nanos(0);
}

void CallerBatcher::wake_words(unsigned mask) {
  for (std::size_t i = 0; i < kWords; ++i) {
    if ((mask & (1u << i)) != 0) futex_wake_all(words_[i]);
  }
}

void CallerBatcher::kick_leader() { futex_wake_all(kick_); }

}  // namespace malv::mlaas
