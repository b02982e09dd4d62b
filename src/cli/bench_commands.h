// What every `malv bench NAME` does when it runs: call the benchmark and,
// when it fails, print the error and exit 1.
#pragma once

#include <fmt/format.h>

#include <CLI/CLI.hpp>
#include <utility>

#include "malv/result.h"

namespace malv::cli {

template <typename Run>
void on_bench_run(CLI::App& sub, Run run, int& exit_code) {
  sub.callback([run = std::move(run), &exit_code, name = sub.get_name()] {
    Status s = run();
    if (!s.ok()) {
      fmt::print(stderr, "malv bench {}: {}\n", name, s.error().to_string());
      exit_code = 1;
    }
  });
}

}  // namespace malv::cli
