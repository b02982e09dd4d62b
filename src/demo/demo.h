// `malv demo` as a library: several VMs share one accelerator, and the OS
// changes how it schedules them while they run (demo/demo.cpp tells the
// whole story). `cli` parses the flags into DemoOptions and calls run_demo().
//
//   demo::DemoOptions options;
//   options.duration_s = 30;
//   Status s = demo::run_demo(options);
//   if (!s.ok() && demo::stop_signal() != 0) { /* Ctrl-C or SIGTERM: exit 128 + signal */ }
#pragma once

#include <string>

#include "malv/result.h"

namespace malv::demo {

struct DemoOptions {
  double duration_s = 60.0;
  std::string out_dir = ".";
  double infer_rate = 40.0;
  // The cpu_sched policy every VM switches to halfway, with priority
  // ("none", the default: the host leaves the CPUs alone all along; `class`
  // measured worse on the demo, docs/benchmarks.md).
  std::string cpu_policy = "none";
};

// Runs the demo to its end, or until SIGINT or SIGTERM (then kAborted):
// every process and file it started is gone when it returns, either way.
[[nodiscard]] Status run_demo(const DemoOptions& options);

// The signal that stopped the demo; 0 while none has arrived.
int stop_signal();

}  // namespace malv::demo
