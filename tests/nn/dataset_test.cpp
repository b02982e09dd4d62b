// The IDX / Fashion-MNIST loader: valid files load, and every kind of bad
// file is refused with an error that names the file.
#include "nn/dataset.h"

#include <gtest/gtest.h>
#include <unistd.h>
#include <zlib.h>

#include <cstdio>
#include <cstring>
#include <filesystem>
#include <string>
#include <vector>

#include "nn/dataset.h"

namespace malv::nn {
namespace {

class TempDir {
 public:
  TempDir() {
    path_ = std::filesystem::temp_directory_path() /
            ("malv-nn-test-" + std::to_string(::getpid()) + "-" + std::to_string(counter_++));
    std::filesystem::create_directories(path_);
  }
  ~TempDir() { std::filesystem::remove_all(path_); }
  std::string file(const std::string& name) const { return (path_ / name).string(); }

 private:
  static inline int counter_ = 0;
  std::filesystem::path path_;
};

void put_be32(std::vector<std::uint8_t>& out, std::uint32_t v) {
  out.push_back(static_cast<std::uint8_t>(v >> 24));
  out.push_back(static_cast<std::uint8_t>(v >> 16));
  out.push_back(static_cast<std::uint8_t>(v >> 8));
  out.push_back(static_cast<std::uint8_t>(v));
}

void write_gz(const std::string& path, const std::vector<std::uint8_t>& bytes) {
  gzFile f = gzopen(path.c_str(), "wb");
  ASSERT_NE(f, nullptr);
  if (!bytes.empty()) {
    ASSERT_EQ(gzwrite(f, bytes.data(), static_cast<unsigned>(bytes.size())),
              static_cast<int>(bytes.size()));
  }
  gzclose(f);
}

std::vector<std::uint8_t> images_file(std::uint32_t count, std::uint32_t rows, std::uint32_t cols,
                                      std::size_t pixel_bytes) {
  std::vector<std::uint8_t> out;
  put_be32(out, kIdxImagesMagic);
  put_be32(out, count);
  put_be32(out, rows);
  put_be32(out, cols);
  for (std::size_t i = 0; i < pixel_bytes; ++i) out.push_back(static_cast<std::uint8_t>(i * 7));
  return out;
}

std::vector<std::uint8_t> labels_file(std::uint32_t count, std::size_t label_bytes,
                                      std::uint32_t magic = kIdxLabelsMagic) {
  std::vector<std::uint8_t> out;
  put_be32(out, magic);
  put_be32(out, count);
  for (std::size_t i = 0; i < label_bytes; ++i) out.push_back(static_cast<std::uint8_t>(i % 10));
  return out;
}

// Writes a 3-example Fashion-MNIST-shaped split into dir.
void write_split(const TempDir& dir, const std::string& split, std::uint32_t images,
                 std::uint32_t labels) {
  write_gz(dir.file(split + "-images-idx3-ubyte.gz"), images_file(images, 28, 28, images * 784));
  write_gz(dir.file(split + "-labels-idx1-ubyte.gz"), labels_file(labels, labels));
}

TEST(IdxLoader, ValidFilesLoadAsNormalisedFloats) {
  TempDir dir;
  write_split(dir, "train", 3, 3);
  auto data = load_fashion_mnist(dir.file(""), Split::kTrain);
  ASSERT_TRUE(data.ok()) << data.error().to_string();
  EXPECT_EQ(data->count, 3u);
  EXPECT_EQ(data->dims, 784u);
  EXPECT_EQ(data->classes, 10);
  ASSERT_EQ(data->features.size(), 3u * 784);
  EXPECT_EQ(data->labels, (std::vector<std::int32_t>{0, 1, 2}));
  for (std::size_t i = 0; i < data->features.size(); ++i) {
    const auto byte = static_cast<std::uint8_t>(i * 7);
    ASSERT_FLOAT_EQ(data->features[i], static_cast<float>(byte) / 255.0f);
  }
}

TEST(IdxLoader, StandardisationAppliesMeanAndStddev) {
  TempDir dir;
  write_split(dir, "t10k", 2, 2);
  auto data = load_fashion_mnist(dir.file(""), Split::kTest, {.mean = 0.5f, .stddev = 0.25f});
  ASSERT_TRUE(data.ok()) << data.error().to_string();
  EXPECT_FLOAT_EQ(data->features[0], (0.0f - 0.5f) / 0.25f);
}

TEST(IdxLoader, WrongMagicIsRefusedNamingTheFile) {
  TempDir dir;
  write_gz(dir.file("l.gz"), labels_file(3, 3, 2051));
  auto labels = load_idx_labels(dir.file("l.gz"));
  ASSERT_FALSE(labels.ok());
  EXPECT_NE(labels.error().to_string().find("l.gz"), std::string::npos);
  EXPECT_NE(labels.error().to_string().find("magic"), std::string::npos);
}

TEST(IdxLoader, TruncatedPixelDataIsRefused) {
  TempDir dir;
  write_gz(dir.file("i.gz"), images_file(3, 28, 28, 3 * 784 - 1));
  auto images = load_idx_images(dir.file("i.gz"));
  ASSERT_FALSE(images.ok());
  EXPECT_EQ(images.error().code(), ErrorCode::kDataLoss);
  EXPECT_NE(images.error().to_string().find("truncated"), std::string::npos);
  EXPECT_NE(images.error().to_string().find("i.gz"), std::string::npos);
}

TEST(IdxLoader, TruncatedHeaderIsRefused) {
  TempDir dir;
  std::vector<std::uint8_t> header;
  put_be32(header, kIdxImagesMagic);
  header.push_back(0);
  write_gz(dir.file("i.gz"), header);
  EXPECT_FALSE(load_idx_images(dir.file("i.gz")).ok());
}

TEST(IdxLoader, TrailingBytesAreRefused) {
  TempDir dir;
  write_gz(dir.file("l.gz"), labels_file(3, 4));
  auto labels = load_idx_labels(dir.file("l.gz"));
  ASSERT_FALSE(labels.ok());
  EXPECT_NE(labels.error().to_string().find("trailing"), std::string::npos);
}

TEST(IdxLoader, ImageAndLabelCountsMustMatch) {
  TempDir dir;
  write_split(dir, "train", 3, 2);
  auto data = load_fashion_mnist(dir.file(""), Split::kTrain);
  ASSERT_FALSE(data.ok());
  EXPECT_NE(data.error().to_string().find("3 images"), std::string::npos);
  EXPECT_NE(data.error().to_string().find("2 labels"), std::string::npos);
}

TEST(IdxLoader, WrongImageShapeIsRefused) {
  TempDir dir;
  write_gz(dir.file("train-images-idx3-ubyte.gz"), images_file(1, 32, 32, 32 * 32));
  write_gz(dir.file("train-labels-idx1-ubyte.gz"), labels_file(1, 1));
  auto data = load_fashion_mnist(dir.file(""), Split::kTrain);
  ASSERT_FALSE(data.ok());
  EXPECT_NE(data.error().to_string().find("28 x 28"), std::string::npos);
}

TEST(IdxLoader, MissingFileIsNotFoundNamingIt) {
  auto images = load_idx_images("/nonexistent/malv/images.gz");
  ASSERT_FALSE(images.ok());
  EXPECT_NE(images.error().to_string().find("/nonexistent/malv/images.gz"), std::string::npos);
}

TEST(IdxLoader, LabelOutOfRangeIsRefused) {
  const std::vector<std::uint8_t> pixels(2, 0);
  const std::vector<std::uint8_t> labels{1, 12};
  auto data = make_dataset(pixels, labels, 1, 10);
  ASSERT_FALSE(data.ok());
  EXPECT_NE(data.error().to_string().find("12"), std::string::npos);
}

TEST(RawArrays, Float32AndBytesLoadPlainOrCompressed) {
  TempDir dir;
  const std::vector<float> values{1.5f, -2.0f, 3.25f};
  std::vector<std::uint8_t> bytes(values.size() * 4);
  std::memcpy(bytes.data(), values.data(), bytes.size());
  write_gz(dir.file("f.gz"), bytes);
  {
    FILE* f = std::fopen(dir.file("f.raw").c_str(), "wb");
    ASSERT_NE(f, nullptr);
    std::fwrite(bytes.data(), 1, bytes.size(), f);
    std::fclose(f);
  }
  for (const char* name : {"f.gz", "f.raw"}) {
    auto loaded = load_raw_f32(dir.file(name), 3);
    ASSERT_TRUE(loaded.ok()) << loaded.error().to_string();
    EXPECT_EQ(*loaded, values);
  }
  EXPECT_FALSE(load_raw_f32(dir.file("f.gz"), 4).ok());
  auto raw = load_raw_u8(dir.file("f.raw"));
  ASSERT_TRUE(raw.ok());
  EXPECT_EQ(raw->size(), 12u);
}

TEST(Shuffle, SameSeedAndEpochGiveTheSamePermutation) {
  auto a = shuffled_indices(1000, 42, 3);
  auto b = shuffled_indices(1000, 42, 3);
  auto c = shuffled_indices(1000, 42, 4);
  auto d = shuffled_indices(1000, 43, 3);
  EXPECT_EQ(a, b);
  EXPECT_NE(a, c);
  EXPECT_NE(a, d);
  std::vector<bool> seen(1000, false);
  for (auto i : a) seen[i] = true;
  EXPECT_TRUE(std::all_of(seen.begin(), seen.end(), [](bool s) { return s; }));
}

TEST(FashionMnist, InstalledDatasetLoadsWhenPresent) {
  if (!std::filesystem::exists(std::string(kFashionMnistDir) + "/t10k-images-idx3-ubyte.gz")) {
    GTEST_SKIP() << "dataset-fashion-mnist is not installed";
  }
  auto test = load_fashion_mnist(kFashionMnistDir, Split::kTest);
  ASSERT_TRUE(test.ok()) << test.error().to_string();
  EXPECT_EQ(test->count, 10000u);
  EXPECT_EQ(test->dims, 784u);
  for (float v : test->features) ASSERT_TRUE(v >= 0.0f && v <= 1.0f);
}

}  // namespace
}  // namespace malv::nn
