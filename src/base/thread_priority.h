// Scheduling hints and names for the host's own threads.
//
// On a CPU backend the accelerator's "hardware scheduler" is Linux's: a
// GEMM running on a worker thread is preempted, or not, by the kernel. Two
// unprivileged knobs make latency-class work overtake batch work there:
//
//  * lower_thread_priority(nice): the calling thread yields to others
//    (the CPU backend's general workers, which run batch kernels).
//  * request_short_slice(slice): the calling thread asks EEVDF (Linux 6.6+)
//    for a short time slice via sched_setattr's sched_runtime, so when it
//    wakes it preempts a running thread at once instead of waiting for that
//    thread's slice to end (the dispatchers, the high-priority workers, a
//    latency-sensitive guest). Kernels without it ignore the request.
//
// Both affect only the calling thread, need no privilege and only ever
// lower the thread's claim on the CPU, never raise it; failures are logged
// at debug level and otherwise ignored: these are hints.
#pragma once

#include <sys/types.h>

#include <chrono>

namespace malv {

void lower_thread_priority(int nice);
// Names the calling thread (15 characters at most are kept), for top -H,
// perf and gdb.
void name_this_thread(const char* name);
void request_short_slice(std::chrono::microseconds slice);
// The same for another thread `tid` (its nice value kept); a slice of 0
// gives it back the kernel's default. For the host's CPU control, which
// gives a latency VM's threads short slices (needs the right to change
// that thread: same user or CAP_SYS_NICE). False when not applied (errno).
bool set_thread_slice(pid_t tid, std::chrono::microseconds slice);

// The CPUs the calling thread may run on (its affinity mask; at least 1).
// What sizes the CPU backend's worker pool and OpenBLAS's threads: a host
// confined to some cores (`malv serve --host-cpus`, taskset, a cpuset)
// starts as many workers as it has cores, not as the machine has.
unsigned usable_cpu_count();

// The slice the host's latency path asks for.
inline constexpr std::chrono::microseconds kShortSlice{100};

}  // namespace malv
