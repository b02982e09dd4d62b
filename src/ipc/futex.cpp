#include "ipc/futex.h"

#include <linux/futex.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <ctime>

namespace malv::ipc {

namespace {

long futex_syscall(std::atomic<std::uint32_t>* word, int op, std::uint32_t value,
                   const timespec* timeout) {
  // The atomic has the size and representation of a uint32_t (asserted in
  // the header), so the kernel may read and compare it in place.
  return ::syscall(SYS_futex, reinterpret_cast<std::uint32_t*>(word), op, value, timeout, nullptr,
                   0);
}

}  // namespace

FutexWaitResult futex_wait(std::atomic<std::uint32_t>* word, std::uint32_t expected,
                           std::chrono::nanoseconds timeout) {
  if (timeout <= std::chrono::nanoseconds::zero()) return FutexWaitResult::kTimedOut;
  timespec ts{};
  const timespec* ts_ptr = nullptr;
  if (timeout != std::chrono::nanoseconds::max()) {
    auto secs = std::chrono::duration_cast<std::chrono::seconds>(timeout);
    ts.tv_sec = static_cast<time_t>(secs.count());
    ts.tv_nsec = static_cast<long>((timeout - secs).count());
    ts_ptr = &ts;  // FUTEX_WAIT takes a relative timeout on CLOCK_MONOTONIC
  }
  long rc = futex_syscall(word, FUTEX_WAIT, expected, ts_ptr);
  if (rc == 0) return FutexWaitResult::kWoken;
  switch (errno) {
    case EAGAIN: return FutexWaitResult::kValueChanged;
    case ETIMEDOUT: return FutexWaitResult::kTimedOut;
    case EINTR: return FutexWaitResult::kInterrupted;
    default: return FutexWaitResult::kWoken;  // treat as spurious; callers re-check
  }
}

int futex_wake(std::atomic<std::uint32_t>* word, int count) {
  long rc = futex_syscall(word, FUTEX_WAKE, static_cast<std::uint32_t>(count), nullptr);
  return rc < 0 ? 0 : static_cast<int>(rc);
}

}  // namespace malv::ipc
