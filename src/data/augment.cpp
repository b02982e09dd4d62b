#include "data/augment.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <numbers>

#include "data/rng.h"

namespace malv::data {
namespace {

// Keeps the augmentation streams apart from the example order's
// (derive_seed(seed, epoch)) and the initial weights'.
constexpr std::uint64_t kAugmentStream = 0xA0761D6478BD642Full;

}  // namespace

std::uint64_t augment_seed(std::uint64_t run_seed, std::uint64_t step, std::uint64_t example) {
  return derive_seed(derive_seed(run_seed ^ kAugmentStream, step), example);
}

Result<Augmenter> Augmenter::create(const AugmentOptions& options, std::size_t dims) {
  if (options.height == 0 || options.width == 0 ||
      std::size_t{options.height} * options.width != dims) {
    return Error(ErrorCode::kInvalidArgument,
                 fmt::format("augmentation of {} x {} images, but the rows hold {} values",
                             options.height, options.width, dims));
  }
  if (options.pad >= options.height || options.pad >= options.width) {
    return Error(ErrorCode::kInvalidArgument,
                 fmt::format("augmentation crop padding {} must be below the image's sides "
                             "({} x {})",
                             options.pad, options.height, options.width));
  }
  if (!std::isfinite(options.noise_stddev) || options.noise_stddev < 0.0f) {
    return Error(ErrorCode::kInvalidArgument,
                 fmt::format("augmentation noise standard deviation {} must be finite and "
                             "not negative",
                             options.noise_stddev));
  }
  if (!std::isfinite(options.fill)) {
    return Error(ErrorCode::kInvalidArgument,
                 fmt::format("augmentation fill value {} must be finite", options.fill));
  }
  return Augmenter(options);
}

void Augmenter::apply(std::span<float> image, std::uint64_t seed) {
  const auto height = static_cast<std::int64_t>(options_.height);
  const auto width = static_cast<std::int64_t>(options_.width);
  const auto pad = static_cast<std::int64_t>(options_.pad);
  Rng rng(seed);
  // The crop offset and the flip are drawn whether or not they are enabled,
  // so the noise a seed gives does not depend on the other options.
  const std::int64_t dy = static_cast<std::int64_t>(rng.below(2 * pad + 1)) - pad;
  const std::int64_t dx = static_cast<std::int64_t>(rng.below(2 * pad + 1)) - pad;
  const bool flip = (rng.next() >> 63) != 0 && options_.flip;

  // Crop and flip in one pass: out(y, x) = in(y + dy, x' + dx) with
  // x' = width - 1 - x when flipped, `fill` where that lies outside.
  float* out = scratch_.data();
  const float* in = image.data();
  for (std::int64_t y = 0; y < height; ++y, out += width) {
    const std::int64_t sy = y + dy;
    if (sy < 0 || sy >= height) {
      std::fill_n(out, width, options_.fill);
      continue;
    }
    const float* src = in + sy * width;
    for (std::int64_t x = 0; x < width; ++x) {
      const std::int64_t sx = (flip ? width - 1 - x : x) + dx;
      out[x] = sx >= 0 && sx < width ? src[sx] : options_.fill;
    }
  }

  // Box-Muller: two independent normal deviates per pair of uniforms.
  const float sigma = options_.noise_stddev;
  if (sigma > 0.0f) {
    constexpr float kTwoPi = 2.0f * std::numbers::pi_v<float>;
    const std::size_t n = scratch_.size();
    for (std::size_t i = 0; i < n; i += 2) {
      const float u1 = 1.0f - rng.unit();  // in (0, 1]: its logarithm is finite
      const float u2 = rng.unit();
      const float r = sigma * std::sqrt(-2.0f * std::log(u1));
      const float theta = kTwoPi * u2;
      scratch_[i] += r * std::cos(theta);
      if (i + 1 < n) scratch_[i + 1] += r * std::sin(theta);
    }
  }
  std::copy(scratch_.begin(), scratch_.end(), image.begin());
}

void Augmenter::apply_batch(std::span<float> rows, std::span<const std::uint32_t> examples,
                            std::uint64_t run_seed, std::uint64_t step) {
  const std::size_t dims = scratch_.size();
  for (std::size_t r = 0; r < examples.size(); ++r) {
    apply(rows.subspan(r * dims, dims), augment_seed(run_seed, step, examples[r]));
  }
}

}  // namespace malv::data
