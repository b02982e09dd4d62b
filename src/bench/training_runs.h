// What the benchmarks that time training steps share (`bench overhead`,
// `bench vm`): the reference job, its timing, and how rounds are summed up.
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "malv/result.h"
#include "nn/trainer.h"

namespace malv::bench {

// Fashion-MNIST's MLP 784-256-128-10 with adam (lr 1e-3), batch 128, seed
// 1, `steps` steps, no logging: the job every such benchmark times.
nn::TrainOptions reference_training(std::uint64_t steps);

// Seconds the trainer takes to run all its steps.
[[nodiscard]] Result<double> time_steps(Result<std::unique_ptr<nn::Trainer>> trainer);

// The median over rounds of num[r] / den[r]: the variants of a round run
// back to back, so a slow spell of the machine slows both sides of a ratio
// instead of only one side's median.
double median_ratio(const std::vector<double>& num, const std::vector<double>& den);

}  // namespace malv::bench
