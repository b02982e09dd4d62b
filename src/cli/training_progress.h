// The progress line every command that trains an MLaaS model prints after
// an epoch (`malv memory train`, `malv mllb train`, `malv prefetch train`,
// `malv sjf train`): the training loss and, when rows are held out, theirs.
#pragma once

#include <fmt/format.h>

#include <cstdint>
#include <cstdio>

#include "train/model_training.h"

namespace malv::cli {

// Prints every `every`-th epoch and the last; nothing with --json (empty).
inline train::EpochFn epoch_printer(bool json, std::uint64_t every = 1) {
  if (json) return {};
  return [every](const train::EpochReport& e) {
    if (e.epoch % every != 0 && e.epoch != e.epochs) return;
    fmt::print("epoch {:>3}/{}  train mse {:.6g}{}\n", e.epoch, e.epochs, e.train.loss,
               e.holdout ? fmt::format("  held-out mse {:.6g}", e.holdout->loss) : "");
    std::fflush(stdout);
  };
}

}  // namespace malv::cli
