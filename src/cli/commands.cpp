#include "cli/commands.h"

#include <fmt/format.h>

namespace malv::cli {

void register_unavailable(CLI::App& app, int& exit_code, const char* name,
                          const char* description) {
  CLI::App* sub = app.add_subcommand(name, description);
  sub->allow_extras();
  sub->callback([&exit_code, name] {
    fmt::print(stderr, "malv {}: not yet available in this build\n", name);
    exit_code = 2;
  });
}

void register_commands(CLI::App& app, int& exit_code) {
  register_serve(app, exit_code);
  register_guest(app, exit_code);
  register_guest_infer(*app.get_subcommand("guest"), exit_code);
  register_guest_ping(*app.get_subcommand("guest"), exit_code);
  register_demo(app, exit_code);
  register_vm(app, exit_code);
  register_policy(app, exit_code);
  register_stats(app, exit_code);
  register_memory(app, exit_code);
  register_mlaas(app, exit_code);
  register_mllb(app, exit_code);
  register_prefetch(app, exit_code);
  register_sjf(app, exit_code);
  CLI::App* bench = app.add_subcommand("bench", "Run the benchmarks (ours vs baseline, one run)");
  bench->require_subcommand(1);
  register_bench_ipc(*bench, exit_code);
  register_bench_mlaas(*bench, exit_code);
  register_bench_sharing(*bench, exit_code);
  register_bench_overhead(*bench, exit_code);
  register_bench_vm(*bench, exit_code);
  register_bench_soak(*bench, exit_code);
  register_bench_cuda(*bench, exit_code);
  register_bench_alloc(*bench, exit_code);
  register_bench_memory(*bench, exit_code);
  register_bench_cpu(*bench, exit_code);
  register_bench_torch(*bench, exit_code);
}

}  // namespace malv::cli
