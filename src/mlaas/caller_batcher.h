// CallerBatcher: combines the rows that concurrent callers ask of one model
// into one run, so that many policy decisions (every policy instance, every
// VM) pay for one inference instead of one each.
//
//   CallerBatcher batcher({.in_dim = 31, .out_dim = 2},
//                         [&](const float* in, std::size_t rows, float* out) {
//                           mlp.infer_cpu(in, rows, out);
//                           return ok_status();
//                         });
//   // from any number of threads:
//   Status s = batcher.submit(row.data(), 1, answer.data(), deadline);
//
// How a batch forms. A caller that finds nobody waiting, a run slot free
// and a last batch no bigger than its own rows runs at once on its own
// buffers. Otherwise the first caller that finds nobody collecting leads
// the next batch: it waits until as many rows are waiting as the last batch had
// (so a lone caller never waits), or until the window has passed since it
// came, or until a waiting caller's deadline leaves no more time, and until
// fewer than max_runs batches of this model are running. Then it copies
// every waiting caller's rows into one input (each caller its own range),
// runs it once outside the lock, and copies each caller's range of the
// output back. Callers that come while batches run wait and form the next
// one, so batches grow with the load by themselves. A batch holds at most
// max_rows rows; who does not fit leads or joins the next one.
//
// Deadlines. A caller is never answered after its deadline: if it is still
// waiting when its deadline comes, or the run it would join is estimated
// (from the model's recent runs) to end after it, it gets kDeadlineExceeded
// at once and its rows leave the batch (a range already in a running batch
// is never copied out). A leader whose deadline is too near hands the batch
// to the next waiting caller and leaves. An answer that is ready only after
// the deadline is dropped the same way.
//
// Waiting. Callers that wait sleep on one of a few futex words shared by a
// batch's callers (one wake-up call per batch, not per caller); the leader
// sleeps on its own word. A wake-up is only a hint: every waiter re-reads
// its own request's state, which the leader writes under the lock.
//
// Thread-safety: submit() from any thread. The batcher must outlive every
// submit() in flight.
#pragma once

#include <array>
#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <mutex>
#include <utility>
#include <vector>

#include "base/clock.h"
#include "malv/result.h"

namespace malv::mlaas {

struct CallerBatcherOptions {
  std::size_t in_dim = 0;
  std::size_t out_dim = 0;
  std::chrono::nanoseconds window = std::chrono::microseconds(20);
  std::size_t max_rows = 1024;
  int max_runs = 1;  // batches of this model running at once
};

class CallerBatcher {
 public:
  // Runs `rows` rows of in_dim floats; writes rows of out_dim. Called by
  // one caller (the leader) at a time per running batch, without the lock.
  using RunFn = std::function<Status(const float* in, std::size_t rows, float* out)>;

  CallerBatcher(CallerBatcherOptions options, RunFn run);
  CallerBatcher(const CallerBatcher&) = delete;
  CallerBatcher& operator=(const CallerBatcher&) = delete;

  // rows rows of in_dim floats in, rows rows of out_dim floats out (out is
  // unspecified on an error). deadline: MonoTime::max() for none.
  [[nodiscard]] Status submit(const float* in, std::size_t rows, float* out, MonoTime deadline);

 private:
  struct Request;
  struct Batch;
  static constexpr std::size_t kWords = 4;

  Status lead(std::unique_lock<std::mutex>& lock, Request& self);
  Status follow(Request& self);
  Status withdraw(std::unique_lock<std::mutex>& lock, Request& self);
  Status finish(Request& self) const;
  // Under mu_: makes the first waiting caller the leader; returns the word
  // to wake it on (kWords: nobody waits).
  std::size_t promote_next();
  // Under mu_: answers kDeadlineExceeded to waiting callers (not `self`)
  // whose deadline comes before `by`; returns the words to wake (bit mask).
  unsigned drop_late(MonoTime by, const Request* self);
  void remove_pending(Request* request);
  std::size_t target_rows() const;
  Nanos estimate(std::size_t rows) const;
  void note_run(std::size_t rows, Nanos took);  // under mu_
  // run_ over `rows` rows, an exception turned into kInternal; and its time.
  std::pair<Status, Nanos> timed_run(const float* in, std::size_t rows, float* out);
  void wake_words(unsigned mask);
  void kick_leader();

  const CallerBatcherOptions options_;
  const RunFn run_;

  std::mutex mu_;
  std::vector<Request*> pending_;  // in arrival order; the leader among them
  std::size_t pending_rows_ = 0;
  Request* leader_ = nullptr;                   // collecting the next batch, if any
  int running_ = 0;                             // batches running now
  std::size_t last_rows_ = 1;                   // rows of the last batch taken
  std::uint32_t collect_seq_ = 0;               // number of the batch being collected
  MonoTime leader_wakes_at_ = MonoTime::max();  // when a sleeping leader wakes itself
  std::array<double, 16> ns_per_row_{};         // recent runs per bucket of rows (0: none)

  std::atomic<std::uint32_t> words_[kWords]{};  // a batch's callers sleep on one
  std::atomic<std::uint32_t> kick_{0};          // the leader sleeps on it
};

}  // namespace malv::mlaas
