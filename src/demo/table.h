// LiveTable: the per-VM table `malv demo` shows while it runs.
//
// On a terminal the table is redrawn in place (ANSI cursor movement, no
// full-screen clear, so the start-up log above it stays visible); anything
// else (a pipe, a file, CI) gets one compact line per draw instead.
// Messages printed with note() appear above the table.
//
//   LiveTable table(::isatty(STDOUT_FILENO) != 0);
//   table.draw(record, t, "phase 1/2: fifo");
//   table.note("switching every VM to priority");
#pragma once

#include <string>
#include <vector>

#include "demo/record.h"

namespace malv::demo {

class LiveTable {
 public:
  explicit LiveTable(bool terminal) : terminal_(terminal) {}

  void draw(const DemoRecord& record, double t, const std::string& status);
  void note(const std::string& message);
  // The table stays on screen as it is; later output goes below it.
  void finish();

 private:
  void erase();
  void print_lines();

  bool terminal_;
  std::vector<std::string> lines_;  // what is on screen now (terminal only)
  bool on_screen_ = false;
};

// The PROGRESS cell of a VM ("step 1234/9380 loss 0.512").
std::string progress_text(const DemoVmSpec& spec, const VmLive& live);

}  // namespace malv::demo
