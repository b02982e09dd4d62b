// The MALVCK01 checkpoint file format: round trips, and every kind of damage
// (flipped byte, truncation, trailing bytes, bad magic) is kDataLoss.
#include "offload/checkpoint_file.h"

#include <gtest/gtest.h>

#include <cstring>

namespace malv::offload {
namespace {

std::vector<std::byte> bytes_of(std::string_view text) {
  const auto* p = reinterpret_cast<const std::byte*>(text.data());
  return {p, p + text.size()};
}

CheckpointContents sample() {
  CheckpointContents c;
  c.entries.push_back({"dense0.weight", bytes_of("0123456789abcdef")});
  c.entries.push_back({"empty", {}});
  c.entries.push_back({"dense0.bias", bytes_of("xyz")});
  c.metadata = bytes_of("model=mlp:4-2\nstep=7\n");
  return c;
}

TEST(CheckpointFileTest, RoundTripsEntriesAndMetadata) {
  const CheckpointContents contents = sample();
  auto file = encode_checkpoint(contents);
  ASSERT_TRUE(file.ok()) << file.error().to_string();
  EXPECT_EQ(file->size(), contents.file_bytes());
  auto image = CheckpointImage::parse(std::move(file).value());
  ASSERT_TRUE(image.ok()) << image.error().to_string();
  ASSERT_EQ(image->entries().size(), 3u);
  for (const CheckpointBlob& blob : contents.entries) {
    const CheckpointImage::Entry* e = image->find(blob.name);
    ASSERT_NE(e, nullptr) << blob.name;
    const auto data = image->data(*e);
    EXPECT_EQ(std::vector<std::byte>(data.begin(), data.end()), blob.bytes) << blob.name;
  }
  const auto metadata = image->metadata();
  EXPECT_EQ(std::vector<std::byte>(metadata.begin(), metadata.end()), contents.metadata);
  EXPECT_EQ(image->find("missing"), nullptr);
}

TEST(CheckpointFileTest, EveryFlippedByteIsDataLoss) {
  const std::vector<std::byte> file = encode_checkpoint(sample()).value();
  for (std::size_t i = 0; i < file.size(); ++i) {
    std::vector<std::byte> damaged = file;
    damaged[i] ^= std::byte{0x20};
    auto image = CheckpointImage::parse(std::move(damaged));
    ASSERT_FALSE(image.ok()) << "byte " << i;
    // The version field may read as another version; everything else is data loss.
    if (i < 8 || i >= 12) {
      EXPECT_EQ(image.error().code(), ErrorCode::kDataLoss) << "byte " << i;
    }
  }
}

TEST(CheckpointFileTest, TruncatedOrExtendedFileIsDataLoss) {
  const std::vector<std::byte> file = encode_checkpoint(sample()).value();
  for (std::size_t size : {std::size_t{0}, std::size_t{7}, std::size_t{40}, file.size() - 1}) {
    auto image = CheckpointImage::parse({file.begin(), file.begin() + static_cast<long>(size)});
    ASSERT_FALSE(image.ok()) << size;
    EXPECT_EQ(image.error().code(), ErrorCode::kDataLoss) << size;
  }
  std::vector<std::byte> longer = file;
  longer.push_back(std::byte{0});
  auto image = CheckpointImage::parse(std::move(longer));
  ASSERT_FALSE(image.ok());
  EXPECT_EQ(image.error().code(), ErrorCode::kDataLoss);
  EXPECT_NE(image.error().message().find("trailing"), std::string::npos);
}

TEST(CheckpointFileTest, RefusesToEncodeRepeatedOrBadEntryNames) {
  CheckpointContents c = sample();
  c.entries.push_back({"dense0.bias", {}});
  EXPECT_EQ(encode_checkpoint(c).error().code(), ErrorCode::kInvalidArgument);
  c.entries.back().name = std::string(40, 'n');
  EXPECT_EQ(encode_checkpoint(c).error().code(), ErrorCode::kInvalidArgument);
  EXPECT_EQ(encode_checkpoint(CheckpointContents{}).error().code(), ErrorCode::kInvalidArgument);
}

}  // namespace
}  // namespace malv::offload
