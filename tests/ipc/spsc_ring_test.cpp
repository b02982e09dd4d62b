#include "ipc/spsc_ring.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <limits>
#include <memory>
#include <thread>
#include <vector>

#include "base/clock.h"
#include "ring_test_util.h"

namespace malv::ipc {
namespace {

using namespace std::chrono_literals;
using testing::make_record;
using testing::record_intact;
using testing::SeqRecord;

// One ring in ordinary memory, both ends in this process.
struct TestRing {
  explicit TestRing(std::uint32_t capacity, std::uint32_t start_index = 0)
      : header(std::make_unique<RingHeader>()), slots(capacity) {
    initialize_ring_header(header.get(), start_index);
    producer = RingProducer<SeqRecord>(header.get(), slots.data(), capacity);
    consumer = RingConsumer<SeqRecord>(header.get(), slots.data(), capacity);
  }
  std::unique_ptr<RingHeader> header;
  std::vector<SeqRecord> slots;
  RingProducer<SeqRecord> producer;
  RingConsumer<SeqRecord> consumer;
};

bool push_one(RingProducer<SeqRecord>& p, std::uint64_t seq) {
  SeqRecord r = make_record(seq);
  auto pushed = p.try_push(std::span<const SeqRecord>(&r, 1));
  return pushed.ok() && *pushed;
}

std::uint32_t available(RingConsumer<SeqRecord>& c) {
  auto n = c.available();
  EXPECT_TRUE(n.ok()) << n.error().to_string();
  return n.ok() ? *n : 0;
}

TEST(SpscRing, ProducerFindsTheRingFullAndNothingIsOverwritten) {
  TestRing ring(4);
  for (std::uint64_t i = 0; i < 4; ++i) ASSERT_TRUE(push_one(ring.producer, i));
  EXPECT_EQ(*ring.producer.free_slots(), 0u);
  SeqRecord extra = make_record(99);
  auto pushed = ring.producer.try_push(std::span<const SeqRecord>(&extra, 1));
  ASSERT_TRUE(pushed.ok());
  EXPECT_FALSE(*pushed);
  ASSERT_EQ(available(ring.consumer), 4u);
  for (std::uint32_t i = 0; i < 4; ++i) EXPECT_TRUE(record_intact(ring.consumer.read(i), i));
}

// A consumer asleep for one key (consumer_waiting and wake_key as its
// wait() sets them) is woken only by a record with that key, by any record
// when it asked for none, and by any record once the ring is half full.
TEST(SpscRing, AWaitForOneKeyIsWokenOnlyByThatKeyOrAHalfFullRing) {
  TestRing ring(8);
  std::uint64_t seq = 0;
  // Pushes one record for `key` and returns how often the doorbell has rung.
  auto push_for = [&](std::uint64_t key) {
    EXPECT_TRUE(push_one(ring.producer, seq++));
    ring.producer.notify_consumer_of(key);
    return ring.header->wake_seq.load();
  };
  ring.header->wake_key.store(7);
  ring.header->consumer_waiting.store(1);

  EXPECT_EQ(push_for(3), 0u) << "another command's completion";
  EXPECT_EQ(push_for(7), 1u) << "the awaited completion";
  EXPECT_EQ(push_for(3), 1u) << "3 of 8 slots used";
  EXPECT_EQ(push_for(3), 2u) << "4 of 8 slots used: the consumer must drain";

  ASSERT_EQ(available(ring.consumer), 4u);
  ring.consumer.pop(4);
  ring.header->wake_key.store(0);
  EXPECT_EQ(push_for(3), 3u) << "a wait for any record";

  ring.header->consumer_waiting.store(0);
  EXPECT_EQ(push_for(0), 3u) << "nobody asleep: no system call";
}

TEST(SpscRing, AConsumerWaitingForOneKeySleepsThroughOthersAndWakesForIt) {
  TestRing ring(64);
  std::atomic<bool> returned{false};
  std::thread consumer([&] {
    // Long timeout: only the awaited record ends this wait in time.
    EXPECT_TRUE(ring.consumer.wait(0us, 30s, /*wake_key=*/7));
    returned.store(true);
  });
  while (ring.header->consumer_waiting.load() == 0) std::this_thread::yield();
  ASSERT_TRUE(push_one(ring.producer, 0));
  ring.producer.notify_consumer_of(3);
  std::this_thread::sleep_for(20ms);
  EXPECT_FALSE(returned.load()) << "woken by a record it did not wait for";
  ASSERT_TRUE(push_one(ring.producer, 1));
  ring.producer.notify_consumer_of(7);
  consumer.join();
  EXPECT_EQ(available(ring.consumer), 2u);
}

TEST(SpscRing, ConsumerFindsTheRingEmptyAndWaitTimesOut) {
  TestRing ring(8);
  EXPECT_EQ(available(ring.consumer), 0u);
  Stopwatch watch;
  EXPECT_FALSE(ring.consumer.wait(10us, 30ms));
  EXPECT_GE(watch.elapsed(), 30ms);
  EXPECT_EQ(available(ring.consumer), 0u);
}

TEST(SpscRing, ConsumerFreesSpaceAndProducerProceeds) {
  TestRing ring(4);
  for (std::uint64_t i = 0; i < 4; ++i) ASSERT_TRUE(push_one(ring.producer, i));
  EXPECT_FALSE(push_one(ring.producer, 4));
  ASSERT_EQ(available(ring.consumer), 4u);
  ring.consumer.pop(2);
  EXPECT_EQ(*ring.producer.free_slots(), 2u);
  EXPECT_EQ(ring.producer.consumer_position(), 2u);
  EXPECT_TRUE(push_one(ring.producer, 4));
  EXPECT_TRUE(push_one(ring.producer, 5));
  EXPECT_FALSE(push_one(ring.producer, 6));
  ASSERT_EQ(available(ring.consumer), 4u);
  for (std::uint32_t i = 0; i < 4; ++i) EXPECT_TRUE(record_intact(ring.consumer.read(i), i + 2));
}

TEST(SpscRing, MultiRecordPushIsAllOrNothing) {
  TestRing ring(8);
  std::vector<SeqRecord> batch;
  for (std::uint64_t i = 0; i < 6; ++i) batch.push_back(make_record(i));
  ASSERT_TRUE(*ring.producer.try_push(batch));
  std::vector<SeqRecord> too_many{make_record(6), make_record(7), make_record(8)};
  auto pushed = ring.producer.try_push(too_many);
  ASSERT_TRUE(pushed.ok());
  EXPECT_FALSE(*pushed);
  EXPECT_EQ(available(ring.consumer), 6u);  // none of the three went in
  EXPECT_EQ(ring.producer.published(), 6u);
  too_many.pop_back();
  EXPECT_TRUE(*ring.producer.try_push(too_many));
  ASSERT_EQ(available(ring.consumer), 8u);
  for (std::uint32_t i = 0; i < 8; ++i) EXPECT_TRUE(record_intact(ring.consumer.read(i), i));
}

TEST(SpscRing, PushLargerThanTheCapacityIsInvalidArgument) {
  TestRing ring(4);
  std::vector<SeqRecord> batch(5);
  auto pushed = ring.producer.try_push(batch);
  ASSERT_FALSE(pushed.ok());
  EXPECT_EQ(pushed.error().code(), ErrorCode::kInvalidArgument);
}

void run_laps(TestRing& ring, std::uint64_t total) {
  std::uint64_t next_push = 0, next_pop = 0;
  std::uint32_t batch = 1;
  while (next_pop < total) {
    std::vector<SeqRecord> records;
    for (std::uint32_t i = 0; i < batch && next_push + i < total; ++i) {
      records.push_back(make_record(next_push + i));
    }
    auto pushed = ring.producer.try_push(records);
    ASSERT_TRUE(pushed.ok());
    if (*pushed) next_push += records.size();
    std::uint32_t n = available(ring.consumer);
    std::uint32_t take = std::min<std::uint32_t>(n, batch % 3 + 1);
    for (std::uint32_t i = 0; i < take; ++i) {
      ASSERT_TRUE(record_intact(ring.consumer.read(i), next_pop + i)) << "record " << next_pop + i;
    }
    ring.consumer.pop(take);
    next_pop += take;
    batch = batch % 5 + 1;  // vary batch sizes so records straddle the slot wrap
  }
}

TEST(SpscRing, RecordsSurviveManyLapsAroundTheRing) {
  TestRing ring(8);
  run_laps(ring, 10'000);
  EXPECT_EQ(ring.producer.published(), 10'000u);
  EXPECT_EQ(available(ring.consumer), 0u);
}

TEST(SpscRing, IndicesWrapPastTwoToTheThirtyTwo) {
  const std::uint32_t start = std::numeric_limits<std::uint32_t>::max() - 20;
  TestRing ring(8, start);
  run_laps(ring, 1'000);
  // 1000 records after UINT32_MAX - 20: the index has wrapped to a small number.
  EXPECT_EQ(ring.producer.published(), static_cast<std::uint32_t>(start + 1'000u));
  EXPECT_LT(ring.producer.published(), 1'000u);
  EXPECT_EQ(available(ring.consumer), 0u);
  EXPECT_EQ(*ring.producer.free_slots(), 8u);
}

TEST(SpscRing, ConcurrentProducerAndConsumerSeeEveryRecordIntact) {
  constexpr std::uint64_t kRecords = 1'000'000;
  TestRing ring(256);
  std::atomic<bool> stop{false};
  std::thread producer([&] {
    std::uint64_t seq = 0;
    SeqRecord batch[4];
    while (seq < kRecords && !stop.load(std::memory_order_relaxed)) {
      std::uint32_t n =
          static_cast<std::uint32_t>(std::min<std::uint64_t>(seq % 4 + 1, kRecords - seq));
      for (std::uint32_t i = 0; i < n; ++i) batch[i] = make_record(seq + i);
      auto pushed = ring.producer.try_push(std::span<const SeqRecord>(batch, n));
      if (!pushed.ok()) std::abort();
      if (*pushed) {
        seq += n;
        ring.producer.notify_consumer();
      } else {
        std::this_thread::yield();
      }
    }
  });
  std::uint64_t expected = 0;
  std::uint64_t bad = 0;
  // wait() may return false on a doorbell whose records we already took, so
  // loop until done or clearly stuck.
  Deadline give_up = Deadline::after(60s);
  while (expected < kRecords && !give_up.expired()) {
    if (!ring.consumer.wait(20us, 1s)) continue;
    std::uint32_t n = available(ring.consumer);
    for (std::uint32_t i = 0; i < n; ++i) {
      if (!record_intact(ring.consumer.read(i), expected + i)) ++bad;
    }
    ring.consumer.pop(n);
    expected += n;
  }
  stop = true;
  producer.join();
  EXPECT_EQ(expected, kRecords);
  EXPECT_EQ(bad, 0u);
}

TEST(SpscRing, TailClaimingMoreThanTheCapacityIsDataLoss) {
  TestRing ring(8);
  ASSERT_TRUE(push_one(ring.producer, 0));
  ring.header->tail.store(9);  // 9 records in flight in an 8-slot ring
  auto n = ring.consumer.available();
  ASSERT_FALSE(n.ok());
  EXPECT_EQ(n.error().code(), ErrorCode::kDataLoss);
  // A corrupt ring does not put the consumer to sleep: wait() returns so
  // that the caller sees the error.
  EXPECT_TRUE(ring.consumer.wait(0ns, 1s));
}

TEST(SpscRing, TailMovingBackwardsIsDataLoss) {
  TestRing ring(8);
  for (std::uint64_t i = 0; i < 3; ++i) ASSERT_TRUE(push_one(ring.producer, i));
  ASSERT_EQ(available(ring.consumer), 3u);
  ring.header->tail.store(1);  // un-publishes records the consumer already saw
  auto n = ring.consumer.available();
  ASSERT_FALSE(n.ok());
  EXPECT_EQ(n.error().code(), ErrorCode::kDataLoss);
}

TEST(SpscRing, HeadAheadOfTheTailIsDataLoss) {
  TestRing ring(8);
  ASSERT_TRUE(push_one(ring.producer, 0));
  ring.header->head.store(5);  // consumed records that were never published
  auto free = ring.producer.free_slots();
  ASSERT_FALSE(free.ok());
  EXPECT_EQ(free.error().code(), ErrorCode::kDataLoss);
  EXPECT_FALSE(ring.producer.try_push(std::span<const SeqRecord>()).ok());
}

TEST(SpscRing, HeadMovingBackwardsIsDataLossAndPositionStaysPut) {
  TestRing ring(8);
  for (std::uint64_t i = 0; i < 4; ++i) ASSERT_TRUE(push_one(ring.producer, i));
  ASSERT_EQ(available(ring.consumer), 4u);
  ring.consumer.pop(3);
  EXPECT_EQ(ring.producer.consumer_position(), 3u);
  ring.header->head.store(1);
  auto free = ring.producer.free_slots();
  ASSERT_FALSE(free.ok());
  EXPECT_EQ(free.error().code(), ErrorCode::kDataLoss);
  EXPECT_EQ(ring.producer.consumer_position(), 3u);
  EXPECT_FALSE(push_one(ring.producer, 4));
}

TEST(SpscRing, WaitWakesWhenTheProducerNotifies) {
  TestRing ring(8);
  std::atomic<bool> woke{false};
  Stopwatch watch;
  std::thread consumer([&] { woke = ring.consumer.wait(0ns, 10s); });
  // Give the consumer time to fall asleep on the doorbell.
  Deadline asleep = Deadline::after(2s);
  while (ring.header->consumer_waiting.load() == 0 && !asleep.expired()) {
    std::this_thread::sleep_for(1ms);
  }
  std::this_thread::sleep_for(20ms);
  ASSERT_TRUE(push_one(ring.producer, 0));
  ring.producer.notify_consumer();
  consumer.join();
  EXPECT_TRUE(woke.load());
  EXPECT_LT(watch.elapsed(), 5s);
  EXPECT_EQ(ring.header->consumer_waiting.load(), 0u);  // awake again
  EXPECT_EQ(available(ring.consumer), 1u);
}

TEST(SpscRing, RingingTheDoorbellWithoutRecordsEndsTheWait) {
  TestRing ring(8);
  std::atomic<bool> result{true};
  Stopwatch watch;
  std::thread consumer([&] { result = ring.consumer.wait(0ns, 10s); });
  Deadline asleep = Deadline::after(2s);
  while (ring.header->consumer_waiting.load() == 0 && !asleep.expired()) {
    std::this_thread::sleep_for(1ms);
  }
  std::this_thread::sleep_for(20ms);
  wake_ring_consumer(ring.header.get());  // e.g. a stop request
  consumer.join();
  EXPECT_FALSE(result.load());
  EXPECT_LT(watch.elapsed(), 5s);
}

TEST(SpscRing, NotifyWithoutASleepingConsumerLeavesTheDoorbellAlone) {
  TestRing ring(8);
  const std::uint32_t seq_before = ring.header->wake_seq.load();
  for (std::uint64_t i = 0; i < 5; ++i) {
    ASSERT_TRUE(push_one(ring.producer, i));
    ring.producer.notify_consumer();
  }
  EXPECT_EQ(ring.header->consumer_waiting.load(), 0u);
  EXPECT_EQ(ring.header->wake_seq.load(), seq_before);  // no wake issued
  // A consumer that finds records at once never announces itself as waiting.
  EXPECT_TRUE(ring.consumer.wait(0ns, 1s));
  EXPECT_EQ(ring.header->consumer_waiting.load(), 0u);
}

TEST(SpscRing, WaitReturnsAtOnceWhenRecordsAreAlreadyThere) {
  TestRing ring(8);
  ASSERT_TRUE(push_one(ring.producer, 0));
  Stopwatch watch;
  EXPECT_TRUE(ring.consumer.wait(1s, 10s));
  EXPECT_LT(watch.elapsed(), 1s);
}

}  // namespace
}  // namespace malv::ipc
