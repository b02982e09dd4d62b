// Per-column standardisation (see standardisation.h).
#include "train/standardisation.h"

#include <algorithm>
#include <cmath>

namespace malv::train {

Standardisation Standardisation::fit(std::span<const float> values, std::size_t columns) {
  Standardisation s;
  s.mean.assign(columns, 0.0);
  s.scale.assign(columns, 1.0);
  const std::size_t rows = columns == 0 ? 0 : values.size() / columns;
  if (rows == 0) return s;
  for (std::size_t r = 0; r < rows; ++r) {
    for (std::size_t c = 0; c < columns; ++c) s.mean[c] += values[r * columns + c];
  }
  for (double& m : s.mean) m /= static_cast<double>(rows);
  std::vector<double> variance(columns, 0.0);
  for (std::size_t r = 0; r < rows; ++r) {
    for (std::size_t c = 0; c < columns; ++c) {
      const double d = values[r * columns + c] - s.mean[c];
      variance[c] += d * d;
    }
  }
  for (std::size_t c = 0; c < columns; ++c) {
    const double sd = std::sqrt(variance[c] / static_cast<double>(rows));
    // A column that (nearly) never changes carries no information; dividing
    // by its tiny spread would only blow up rounding noise.
    const double floor = 1e-6 * std::max(1.0, std::fabs(s.mean[c]));
    s.scale[c] = sd > floor ? sd : 1.0;
  }
  return s;
}

void Standardisation::apply(std::span<float> values) const {
  const std::size_t cols = columns();
  for (std::size_t i = 0; i < values.size(); ++i) {
    const std::size_t c = i % cols;
    values[i] = static_cast<float>((values[i] - mean[c]) / scale[c]);
  }
}

void Standardisation::restore(std::span<float> values) const {
  const std::size_t cols = columns();
  for (std::size_t i = 0; i < values.size(); ++i) {
    const std::size_t c = i % cols;
    values[i] = static_cast<float>(values[i] * scale[c] + mean[c]);
  }
}

}  // namespace malv::train
