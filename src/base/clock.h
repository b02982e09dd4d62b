// Monotonic time helpers: one clock (steady_clock) for every duration that
// MaLV-OS measures, so figures from different components can be compared.
//
//   Stopwatch watch;
//   run();
//   log::info("took {} us", watch.elapsed_us());
//
//   Deadline deadline = Deadline::after(std::chrono::milliseconds(50));
//   while (!deadline.expired()) poll();
#pragma once

#include <chrono>
#include <cstdint>

namespace malv {

using MonoClock = std::chrono::steady_clock;
using MonoTime = MonoClock::time_point;
using Nanos = std::chrono::nanoseconds;

// Monotonic nanoseconds since an arbitrary fixed point (boot, on Linux).
inline std::int64_t mono_now_ns() {
  return std::chrono::duration_cast<Nanos>(MonoClock::now().time_since_epoch()).count();
}

class Stopwatch {
 public:
  Stopwatch() : start_(MonoClock::now()) {}
  void restart() { start_ = MonoClock::now(); }
  Nanos elapsed() const { return MonoClock::now() - start_; }
  std::int64_t elapsed_ns() const { return elapsed().count(); }
  double elapsed_us() const { return static_cast<double>(elapsed_ns()) / 1e3; }
  double elapsed_s() const { return static_cast<double>(elapsed_ns()) / 1e9; }

 private:
  MonoTime start_;
};

class Deadline {
 public:
  static Deadline after(Nanos timeout) { return Deadline(MonoClock::now() + timeout); }
  static Deadline never() { return Deadline(MonoTime::max()); }

  bool expired() const { return MonoClock::now() >= at_; }
  MonoTime at() const { return at_; }
  // Time left, zero once expired.
  Nanos remaining() const {
    auto now = MonoClock::now();
    return now >= at_ ? Nanos::zero() : std::chrono::duration_cast<Nanos>(at_ - now);
  }

 private:
  explicit Deadline(MonoTime at) : at_(at) {}
  MonoTime at_;
};

}  // namespace malv
