// What the CPU and CUDA backends share in how they are built, so that both
// keep the interface's semantics (backend.h) the same way:
//
//  * EventRecords: one event's record bookkeeping. Records are numbered as
//    they are enqueued; a wait covers the records made before it; the event
//    is complete when every record enqueued so far has run, and its time is
//    when the latest-numbered record ran.
//  * spin_until(): the brief poll a backend thread makes before it sleeps
//    (most waits end within microseconds, and a sleep and a wake-up cost
//    more than that).
//  * Overloaded: a visitor made of lambdas, for std::visit over an Op.
//
//   struct Event : EventRecords { ... };         // the backend's own state
//   seq = event.record();                        // RecordEvent enqueued
//   event.complete(seq, mono_now_ns());          // ...and run
//   if (!spin_until([&] { return ready(); }, kSpinNs)) sleep();
#pragma once

#include <sched.h>

#include <cstdint>

#include "accel/backend.h"
#include "base/clock.h"
#include "base/cpu_relax.h"

namespace malv::accel {

// Guarded by the backend's event lock.
struct EventRecords {
  std::uint64_t recorded = 0;     // records enqueued
  std::uint64_t completed = 0;    // records that have run
  std::uint64_t latest_done = 0;  // highest record number that has run
  std::int64_t time_ns = 0;       // when that record ran (monotonic)

  // A record was enqueued: its number.
  std::uint64_t record() { return ++recorded; }
  // Record `seq` has run, at now_ns. Records of one event may finish out of
  // order (on different queues); the time is the latest-numbered one's.
  void complete(std::uint64_t seq, std::int64_t now_ns) {
    ++completed;
    if (seq > latest_done) {
      latest_done = seq;
      time_ns = now_ns;
    }
  }
  EventState state() const { return EventState{completed == recorded, time_ns}; }
};

// Polls `done` for up to spin_ns, pausing the core between polls; whether
// it came true. A yielding poll offers the core to any other thread ready
// to run on it between polls: on a host with few cores the thread that
// would make `done` true (the dispatcher preparing the next call) may be
// waiting for this very core.
template <typename Done>
bool spin_until(Done done, std::int64_t spin_ns, bool yielding = false) {
  const std::int64_t give_up = mono_now_ns() + spin_ns;
  while (!done()) {
    if (mono_now_ns() >= give_up) return false;
    if (yielding) {
      sched_yield();
    } else {
      cpu_relax();
    }
  }
  return true;
}

template <typename... Fs>
struct Overloaded : Fs... {
  using Fs::operator()...;
};
template <typename... Fs>
Overloaded(Fs...) -> Overloaded<Fs...>;

}  // namespace malv::accel
