// Augmenter: random crops, flips and noise on single-channel images, the
// data augmentation a training VM does on its own CPU when it loads its own
// data (`malv guest train --augment`; nn::LocalBatches applies it to each
// batch before the upload). The host's data pipeline does not augment.
//
// An image is a row of height x width floats, row-major, as the loaders give
// them (Fashion-MNIST: 28 x 28, pixels in [0, 1] unless standardised). Each
// augmentation, in this order:
//
//  1. random crop: pad the image by `pad` pixels on every side with `fill`
//     and crop it back to height x width at a uniformly random offset, i.e.
//     shift the content by dy, dx in [-pad, pad], filling what is uncovered;
//  2. horizontal flip with probability 1/2 (if `flip`);
//  3. additive Gaussian noise of standard deviation `noise_stddev` on every
//     pixel (Box-Muller; the result is not clamped).
//
// What is drawn is a pure function of the seed: augment_seed(run seed, step,
// example) gives each example of each step its own stream, so a run is the
// same bit for bit however (and on how many threads) its batches are made,
// and a resumed run continues exactly as the uninterrupted one would have.
//
//   MALV_ASSIGN_OR_RETURN(Augmenter augmenter, Augmenter::create({}, train.dims));
//   augmenter.apply(row, augment_seed(run_seed, step, example));
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include "malv/result.h"

namespace malv::data {

struct AugmentOptions {
  std::uint32_t height = 28;
  std::uint32_t width = 28;
  std::uint32_t pad = 4;      // random crop: content shifts by up to this many pixels
  bool flip = true;           // random horizontal flip, p = 1/2
  float noise_stddev = 0.1f;  // additive Gaussian noise; 0: none
  float fill = 0.0f;          // what the crop's padding holds (0: background in [0, 1])
};

// The seed of example `example`'s augmentation at step `step` of a run with
// seed `run_seed` (a stream of its own, apart from the example order's).
std::uint64_t augment_seed(std::uint64_t run_seed, std::uint64_t step, std::uint64_t example);

class Augmenter {
 public:
  // Checks `options` against rows of `dims` floats: height x width must be
  // dims, pad below both sides, noise_stddev and fill finite, noise >= 0.
  [[nodiscard]] static Result<Augmenter> create(const AugmentOptions& options, std::size_t dims);

  // Augments one image (dims() floats) in place, as drawn from `seed`.
  void apply(std::span<float> image, std::uint64_t seed);
  // Augments rows.size() / dims() images in place: row r is example
  // examples[r] of step `step`, seeded with augment_seed(run_seed, step, examples[r]).
  void apply_batch(std::span<float> rows, std::span<const std::uint32_t> examples,
                   std::uint64_t run_seed, std::uint64_t step);

  const AugmentOptions& options() const { return options_; }
  std::size_t dims() const { return scratch_.size(); }

 private:
  explicit Augmenter(const AugmentOptions& options)
      : options_(options), scratch_(std::size_t{options.height} * options.width) {}

  AugmentOptions options_;
  std::vector<float> scratch_;  // the cropped, flipped image before it is copied back
};

}  // namespace malv::data
