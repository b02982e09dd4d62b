#include "bench/training_runs.h"

#include "base/clock.h"
#include "harness/report.h"

namespace malv::bench {

nn::TrainOptions reference_training(std::uint64_t steps) {
  nn::TrainOptions o;
  o.model = "mlp:784-256-128-10";
  o.optimizer.kind = nn::OptimizerKind::kAdam;
  o.optimizer.lr = 1e-3f;
  o.batch = 128;
  o.seed = 1;
  o.epochs = 1000;
  o.max_steps = steps;
  o.log_every = 0;
  return o;
}

Result<double> time_steps(Result<std::unique_ptr<nn::Trainer>> trainer) {
  if (!trainer.ok()) return std::move(trainer).error();
  Stopwatch watch;
  MALV_TRY(trainer.value()->run());
  return watch.elapsed_s();
}

double median_ratio(const std::vector<double>& num, const std::vector<double>& den) {
  std::vector<double> ratios;
  for (std::size_t r = 0; r < num.size() && r < den.size(); ++r) ratios.push_back(num[r] / den[r]);
  return harness::median(ratios);
}

}  // namespace malv::bench
