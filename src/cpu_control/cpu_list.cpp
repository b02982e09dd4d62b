#include "cpu_control/cpu_list.h"

#include <fmt/format.h>
#include <sched.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <filesystem>
#include <string>

namespace malv::cpu_control {
namespace {

// CPU numbers past this are refused: cpu_set_t's fixed size.
constexpr int kMaxCpus = CPU_SETSIZE;

Error bad_list(std::string_view text, std::string_view why) {
  return Error(ErrorCode::kInvalidArgument, fmt::format("CPU list '{}': {}", text, why));
}

std::string_view trim(std::string_view text) {
  while (!text.empty() && (text.front() == ' ' || text.front() == '\n' || text.front() == '\t'))
    text.remove_prefix(1);
  while (!text.empty() && (text.back() == ' ' || text.back() == '\n' || text.back() == '\t'))
    text.remove_suffix(1);
  return text;
}

Result<int> parse_cpu(std::string_view whole, std::string_view number) {
  int value = 0;
  const auto [end, ec] = std::from_chars(number.data(), number.data() + number.size(), value);
  if (number.empty() || ec != std::errc() || end != number.data() + number.size() || value < 0) {
    return bad_list(whole, fmt::format("'{}' is not a CPU number", number));
  }
  if (value >= kMaxCpus) return bad_list(whole, fmt::format("CPU {} is past {}", value, kMaxCpus));
  return value;
}

}  // namespace

Result<std::vector<int>> parse_cpu_list(std::string_view text) {
  const std::string_view list = trim(text);
  std::vector<int> cpus;
  std::size_t start = 0;
  while (start < list.size()) {
    std::size_t comma = list.find(',', start);
    if (comma == std::string_view::npos) comma = list.size();
    const std::string_view item = list.substr(start, comma - start);
    const std::size_t dash = item.find('-');
    MALV_ASSIGN_OR_RETURN(const int first, parse_cpu(text, item.substr(0, dash)));
    int last = first;
    if (dash != std::string_view::npos) {
      MALV_ASSIGN_OR_RETURN(last, parse_cpu(text, item.substr(dash + 1)));
      if (last < first) return bad_list(text, fmt::format("range '{}' runs backwards", item));
    }
    for (int cpu = first; cpu <= last; ++cpu) cpus.push_back(cpu);
    start = comma + 1;
    if (comma + 1 == list.size()) return bad_list(text, "ends with ','");
  }
  std::sort(cpus.begin(), cpus.end());
  cpus.erase(std::unique(cpus.begin(), cpus.end()), cpus.end());
  return cpus;
}

std::string format_cpu_list(std::vector<int> cpus) {
  std::sort(cpus.begin(), cpus.end());
  cpus.erase(std::unique(cpus.begin(), cpus.end()), cpus.end());
  std::string out;
  for (std::size_t i = 0; i < cpus.size();) {
    std::size_t j = i;
    while (j + 1 < cpus.size() && cpus[j + 1] == cpus[j] + 1) ++j;
    if (!out.empty()) out += ',';
    out += j == i ? fmt::format("{}", cpus[i]) : fmt::format("{}-{}", cpus[i], cpus[j]);
    i = j + 1;
  }
  return out;
}

Result<std::vector<int>> thread_affinity(pid_t tid) {
  cpu_set_t set;
  CPU_ZERO(&set);
  if (::sched_getaffinity(tid, sizeof(set), &set) != 0) {
    const int error = errno;
    if (error == ESRCH) {
      return Error(ErrorCode::kNotFound,
                   fmt::format("sched_getaffinity of thread {}: thread is gone", tid));
    }
    return errno_error(fmt::format("sched_getaffinity of thread {}", tid), error);
  }
  std::vector<int> cpus;
  for (int cpu = 0; cpu < kMaxCpus; ++cpu) {
    if (CPU_ISSET(cpu, &set)) cpus.push_back(cpu);
  }
  return cpus;
}

Status set_thread_affinity(pid_t tid, const std::vector<int>& cpus) {
  cpu_set_t set;
  CPU_ZERO(&set);
  for (const int cpu : cpus) {
    if (cpu < 0 || cpu >= kMaxCpus) {
      return Error(ErrorCode::kInvalidArgument, fmt::format("CPU {} is out of range", cpu));
    }
    CPU_SET(cpu, &set);
  }
  if (::sched_setaffinity(tid, sizeof(set), &set) != 0) {
    const int error = errno;
    const std::string what =
        fmt::format("sched_setaffinity of thread {} to CPUs '{}'", tid, format_cpu_list(cpus));
    if (error == ESRCH) {
      return Error(ErrorCode::kNotFound, fmt::format("{}: thread is gone (no such process)", what));
    }
    return errno_error(what, error);
  }
  return ok_status();
}

Status set_process_affinity(const std::vector<int>& cpus) {
  // The calling thread first: a thread it starts while the others are
  // being set already has the new mask.
  MALV_TRY(set_thread_affinity(0, cpus));
  std::error_code ec;
  for (const auto& entry : std::filesystem::directory_iterator("/proc/self/task", ec)) {
    pid_t tid = 0;
    const std::string name = entry.path().filename().string();
    if (std::from_chars(name.data(), name.data() + name.size(), tid).ec != std::errc{}) continue;
    Status set = set_thread_affinity(tid, cpus);
    if (!set.ok() && set.error().code() != ErrorCode::kNotFound) return set;
  }
  if (ec) return Error(ErrorCode::kInternal, "listing /proc/self/task: " + ec.message());
  return ok_status();
}

}  // namespace malv::cpu_control
