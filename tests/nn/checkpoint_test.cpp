// Checkpoint encoding: round trips exactly, and refuses damaged bytes.
#include "nn/checkpoint.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>

#include "nn/mlp.h"

namespace malv::nn {
namespace {

Checkpoint sample() {
  Checkpoint c;
  c.set("model", "mlp:4-3-2");
  c.set("step", "17");
  c.arrays.push_back({"a", {1.0f, 2.0f, -3.5f}});
  c.arrays.push_back({"b", {}});
  return c;
}

TEST(Checkpoint, EncodeDecodeRoundTripsExactly) {
  const auto bytes = encode_checkpoint(sample());
  auto decoded = decode_checkpoint(bytes);
  ASSERT_TRUE(decoded.ok()) << decoded.error().to_string();
  EXPECT_EQ(decoded->get("model"), "mlp:4-3-2");
  EXPECT_EQ(decoded->get("step"), "17");
  ASSERT_EQ(decoded->arrays.size(), 2u);
  EXPECT_EQ(decoded->arrays[0].values, (std::vector<float>{1.0f, 2.0f, -3.5f}));
  EXPECT_EQ(encode_checkpoint(*decoded), bytes);
}

TEST(Checkpoint, AFlippedBitIsReportedAsCorruption) {
  auto bytes = encode_checkpoint(sample());
  bytes[bytes.size() / 2] ^= std::byte{0x10};
  auto decoded = decode_checkpoint(bytes);
  ASSERT_FALSE(decoded.ok());
  EXPECT_EQ(decoded.error().code(), ErrorCode::kDataLoss);
}

TEST(Checkpoint, TruncatedBytesAreRefused) {
  auto bytes = encode_checkpoint(sample());
  for (std::size_t keep : {std::size_t{0}, std::size_t{5}, bytes.size() - 1}) {
    EXPECT_FALSE(decode_checkpoint(std::span(bytes).first(keep)).ok()) << keep;
  }
}

TEST(Checkpoint, FilesAreWrittenAtomicallyAndReadBack) {
  const std::string path =
      std::filesystem::temp_directory_path() / ("malv-ckpt-" + std::to_string(::getpid()) + ".bin");
  const auto bytes = encode_checkpoint(sample());
  ASSERT_TRUE(write_file_atomically(path, bytes).ok());
  ASSERT_TRUE(write_file_atomically(path, bytes).ok());  // replaces
  auto read = read_file(path);
  ASSERT_TRUE(read.ok());
  EXPECT_EQ(*read, bytes);
  std::filesystem::remove(path);
  EXPECT_FALSE(read_file(path).ok());
}

TEST(MlpSpec, ParsesWidthsAndPrintsThemBack) {
  auto spec = MlpSpec::parse("mlp:784-256-128-10");
  ASSERT_TRUE(spec.ok());
  EXPECT_EQ(spec->widths, (std::vector<std::int64_t>{784, 256, 128, 10}));
  EXPECT_EQ(spec->to_string(), "mlp:784-256-128-10");
  for (const char* bad : {"", "mlp:", "mlp:10", "cnn:1-2", "mlp:1--2", "mlp:1-2-", "mlp:0-3",
                          "mlp:a-3", "mlp:3-4x"}) {
    EXPECT_FALSE(MlpSpec::parse(bad).ok()) << bad;
  }
}

}  // namespace
}  // namespace malv::nn
