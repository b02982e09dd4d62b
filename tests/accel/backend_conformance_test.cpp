// Conformance, part 2: memory, copies, queue order, events, faults and
// teardown, against the Backend interface only.
#include "backend_conformance.h"

#include <algorithm>
#include <array>
#include <atomic>
#include <numeric>

namespace malv::accel::testing {
namespace {

using Entry = std::pair<std::uint64_t, ErrorCode>;

std::vector<std::uint8_t> pattern(std::size_t bytes, std::uint8_t seed) {
  std::vector<std::uint8_t> data(bytes);
  for (std::size_t i = 0; i < bytes; ++i) data[i] = static_cast<std::uint8_t>(seed + i * 7);
  return data;
}

TEST_P(BackendConformance, InfoDescribesTheBackendAndItsMemory) {
  DeviceInfo info = backend_->info();
  EXPECT_FALSE(info.backend.empty());
  EXPECT_FALSE(info.name.empty());
  EXPECT_GT(info.total_memory, 0u);
  EXPECT_LE(info.free_memory, info.total_memory);
  EXPECT_GT(info.compute_units, 0u);
}

TEST_P(BackendConformance, CopiesAndMemsetOfOddSizesAndOffsetsRoundTrip) {
  const std::size_t size = 3 * 4096;
  DeviceBuffer a = allocate(size);
  DeviceBuffer b = allocate(size);
  std::vector<std::uint8_t> model_a(size, 0), model_b(size, 0);
  ASSERT_EQ(run(Memset{a.ptr, 0, size}), ErrorCode::kOk);
  ASSERT_EQ(run(Memset{b.ptr, 0, size}), ErrorCode::kOk);
  std::uint8_t seed = 1;
  for (std::size_t bytes : {std::size_t{1}, std::size_t{3}, std::size_t{4}, std::size_t{4097}}) {
    for (std::size_t offset : {std::size_t{0}, std::size_t{1}, std::size_t{3}, std::size_t{4095}}) {
      SCOPED_TRACE("bytes=" + std::to_string(bytes) + " offset=" + std::to_string(offset));
      auto data = pattern(bytes, seed++);
      ASSERT_EQ(run(CopyH2D{data.data(), a.ptr + offset, bytes}), ErrorCode::kOk);
      std::copy(data.begin(), data.end(), model_a.begin() + offset);

      const std::size_t dst_offset = size - bytes - offset % 5;
      ASSERT_EQ(run(CopyD2D{a.ptr + offset, b.ptr + dst_offset, bytes}), ErrorCode::kOk);
      std::copy_n(model_a.begin() + offset, bytes, model_b.begin() + dst_offset);

      const std::size_t set_offset = offset + bytes / 2;
      const std::size_t set_bytes = (bytes + 1) / 2;
      ASSERT_EQ(run(Memset{a.ptr + set_offset, static_cast<std::uint8_t>(0xA0 + seed), set_bytes}),
                ErrorCode::kOk);
      std::fill_n(model_a.begin() + set_offset, set_bytes, static_cast<std::uint8_t>(0xA0 + seed));

      std::vector<std::uint8_t> part(bytes, 0);
      ASSERT_EQ(run(CopyD2H{a.ptr + offset, part.data(), bytes}), ErrorCode::kOk);
      EXPECT_TRUE(std::equal(part.begin(), part.end(), model_a.begin() + offset));
    }
  }
  EXPECT_EQ(download<std::uint8_t>(a), model_a);
  EXPECT_EQ(download<std::uint8_t>(b), model_b);
}

TEST_P(BackendConformance, ZeroByteCopiesAndMemsetsSucceed) {
  DeviceBuffer a = allocate(64);
  std::uint8_t host = 0;
  EXPECT_EQ(run(CopyH2D{&host, a.ptr, 0}), ErrorCode::kOk);
  EXPECT_EQ(run(CopyD2H{a.ptr, &host, 0}), ErrorCode::kOk);
  EXPECT_EQ(run(CopyD2D{a.ptr, a.ptr + 8, 0}), ErrorCode::kOk);
  EXPECT_EQ(run(Memset{a.ptr, 1, 0}), ErrorCode::kOk);
}

TEST_P(BackendConformance, OpsOnOneQueueRunAndCompleteInEnqueueOrder) {
  // y accumulates 1 + 2 + ... + 200 only if every fill lands before its axpy.
  DeviceBuffer x = allocate(4 * 4);
  DeviceBuffer y = allocate(4 * 4);
  ASSERT_EQ(run(Memset{y.ptr, 0, y.bytes}), ErrorCode::kOk);
  CompletionLog log;
  std::uint64_t cookie = 0;
  for (int i = 1; i <= 200; ++i) {
    backend_->enqueue(queue_, make_launch("fill", {buf(x), i64(4), f32(static_cast<float>(i))}),
                      log.completion(cookie++));
    backend_->enqueue(queue_, make_launch("axpy", {buf(x), buf(y), i64(4), f32(1.0f)}),
                      log.completion(cookie++));
  }
  backend_->enqueue(queue_, Marker{}, log.completion(cookie++));
  backend_->synchronize_all();
  EXPECT_EQ(download<float>(y), std::vector<float>(4, 20100.0f));
  auto entries = log.entries();
  ASSERT_EQ(entries.size(), cookie);
  for (std::uint64_t i = 0; i < cookie; ++i) EXPECT_EQ(entries[i], (Entry{i, ErrorCode::kOk}));
}

TEST_P(BackendConformance, EnqueueManyRunsInOrderWithConsecutiveCookies) {
  // The same as 200 single enqueues: fills and axpys interleaved, op i of the
  // batch completing with cookie first + i, in order.
  DeviceBuffer x = allocate(4 * 4);
  DeviceBuffer y = allocate(4 * 4);
  ASSERT_EQ(run(Memset{y.ptr, 0, y.bytes}), ErrorCode::kOk);
  std::vector<Op> ops;
  for (int i = 1; i <= 100; ++i) {
    ops.push_back(make_launch("fill", {buf(x), i64(4), f32(static_cast<float>(i))}));
    ops.push_back(make_launch("axpy", {buf(x), buf(y), i64(4), f32(1.0f)}));
  }
  CompletionLog log;
  constexpr std::uint64_t kFirst = 1000;
  backend_->enqueue_many(queue_, ops, log.completion(kFirst));
  backend_->synchronize_all();
  EXPECT_EQ(download<float>(y), std::vector<float>(4, 5050.0f));
  auto entries = log.entries();
  ASSERT_EQ(entries.size(), ops.size());
  for (std::uint64_t i = 0; i < ops.size(); ++i) {
    EXPECT_EQ(entries[i], (Entry{kFirst + i, ErrorCode::kOk}));
  }
  backend_->enqueue_many(queue_, std::span<Op>(), log.completion(0));  // nothing, no completion
  backend_->synchronize_all();
  EXPECT_EQ(log.entries().size(), ops.size());
}

TEST_P(BackendConformance, ManyQueuesEachKeepTheirOwnOrder) {
  constexpr int kQueues = 8;
  constexpr int kOpsPerQueue = 500;
  std::vector<QueueId> queues;
  std::vector<DeviceBuffer> slots;
  std::vector<std::int32_t> values(kOpsPerQueue);
  std::iota(values.begin(), values.end(), 1);
  for (int q = 0; q < kQueues; ++q) {
    queues.push_back(
        *backend_->create_queue(q % 2 ? QueuePriority::kHigh : QueuePriority::kNormal));
    slots.push_back(allocate(4));
  }
  std::vector<CompletionLog> logs(kQueues);
  for (int i = 0; i < kOpsPerQueue; ++i) {
    for (int q = 0; q < kQueues; ++q) {
      backend_->enqueue(queues[q], CopyH2D{&values[i], slots[q].ptr, 4},
                        logs[q].completion(static_cast<std::uint64_t>(i)));
    }
  }
  backend_->synchronize_all();
  for (int q = 0; q < kQueues; ++q) {
    EXPECT_EQ(download<std::int32_t>(slots[q]), std::vector<std::int32_t>{kOpsPerQueue});
    auto entries = logs[q].entries();
    ASSERT_EQ(entries.size(), static_cast<std::size_t>(kOpsPerQueue));
    for (int i = 0; i < kOpsPerQueue; ++i)
      EXPECT_EQ(entries[i].first, static_cast<std::uint64_t>(i));
    backend_->destroy_queue(queues[q]);
  }
}

TEST_P(BackendConformance, RecordedEventsCompleteWithNonDecreasingTimes) {
  EventId first = *backend_->create_event();
  EventId second = *backend_->create_event();
  DeviceBuffer x = allocate(1 << 16);
  CompletionLog log;
  backend_->enqueue(queue_, RecordEvent{first}, log.completion(1));
  backend_->enqueue(queue_, Memset{x.ptr, 3, x.bytes}, log.completion(2));
  backend_->enqueue(queue_, RecordEvent{second}, log.completion(3));
  backend_->synchronize_all();
  EXPECT_EQ(log.entries(),
            (std::vector<Entry>{{1, ErrorCode::kOk}, {2, ErrorCode::kOk}, {3, ErrorCode::kOk}}));
  EventState a = backend_->query_event(first);
  EventState b = backend_->query_event(second);
  EXPECT_TRUE(a.complete);
  EXPECT_TRUE(b.complete);
  EXPECT_GT(a.time_ns, 0);
  EXPECT_GE(b.time_ns - a.time_ns, 0);
  backend_->destroy_event(first);
  backend_->destroy_event(second);
}

TEST_P(BackendConformance, EventNeverRecordedIsCompleteAndWaitingOnItDoesNotBlock) {
  EventId event = *backend_->create_event();
  EXPECT_TRUE(backend_->query_event(event).complete);
  EXPECT_EQ(run(WaitEvent{event}), ErrorCode::kOk);
  backend_->destroy_event(event);
}

TEST_P(BackendConformance, WaitEventOrdersWorkAcrossQueues) {
  // Queue A does a lot of work, then writes x and records the event; queue B
  // waits on the event and then copies x to y. y must see A's write.
  QueueId a = *backend_->create_queue(QueuePriority::kNormal);
  QueueId b = *backend_->create_queue(QueuePriority::kHigh);
  EventId event = *backend_->create_event();
  DeviceBuffer busy = allocate(8 << 20);
  DeviceBuffer x = allocate(4096);
  DeviceBuffer y = allocate(4096);
  ASSERT_EQ(run(Memset{x.ptr, 0, x.bytes}), ErrorCode::kOk);
  ASSERT_EQ(run(Memset{y.ptr, 0, y.bytes}), ErrorCode::kOk);
  std::vector<std::uint8_t> written = pattern(4096, 9);
  CompletionLog log_a, log_b;
  for (int i = 0; i < 20; ++i)
    backend_->enqueue(a, Memset{busy.ptr, static_cast<std::uint8_t>(i), busy.bytes}, {});
  backend_->enqueue(a, CopyH2D{written.data(), x.ptr, x.bytes}, log_a.completion(1));
  backend_->enqueue(a, RecordEvent{event}, log_a.completion(2));
  backend_->enqueue(b, WaitEvent{event}, log_b.completion(1));
  backend_->enqueue(b, CopyD2D{x.ptr, y.ptr, y.bytes}, log_b.completion(2));
  backend_->synchronize_all();
  EXPECT_EQ(download<std::uint8_t>(y), written);
  EXPECT_EQ(log_a.entries(), (std::vector<Entry>{{1, ErrorCode::kOk}, {2, ErrorCode::kOk}}));
  EXPECT_EQ(log_b.entries(), (std::vector<Entry>{{1, ErrorCode::kOk}, {2, ErrorCode::kOk}}));
  EXPECT_TRUE(backend_->query_event(event).complete);
  backend_->destroy_queue(a);
  backend_->destroy_queue(b);
  backend_->destroy_event(event);
}

TEST_P(BackendConformance, AllocationPastCapacityIsResourceExhausted) {
  const std::uint64_t capacity = backend_->info().total_memory;
  auto too_big = backend_->allocate(capacity + 1);
  ASSERT_FALSE(too_big.ok());
  EXPECT_EQ(too_big.error().code(), ErrorCode::kResourceExhausted);

  auto half = backend_->allocate(capacity / 2 + 1);
  ASSERT_TRUE(half.ok());
  auto other_half = backend_->allocate(capacity / 2 + 1);
  ASSERT_FALSE(other_half.ok());
  EXPECT_EQ(other_half.error().code(), ErrorCode::kResourceExhausted);
  backend_->free(*half);
  EXPECT_EQ(backend_->memory_in_use(), 0u);
}

TEST_P(BackendConformance, MemoryInUseCountsAllocationsAndReturnsToZeroAfterFrees) {
  const std::uint64_t before = backend_->memory_in_use();
  std::vector<DevicePtr> ptrs;
  std::uint64_t total = 0;
  for (std::size_t bytes : {1u, 3u, 4097u, 65536u}) {
    auto ptr = backend_->allocate(bytes);
    ASSERT_TRUE(ptr.ok());
    ptrs.push_back(*ptr);
    total += bytes;
  }
  EXPECT_GE(backend_->memory_in_use(), before + total);
  EXPECT_LE(backend_->info().free_memory, backend_->info().total_memory - total);
  for (DevicePtr ptr : ptrs) backend_->free(ptr);
  EXPECT_EQ(backend_->memory_in_use(), before);
}

// Issue 15: memory one VM frees is handed to the next with its data still in
// it unless the backend clears it. Every round allocates the same sizes
// (small ones the C heap recycles, large ones a pool or mapping cache
// recycles), reads them back, then fills them with a marker and frees them:
// the next round must see zeros only, never the marker.
TEST_P(BackendConformance, FreedMemoryReadsAsZerosWhenAllocatedAgain) {
  const std::vector<std::size_t> sizes = {1,      60,     4000,    4096,   65536,
                                          100000, 300000, 1 << 20, 3 << 20};
  constexpr int kCopies = 3;
  constexpr int kRounds = 8;
  const std::array<std::uint8_t, 16> marker = {0xde, 0xad, 0xbe, 0xef, 0x4d, 0x61, 0x4c, 0x56,
                                               0x2d, 0x4f, 0x53, 0x21, 0x15, 0x15, 0xa5, 0x5a};
  std::vector<std::uint8_t> marked(sizes.back());
  for (std::size_t i = 0; i < marked.size(); ++i) marked[i] = marker[i % marker.size()];
  std::vector<std::uint8_t> back(sizes.back());
  for (int round = 0; round < kRounds; ++round) {
    std::vector<DeviceBuffer> buffers;
    for (int copy = 0; copy < kCopies; ++copy) {
      for (std::size_t bytes : sizes) {
        auto ptr = backend_->allocate(bytes);
        ASSERT_TRUE(ptr.ok()) << ptr.error().to_string();
        buffers.push_back(DeviceBuffer{*ptr, bytes});
      }
    }
    for (const DeviceBuffer& buffer : buffers) {
      ASSERT_EQ(run(CopyD2H{buffer.ptr, back.data(), buffer.bytes}), ErrorCode::kOk);
      const auto nonzero = std::find_if(back.begin(), back.begin() + buffer.bytes,
                                        [](std::uint8_t byte) { return byte != 0; });
      ASSERT_EQ(nonzero, back.begin() + buffer.bytes)
          << "round " << round << ": a fresh " << buffer.bytes << "-byte buffer holds "
          << int{*nonzero} << " at offset " << (nonzero - back.begin())
          << (std::search(back.begin(), back.begin() + buffer.bytes, marker.begin(),
                          marker.end()) != back.begin() + buffer.bytes
                  ? " (the previous owner's marker is in it)"
                  : "");
      ASSERT_EQ(run(CopyH2D{marked.data(), buffer.ptr, buffer.bytes}), ErrorCode::kOk);
    }
    for (const DeviceBuffer& buffer : buffers) backend_->free(buffer.ptr);
  }
  EXPECT_EQ(backend_->memory_in_use(), 0u);
}

TEST_P(BackendConformance, DestroyQueueCompletesPendingWorkFirst) {
  QueueId queue = *backend_->create_queue(QueuePriority::kNormal);
  DeviceBuffer x = allocate(1 << 20);
  DeviceBuffer last = allocate(4);
  CompletionLog log;
  for (int i = 0; i < 100; ++i) {
    backend_->enqueue(queue, Memset{x.ptr, static_cast<std::uint8_t>(i), x.bytes},
                      log.completion(static_cast<std::uint64_t>(i)));
  }
  backend_->enqueue(queue, make_launch("fill", {buf(last), i64(1), f32(42.0f)}),
                    log.completion(100));
  backend_->destroy_queue(queue);
  auto entries = log.entries();
  ASSERT_EQ(entries.size(), 101u);
  EXPECT_EQ(entries.back(), (Entry{100, ErrorCode::kOk}));
  EXPECT_EQ(download<float>(last), std::vector<float>{42.0f});
}

TEST_P(BackendConformance, RegisteringHostMemorySucceeds) {
  std::vector<std::uint8_t> arena(1 << 16);
  EXPECT_TRUE(backend_->register_host_memory(arena.data(), arena.size()).ok());
  DeviceBuffer x = allocate(arena.size());
  EXPECT_EQ(run(CopyH2D{arena.data(), x.ptr, arena.size()}), ErrorCode::kOk);
  backend_->unregister_host_memory(arena.data());
}

TEST_P(BackendConformance, CompletionsMayEnqueueOnOtherQueues) {
  QueueId other = *backend_->create_queue(QueuePriority::kNormal);
  struct Chain {
    Backend* backend;
    QueueId other;
    CompletionLog log;
  } chain{backend_.get(), other, {}};
  auto forward = [](void* context, std::uint64_t, ErrorCode) {
    auto* c = static_cast<Chain*>(context);
    c->backend->enqueue(c->other, Marker{}, c->log.completion(7));
  };
  backend_->enqueue(queue_, Marker{}, Completion{forward, &chain, 0});
  backend_->synchronize_all();
  EXPECT_EQ(chain.log.entries(), (std::vector<Entry>{{7, ErrorCode::kOk}}));
  backend_->destroy_queue(other);
}

}  // namespace
}  // namespace malv::accel::testing
