// CPU lists as the kernel writes them ("0-3,8,10-11": cpuset.cpus,
// /sys/devices/system/cpu/online) and as sched_setaffinity takes them.
//
//   MALV_ASSIGN_OR_RETURN(std::vector<int> cpus, parse_cpu_list("0-1,4"));  // {0, 1, 4}
//   format_cpu_list({0, 1, 4});                                           // "0-1,4"
//   MALV_TRY(set_thread_affinity(tid, cpus));
//
// Lists are sorted and free of duplicates wherever they come out of here.
#pragma once

#include <sys/types.h>

#include <string>
#include <string_view>
#include <vector>

#include "malv/result.h"

namespace malv::cpu_control {

// The CPUs of a list in the kernel's format (blank or empty text: none);
// kInvalidArgument naming the text when it is not one.
[[nodiscard]] Result<std::vector<int>> parse_cpu_list(std::string_view text);
// Sorted, ranges joined: {0, 1, 2, 5} -> "0-2,5"; {} -> "".
std::string format_cpu_list(std::vector<int> cpus);

// The CPUs thread `tid` may run on (0: the calling thread).
[[nodiscard]] Result<std::vector<int>> thread_affinity(pid_t tid);
// Lets thread `tid` run on `cpus` only. kNotFound when the thread is gone
// (ESRCH), kInvalidArgument when no CPU of the list is allowed to it.
[[nodiscard]] Status set_thread_affinity(pid_t tid, const std::vector<int>& cpus);
// Lets every thread of this process run on `cpus` only (threads started
// later inherit it from the thread that starts them); what `malv serve
// --host-cpus` does at start-up. A thread that exits meanwhile is skipped.
[[nodiscard]] Status set_process_affinity(const std::vector<int>& cpus);

}  // namespace malv::cpu_control
