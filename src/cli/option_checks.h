// Checks of what a user types: CLI11 validators for numeric options that
// CLI11's own checks let through (NaN passes CLI::Range and
// CLI::PositiveNumber; "-1" converts to 2^64-1 for a std::uint64_t), and the
// HOST:PORT parser of --tcp and of the host config's `tcp`.
//
//   sub->add_option("--interval", f->interval_s)->check(finite_in(0.1, 86400));
//   sub->add_option("--arena-mib", o.arena_mib)->check(whole_number_in(1, 1024));
//   MALV_ASSIGN_OR_RETURN(HostPort where, parse_host_port(text, /*allow_port_zero=*/true));
//
// A value a validator refuses is a usage error: `malv` prints the option,
// the value and the accepted range, and exits 2.
#pragma once

#include <CLI/CLI.hpp>
#include <cstdint>
#include <limits>
#include <string>
#include <string_view>

#include "malv/result.h"

namespace malv::cli {

// A finite number in [low, high] (NaN and infinities are refused).
CLI::Validator finite_in(double low, double high);

// A whole number in [low, high], written in plain decimal: no sign, no
// leading zeros (CLI11 would read "010" as octal), no exponent.
CLI::Validator whole_number_in(std::uint64_t low, std::uint64_t high);

// HOST:PORT as parse_host_port() accepts it.
CLI::Validator host_port(bool allow_port_zero);

struct HostPort {
  std::string host;  // brackets of "[::1]" removed; empty: every address
  std::uint16_t port = 0;
};

// "HOST:PORT", the port in decimal, 1 to 65535 (0 too if allow_port_zero:
// a listener's "any free port"). kInvalidArgument naming the text otherwise.
[[nodiscard]] Result<HostPort> parse_host_port(std::string_view text, bool allow_port_zero);

// Parses a whole decimal number in [low, high] as whole_number_in() accepts
// it; the error says which of the rules the text broke.
[[nodiscard]] Result<std::uint64_t> parse_whole_number(std::string_view text, std::uint64_t low,
                                                       std::uint64_t high);

}  // namespace malv::cli
