// Futex helpers: the doorbell under the shared-memory rings.
//
// A futex lets one process sleep on a 32-bit word in shared memory until
// another process changes the word and wakes it. The rings use one per
// direction (RingHeader::wake_seq): the consumer sleeps on it when its ring
// is empty, the producer bumps it and wakes the consumer after publishing.
//
//   std::uint32_t seen = word.load(std::memory_order_acquire);
//   if (nothing_to_do()) futex_wait(&word, seen, std::chrono::milliseconds(5));
//   ...
//   word.fetch_add(1, std::memory_order_release);
//   futex_wake(&word, 1);
//
// We call the raw syscall (SYS_futex) because no library wraps futexes: glibc
// exposes no futex() function, and std::atomic::wait cannot sleep with a
// timeout nor is it specified to work across processes. We use the shared
// (non-PRIVATE) operations, since the word lives in a memfd mapped by two
// processes; the kernel then keys the wait queue on the page, not on the
// address in one process.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>

namespace malv::ipc {

static_assert(sizeof(std::atomic<std::uint32_t>) == sizeof(std::uint32_t));
static_assert(std::atomic<std::uint32_t>::is_always_lock_free);

enum class FutexWaitResult {
  kWoken,         // woken by futex_wake (or spuriously; re-check the condition)
  kValueChanged,  // *word != expected when we tried to sleep
  kTimedOut,      // timeout passed
  kInterrupted,   // a signal arrived
};

// Sleeps while *word == expected, at most `timeout` (nanoseconds::max() means
// no limit; zero or negative returns kTimedOut at once without sleeping).
FutexWaitResult futex_wait(std::atomic<std::uint32_t>* word, std::uint32_t expected,
                           std::chrono::nanoseconds timeout);

// Wakes up to `count` sleepers on word; returns how many were woken.
int futex_wake(std::atomic<std::uint32_t>* word, int count);

}  // namespace malv::ipc
