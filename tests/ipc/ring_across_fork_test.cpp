// The ring across a real process boundary: a forked child produces into a
// ring in a SharedRegion, the parent consumes, as guest and host do.
#include <gtest/gtest.h>
#include <sched.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>

#include "base/clock.h"
#include "ipc/shared_region.h"
#include "ipc/spsc_ring.h"
#include "ring_test_util.h"

namespace malv::ipc {
namespace {

using namespace std::chrono_literals;
using testing::make_record;
using testing::record_intact;
using testing::SeqRecord;

constexpr std::uint32_t kCapacity = 64;
constexpr std::uint64_t kRecords = 200'000;

// The child must not return into gtest: it reports through its exit code.
[[noreturn]] void produce_in_child(RingHeader* header, SeqRecord* slots) {
  RingProducer<SeqRecord> producer(header, slots, kCapacity);
  std::uint64_t seq = 0;
  SeqRecord batch[3];
  while (seq < kRecords) {
    auto n = static_cast<std::uint32_t>(std::min<std::uint64_t>(seq % 3 + 1, kRecords - seq));
    for (std::uint32_t i = 0; i < n; ++i) batch[i] = make_record(seq + i);
    auto pushed = producer.try_push(std::span<const SeqRecord>(batch, n));
    if (!pushed.ok()) _exit(2);
    if (*pushed) {
      seq += n;
      producer.notify_consumer();
    } else {
      sched_yield();
    }
  }
  _exit(0);
}

TEST(RingAcrossFork, ChildProducesAndParentConsumesEveryRecordIntact) {
  const std::size_t bytes = 4096 + kCapacity * sizeof(SeqRecord);
  auto region = SharedRegion::create("malv-ipc-fork-test", bytes);
  ASSERT_TRUE(region.ok()) << region.error().to_string();
  auto* header = reinterpret_cast<RingHeader*>(region->data());
  auto* slots = reinterpret_cast<SeqRecord*>(region->data() + 4096);
  initialize_ring_header(header);

  pid_t child = fork();
  ASSERT_GE(child, 0);
  if (child == 0) produce_in_child(header, slots);

  RingConsumer<SeqRecord> consumer(header, slots, kCapacity);
  std::uint64_t expected = 0, bad = 0;
  Deadline give_up = Deadline::after(60s);
  while (expected < kRecords && !give_up.expired()) {
    if (!consumer.wait(20us, 1s)) continue;
    auto n = consumer.available();
    ASSERT_TRUE(n.ok()) << n.error().to_string();
    for (std::uint32_t i = 0; i < *n; ++i) {
      if (!record_intact(consumer.read(i), expected + i)) ++bad;
    }
    consumer.pop(*n);
    expected += *n;
  }
  if (expected < kRecords) ::kill(child, SIGKILL);  // stuck: don't leave it spinning
  int status = 0;
  ASSERT_EQ(waitpid(child, &status, 0), child);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "child status " << status;
  EXPECT_EQ(expected, kRecords);
  EXPECT_EQ(bad, 0u);
}

}  // namespace
}  // namespace malv::ipc
