// Access traces (the file and its contract) and their replay under lru,
// lookahead and Belady, checked against hand-computed counts and, on tiny
// traces, against an exhaustive search for the true optimum.
#include "vgpu/trace_replay.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <bit>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <functional>
#include <random>
#include <unordered_map>

#include "base/atomic_file.h"
#include "memory_trace_builder.h"
#include "vgpu/access_trace.h"

namespace malv::vgpu {
namespace {

using TraceBuilder = testing::MemoryTraceBuilder;

ReplayCounts replay(const std::vector<AccessRecord>& trace, std::uint64_t capacity,
                    ReplayPolicy policy, std::uint64_t window = kDefaultLookaheadWindowOps) {
  Result<ReplayCounts> counts = replay_access_trace(
      trace, {.capacity_bytes = capacity, .policy = policy, .window_ops = window});
  EXPECT_TRUE(counts.ok()) << counts.error().to_string();
  return counts.ok() ? counts.value() : ReplayCounts{};
}

void expect_counts(const ReplayCounts& c, std::uint64_t in, std::uint64_t out, std::uint64_t faults,
                   std::uint64_t evictions) {
  EXPECT_EQ(c.bytes_in, in);
  EXPECT_EQ(c.bytes_out, out);
  EXPECT_EQ(c.bytes_moved(), in + out);
  EXPECT_EQ(c.faults, faults);
  EXPECT_EQ(c.evictions, evictions);
}

// Three buffers of 100 bytes on a device of 200: ops write a, b, c, then read
// c, a, b. LRU spills a for c, b for a, c for b; Belady spills b (used last)
// for c and then c (never used again) for b.
std::vector<AccessRecord> three_buffers_two_slots() {
  TraceBuilder t;
  t.alloc(1, 100).alloc(2, 100).alloc(3, 100);
  t.op({}, {1}).op({}, {2}).op({}, {3}).op({3}).op({1}).op({2});
  return t.records();
}

TEST(TraceReplay, LruSpillsTheLeastRecentlyUsedBuffer) {
  expect_counts(replay(three_buffers_two_slots(), 200, ReplayPolicy::kLru), 200, 300, 2, 3);
}

TEST(TraceReplay, BeladySpillsTheBufferUsedFurthestAhead) {
  expect_counts(replay(three_buffers_two_slots(), 200, ReplayPolicy::kBelady), 100, 200, 1, 2);
}

TEST(TraceReplay, LookaheadSeesOnlyItsWindow) {
  // Window 1 at op 2: a (next use op 4) and b (op 5) are both beyond it, so
  // a goes (LRU); at op 4, b (op 5) is within it and c (never) is not: c goes.
  expect_counts(replay(three_buffers_two_slots(), 200, ReplayPolicy::kLookahead, 1), 100, 200, 1,
                2);
  // Window 0 sees nothing ahead: exactly LRU.
  expect_counts(replay(three_buffers_two_slots(), 200, ReplayPolicy::kLookahead, 0), 200, 300, 2,
                3);
  // Window 2 sees b's use at op 4 from op 2 and chooses as Belady does.
  expect_counts(replay(three_buffers_two_slots(), 200, ReplayPolicy::kLookahead, 2), 100, 200, 1,
                2);
}

TEST(TraceReplay, CleanVictimsAreDroppedAndUnwrittenBuffersCostNothing) {
  // One slot of 100 bytes. a and b are read before anyone writes them: they
  // hold zeros and come and go for free. Once a is written, evicting it
  // writes it back, and each return of a is a copy-in.
  TraceBuilder t;
  t.alloc(1, 100).alloc(2, 100);
  t.op({1}).op({2}).op({1});  // zero-filled, no copies: 2 evictions
  t.op({}, {1}).op({2});      // a dirty: written back (out 100)
  t.op({1}).op({2}).op({1});  // a copied in twice, dropped clean once
  for (ReplayPolicy p : {ReplayPolicy::kLru, ReplayPolicy::kLookahead, ReplayPolicy::kBelady}) {
    SCOPED_TRACE(replay_policy_name(p));
    expect_counts(replay(t.records(), 100, p), 200, 100, 2, 6);
  }
}

TEST(TraceReplay, FreedBuffersLeaveWithoutACopy) {
  TraceBuilder t;
  t.alloc(1, 100).alloc(2, 100);
  t.op({}, {1}).free(1).op({}, {2}).op({2});
  expect_counts(replay(t.records(), 100, ReplayPolicy::kLru), 0, 0, 0, 0);
}

TEST(TraceReplay, AnOpsBuffersArePinnedWhileItIsPlaced) {
  // 300 bytes: op 1 needs a and b (100 + 200) resident together, so c must go
  // although a is older; then op 2 brings c back, spilling a (b is pinned).
  TraceBuilder t;
  t.alloc(1, 100).alloc(2, 200).alloc(3, 100);
  t.op({}, {1}).op({}, {3}).op({1}, {2}).op({2, 3});
  expect_counts(replay(t.records(), 300, ReplayPolicy::kLru), 100, 200, 1, 2);
}

TEST(TraceReplay, AnOpLargerThanTheDeviceIsRefusedNamingTheSizes) {
  TraceBuilder t;
  t.alloc(1, 60).alloc(2, 60).op({1}).op({1, 2});
  Result<ReplayCounts> counts =
      replay_access_trace(t.records(), {.capacity_bytes = 100, .policy = ReplayPolicy::kLru});
  ASSERT_FALSE(counts.ok());
  EXPECT_EQ(counts.error().code(), ErrorCode::kResourceExhausted);
  const std::string& message = counts.error().message();
  EXPECT_NE(message.find("op 1 (record 3) touches 2 buffers of 120 bytes"), std::string::npos)
      << message;
  EXPECT_NE(message.find("capacity of 100 bytes"), std::string::npos) << message;
}

TEST(TraceReplay, NothingMovesWhenEveryAllocationFits) {
  TraceBuilder t;
  t.alloc(1, 100).alloc(2, 300).op({1}, {2}).free(2).alloc(3, 250).op({3}, {1});
  Result<TraceReplay> prepared = TraceReplay::create(t.records());
  ASSERT_TRUE(prepared.ok());
  EXPECT_EQ(prepared->peak_allocated_bytes(), 400u);
  EXPECT_EQ(prepared->largest_op_bytes(), 400u);
  EXPECT_EQ(prepared->ops(), 2u);
  EXPECT_EQ(prepared->buffers(), 3u);
  for (ReplayPolicy p : {ReplayPolicy::kLru, ReplayPolicy::kLookahead, ReplayPolicy::kBelady}) {
    Result<ReplayCounts> c = prepared->run({.capacity_bytes = 400, .policy = p});
    ASSERT_TRUE(c.ok());
    expect_counts(c.value(), 0, 0, 0, 0);
  }
}

TEST(TraceReplay, BytesOverBeladyIsOneWhenNothingMoves) {
  EXPECT_EQ(bytes_over_belady({}, {}), 1.0);
  EXPECT_EQ(bytes_over_belady({.bytes_in = 1}, {}), std::nullopt);
  EXPECT_EQ(bytes_over_belady({.bytes_in = 3, .bytes_out = 3}, {.bytes_out = 4}), 1.5);
  EXPECT_EQ(parse_replay_policy("lookahead"), ReplayPolicy::kLookahead);
  EXPECT_EQ(parse_replay_policy("mru"), std::nullopt);
}

// --- Random traces and the exhaustive optimum --------------------------------

struct RandomTrace {
  std::vector<AccessRecord> records;
  std::uint64_t capacity = 0;
};

// Ops of 1-3 buffers out of a pool; buffers are allocated just before their
// first use and sometimes freed. equal_sizes: every buffer 100 bytes, else
// 100-400. write_first: a buffer's first access writes it.
RandomTrace random_trace(std::uint32_t seed, int buffers, int ops, bool equal_sizes,
                         bool write_first, bool frees) {
  std::mt19937 rng(seed);
  auto uniform = [&](int lo, int hi) { return std::uniform_int_distribution<int>(lo, hi)(rng); };
  TraceBuilder t;
  std::vector<std::uint64_t> live;
  std::unordered_map<std::uint64_t, bool> touched;
  std::unordered_map<std::uint64_t, std::uint64_t> size;
  std::uint64_t next_id = 1000 + seed % 7;  // ids need not be dense
  std::uint64_t largest_op = 0;
  std::uint64_t allocated = 0;
  std::uint64_t peak = 0;
  for (int o = 0; o < ops; ++o) {
    const int want = uniform(1, 3);
    std::vector<std::uint64_t> chosen;
    for (int k = 0; k < want; ++k) {
      const bool fresh =
          live.empty() || (next_id < 1000u + seed % 7 + buffers && uniform(0, 2) == 0);
      std::uint64_t id;
      if (fresh) {
        id = next_id++;
        size[id] = equal_sizes ? 100 : 100 * static_cast<std::uint64_t>(uniform(1, 4));
        t.alloc(id, size[id]);
        allocated += size[id];
        peak = std::max(peak, allocated);
        live.push_back(id);
      } else {
        id = live[static_cast<std::size_t>(uniform(0, static_cast<int>(live.size()) - 1))];
      }
      if (std::find(chosen.begin(), chosen.end(), id) == chosen.end()) chosen.push_back(id);
    }
    std::vector<std::uint64_t> reads, writes;
    std::uint64_t op_bytes = 0;
    for (std::uint64_t id : chosen) {
      const bool write = (write_first && !touched[id]) || uniform(0, 9) < 3;
      touched[id] = true;
      (write ? writes : reads).push_back(id);
      op_bytes += size[id];
    }
    t.op(reads, writes);
    largest_op = std::max(largest_op, op_bytes);
    if (frees && live.size() > 2 && uniform(0, 5) == 0) {
      const std::size_t victim =
          static_cast<std::size_t>(uniform(0, static_cast<int>(live.size()) - 1));
      allocated -= size[live[victim]];
      t.free(live[victim]);
      live.erase(live.begin() + static_cast<std::ptrdiff_t>(victim));
    }
  }
  const std::uint64_t capacity =
      largest_op + (peak > largest_op
                        ? static_cast<std::uint64_t>(uniform(0, 100)) * (peak - largest_op) / 200
                        : 0);
  return {t.records(), capacity};
}

enum class Objective { kFaults, kBytesMoved };

// The true optimum by exhaustive search over every choice of victims at
// every op (demand eviction only: evicting earlier never helps, since a
// victim's cost does not change until it is next used). Same cost model as
// the replay. Up to 16 buffers; tiny traces only.
std::uint64_t exhaustive_optimum(const std::vector<AccessRecord>& trace, std::uint64_t capacity,
                                 Objective objective) {
  struct Event {
    bool free = false;
    std::uint32_t buffers = 0;  // mask
    std::uint32_t writes = 0;   // mask
  };
  std::unordered_map<std::uint64_t, int> dense;
  std::vector<std::uint64_t> bytes;
  std::vector<Event> events;
  for (std::size_t i = 0; i < trace.size(); ++i) {
    const AccessRecord& r = trace[i];
    if (r.kind == AccessKind::kAllocate) {
      dense[r.buffer_id] = static_cast<int>(bytes.size());
      bytes.push_back(r.bytes);
      continue;
    }
    const std::uint32_t bit = 1u << dense.at(r.buffer_id);
    if (r.kind == AccessKind::kFree) {
      events.push_back({.free = true, .buffers = bit});
      continue;
    }
    if (i == 0 || events.empty() || events.back().free || trace[i - 1].op_index != r.op_index ||
        !(trace[i - 1].kind == AccessKind::kRead || trace[i - 1].kind == AccessKind::kWrite)) {
      events.push_back({});
    }
    events.back().buffers |= bit;
    if (r.kind == AccessKind::kWrite) events.back().writes |= bit;
  }
  EXPECT_LE(bytes.size(), 16u);
  auto sum = [&](std::uint32_t mask) {
    std::uint64_t total = 0;
    for (; mask != 0; mask &= mask - 1)
      total += bytes[static_cast<std::size_t>(std::countr_zero(mask))];
    return total;
  };
  std::unordered_map<std::uint64_t, std::uint64_t> memo;
  std::function<std::uint64_t(std::size_t, std::uint32_t, std::uint32_t, std::uint32_t)> best =
      [&](std::size_t e, std::uint32_t resident, std::uint32_t dirty,
          std::uint32_t backed) -> std::uint64_t {
    if (e == events.size()) return 0;
    const std::uint64_t key = (std::uint64_t{e} << 48) | (std::uint64_t{resident} << 32) |
                              (std::uint64_t{dirty} << 16) | backed;
    if (auto it = memo.find(key); it != memo.end()) return it->second;
    const Event& ev = events[e];
    std::uint64_t result;
    if (ev.free) {
      result = best(e + 1, resident & ~ev.buffers, dirty & ~ev.buffers, backed & ~ev.buffers);
    } else {
      const std::uint32_t missing = ev.buffers & ~resident;
      const std::uint64_t room = capacity - sum(resident);
      const std::uint32_t candidates = resident & ~ev.buffers;
      result = std::numeric_limits<std::uint64_t>::max();
      for (std::uint32_t s = candidates;; s = (s - 1) & candidates) {
        if (room + sum(s) >= sum(missing)) {
          std::uint64_t cost = objective == Objective::kBytesMoved ? sum(s & dirty) : 0;
          const std::uint32_t b = backed | (s & dirty);
          const std::uint32_t copied_in = missing & b;
          cost += objective == Objective::kBytesMoved
                      ? sum(copied_in)
                      : static_cast<std::uint64_t>(std::popcount(copied_in));
          cost += best(e + 1, (resident & ~s) | ev.buffers, (dirty & ~s) | ev.writes, b);
          result = std::min(result, cost);
        }
        if (s == 0) break;
      }
    }
    memo[key] = result;
    return result;
  };
  return best(0, 0, 0, 0);
}

TEST(TraceReplayRandom, LookaheadWithAnInfiniteWindowIsBelady) {
  for (std::uint32_t seed = 1; seed <= 200; ++seed) {
    RandomTrace t = random_trace(seed, 12, 120, seed % 2 == 0, false, true);
    ReplayCounts belady = replay(t.records, t.capacity, ReplayPolicy::kBelady);
    ReplayCounts lookahead =
        replay(t.records, t.capacity, ReplayPolicy::kLookahead, kInfiniteWindow);
    EXPECT_EQ(lookahead.bytes_in, belady.bytes_in) << "seed " << seed;
    EXPECT_EQ(lookahead.bytes_out, belady.bytes_out) << "seed " << seed;
    EXPECT_EQ(lookahead.faults, belady.faults) << "seed " << seed;
    EXPECT_EQ(lookahead.evictions, belady.evictions) << "seed " << seed;
  }
}

TEST(TraceReplayRandom, LookaheadWithAZeroWindowIsLru) {
  for (std::uint32_t seed = 1; seed <= 100; ++seed) {
    RandomTrace t = random_trace(seed, 12, 120, false, false, true);
    ReplayCounts lru = replay(t.records, t.capacity, ReplayPolicy::kLru);
    ReplayCounts lookahead = replay(t.records, t.capacity, ReplayPolicy::kLookahead, 0);
    EXPECT_EQ(lookahead.bytes_moved(), lru.bytes_moved()) << "seed " << seed;
    EXPECT_EQ(lookahead.evictions, lru.evictions) << "seed " << seed;
  }
}

TEST(TraceReplayRandom, BeladyFaultsNoMoreThanLruOrLookaheadWithEqualSizes) {
  // MIN's theorem: equal sizes, every re-access after an eviction a fault.
  for (std::uint32_t seed = 1; seed <= 200; ++seed) {
    RandomTrace t = random_trace(seed, 16, 300, true, true, seed % 3 == 0);
    ReplayCounts belady = replay(t.records, t.capacity, ReplayPolicy::kBelady);
    for (std::uint64_t window : {std::uint64_t{0}, std::uint64_t{2}, std::uint64_t{8}}) {
      ReplayCounts lookahead = replay(t.records, t.capacity, ReplayPolicy::kLookahead, window);
      EXPECT_LE(belady.faults, lookahead.faults) << "seed " << seed << " window " << window;
      EXPECT_LE(belady.bytes_in, lookahead.bytes_in) << "seed " << seed << " window " << window;
    }
    EXPECT_LE(belady.faults, replay(t.records, t.capacity, ReplayPolicy::kLru).faults)
        << "seed " << seed;
  }
}

TEST(TraceReplayRandom, BeladyMovesFewerBytesThanLruAndLookaheadOnTheseSeeds) {
  // Not a theorem for variable sizes and write-backs (see trace_replay.h). On
  // these 200 fixed seeds Belady never moves more bytes than LRU; lookahead
  // (window 4) beats it on a few traces, by a little, and loses in all.
  int lookahead_better = 0;
  std::uint64_t belady_total = 0, lookahead_total = 0, lru_total = 0;
  for (std::uint32_t seed = 1; seed <= 200; ++seed) {
    RandomTrace t = random_trace(seed, 16, 300, false, false, seed % 3 == 0);
    ReplayCounts belady = replay(t.records, t.capacity, ReplayPolicy::kBelady);
    ReplayCounts lru = replay(t.records, t.capacity, ReplayPolicy::kLru);
    ReplayCounts lookahead = replay(t.records, t.capacity, ReplayPolicy::kLookahead, 4);
    EXPECT_LE(belady.bytes_moved(), lru.bytes_moved()) << "seed " << seed;
    if (lookahead.bytes_moved() < belady.bytes_moved()) ++lookahead_better;
    belady_total += belady.bytes_moved();
    lookahead_total += lookahead.bytes_moved();
    lru_total += lru.bytes_moved();
  }
  EXPECT_LT(belady_total, lookahead_total);
  EXPECT_LT(lookahead_total, lru_total);
  std::printf(
      "variable sizes, 200 traces: bytes moved over belady's: lru %.3f, lookahead(4) "
      "%.3f; lookahead below belady on %d traces\n",
      static_cast<double>(lru_total) / static_cast<double>(belady_total),
      static_cast<double>(lookahead_total) / static_cast<double>(belady_total), lookahead_better);
}

TEST(TraceReplayRandom, BeladyIsTheExhaustiveOptimumForFaultsWithEqualSizes) {
  double worst_bytes_ratio = 1.0;
  for (std::uint32_t seed = 1; seed <= 150; ++seed) {
    RandomTrace t = random_trace(seed, 6, 14, true, true, seed % 2 == 0);
    ReplayCounts belady = replay(t.records, t.capacity, ReplayPolicy::kBelady);
    EXPECT_EQ(belady.faults, exhaustive_optimum(t.records, t.capacity, Objective::kFaults))
        << "seed " << seed;
    const std::uint64_t best = exhaustive_optimum(t.records, t.capacity, Objective::kBytesMoved);
    EXPECT_LE(best, belady.bytes_moved());
    if (best > 0) {
      worst_bytes_ratio =
          std::max(worst_bytes_ratio, static_cast<double>(belady.bytes_moved()) / best);
    }
  }
  std::printf("equal sizes: belady bytes moved / optimum, worst of 150: %.3f\n", worst_bytes_ratio);
  ::testing::Test::RecordProperty("equal_sizes_worst_bytes_ratio",
                                  std::to_string(worst_bytes_ratio));
}

TEST(TraceReplayRandom, ReportsHowFarBeladyIsFromTheOptimumWithVariableSizes) {
  // Reported, not asserted beyond "never better than the optimum".
  double worst = 1.0, total_belady = 0, total_best = 0;
  int off = 0;
  const int traces = 150;
  for (std::uint32_t seed = 1; seed <= traces; ++seed) {
    RandomTrace t = random_trace(seed, 6, 14, false, seed % 2 == 0, seed % 3 == 0);
    ReplayCounts belady = replay(t.records, t.capacity, ReplayPolicy::kBelady);
    const std::uint64_t best = exhaustive_optimum(t.records, t.capacity, Objective::kBytesMoved);
    EXPECT_LE(best, belady.bytes_moved()) << "seed " << seed;
    total_belady += static_cast<double>(belady.bytes_moved());
    total_best += static_cast<double>(best);
    if (belady.bytes_moved() > best) ++off;
    if (best > 0) worst = std::max(worst, static_cast<double>(belady.bytes_moved()) / best);
  }
  std::printf(
      "variable sizes: belady above the optimum on %d of %d traces; bytes moved over "
      "optimum: worst %.3f, in all %.3f\n",
      off, traces, worst, total_best > 0 ? total_belady / total_best : 1.0);
  ::testing::Test::RecordProperty("variable_sizes_worst_bytes_ratio", std::to_string(worst));
}

// --- The file --------------------------------------------------------------

class TraceFile : public ::testing::Test {
 protected:
  void SetUp() override {
    char pattern[] = "/tmp/malv-trace-test-XXXXXX";
    ASSERT_NE(::mkdtemp(pattern), nullptr);
    dir_ = pattern;
    path_ = dir_ + "/vm.trace";
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  // Writes raw bytes and expects reading them to fail with `code` and a
  // message that names the file and contains `what`.
  void expect_refused(const std::vector<std::byte>& bytes, const std::string& what,
                      ErrorCode code = ErrorCode::kInvalidArgument) {
    ASSERT_TRUE(write_file_atomically(path_, bytes).ok());
    Result<std::vector<AccessRecord>> read = read_access_trace(path_);
    ASSERT_FALSE(read.ok()) << "accepted; expected: " << what;
    EXPECT_EQ(read.error().code(), code) << read.error().to_string();
    EXPECT_NE(read.error().message().find(path_), std::string::npos) << read.error().message();
    EXPECT_NE(read.error().message().find(what), std::string::npos) << read.error().message();
  }
  void expect_refused(const std::vector<AccessRecord>& records, const std::string& what) {
    expect_refused(encode_access_trace(records), what);
  }

  std::string dir_;
  std::string path_;
};

TEST_F(TraceFile, RoundTripsThroughTheWriterAndReader) {
  RandomTrace t = random_trace(7, 64, 5000, false, false, true);  // more than one write buffer
  t.records.back().time_ns = -5;                                  // signed survives
  {
    Result<std::unique_ptr<AccessTraceWriter>> writer = AccessTraceWriter::create(path_);
    ASSERT_TRUE(writer.ok()) << writer.error().to_string();
    for (const AccessRecord& r : t.records) ASSERT_TRUE((*writer)->append(r).ok());
    EXPECT_EQ((*writer)->records_appended(), t.records.size());
  }  // the destructor flushes
  Result<std::vector<AccessRecord>> read = read_access_trace(path_);
  ASSERT_TRUE(read.ok()) << read.error().to_string();
  EXPECT_EQ(read.value(), t.records);
  Result<std::vector<std::byte>> bytes = read_file(path_);
  ASSERT_TRUE(bytes.ok());
  EXPECT_EQ(bytes.value(), encode_access_trace(t.records));
}

TEST_F(TraceFile, IsLittleEndianWithTheDocumentedLayout) {
  const std::vector<AccessRecord> one = {{.op_index = 0x0102,
                                          .buffer_id = 7,
                                          .bytes = 0x10000,
                                          .time_ns = 1,
                                          .kind = AccessKind::kAllocate}};
  const std::vector<std::byte> bytes = encode_access_trace(one);
  ASSERT_EQ(bytes.size(), kAccessTraceHeaderBytes + kAccessTraceRecordBytes);
  auto at = [&](std::size_t i) { return std::to_integer<int>(bytes[i]); };
  EXPECT_EQ(std::memcmp(bytes.data(), "MALVTRC\0", 8), 0);
  EXPECT_EQ(at(8), 1);    // version
  EXPECT_EQ(at(12), 40);  // record size
  EXPECT_EQ(at(16), 0x02);
  EXPECT_EQ(at(17), 0x01);
  EXPECT_EQ(at(24), 7);
  EXPECT_EQ(at(34), 0x01);  // bytes = 0x10000
  EXPECT_EQ(at(40), 1);     // time_ns
  EXPECT_EQ(at(48), 2);     // kind
}

TEST_F(TraceFile, AnEmptyTraceIsJustTheHeader) {
  ASSERT_TRUE(AccessTraceWriter::create(path_).ok());
  Result<std::vector<AccessRecord>> read = read_access_trace(path_);
  ASSERT_TRUE(read.ok()) << read.error().to_string();
  EXPECT_TRUE(read->empty());
}

TEST_F(TraceFile, AMissingFileIsNamed) {
  Result<std::vector<AccessRecord>> read = read_access_trace(dir_ + "/nope.trace");
  ASSERT_FALSE(read.ok());
  EXPECT_NE(read.error().to_string().find("nope.trace"), std::string::npos);
}

TEST_F(TraceFile, AWriterInAMissingDirectoryFails) {
  EXPECT_FALSE(AccessTraceWriter::create(dir_ + "/no/such/dir/x.trace").ok());
}

std::vector<AccessRecord> good_trace() {
  TraceBuilder t;
  t.alloc(1, 100).alloc(2, 200).op({1}, {2}).op({2}).free(1);
  return t.records();
}

TEST_F(TraceFile, AShortHeaderIsRefused) {
  std::vector<std::byte> bytes = encode_access_trace({});
  bytes.resize(5);
  expect_refused(bytes, "shorter than the 16-byte header");
}

TEST_F(TraceFile, ABadMagicIsRefused) {
  std::vector<std::byte> bytes = encode_access_trace(good_trace());
  bytes[0] = std::byte{'X'};
  expect_refused(bytes, "bad magic");
}

TEST_F(TraceFile, AnotherVersionIsRefusedAsUnimplemented) {
  std::vector<std::byte> bytes = encode_access_trace(good_trace());
  bytes[8] = std::byte{2};
  expect_refused(bytes, "version 2 is not supported", ErrorCode::kUnimplemented);
}

TEST_F(TraceFile, AnotherRecordSizeIsRefused) {
  std::vector<std::byte> bytes = encode_access_trace(good_trace());
  bytes[12] = std::byte{48};
  expect_refused(bytes, "record size 48");
}

TEST_F(TraceFile, ATruncatedRecordIsRefusedNamingIt) {
  std::vector<std::byte> bytes = encode_access_trace(good_trace());
  bytes.resize(kAccessTraceHeaderBytes + 3 * kAccessTraceRecordBytes + 20);
  expect_refused(bytes, "record 3: truncated: 20 of 40 bytes");
}

TEST_F(TraceFile, AnUnknownKindIsRefused) {
  std::vector<std::byte> bytes = encode_access_trace(good_trace());
  bytes[kAccessTraceHeaderBytes + 2 * kAccessTraceRecordBytes + 32] = std::byte{9};
  expect_refused(bytes, "record 2: unknown kind 9");
}

TEST_F(TraceFile, NonZeroReservedBytesAreRefused) {
  std::vector<std::byte> bytes = encode_access_trace(good_trace());
  bytes[kAccessTraceHeaderBytes + kAccessTraceRecordBytes + 39] = std::byte{1};
  expect_refused(bytes, "record 1: reserved bytes are not zero");
}

TEST_F(TraceFile, AnOpIndexGoingBackwardsIsRefused) {
  std::vector<AccessRecord> r = good_trace();
  r[3].op_index = 0;  // records: alloc, alloc, op0 r1, op0 w2, op1 r2, free
  r[4].op_index = 0;
  r[2].op_index = 1;
  expect_refused(r, "record 3: op_index goes backwards: 0 after 1");
}

TEST_F(TraceFile, AnAccessToANeverAllocatedBufferIsRefused) {
  std::vector<AccessRecord> r = good_trace();
  r[4].buffer_id = 99;
  expect_refused(r, "record 4: read of buffer 99, which was never allocated");
}

TEST_F(TraceFile, AnAccessToAFreedBufferIsRefused) {
  TraceBuilder t;
  t.alloc(1, 100).op({1}).free(1).op({}, {1});
  expect_refused(t.records(), "record 3: write of buffer 1, which was freed at record 2");
}

TEST_F(TraceFile, ADoubleFreeIsRefused) {
  TraceBuilder t;
  t.alloc(1, 100).op({1}).free(1).free(1);
  expect_refused(t.records(), "record 3: free of buffer 1, which was freed at record 2");
}

TEST_F(TraceFile, AReusedBufferIdIsRefused) {
  TraceBuilder t;
  t.alloc(1, 100).op({1}).free(1).alloc(1, 100);
  expect_refused(t.records(), "record 3: buffer 1 is allocated again (first at record 0)");
}

TEST_F(TraceFile, ASizeThatDiffersFromTheAllocationIsRefused) {
  std::vector<AccessRecord> r = good_trace();
  r[4].bytes = 300;
  expect_refused(r, "record 4: buffer 2 has 300 bytes here but was allocated with 200");
}

TEST_F(TraceFile, AnOpWhoseAccessesAreNotConsecutiveIsRefused) {
  TraceBuilder t;
  t.alloc(1, 100).alloc(2, 100);
  std::vector<AccessRecord> r = t.records();
  r.push_back({.op_index = 0, .buffer_id = 1, .bytes = 100, .kind = AccessKind::kRead});
  r.push_back({.op_index = 0, .buffer_id = 3, .bytes = 50, .kind = AccessKind::kAllocate});
  r.push_back({.op_index = 0, .buffer_id = 2, .bytes = 100, .kind = AccessKind::kRead});
  expect_refused(r, "record 4: the accesses of op 0 are not consecutive");
}

TEST_F(TraceFile, AnOpNamingABufferTwiceIsRefused) {
  TraceBuilder t;
  t.alloc(1, 100).op({1}, {1});
  expect_refused(t.records(), "record 2: op 0 names buffer 1 twice (records 1 and 2)");
}

TEST(TraceReplay, AMalformedTraceInMemoryIsRefusedBeforeReplay) {
  TraceBuilder t;
  t.alloc(1, 100).op({2});
  Result<TraceReplay> replay = TraceReplay::create(t.records(), "vm-a");
  ASSERT_FALSE(replay.ok());
  EXPECT_EQ(replay.error().message(),
            "vm-a: record 1: read of buffer 2, which was never allocated");
}

}  // namespace
}  // namespace malv::vgpu
