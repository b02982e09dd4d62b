// CompletionGate: a completion callback that holds the backend thread running
// it (as a long kernel would hold a worker) until another completion, or the
// test, releases it; for tests of who runs what while every worker is busy.
//
//   CompletionGate gate;
//   backend->enqueue(batch, op, Completion{&CompletionGate::hold, &gate, 0});
//   gate.wait_entered();          // a worker is now held
//   backend->enqueue(urgent, op, Completion{&CompletionGate::release, &gate, 0});
//   backend->synchronize_all();
//   EXPECT_TRUE(gate.released_in_time);
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <mutex>

#include "malv/error.h"

namespace malv::accel::testing {

struct CompletionGate {
  std::mutex mutex;
  std::condition_variable changed;
  bool entered = false;
  bool released = false;
  bool released_in_time = false;  // hold() saw the release within 10 s

  static void hold(void* context, std::uint64_t, ErrorCode) {
    auto* gate = static_cast<CompletionGate*>(context);
    std::unique_lock lock(gate->mutex);
    gate->entered = true;
    gate->changed.notify_all();
    gate->released_in_time =
        gate->changed.wait_for(lock, std::chrono::seconds(10), [&] { return gate->released; });
  }
  static void release(void* context, std::uint64_t, ErrorCode) {
    auto* gate = static_cast<CompletionGate*>(context);
    std::lock_guard lock(gate->mutex);
    gate->released = true;
    gate->changed.notify_all();
  }
  void wait_entered() {
    std::unique_lock lock(mutex);
    changed.wait_for(lock, std::chrono::seconds(10), [&] { return entered; });
  }
};

}  // namespace malv::accel::testing
