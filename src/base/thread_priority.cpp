#include "base/thread_priority.h"

#include <pthread.h>
#include <sched.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstring>

#include "base/log.h"

namespace malv {
namespace {

// struct sched_attr of sched_setattr(2); glibc 2.36 has no wrapper.
struct SchedAttr {
  std::uint32_t size;
  std::uint32_t sched_policy;
  std::uint64_t sched_flags;
  std::int32_t sched_nice;
  std::uint32_t sched_priority;
  std::uint64_t sched_runtime;
  std::uint64_t sched_deadline;
  std::uint64_t sched_period;
};

}  // namespace

void lower_thread_priority(int nice) {
  if (nice <= 0) return;
  // Per thread on Linux: PRIO_PROCESS with a thread id.
  if (::setpriority(PRIO_PROCESS, static_cast<id_t>(::gettid()), nice) != 0) {
    log::debug("base", "thread nice {} not applied: {}", nice, std::strerror(errno));
  }
}

unsigned usable_cpu_count() {
  cpu_set_t set;
  CPU_ZERO(&set);
  if (::sched_getaffinity(0, sizeof(set), &set) != 0) return 1;
  return static_cast<unsigned>(std::max(1, CPU_COUNT(&set)));
}

void name_this_thread(const char* name) {
  char truncated[16] = {};
  std::strncpy(truncated, name, sizeof(truncated) - 1);
  ::pthread_setname_np(::pthread_self(), truncated);
}

bool set_thread_slice(pid_t tid, std::chrono::microseconds slice) {
  // Only SCHED_OTHER threads: a real-time one keeps what it has.
  const int policy = ::sched_getscheduler(tid);
  if (policy != SCHED_OTHER) return false;
  SchedAttr attr{};
  attr.size = sizeof(attr);
  attr.sched_policy = SCHED_OTHER;
  errno = 0;
  const int nice = ::getpriority(PRIO_PROCESS, static_cast<id_t>(tid));
  attr.sched_nice = errno == 0 ? nice : 0;
  attr.sched_runtime = static_cast<std::uint64_t>(
      std::chrono::duration_cast<std::chrono::nanoseconds>(slice).count());
  return ::syscall(SYS_sched_setattr, tid, &attr, 0) == 0;
}

void request_short_slice(std::chrono::microseconds slice) {
  if (!set_thread_slice(static_cast<pid_t>(::gettid()), slice)) {
    log::debug("base", "short time slice not applied: {}", std::strerror(errno));
  }
}

}  // namespace malv
