// Checks of what a user types: CLI11 validators for numeric options that
// CLI11's own checks let through (NaN passes CLI::Range and
// CLI::PositiveNumber; "-1" converts to 2^64-1 for a std::uint64_t), and
// --tcp's HOST:PORT, checked by the parsers of base/text_parse.h that the
// host's config file uses too.
//
//   sub->add_option("--interval", f->interval_s)->check(finite_in(0.1, 86400));
//   sub->add_option("--arena-mib", o.arena_mib)->check(whole_number_in(1, 1024));
//
// A value a validator refuses is a usage error: `malv` prints the option,
// the value and the accepted range, and exits 2.
#pragma once

#include <CLI/CLI.hpp>
#include <cstdint>
#include <limits>
#include <string>
#include <string_view>

#include "base/text_parse.h"

namespace malv::cli {

// A finite number in [low, high] (NaN and infinities are refused).
CLI::Validator finite_in(double low, double high);

// A whole number in [low, high], written in plain decimal: no sign, no
// leading zeros (CLI11 would read "010" as octal), no exponent.
CLI::Validator whole_number_in(std::uint64_t low, std::uint64_t high);

// HOST:PORT as parse_host_port() (base/text_parse.h) accepts it.
CLI::Validator host_port(bool allow_port_zero);

}  // namespace malv::cli
