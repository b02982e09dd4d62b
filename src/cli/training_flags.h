// The flags of the commands that train an MLaaS model (`malv mlaas train`,
// `malv memory train`) that mean the same in each: how the optimiser runs.
#pragma once

#include <CLI/CLI.hpp>
#include <cstdint>

#include "cli/option_checks.h"

namespace malv::cli {

inline void add_optimiser_flags(CLI::App& sub, std::uint64_t& epochs, std::uint64_t& batch,
                                double& lr) {
  sub.add_option("--epochs", epochs, "Passes over the training rows")
      ->capture_default_str()
      ->check(whole_number_in(1, 1000000));
  sub.add_option("--batch", batch, "Rows per training step")
      ->capture_default_str()
      ->check(whole_number_in(1, 1 << 20));
  sub.add_option("--lr", lr, "Adam's learning rate")
      ->capture_default_str()
      ->check(finite_in(1e-9, 10));
}

}  // namespace malv::cli
