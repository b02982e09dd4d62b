#include "demo/table.h"

#include <fmt/format.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>

namespace malv::demo {
namespace {

constexpr double kMiB = 1048576.0;

std::string ms_cell(const VmLive& live, double ms) {
  return live.requests == 0 ? "-" : fmt::format("{:.2f}", ms);
}

}  // namespace

std::string progress_text(const DemoVmSpec& spec, const VmLive& live) {
  if (live.state == "starting") return "loading data";
  if (live.state == "failed") return "FAILED (see its log)";
  if (spec.role == VmRole::kInfer) {
    return fmt::format("{} req {:.1f}/s", live.requests, live.request_rate);
  }
  if (live.state == "finished") return fmt::format("done, accuracy {:.3f}", live.test_accuracy);
  return fmt::format("step {} loss {:.3f}", live.step, live.loss);
}

void LiveTable::draw(const DemoRecord& record, double t, const std::string& status) {
  if (!terminal_) {
    // One line per draw: t, policy, then each VM's headline figure.
    std::string line = fmt::format("t={:5.1f}s {}", t, status);
    for (std::size_t v = 0; v < record.vms.size(); ++v) {
      const DemoVmSpec& spec = record.vms[v];
      const VmLive& live = record.live[v];
      line += fmt::format(" | {} {:.0f} ex/s {:.0f}%{}", spec.name, live.examples_per_s,
                          live.share * 100, live.state == "finished" ? " (done)" : "");
      if (spec.role == VmRole::kInfer) {
        line += fmt::format(" p50 {} p99 {} ms", ms_cell(live, live.p50_ms),
                            ms_cell(live, live.p99_ms));
      }
    }
    fmt::print("{}\n", line);
    std::fflush(stdout);
    return;
  }
  std::vector<std::string> lines;
  lines.push_back(
      fmt::format("t = {:.1f} s of {:.0f} s   {}", t, record.planned_duration_s, status));
  lines.push_back(fmt::format("{:<7} {:<10} {:<8} {:<22} {:>7} {:>6} {:>9} {:>13} {:>6} {:>6}",
                              "VM", "CLASS", "POLICY", "PROGRESS", "EX/S", "ACCEL", "MEM MiB",
                              "LENT/SPILL", "P50ms", "P99ms"));
  for (std::size_t v = 0; v < record.vms.size(); ++v) {
    const DemoVmSpec& spec = record.vms[v];
    const VmLive& live = record.live[v];
    const bool infer = spec.role == VmRole::kInfer;
    const std::string managed =
        spec.virtual_memory == 0
            ? "-"
            : fmt::format("{:.1f}/{:.1f}", static_cast<double>(live.borrowed_bytes) / kMiB,
                          static_cast<double>(live.spilled_bytes) / kMiB);
    lines.push_back(fmt::format(
        "{:<7} {:<10} {:<8} {:<22} {:>7.0f} {:>5.1f}% {:>9} {:>13} {:>6} {:>6}", spec.name,
        fmt::format("{} w{:g}", spec.priority, spec.weight), short_policy_name(live.policy),
        progress_text(spec, live), live.examples_per_s, live.share * 100,
        fmt::format("{:.1f}/{:.0f}", static_cast<double>(live.memory_used) / kMiB,
                    static_cast<double>(live.memory_limit) / kMiB),
        managed, infer ? ms_cell(live, live.p50_ms) : "-",
        infer ? ms_cell(live, live.p99_ms) : "-"));
  }
  lines.push_back("ACCEL: share of the accelerator time the VMs used in the last second;");
  lines.push_back("MEM: device memory used / quota (host-enforced); P50/P99: request latency;");
  lines.push_back("LENT/SPILL: an oversubscribed VM's MiB held above its quota while the device");
  lines.push_back("has room / MiB in host memory (its memory manager's)");
  erase();
  lines_ = std::move(lines);
  print_lines();
}

void LiveTable::note(const std::string& message) {
  if (!terminal_) {
    fmt::print("{}\n", message);
    std::fflush(stdout);
    return;
  }
  erase();
  fmt::print("{}\n", message);
  print_lines();
}

void LiveTable::finish() {
  on_screen_ = false;
  lines_.clear();
}

void LiveTable::erase() {
  if (!on_screen_ || lines_.empty()) return;
  // Rows on screen: a line wider than the terminal wraps onto more rows.
  winsize size{};
  const std::size_t columns =
      ::ioctl(STDOUT_FILENO, TIOCGWINSZ, &size) == 0 && size.ws_col > 0 ? size.ws_col : 80;
  std::size_t rows = 0;
  for (const std::string& line : lines_)
    rows += std::max<std::size_t>(1, (line.size() + columns - 1) / columns);
  // To the start of the table's first row, then clear to the end of the screen.
  fmt::print("\x1b[{}F\x1b[J", rows);
  on_screen_ = false;
}

void LiveTable::print_lines() {
  if (lines_.empty()) return;
  for (const std::string& line : lines_) fmt::print("{}\x1b[K\n", line);
  std::fflush(stdout);
  on_screen_ = true;
}

}  // namespace malv::demo
