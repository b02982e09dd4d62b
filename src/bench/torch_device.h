// `malv bench torch`: the malv torch device against torch on the CPU. The
// measuring is Python (python/malv/bench_torch.py: it needs PyTorch); this
// finds Debian's python3 and the malv package (the build tree's, or the one
// installed beside this malv) and runs it with this malv as its host.
#pragma once

#include <string>

#include "malv/result.h"

namespace malv::bench {

struct TorchOptions {
  bool json = false;
  int steps = 5;       // timed training steps per side
  int ops = 20000;     // tiny asynchronous operators
  int epochs = 3;      // Fashion-MNIST epochs per data loader (0: no data figures)
  int opinfo_ops = 0;  // OpInfo operators (0: all; -1: no conformance run)
  // The host's own cores (`malv serve --host-cpus`): "auto" (the last of
  // this process's cores when it has two or more), "all", or a CPU list.
  std::string host_cpus = "auto";
  std::string python = "/usr/bin/python3";
};

[[nodiscard]] Status run_torch(const TorchOptions& options);

}  // namespace malv::bench
