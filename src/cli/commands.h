// Registration of the `malv` subcommand groups. Each group's file adds its
// subcommand to the app and, when run, stores its exit status in exit_code.
#pragma once

#include <CLI/CLI.hpp>

#include "bench/bench.h"

namespace malv::cli {

void register_commands(CLI::App& app, int& exit_code);

void register_serve(CLI::App& app, int& exit_code);
void register_bench_ipc(CLI::App& bench, int& exit_code);
void register_bench_mlaas(CLI::App& bench, int& exit_code);
void register_bench_sharing(CLI::App& bench, int& exit_code);
void register_bench_overhead(CLI::App& bench, int& exit_code);
void register_bench_vm(CLI::App& bench, int& exit_code);
void register_bench_soak(CLI::App& bench, int& exit_code);
void register_bench_cuda(CLI::App& bench, int& exit_code);
void register_bench_alloc(CLI::App& bench, int& exit_code);
void register_bench_memory(CLI::App& bench, int& exit_code);
void register_bench_torch(CLI::App& bench, int& exit_code);
void register_guest(CLI::App& app, int& exit_code);
void register_guest_infer(CLI::App& guest, int& exit_code);
void register_guest_ping(CLI::App& guest, int& exit_code);
void register_demo(CLI::App& app, int& exit_code);
void register_vm(CLI::App& app, int& exit_code);
void register_policy(CLI::App& app, int& exit_code);
void register_stats(CLI::App& app, int& exit_code);
void register_memory(CLI::App& app, int& exit_code);
void register_memory_train(CLI::App& memory, int& exit_code);
void register_mlaas(CLI::App& app, int& exit_code);
void register_mllb(CLI::App& app, int& exit_code);
void register_prefetch(CLI::App& app, int& exit_code);
void register_bench_cpu(CLI::App& bench, int& exit_code);
void register_sjf(CLI::App& app, int& exit_code);
// The learned-sjf phase's flags of `malv bench mlaas` (sjf_command.cpp).
void add_bench_sjf_flags(CLI::App& sub, bench::MlaasOptions& flags);

// Groups whose implementation has not landed yet: they say so and exit 2
// rather than pretend to work.
void register_unavailable(CLI::App& app, int& exit_code, const char* name, const char* description);

}  // namespace malv::cli
