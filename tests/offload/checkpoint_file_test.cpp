// The MALVCK01 checkpoint file format, versions 1 and 2: round trips, and
// every kind of damage (flipped byte, truncation, trailing bytes, bad magic)
// is kDataLoss.
#include "offload/checkpoint_file.h"

#include <gtest/gtest.h>
#include <zlib.h>

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
  c.entries.back().name = std::string(kCheckpointMaxEntryName + 1, 'n');
  EXPECT_EQ(encode_checkpoint(c).error().code(), ErrorCode::kInvalidArgument);
  c.entries.back().name = std::string("a\0b", 3);
  EXPECT_EQ(encode_checkpoint(c).error().code(), ErrorCode::kInvalidArgument);
  c.entries.back().name = "";
  EXPECT_EQ(encode_checkpoint(c).error().code(), ErrorCode::kInvalidArgument);
  c.entries.back().name = std::string(100, 'r');
  c.entries.push_back({std::string(100, 'r'), {}});  // a repeated long name
  EXPECT_EQ(encode_checkpoint(c).error().code(), ErrorCode::kInvalidArgument);
  EXPECT_EQ(encode_checkpoint(CheckpointContents{}).error().code(), ErrorCode::kInvalidArgument);
}

std::uint32_t version_of(const std::vector<std::byte>& file) {
  std::uint32_t version = 0;
  std::memcpy(&version, file.data() + 8, sizeof(version));
  return version;
}

// A state_dict's worth: more than 256 entries, names from 40 bytes to the
// longest allowed.
CheckpointContents long_named() {
  CheckpointContents c;
  for (int i = 0; i < 320; ++i) {
    std::string name = "layer4.2.downsample.1.num_batches_tracked.";
    name += std::to_string(i);
    c.entries.push_back({name, bytes_of(std::string(static_cast<std::size_t>(i % 7), 'v'))});
  }
  c.entries.push_back({std::string(kCheckpointMaxEntryName, 'L'), bytes_of("longest")});
  c.metadata = bytes_of("{\"format\": \"x\"}");
  return c;
}

TEST(CheckpointFileTest, LongNamesAndManyEntriesRoundTripAsVersion2) {
  const CheckpointContents contents = long_named();
  auto file = encode_checkpoint(contents);
  ASSERT_TRUE(file.ok()) << file.error().to_string();
  EXPECT_EQ(file->size(), contents.file_bytes());
  EXPECT_EQ(version_of(*file), 2u);
  auto image = CheckpointImage::parse(std::move(file).value());
  ASSERT_TRUE(image.ok()) << image.error().to_string();
  ASSERT_EQ(image->entries().size(), contents.entries.size());
  for (std::size_t i = 0; i < contents.entries.size(); ++i) {
    EXPECT_EQ(image->entries()[i].name, contents.entries[i].name);  // table order kept
    const auto data = image->data(image->entries()[i]);
    EXPECT_EQ(std::vector<std::byte>(data.begin(), data.end()), contents.entries[i].bytes);
  }
  const auto metadata = image->metadata();
  EXPECT_EQ(std::vector<std::byte>(metadata.begin(), metadata.end()), contents.metadata);
}

TEST(CheckpointFileTest, NamesThatFitStayVersion1ForOlderHosts) {
  CheckpointContents c = sample();
  c.entries.push_back({std::string(kCheckpointEntryNameBytes - 1, 'w'), bytes_of("w")});
  for (int i = 0; i < 300; ++i) {
    std::string name = "e";
    name += std::to_string(i);
    c.entries.push_back({name, {}});
  }
  const std::vector<std::byte> file = encode_checkpoint(c).value();
  EXPECT_EQ(version_of(file), 1u);
  EXPECT_EQ(file.size(), c.file_bytes());
  EXPECT_TRUE(CheckpointImage::parse(file).ok());
}

// A version 1 file as hosts before version 2 wrote it, built here byte by byte.
TEST(CheckpointFileTest, AVersion1FileWrittenByAnOlderHostIsRead) {
  std::vector<std::byte> file;
  auto put = [&file](const void* p, std::size_t n) {
    const auto* b = static_cast<const std::byte*>(p);
    file.insert(file.end(), b, b + n);
  };
  const char magic[8] = {'M', 'A', 'L', 'V', 'C', 'K', '0', '1'};
  const std::uint32_t version = 1, entries = 1;
  const std::uint64_t metadata_bytes = 2, payload_bytes = 3;
  put(magic, 8);
  put(&version, 4);
  put(&entries, 4);
  put(&metadata_bytes, 8);
  put(&payload_bytes, 8);
  char name[40] = "w";
  put(name, sizeof(name));
  put(&payload_bytes, 8);
  put("md", 2);
  put("abc", 3);
  const auto crc = static_cast<std::uint32_t>(crc32(crc32(0L, Z_NULL, 0),
                                                    reinterpret_cast<const Bytef*>(file.data()),
                                                    static_cast<uInt>(file.size())));
  put(&crc, 4);
  auto image = CheckpointImage::parse(std::move(file));
  ASSERT_TRUE(image.ok()) << image.error().to_string();
  const CheckpointImage::Entry* e = image->find("w");
  ASSERT_NE(e, nullptr);
  EXPECT_EQ(image->data(*e).size(), 3u);
  EXPECT_EQ(image->metadata().size(), 2u);
}

TEST(CheckpointFileTest, EveryFlippedByteOfAVersion2FileIsDataLoss) {
  CheckpointContents c;
  c.entries.push_back({std::string(50, 'a'), bytes_of("0123")});
  c.entries.push_back({"b", {}});
  c.metadata = bytes_of("m");
  const std::vector<std::byte> file = encode_checkpoint(c).value();
  ASSERT_EQ(version_of(file), 2u);
  for (std::size_t i = 0; i < file.size(); ++i) {
    std::vector<std::byte> damaged = file;
    damaged[i] ^= std::byte{0x20};
    auto image = CheckpointImage::parse(std::move(damaged));
    ASSERT_FALSE(image.ok()) << "byte " << i;
    if (i < 8 || i >= 12) {
      EXPECT_EQ(image.error().code(), ErrorCode::kDataLoss) << "byte " << i;
    }
  }
  for (std::size_t size = 0; size < file.size(); size += 7) {
    auto image = CheckpointImage::parse({file.begin(), file.begin() + static_cast<long>(size)});
    ASSERT_FALSE(image.ok()) << size;
    EXPECT_EQ(image.error().code(), ErrorCode::kDataLoss) << size;
  }
}

TEST(CheckpointFileTest, AnUnknownVersionIsUnimplementedNamingBoth) {
  std::vector<std::byte> file = encode_checkpoint(sample()).value();
  const std::uint32_t version = 3;
  std::memcpy(file.data() + 8, &version, sizeof(version));
  auto image = CheckpointImage::parse(std::move(file));
  ASSERT_FALSE(image.ok());
  EXPECT_EQ(image.error().code(), ErrorCode::kUnimplemented);
  EXPECT_NE(image.error().message().find("version 3"), std::string::npos);
}

}  // namespace
}  // namespace malv::offload
