// The `malv` command: one binary for the host daemon, guests, admin tools,
// the demo and the benchmarks. Each subcommand group lives in its own file
// and registers itself through cli/commands.h.
#include <fmt/format.h>

#include <CLI/CLI.hpp>

#include "cli/commands.h"

int main(int argc, char** argv) {
  CLI::App app{
      "MaLV-OS: an operating-system layer for machine learning in virtualised GPU clouds.\n"
      "Run `malv demo` to see several VMs share one accelerator."};
  app.set_version_flag("--version", fmt::format("malv {}", MALV_VERSION));
  app.require_subcommand(1);
  app.fallthrough();

  int exit_code = 0;
  malv::cli::register_commands(app, exit_code);

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    // --help and --version end parsing with success; every other parse
    // error is a usage error, whose exit status is 2 whatever CLI11 says.
    const int status = app.exit(e);
    return status == 0 ? 0 : 2;
  }
  return exit_code;
}
