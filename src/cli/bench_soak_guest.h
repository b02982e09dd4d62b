// The guest side of `malv bench soak`: one short-lived VM tenant, run as its
// own process (`malv bench soak-guest`, hidden), that touches every kind of
// host object a guest can hold and then goes away.
//
// For `rounds` rounds it allocates buffers of seeded sizes on two streams,
// writes them, launches gemm and add (the add's output is read back and
// checked), orders the streams with an event, selects a gpu_sched policy of
// its own (guest::select_policy, a run-time switch), saves a checkpoint
// through the host's checkpoint service and restores it into a fresh
// buffer (checked against the original), and frees part of what it holds.
// Then it disconnects, its last frees still in flight.
//
// It exits 0 when every step succeeded and every check held,
// kSoakGuestWrongResult when a check found wrong data, 1 when a call failed
// (the reason on stderr). The bench SIGKILLs some guests at random moments;
// whatever they held must come back to the host all the same.
//
//   SoakGuestSpec spec{.socket = s, .vm = "soak-0", .token = t, .seed = 42, .index = 7};
//   Status s = run_soak_guest(spec);  // what `malv bench soak-guest` runs
#pragma once

#include <CLI/CLI.hpp>
#include <cstdint>
#include <string>

#include "malv/result.h"

namespace malv::cli {

struct SoakGuestSpec {
  std::string socket;
  std::string vm;
  std::string token;
  std::uint64_t seed = 1;
  std::uint64_t index = 0;  // the guest's number in the run; names its checkpoint
  int rounds = 3;
};

inline constexpr int kSoakGuestWrongResult = 3;

// Checks that find wrong data fail with kDataLoss.
[[nodiscard]] Status run_soak_guest(const SoakGuestSpec& spec);

// Registers the hidden `malv bench soak-guest` subcommand.
void register_bench_soak_guest(CLI::App& bench, int& exit_code);

}  // namespace malv::cli
