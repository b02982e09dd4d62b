// Dataset: labelled examples in host memory, and the loaders that fill it.
// Shared by the guest's own loading (nn/) and the host's data pipeline
// (offload/), so both decode, validate and normalise exactly alike.
//
// Fashion-MNIST comes from the Debian package dataset-fashion-mnist as
// gzip-compressed IDX files (/usr/share/datasets/fashion-mnist). IDX is a
// big-endian header (magic 2051 for images, 2049 for labels, then the
// dimensions) followed by raw uint8 data. The loader validates the magic,
// the dimensions, that the file holds exactly the announced data (no
// truncation, no trailing bytes) and that images and labels agree in count;
// every error names the file. Pixels become float32 in [0, 1], optionally
// standardised with a mean and standard deviation.
//
//   MALV_ASSIGN_OR_RETURN(Dataset train, load_fashion_mnist(kFashionMnistDir, Split::kTrain));
//   // train.features: train.count x 784 floats, train.labels: int32 in [0, 10)
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "malv/result.h"

namespace malv::data {

inline constexpr const char* kFashionMnistDir = "/usr/share/datasets/fashion-mnist";
inline constexpr std::uint32_t kIdxImagesMagic = 2051;
inline constexpr std::uint32_t kIdxLabelsMagic = 2049;

struct Dataset {
  std::vector<float> features;       // count x dims, row-major
  std::vector<std::int32_t> labels;  // count, each in [0, classes)
  std::size_t count = 0;
  std::size_t dims = 0;
  std::int32_t classes = 0;

  // Examples [first, first + n) as a new dataset (clamped to the end).
  Dataset slice(std::size_t first, std::size_t n) const;
};

// Pixel normalisation after scaling to [0, 1]: x' = (x - mean) / stddev.
struct Normalisation {
  float mean = 0.0f;
  float stddev = 1.0f;
};
// Per-pixel statistics of the Fashion-MNIST training set, for standardising.
inline constexpr Normalisation kFashionMnistStandardise{0.2860f, 0.3530f};

enum class Split { kTrain, kTest };

// IDX images: count x rows x cols uint8, with the count and the shape.
struct IdxImages {
  std::vector<std::uint8_t> pixels;
  std::uint32_t count = 0;
  std::uint32_t rows = 0;
  std::uint32_t cols = 0;
};

// One IDX file (gzip-compressed or plain; zlib reads both).
[[nodiscard]] Result<IdxImages> load_idx_images(const std::string& path);
[[nodiscard]] Result<std::vector<std::uint8_t>> load_idx_labels(const std::string& path);

// <dir>/{train,t10k}-{images-idx3,labels-idx1}-ubyte.gz as a Dataset of
// 784-float rows and 10 classes.
[[nodiscard]] Result<Dataset> load_fashion_mnist(const std::string& dir, Split split,
                                                 Normalisation norm = {});

// Raw arrays (gzip-compressed or plain): a file of little-endian float32 or
// of bytes. `expected_count` > 0 requires exactly that many elements.
[[nodiscard]] Result<std::vector<float>> load_raw_f32(const std::string& path,
                                                      std::size_t expected_count = 0);
[[nodiscard]] Result<std::vector<std::uint8_t>> load_raw_u8(const std::string& path,
                                                            std::size_t expected_count = 0);

// Builds a Dataset from uint8 images and labels (validating counts and
// label range), scaling pixels to [0, 1] and applying `norm`.
[[nodiscard]] Result<Dataset> make_dataset(std::span<const std::uint8_t> pixels,
                                           std::span<const std::uint8_t> labels, std::size_t dims,
                                           std::int32_t classes, Normalisation norm = {});

}  // namespace malv::data
