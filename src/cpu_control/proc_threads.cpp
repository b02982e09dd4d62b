#include "cpu_control/proc_threads.h"

#include <dirent.h>
#include <fmt/format.h>
#include <signal.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <fstream>
#include <sstream>
#include <string_view>

namespace malv::cpu_control {
namespace {

std::optional<std::string> slurp(const std::string& path) {
  std::ifstream in(path);
  if (!in) return std::nullopt;
  std::ostringstream text;
  text << in.rdbuf();
  if (in.bad()) return std::nullopt;
  return text.str();
}

template <typename T>
std::optional<T> parse_number(std::string_view text) {
  T value{};
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (text.empty() || ec != std::errc() || end != text.data() + text.size()) return std::nullopt;
  return value;
}

// /proc/<tid>/task/<tid>/...: the thread's own file, for any thread id
// (/proc/<tid> itself is the whole process for some files).
std::string thread_file(pid_t tid, std::string_view name) {
  return fmt::format("/proc/{}/task/{}/{}", tid, tid, name);
}

}  // namespace

std::vector<pid_t> process_threads(pid_t pid) {
  std::vector<pid_t> tids;
  DIR* dir = ::opendir(fmt::format("/proc/{}/task", pid).c_str());
  if (dir == nullptr) return tids;
  while (const dirent* entry = ::readdir(dir)) {
    if (const auto tid = parse_number<pid_t>(entry->d_name)) tids.push_back(*tid);
  }
  ::closedir(dir);
  std::sort(tids.begin(), tids.end());
  return tids;
}

std::optional<pid_t> process_of(pid_t tid) {
  const auto status = slurp(thread_file(tid, "status"));
  if (!status) return std::nullopt;
  const std::size_t at = status->find("\nTgid:");
  if (at == std::string::npos) return std::nullopt;
  std::size_t start = at + 6;
  while (start < status->size() && ((*status)[start] == ' ' || (*status)[start] == '\t')) ++start;
  std::size_t end = status->find('\n', start);
  if (end == std::string::npos) end = status->size();
  return parse_number<pid_t>(std::string_view(*status).substr(start, end - start));
}

std::optional<std::uint64_t> thread_start_time(pid_t tid) {
  const auto stat = slurp(thread_file(tid, "stat"));
  if (!stat) return std::nullopt;
  // "pid (comm) state ppid ...": comm may hold spaces and ')', so count
  // fields from the last ')'. Field 22 is the 20th after it.
  const std::size_t close = stat->rfind(')');
  if (close == std::string::npos) return std::nullopt;
  std::istringstream fields(stat->substr(close + 1));
  std::string field;
  for (int i = 0; i < 20; ++i) {
    if (!(fields >> field)) return std::nullopt;
  }
  return parse_number<std::uint64_t>(field);
}

bool process_exists(pid_t pid) {
  if (pid <= 0) return false;
  return ::kill(pid, 0) == 0 || errno == EPERM;
}

std::optional<Schedstat> read_schedstat(pid_t tid) {
  const auto text = slurp(thread_file(tid, "schedstat"));
  if (!text) return std::nullopt;
  std::istringstream fields(*text);
  Schedstat stat;
  if (!(fields >> stat.run_ns >> stat.wait_ns)) return std::nullopt;
  return stat;
}

std::vector<CgroupMembership> read_cgroup_membership(pid_t tid) {
  const auto text = slurp(tid == 0 ? std::string("/proc/self/cgroup") : thread_file(tid, "cgroup"));
  std::vector<CgroupMembership> lines;
  if (!text) return lines;
  std::istringstream in(*text);
  std::string line;
  while (std::getline(in, line)) {
    const std::size_t first = line.find(':');
    const std::size_t second = first == std::string::npos ? first : line.find(':', first + 1);
    if (second == std::string::npos) continue;
    CgroupMembership membership;
    membership.hierarchy_id =
        parse_number<int>(std::string_view(line).substr(0, first)).value_or(-1);
    std::string_view names = std::string_view(line).substr(first + 1, second - first - 1);
    while (!names.empty()) {
      const std::size_t comma = std::min(names.find(','), names.size());
      membership.controllers.emplace_back(names.substr(0, comma));
      names.remove_prefix(std::min(comma + 1, names.size()));
    }
    membership.path = line.substr(second + 1);
    lines.push_back(std::move(membership));
  }
  return lines;
}

}  // namespace malv::cpu_control
