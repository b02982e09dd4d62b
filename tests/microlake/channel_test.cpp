// The accelerator API end to end: a guest (real client library) talks to a
// real host over shared memory and over TCP.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <numeric>
#include <random>
#include <thread>
#include <vector>

#include "guest/connection_core.h"
#include "host_fixture.h"

namespace malv {
namespace {

using guest::KernelArg;

class Channel : public testing::HostFixture, public ::testing::WithParamInterface<bool> {
 protected:
  std::unique_ptr<guest::Connection> open(const std::string& vm = "vm") {
    return GetParam() ? connect_tcp(vm) : connect(vm);
  }
};

std::vector<std::byte> pattern(std::size_t n, unsigned seed) {
  std::vector<std::byte> data(n);
  std::mt19937 rng(seed);
  for (auto& b : data) b = static_cast<std::byte>(rng());
  return data;
}

TEST_P(Channel, NopRoundTripCompletes) {
  auto conn = open();
  ASSERT_TRUE(conn);
  for (int i = 0; i < 100; ++i) ASSERT_TRUE(conn->ping().ok());
}

TEST_P(Channel, DeviceQueryNamesTheCpuBackend) {
  auto conn = open();
  ASSERT_TRUE(conn);
  auto info = conn->device_info();
  ASSERT_TRUE(info.ok()) << info.error().to_string();
  EXPECT_EQ(info->backend, "cpu");
  EXPECT_EQ(info->total_memory, 256ull << 20);
}

TEST_P(Channel, WriteThenReadReturnsTheSameBytesForOddSizesAndOffsets) {
  auto conn = open();
  ASSERT_TRUE(conn);
  auto stream = conn->create_stream();
  ASSERT_TRUE(stream.ok());
  for (std::size_t size : {1ul, 3ul, 63ul, 4097ul, 100'003ul}) {
    auto buffer = conn->allocate(size + 17);
    ASSERT_TRUE(buffer.ok());
    auto data = pattern(size, static_cast<unsigned>(size));
    std::vector<std::byte> back(size);
    ASSERT_TRUE(stream->write(*buffer, 17, data).ok());
    ASSERT_TRUE(stream->read(*buffer, 17, back).ok());
    ASSERT_TRUE(stream->synchronize().ok());
    EXPECT_EQ(data, back) << "size " << size;
  }
}

TEST_P(Channel, TransfersLargerThanTheArenaAreChunked) {
  auto conn = open();
  ASSERT_TRUE(conn);
  const std::size_t size = 3 * conn->arena_bytes() + 12345;
  auto buffer = conn->allocate(size);
  auto stream = conn->create_stream();
  ASSERT_TRUE(buffer.ok() && stream.ok());
  auto data = pattern(size, 7);
  std::vector<std::byte> back(size);
  ASSERT_TRUE(stream->write(*buffer, 0, data).ok());
  ASSERT_TRUE(stream->read(*buffer, 0, back).ok());
  ASSERT_TRUE(stream->synchronize().ok());
  EXPECT_EQ(data, back);
}

TEST_P(Channel, OrdinaryMemoryTransfersStageWithinTheWindowAndArriveIntact) {
  auto conn = open();
  ASSERT_TRUE(conn);
  auto s = conn->create_stream();
  const std::uint64_t piece = 400'000;  // a training batch's size, not chunk-aligned
  constexpr int kPieces = 40;           // several times the window, never synchronised
  auto buf = conn->allocate(piece * kPieces);
  ASSERT_TRUE(s.ok() && buf.ok());
  const auto data = pattern(piece * kPieces, 11);
  for (int i = 0; i < kPieces; ++i) {
    ASSERT_TRUE(s->write(*buf, piece * i, std::span(data).subspan(piece * i, piece)).ok());
    EXPECT_LE(guest::core_of(*conn).staging_in_flight(), guest::core_of(*conn).staging_window())
        << "after write " << i;
  }
  std::vector<std::byte> back(data.size());
  ASSERT_TRUE(s->read(*buf, 0, back).ok());
  ASSERT_TRUE(s->synchronize().ok());
  EXPECT_EQ(guest::core_of(*conn).staging_in_flight(), 0u);
  EXPECT_TRUE(back == data);
}

TEST_P(Channel, ZeroCopyHostBuffersRoundTrip) {
  auto conn = open();
  ASSERT_TRUE(conn);
  const std::size_t size = 100'003;
  auto in = conn->allocate_host(size);
  auto out = conn->allocate_host(size);
  auto device = conn->allocate(size + 5);
  auto stream = conn->create_stream();
  ASSERT_TRUE(in.ok() && out.ok() && device.ok() && stream.ok());
  auto data = pattern(size, 11);
  std::memcpy(in->data().data(), data.data(), size);
  ASSERT_TRUE(stream->write(*device, 5, *in, 0, size).ok());
  ASSERT_TRUE(stream->read(*device, 5, *out, 0, size).ok());
  ASSERT_TRUE(stream->synchronize().ok());
  EXPECT_EQ(0, std::memcmp(out->data().data(), data.data(), size));
  EXPECT_EQ(stream->write(*device, 0, *in, size - 1, 2).error().code(), ErrorCode::kOutOfRange);
}

TEST_P(Channel, CopyAndMemsetRunInStreamOrder) {
  auto conn = open();
  ASSERT_TRUE(conn);
  auto a = conn->allocate(1000);
  auto b = conn->allocate(1000);
  auto stream = conn->create_stream();
  ASSERT_TRUE(a.ok() && b.ok() && stream.ok());
  ASSERT_TRUE(stream->memset(*a, 0, 1000, 0xab).ok());
  ASSERT_TRUE(stream->copy(*a, 10, *b, 0, 990).ok());
  ASSERT_TRUE(stream->memset(*a, 0, 1000, 0x00).ok());
  std::vector<std::byte> back(1000, std::byte{0x11});
  ASSERT_TRUE(stream->memset(*b, 990, 10, 0xcd).ok());
  ASSERT_TRUE(stream->read(*b, 0, back).ok());
  ASSERT_TRUE(stream->synchronize().ok());
  EXPECT_EQ(back[0], std::byte{0xab});
  EXPECT_EQ(back[989], std::byte{0xab});
  EXPECT_EQ(back[990], std::byte{0xcd});
}

TEST_P(Channel, KernelLaunchByNameComputes) {
  auto conn = open();
  ASSERT_TRUE(conn);
  auto relu = conn->kernel("relu");
  ASSERT_TRUE(relu.ok()) << relu.error().to_string();
  EXPECT_EQ(relu->argc, 3u);
  std::vector<float> host{-2.f, -0.5f, 0.f, 0.5f, 3.f};
  const auto bytes = host.size() * sizeof(float);
  auto x = conn->allocate(bytes);
  auto y = conn->allocate(bytes);
  auto stream = conn->create_stream();
  ASSERT_TRUE(x.ok() && y.ok() && stream.ok());
  ASSERT_TRUE(stream->write(*x, 0, std::as_bytes(std::span(host))).ok());
  ASSERT_TRUE(stream
                  ->launch(*relu, {KernelArg::buffer(*x), KernelArg::buffer(*y),
                                   KernelArg::i64(static_cast<std::int64_t>(host.size()))})
                  .ok());
  std::vector<float> out(host.size());
  ASSERT_TRUE(stream->read(*y, 0, std::as_writable_bytes(std::span(out))).ok());
  ASSERT_TRUE(stream->synchronize().ok());
  EXPECT_EQ(out, (std::vector<float>{0.f, 0.f, 0.f, 0.5f, 3.f}));
}

TEST_P(Channel, GemmThroughTheChannelMatchesAReference) {
  auto conn = open();
  ASSERT_TRUE(conn);
  const int m = 7, n = 5, k = 3;
  std::vector<float> a(m * k), b(k * n), c(m * n, 0.f);
  std::iota(a.begin(), a.end(), 1.f);
  std::iota(b.begin(), b.end(), -4.f);
  auto gemm = conn->kernel("gemm");
  auto da = conn->allocate(a.size() * 4);
  auto db = conn->allocate(b.size() * 4);
  auto dc = conn->allocate(c.size() * 4);
  auto s = conn->create_stream();
  ASSERT_TRUE(gemm.ok() && da.ok() && db.ok() && dc.ok() && s.ok());
  ASSERT_TRUE(s->write(*da, 0, std::as_bytes(std::span(a))).ok());
  ASSERT_TRUE(s->write(*db, 0, std::as_bytes(std::span(b))).ok());
  ASSERT_TRUE(
      s->launch(*gemm, {KernelArg::buffer(*da), KernelArg::buffer(*db), KernelArg::buffer(*dc),
                        KernelArg::i64(m), KernelArg::i64(n), KernelArg::i64(k), KernelArg::i64(0),
                        KernelArg::i64(0), KernelArg::f32(1.f), KernelArg::f32(0.f)})
          .ok());
  ASSERT_TRUE(s->read(*dc, 0, std::as_writable_bytes(std::span(c))).ok());
  ASSERT_TRUE(s->synchronize().ok());
  for (int i = 0; i < m; ++i) {
    for (int j = 0; j < n; ++j) {
      float ref = 0;
      for (int p = 0; p < k; ++p) ref += a[i * k + p] * b[p * n + j];
      EXPECT_FLOAT_EQ(c[i * n + j], ref);
    }
  }
}

TEST_P(Channel, EventsOrderStreamsAndMeasureTime) {
  auto conn = open();
  ASSERT_TRUE(conn);
  auto s1 = conn->create_stream();
  auto s2 = conn->create_stream();
  auto start = conn->create_event();
  auto end = conn->create_event();
  auto buf = conn->allocate(1 << 20);
  ASSERT_TRUE(s1.ok() && s2.ok() && start.ok() && end.ok() && buf.ok());
  ASSERT_TRUE(s1->record(*start).ok());
  ASSERT_TRUE(s1->memset(*buf, 0, 1 << 20, 0x5a).ok());
  ASSERT_TRUE(s1->record(*end).ok());
  ASSERT_TRUE(s2->wait(*end).ok());  // s2 reads only after s1's memset
  std::vector<std::byte> back(16);
  ASSERT_TRUE(s2->read(*buf, (1 << 20) - 16, back).ok());
  ASSERT_TRUE(s2->synchronize().ok());
  EXPECT_EQ(back[15], std::byte{0x5a});
  ASSERT_TRUE(guest::synchronize(*end).ok());
  auto ns = conn->elapsed_ns(*start, *end);
  ASSERT_TRUE(ns.ok()) << ns.error().to_string();
  EXPECT_GT(ns.value(), 0u);
}

// After a stream that waited on `end` has been synchronized, `end` has
// happened (as in CUDA): elapsed time is answered, even when the record's
// own completion has not reached the session yet. Repeated, since that
// window is short.
TEST_P(Channel, ElapsedIsAnsweredOnceAStreamThatWaitedOnTheEventIsSynchronized) {
  auto conn = open();
  ASSERT_TRUE(conn);
  auto s1 = conn->create_stream();
  auto s2 = conn->create_stream();
  auto buf = conn->allocate(1 << 16);
  ASSERT_TRUE(s1.ok() && s2.ok() && buf.ok());
  for (int i = 0; i < 200; ++i) {
    auto start = conn->create_event();
    auto end = conn->create_event();
    ASSERT_TRUE(start.ok() && end.ok());
    ASSERT_TRUE(s1->record(*start).ok());
    ASSERT_TRUE(s1->memset(*buf, 0, 1 << 16, static_cast<std::uint8_t>(i)).ok());
    ASSERT_TRUE(s1->record(*end).ok());
    ASSERT_TRUE(s2->wait(*end).ok());
    ASSERT_TRUE(s2->memset(*buf, 0, 16, 1).ok());
    ASSERT_TRUE(s2->synchronize().ok());
    auto ns = conn->elapsed_ns(*start, *end);
    ASSERT_TRUE(ns.ok()) << "round " << i << ": " << ns.error().to_string();
  }
}

TEST_P(Channel, ManyAsyncLaunchesThenOneSynchronize) {
  auto conn = open();
  ASSERT_TRUE(conn);
  auto nop = conn->kernel("nop");
  auto s = conn->create_stream();
  ASSERT_TRUE(nop.ok() && s.ok());
  for (int i = 0; i < 20000; ++i) ASSERT_TRUE(s->launch(*nop, {}).ok());
  EXPECT_TRUE(s->synchronize().ok());
  EXPECT_TRUE(conn->synchronize().ok());
}

TEST_P(Channel, StreamWorkRingsTheDoorbellOncePerBurst) {
  if (GetParam()) GTEST_SKIP() << "over TCP every command is sent at once";
  auto conn = open();
  ASSERT_TRUE(conn);
  auto out = conn->allocate_host(16);
  auto device = conn->allocate(16);
  auto stream = conn->create_stream();
  auto nop = conn->kernel("nop");
  ASSERT_TRUE(out.ok() && device.ok() && stream.ok() && nop.ok());

  const std::uint64_t before = conn->doorbells();
  ASSERT_TRUE(stream->memset(*device, 0, 16, 0x5a).ok());
  ASSERT_TRUE(stream->read(*device, 0, *out, 0, 16).ok());  // zero-copy: lands in shared memory
  EXPECT_EQ(conn->doorbells(), before) << "a burst is announced once, at its end";
  conn->flush();
  EXPECT_EQ(conn->doorbells(), before + 1);
  conn->flush();
  EXPECT_EQ(conn->doorbells(), before + 1) << "nothing new to announce";

  // Flushed work runs while the guest leaves the connection alone.
  std::atomic_ref<std::byte> last(out->data()[15]);
  const auto give_up = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (last.load(std::memory_order_acquire) != std::byte{0x5a} &&
         std::chrono::steady_clock::now() < give_up) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  EXPECT_EQ(last.load(std::memory_order_acquire), std::byte{0x5a});

  // A long burst is announced every kDoorbellBatch commands, and a call
  // that waits announces what precedes it.
  for (std::uint32_t i = 0; i < 2 * guest::kDoorbellBatch; ++i) {
    ASSERT_TRUE(stream->launch(*nop, {}).ok());
  }
  EXPECT_EQ(conn->doorbells(), before + 3);
  ASSERT_TRUE(stream->launch(*nop, {}).ok());
  ASSERT_TRUE(stream->synchronize().ok());
  EXPECT_EQ(conn->doorbells(), before + 4);
  for (std::byte b : out->data()) EXPECT_EQ(b, std::byte{0x5a});
}

INSTANTIATE_TEST_SUITE_P(Transports, Channel, ::testing::Values(false, true),
                         [](const auto& info) { return info.param ? "Tcp" : "SharedMemory"; });

}  // namespace
}  // namespace malv
