// Augmenter: what a seed draws is reproducible bit for bit, a flip mirrors,
// a crop shifts the content and fills what it uncovers, the noise has the
// standard deviation asked for, and bad options are refused.
#include "data/augment.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace malv::data {
namespace {

constexpr std::uint32_t kSide = 28;
constexpr std::size_t kDims = std::size_t{kSide} * kSide;

Augmenter make(const AugmentOptions& options) {
  auto augmenter = Augmenter::create(options, kDims);
  EXPECT_TRUE(augmenter.ok()) << augmenter.error().to_string();
  return std::move(augmenter).value();
}

// Every pixel distinct and non-zero: 1 + y * 28 + x.
std::vector<float> numbered_image() {
  std::vector<float> image(kDims);
  for (std::size_t i = 0; i < kDims; ++i) image[i] = 1.0f + static_cast<float>(i);
  return image;
}

std::vector<float> mirrored(const std::vector<float>& image) {
  std::vector<float> out(kDims);
  for (std::uint32_t y = 0; y < kSide; ++y) {
    for (std::uint32_t x = 0; x < kSide; ++x) out[y * kSide + x] = image[y * kSide + kSide - 1 - x];
  }
  return out;
}

// `image` with its content moved by (dy, dx): out(y, x) = in(y + dy, x + dx), 0 outside.
std::vector<float> shifted(const std::vector<float>& image, int dy, int dx) {
  std::vector<float> out(kDims, 0.0f);
  for (int y = 0; y < static_cast<int>(kSide); ++y) {
    for (int x = 0; x < static_cast<int>(kSide); ++x) {
      const int sy = y + dy;
      const int sx = x + dx;
      if (sy >= 0 && sy < static_cast<int>(kSide) && sx >= 0 && sx < static_cast<int>(kSide)) {
        out[y * kSide + x] = image[sy * kSide + sx];
      }
    }
  }
  return out;
}

TEST(Augmenter, TheSameSeedStepAndExampleGiveBitIdenticalImages) {
  Augmenter a = make({});
  Augmenter b = make({});
  std::vector<float> first = numbered_image();
  std::vector<float> second = numbered_image();
  a.apply(first, augment_seed(7, 12, 345));
  // Another image in between must not change what the seed draws.
  std::vector<float> other = numbered_image();
  b.apply(other, augment_seed(7, 11, 345));
  b.apply(second, augment_seed(7, 12, 345));
  EXPECT_EQ(std::memcmp(first.data(), second.data(), kDims * sizeof(float)), 0);
}

TEST(Augmenter, ADifferentStepExampleOrRunSeedGivesADifferentImage) {
  Augmenter augmenter = make({});
  std::vector<float> base = numbered_image();
  augmenter.apply(base, augment_seed(7, 12, 345));
  for (const std::uint64_t seed :
       {augment_seed(7, 13, 345), augment_seed(7, 12, 346), augment_seed(8, 12, 345)}) {
    std::vector<float> image = numbered_image();
    augmenter.apply(image, seed);
    EXPECT_NE(image, base);
  }
}

TEST(Augmenter, AFlipWithoutCropOrNoiseMirrorsTheImageAboutHalfTheTime) {
  Augmenter augmenter = make({.pad = 0, .flip = true, .noise_stddev = 0.0f});
  const std::vector<float> original = numbered_image();
  const std::vector<float> mirror = mirrored(original);
  int flips = 0;
  constexpr int kTries = 400;
  for (int example = 0; example < kTries; ++example) {
    std::vector<float> image = original;
    augmenter.apply(image, augment_seed(1, 0, example));
    if (image == mirror) {
      ++flips;
    } else {
      EXPECT_EQ(image, original) << "example " << example << " is neither the image nor its mirror";
    }
  }
  EXPECT_GT(flips, kTries * 4 / 10);
  EXPECT_LT(flips, kTries * 6 / 10);
}

TEST(Augmenter, WithoutFlipCropAndNoiseTheImageIsUnchanged) {
  Augmenter augmenter = make({.pad = 0, .flip = false, .noise_stddev = 0.0f});
  std::vector<float> image = numbered_image();
  augmenter.apply(image, augment_seed(3, 4, 5));
  EXPECT_EQ(image, numbered_image());
}

TEST(Augmenter, ACropShiftsTheContentByAtMostThePaddingAndFillsZeros) {
  constexpr int kPad = 4;
  Augmenter augmenter = make({.pad = kPad, .flip = false, .noise_stddev = 0.0f});
  const std::vector<float> original = numbered_image();
  std::vector<std::vector<int>> seen(2 * kPad + 1, std::vector<int>(2 * kPad + 1, 0));
  for (int example = 0; example < 2000; ++example) {
    std::vector<float> image = original;
    augmenter.apply(image, augment_seed(1, 9, example));
    std::optional<std::pair<int, int>> shift;
    for (int dy = -kPad; dy <= kPad && !shift; ++dy) {
      for (int dx = -kPad; dx <= kPad && !shift; ++dx) {
        if (image == shifted(original, dy, dx)) shift = {dy, dx};
      }
    }
    ASSERT_TRUE(shift.has_value()) << "example " << example << " is no shift of the image";
    ++seen[shift->first + kPad][shift->second + kPad];
  }
  // Every offset of the padded image is drawn, the unshifted one included.
  for (int dy = -kPad; dy <= kPad; ++dy) {
    for (int dx = -kPad; dx <= kPad; ++dx) {
      EXPECT_GT(seen[dy + kPad][dx + kPad], 0) << "shift " << dy << ", " << dx << " never drawn";
    }
  }
}

TEST(Augmenter, ACropFillsWithTheFillValue) {
  Augmenter augmenter = make({.pad = 3, .flip = false, .noise_stddev = 0.0f, .fill = -0.81f});
  int filled = 0;
  for (int example = 0; example < 50; ++example) {
    std::vector<float> image = numbered_image();
    augmenter.apply(image, augment_seed(2, 0, example));
    for (float v : image) {
      EXPECT_TRUE(v == -0.81f || v >= 1.0f) << v;
      filled += v == -0.81f ? 1 : 0;
    }
  }
  EXPECT_GT(filled, 0);
}

TEST(Augmenter, NoiseHasTheRequestedStandardDeviationAndNoBias) {
  constexpr float kSigma = 0.1f;
  Augmenter augmenter = make({.pad = 0, .flip = false, .noise_stddev = kSigma});
  double sum = 0.0;
  double sum_squares = 0.0;
  std::size_t n = 0;
  for (int example = 0; example < 200; ++example) {
    std::vector<float> image(kDims, 0.5f);
    augmenter.apply(image, augment_seed(5, 1, example));
    for (float v : image) {
      const double d = static_cast<double>(v) - 0.5;
      sum += d;
      sum_squares += d * d;
      ++n;
    }
  }
  const double mean = sum / static_cast<double>(n);
  const double stddev = std::sqrt(sum_squares / static_cast<double>(n) - mean * mean);
  // 156,800 samples: the standard error of the mean is 0.00025, of the
  // standard deviation about 0.0002.
  EXPECT_NEAR(mean, 0.0, 0.002);
  EXPECT_NEAR(stddev, kSigma, 0.003);
}

TEST(Augmenter, ABatchAugmentsEachRowAsItsExampleSeedSays) {
  Augmenter batch_augmenter = make({});
  Augmenter single = make({});
  const std::vector<std::uint32_t> examples{17, 3, 40000};
  std::vector<float> rows;
  for (std::size_t r = 0; r < examples.size(); ++r) {
    const std::vector<float> image = numbered_image();
    rows.insert(rows.end(), image.begin(), image.end());
  }
  batch_augmenter.apply_batch(rows, examples, 11, 22);
  for (std::size_t r = 0; r < examples.size(); ++r) {
    std::vector<float> expected = numbered_image();
    single.apply(expected, augment_seed(11, 22, examples[r]));
    EXPECT_EQ(std::vector<float>(rows.begin() + r * kDims, rows.begin() + (r + 1) * kDims),
              expected)
        << "row " << r;
  }
}

TEST(Augmenter, OptionsThatDoNotFitTheRowsAreRefused) {
  EXPECT_FALSE(Augmenter::create({}, 100).ok());
  EXPECT_FALSE(Augmenter::create({.height = 0, .width = 0}, 0).ok());
  EXPECT_FALSE(Augmenter::create({.pad = 28}, kDims).ok());
  EXPECT_FALSE(Augmenter::create({.noise_stddev = -0.1f}, kDims).ok());
  EXPECT_FALSE(Augmenter::create({.noise_stddev = NAN}, kDims).ok());
  EXPECT_FALSE(Augmenter::create({.fill = INFINITY}, kDims).ok());
  auto refused = Augmenter::create({.height = 10, .width = 10}, kDims);
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.error().code(), ErrorCode::kInvalidArgument);
  EXPECT_NE(refused.error().to_string().find("784"), std::string::npos);
  EXPECT_TRUE(Augmenter::create({.pad = 27}, kDims).ok());
}

}  // namespace
}  // namespace malv::data
