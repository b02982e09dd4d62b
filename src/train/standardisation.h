// Standardisation: per-column mean and standard deviation of training data,
// so a model trains on values of unit scale whatever the features' units.
//
// The training path fits it on the training part only (never the held-out
// part) and folds it into the exported model's first layer (inputs) and,
// for regression, last layer (targets): the model file takes raw features
// and gives targets in their own units (train/mlaas_export.h).
//
//   Standardisation s = Standardisation::fit(rows, columns);
//   s.apply(rows);            // (v - mean) / scale, in place
//   s.restore(predictions);   // v * scale + mean
#pragma once

#include <cstddef>
#include <span>
#include <vector>

namespace malv::train {

struct Standardisation {
  std::vector<double> mean;   // per column
  std::vector<double> scale;  // per column: the standard deviation, 1 for a constant column

  std::size_t columns() const { return mean.size(); }
  // values: rows x columns, row-major, at least one row.
  static Standardisation fit(std::span<const float> values, std::size_t columns);
  void apply(std::span<float> values) const;
  void restore(std::span<float> values) const;
};

}  // namespace malv::train
