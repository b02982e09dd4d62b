// Reading and writing cgroup control files, and making and removing cgroup
// directories. Every error names the path and carries errno's text.
//
// A cgroup takes one task id per write(2) into tasks, cgroup.procs or
// cgroup.threads; a task that exited between being listed and being written
// makes the kernel answer ESRCH, which write_task() reports as "gone"
// (false), not as an error.
#pragma once

#include <sys/types.h>

#include <string>
#include <string_view>
#include <vector>

#include "malv/result.h"

namespace malv::cpu_control {

// The whole file (a control file is small).
[[nodiscard]] Result<std::string> read_text(const std::string& path);
// One write of `text` (no newline added), as the kernel wants it.
[[nodiscard]] Status write_text(const std::string& path, std::string_view text);
// Writes task id `id` into a tasks/cgroup.procs/cgroup.threads file: true
// when moved, false when the task is gone (ESRCH).
[[nodiscard]] Result<bool> write_task(const std::string& path, pid_t id);
// The ids listed in a tasks/cgroup.procs/cgroup.threads file.
[[nodiscard]] Result<std::vector<pid_t>> read_tasks(const std::string& path);
// True when the whitespace-separated words of `text` (cgroup.controllers,
// cgroup.subtree_control) include `word`.
bool has_word(std::string_view text, std::string_view word);

bool is_directory(const std::string& path);
bool file_exists(const std::string& path);
// mkdir 0755; kAlreadyExists when the path exists.
[[nodiscard]] Status make_directory(const std::string& path);
// rmdir; a cgroup directory goes only once no task is left in it (EBUSY).
[[nodiscard]] Status remove_directory(const std::string& path);
// The names of the subdirectories of `path` (none when it cannot be read).
std::vector<std::string> subdirectories(const std::string& path);

}  // namespace malv::cpu_control
