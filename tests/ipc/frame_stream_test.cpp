#include "ipc/frame_stream.h"

#include <gtest/gtest.h>

#include <vector>

namespace malv::ipc {
namespace {

std::pair<Socket, Socket> make_pair() {
  auto pair = Socket::unix_pair();
  EXPECT_TRUE(pair.ok());
  return std::move(pair).value();
}

TEST(FrameStream, FramesArriveWithTheirHeaderAndBody) {
  auto [a, b] = make_pair();
  wire::Command cmd{};
  cmd.tag = 77;
  ASSERT_TRUE(write_frame(a, wire::FrameKind::kCommand, 0,
                          std::as_bytes(std::span<const wire::Command>(&cmd, 1)))
                  .ok());
  std::vector<std::byte> data(1000, std::byte{9});
  ASSERT_TRUE(write_frame(a, wire::FrameKind::kArenaData, 4096, data).ok());

  auto h1 = read_frame_header(b);
  ASSERT_TRUE(h1.ok()) << h1.error().to_string();
  EXPECT_EQ(h1->kind, static_cast<std::uint32_t>(wire::FrameKind::kCommand));
  ASSERT_EQ(h1->bytes, sizeof(wire::Command));
  wire::Command got{};
  ASSERT_TRUE(read_frame_body(b, std::as_writable_bytes(std::span<wire::Command>(&got, 1))).ok());
  EXPECT_EQ(got.tag, 77u);

  auto h2 = read_frame_header(b);
  ASSERT_TRUE(h2.ok());
  EXPECT_EQ(h2->kind, static_cast<std::uint32_t>(wire::FrameKind::kArenaData));
  EXPECT_EQ(h2->arena_offset, 4096u);
  std::vector<std::byte> body(h2->bytes);
  ASSERT_TRUE(read_frame_body(b, body).ok());
  EXPECT_EQ(body, data);
}

TEST(FrameStream, OversizedHeaderIsRejected) {
  auto [a, b] = make_pair();
  wire::FrameHeader h{static_cast<std::uint32_t>(wire::FrameKind::kArenaData),
                      wire::kMaxFrameBytes + 1, 0};
  ASSERT_TRUE(a.write_all(&h, sizeof h).ok());
  auto got = read_frame_header(b);
  ASSERT_FALSE(got.ok());
  EXPECT_EQ(got.error().code(), ErrorCode::kInvalidArgument);
}

TEST(FrameStream, UnknownKindIsRejected) {
  auto [a, b] = make_pair();
  wire::FrameHeader h{99, 16, 0};
  ASSERT_TRUE(a.write_all(&h, sizeof h).ok());
  auto got = read_frame_header(b);
  ASSERT_FALSE(got.ok());
  EXPECT_EQ(got.error().code(), ErrorCode::kInvalidArgument);
}

TEST(FrameStream, WriterRefusesAnOversizedBody) {
  auto [a, b] = make_pair();
  std::vector<std::byte> body(wire::kMaxFrameBytes + 1);
  auto written = write_frame(a, wire::FrameKind::kArenaData, 0, body);
  ASSERT_FALSE(written.ok());
  EXPECT_EQ(written.error().code(), ErrorCode::kInvalidArgument);
}

TEST(FrameStream, TruncatedBodyGivesDisconnected) {
  auto [a, b] = make_pair();
  wire::FrameHeader h{static_cast<std::uint32_t>(wire::FrameKind::kArenaData), 100, 0};
  ASSERT_TRUE(a.write_all(&h, sizeof h).ok());
  ASSERT_TRUE(a.write_all("only ten b", 10).ok());
  { Socket closed = std::move(a); }
  auto header = read_frame_header(b);
  ASSERT_TRUE(header.ok());
  std::vector<std::byte> body(header->bytes);
  auto read = read_frame_body(b, body);
  ASSERT_FALSE(read.ok());
  EXPECT_EQ(read.error().code(), ErrorCode::kDisconnected);
}

TEST(FrameStream, TruncatedHeaderGivesDisconnected) {
  auto [a, b] = make_pair();
  ASSERT_TRUE(a.write_all("1234", 4).ok());
  { Socket closed = std::move(a); }
  auto header = read_frame_header(b);
  ASSERT_FALSE(header.ok());
  EXPECT_EQ(header.error().code(), ErrorCode::kDisconnected);
}

}  // namespace
}  // namespace malv::ipc
