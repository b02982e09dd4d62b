// The memory manager: a VM that allocates more device memory than it may
// hold runs to the same bytes as when everything fits, a spilled buffer
// reads back its data, an op whose buffers cannot all be resident fails
// alone, the virtual limit holds, and every byte of accounting comes back.
#include "vgpu/memory_manager.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <mutex>
#include <set>
#include <thread>
#include <vector>

#include "../accel/completion_gate.h"
#include "accel/kernel_ids.h"
#include "vgpu/trace_replay.h"
#include "vgpu/vgpu_service.h"

namespace malv::vgpu {
namespace {

constexpr std::uint64_t kKiB = 1024;
constexpr std::uint64_t kMiB = 1024 * kKiB;
constexpr std::size_t kFloats = 64 * 1024;  // 256 KiB buffers
constexpr std::size_t kBuffers = 12;        // 3 MiB in all

// Completion statuses, by cookie.
struct Statuses {
  std::mutex mutex;
  std::vector<ErrorCode> codes;
  static void record(void* context, std::uint64_t cookie, ErrorCode status) {
    auto* s = static_cast<Statuses*>(context);
    std::lock_guard lock(s->mutex);
    if (s->codes.size() <= cookie) s->codes.resize(cookie + 1, ErrorCode::kUnavailable);
    s->codes[cookie] = status;
  }
};

accel::Launch add(accel::DevicePtr a, accel::DevicePtr b, accel::DevicePtr out, std::size_t n) {
  accel::Launch launch{};
  launch.kernel = accel::kernel_id(accel::BuiltinKernel::kAdd);
  launch.argc = 4;
  const std::uint64_t bytes = n * sizeof(float);
  launch.args[0] = {.kind = accel::ArgKind::kBuffer, .ptr = a, .extent = bytes};
  launch.args[1] = {.kind = accel::ArgKind::kBuffer, .ptr = b, .extent = bytes};
  launch.args[2] = {.kind = accel::ArgKind::kBuffer, .ptr = out, .extent = bytes};
  launch.args[3] = {.kind = accel::ArgKind::kI64, .i64 = static_cast<std::int64_t>(n)};
  return launch;
}

struct TrainRun {
  std::vector<std::vector<float>> buffers;
  MemoryStats stats;
  std::vector<ErrorCode> statuses;
};

class MemoryManagerTest : public ::testing::Test {
 protected:
  // Writes kBuffers buffers, runs `rounds` of in-place adds that touch
  // them all in a ring, and reads every buffer back, as a VM with the given
  // resident quota and virtual limit.
  // With queue_all_first, the stream's first op holds its completion until
  // every other op is queued, so the manager sees all of the work ahead.
  // Prefetch is off unless asked for: what moves is then exactly the
  // replay's model, whatever the timing.
  TrainRun train(std::uint64_t resident, std::uint64_t virtual_limit, int rounds,
                 const std::string& trace_dir = "", MemoryPolicies* policies = nullptr,
                 bool queue_all_first = false, bool prefetch = false) {
    VgpuService vgpu(*device_, fifo_);
    vgpu.set_memory_policies(policies != nullptr ? policies : &lru_,
                             {.prefetch = prefetch, .trace_dir = trace_dir});
    std::unique_ptr<VmBackend> view = open_vm(vgpu, resident, virtual_limit);
    const accel::QueueId q = view->create_queue(accel::QueuePriority::kNormal).value();
    TrainRun run;
    Statuses statuses;
    std::uint64_t cookie = 0;
    auto done = [&] { return accel::Completion{&Statuses::record, &statuses, cookie++}; };
    accel::testing::CompletionGate gate;
    if (queue_all_first) {
      view->enqueue(q, accel::Marker{}, {&accel::testing::CompletionGate::hold, &gate, 0});
      gate.wait_entered();
    }

    std::vector<std::vector<float>> host(kBuffers, std::vector<float>(kFloats));
    std::vector<accel::DevicePtr> buffers;
    for (std::size_t b = 0; b < kBuffers; ++b) {
      for (std::size_t i = 0; i < kFloats; ++i) host[b][i] = float(b) + float(i % 97) * 0.25f;
      buffers.push_back(view->allocate(kFloats * sizeof(float)).value());
      view->enqueue(q, accel::CopyH2D{host[b].data(), buffers[b], kFloats * sizeof(float)}, done());
    }
    for (int r = 0; r < rounds; ++r) {
      for (std::size_t b = 0; b < kBuffers; ++b) {
        view->enqueue(q, add(buffers[b], buffers[(b + 1) % kBuffers], buffers[b], kFloats), done());
      }
    }
    run.buffers.assign(kBuffers, std::vector<float>(kFloats));
    for (std::size_t b = 0; b < kBuffers; ++b) {
      view->enqueue(q, accel::CopyD2H{buffers[b], run.buffers[b].data(), kFloats * sizeof(float)},
                    done());
    }
    if (queue_all_first) accel::testing::CompletionGate::release(&gate, 0, ErrorCode::kOk);
    view->destroy_queue(q);  // waits for all of it
    run.stats = view->vm()->memory().stats();
    for (accel::DevicePtr p : buffers) view->free(p);
    EXPECT_EQ(view->vm()->device_memory().used(), 0u);
    EXPECT_EQ(view->vm()->virtual_memory().used(), 0u);
    EXPECT_EQ(view->vm()->memory().stats().resident_bytes, 0u);
    std::lock_guard lock(statuses.mutex);
    run.statuses = statuses.codes;
    return run;
  }

  // A session of VM "vm" with the given resident quota and virtual limit.
  static std::unique_ptr<VmBackend> open_vm(VgpuService& vgpu, std::uint64_t resident,
                                            std::uint64_t virtual_limit) {
    EXPECT_TRUE(vgpu.vms()
                    .create({.name = "vm",
                             .token = "t",
                             .memory_limit = resident,
                             .virtual_memory_limit = virtual_limit})
                    .ok());
    return std::move(vgpu.open_session("vm", "t")).value();
  }

  std::unique_ptr<accel::Backend> device_ =
      accel::make_cpu_backend({.memory_bytes = 64 * kMiB, .workers = 2});
  FifoPolicies fifo_;
  LruMemoryPolicies lru_;
};

TEST_F(MemoryManagerTest, SpillingRunGivesTheSameBytesAsTheRunThatFits) {
  const std::uint64_t baseline = device_->memory_in_use();
  const TrainRun fits = train(/*resident=*/16 * kMiB, /*virtual=*/0, /*rounds=*/3);
  const TrainRun spills = train(/*resident=*/1 * kMiB, /*virtual=*/8 * kMiB, /*rounds=*/3);
  for (ErrorCode code : fits.statuses) EXPECT_EQ(code, ErrorCode::kOk);
  for (ErrorCode code : spills.statuses) EXPECT_EQ(code, ErrorCode::kOk);
  ASSERT_EQ(fits.buffers.size(), spills.buffers.size());
  for (std::size_t b = 0; b < kBuffers; ++b) {
    ASSERT_EQ(
        std::memcmp(fits.buffers[b].data(), spills.buffers[b].data(), kFloats * sizeof(float)), 0)
        << "buffer " << b;
  }
  // The run that fits moves nothing; the one that does not spills and refills.
  EXPECT_EQ(fits.stats.bytes_in + fits.stats.bytes_out + fits.stats.evictions, 0u);
  EXPECT_GT(spills.stats.evictions, 0u);
  EXPECT_GT(spills.stats.bytes_out, 0u);
  EXPECT_GT(spills.stats.bytes_in, 0u);
  EXPECT_EQ(spills.stats.faults * kFloats * sizeof(float), spills.stats.bytes_in);
  EXPECT_EQ(spills.stats.prefetches, 0u);
  EXPECT_EQ(spills.stats.failed_placements, 0u);
  EXPECT_EQ(device_->memory_in_use(), baseline);
}

TEST_F(MemoryManagerTest, TheFirstRoundMatchesWhatTheHostComputes) {
  const TrainRun spills = train(/*resident=*/1 * kMiB, /*virtual=*/8 * kMiB, /*rounds=*/1);
  // Round 1 in order: b[i] += b[i+1] for i = 0..n-2 (b[i+1] not yet
  // updated), then b[n-1] += b[0] (already updated).
  std::vector<std::vector<float>> expect(kBuffers, std::vector<float>(kFloats));
  for (std::size_t b = 0; b < kBuffers; ++b) {
    for (std::size_t i = 0; i < kFloats; ++i) expect[b][i] = float(b) + float(i % 97) * 0.25f;
  }
  for (std::size_t b = 0; b < kBuffers; ++b) {
    for (std::size_t i = 0; i < kFloats; ++i) expect[b][i] += expect[(b + 1) % kBuffers][i];
  }
  for (std::size_t b = 0; b < kBuffers; ++b) {
    for (std::size_t i = 0; i < kFloats; i += 997) {
      ASSERT_EQ(spills.buffers[b][i], expect[b][i]) << "buffer " << b << " element " << i;
    }
  }
}

TEST_F(MemoryManagerTest, TheAccessTraceOfASpillingRunReplays) {
  char dir[] = "/tmp/malv-memory-trace-XXXXXX";
  ASSERT_NE(::mkdtemp(dir), nullptr);
  const TrainRun spills = train(1 * kMiB, 8 * kMiB, /*rounds=*/2, dir);
  const std::string path = std::string(dir) + "/vm.trace";
  Result<std::vector<AccessRecord>> trace = read_access_trace(path);
  std::remove(path.c_str());
  ::rmdir(dir);
  ASSERT_TRUE(trace.ok()) << trace.error().to_string();
  // 12 allocations, 12 writes, 2 x 12 adds of 2 buffers, 12 reads, 12 frees.
  std::size_t allocations = 0, frees = 0, accesses = 0;
  for (const AccessRecord& r : trace.value()) {
    allocations += r.kind == AccessKind::kAllocate;
    frees += r.kind == AccessKind::kFree;
    accesses += r.kind == AccessKind::kRead || r.kind == AccessKind::kWrite;
  }
  EXPECT_EQ(allocations, kBuffers);
  EXPECT_EQ(frees, kBuffers);
  EXPECT_EQ(accesses, kBuffers + 2 * 2 * kBuffers + kBuffers);
  Result<ReplayCounts> belady = replay_access_trace(trace.value(), {.capacity_bytes = 1 * kMiB});
  ASSERT_TRUE(belady.ok()) << belady.error().to_string();
  EXPECT_GT(belady->faults, 0u);
  // What the manager moved, against the optimum on its own trace.
  std::printf("bytes moved: manager (lru) %llu, belady %llu\n",
              static_cast<unsigned long long>(spills.stats.bytes_in + spills.stats.bytes_out),
              static_cast<unsigned long long>(belady->bytes_moved()));
}

// Under LRU the manager moves exactly what the replay of LRU moves on the
// trace it recorded: the live bookkeeping (dirty, backed, LRU order within a
// batch) is the replay's model.
TEST_F(MemoryManagerTest, LiveLruMovesExactlyWhatTheReplayOfItsTraceMoves) {
  char dir[] = "/tmp/malv-memory-trace-XXXXXX";
  ASSERT_NE(::mkdtemp(dir), nullptr);
  const TrainRun spills = train(1 * kMiB, 8 * kMiB, /*rounds=*/4, dir);
  const std::string path = std::string(dir) + "/vm.trace";
  Result<std::vector<AccessRecord>> trace = read_access_trace(path);
  std::remove(path.c_str());
  ::rmdir(dir);
  ASSERT_TRUE(trace.ok()) << trace.error().to_string();
  Result<ReplayCounts> lru = replay_access_trace(
      trace.value(), {.capacity_bytes = 1 * kMiB, .policy = ReplayPolicy::kLru});
  ASSERT_TRUE(lru.ok()) << lru.error().to_string();
  EXPECT_GT(lru->faults, 0u);
  EXPECT_EQ(spills.stats.bytes_in, lru->bytes_in);
  EXPECT_EQ(spills.stats.bytes_out, lru->bytes_out);
  EXPECT_EQ(spills.stats.faults, lru->faults);
}

// Furthest next use first among the queued, least recently used first among
// the rest and at equal distance: what the replay's lookahead does.
class FurthestNextUse final : public MemoryPolicies {
 public:
  bool score(std::string_view, std::span<const malv_memory_observation> candidates,
             std::span<double> scores) override {
    for (std::size_t i = 0; i < candidates.size(); ++i) {
      const double age = static_cast<double>(std::max<std::int64_t>(candidates[i].age_ns, 0));
      if (candidates[i].next_use_ops == MALV_MEMORY_NOT_QUEUED) {
        scores[i] = 1e15 + age;  // above every queued one, exact to the ns below 1e5 s
      } else {
        // ages below 1000 s only break ties
        scores[i] = static_cast<double>(candidates[i].next_use_ops) + age / 1e12;
      }
    }
    return false;
  }
  void feedback(std::string_view, const malv_memory_outcome&) override {}
};

// With all of the work queued ahead, furthest-next-use eviction moves what
// Belady's replay of the same trace moves, to the byte. The batch that is
// placed holds the ring's buffers that Belady evicts first (just used, next
// needed a round later): the manager must not choose while they are pinned.
TEST_F(MemoryManagerTest, WithAllWorkQueuedLookaheadMovesWhatBeladyMoves) {
  char dir[] = "/tmp/malv-memory-trace-XXXXXX";
  ASSERT_NE(::mkdtemp(dir), nullptr);
  FurthestNextUse lookahead;
  const TrainRun spills = train(2 * kMiB, 8 * kMiB, /*rounds=*/4, dir, &lookahead,
                                /*queue_all_first=*/true);
  const std::string path = std::string(dir) + "/vm.trace";
  Result<std::vector<AccessRecord>> trace = read_access_trace(path);
  std::remove(path.c_str());
  ::rmdir(dir);
  ASSERT_TRUE(trace.ok()) << trace.error().to_string();
  for (ErrorCode code : spills.statuses) EXPECT_EQ(code, ErrorCode::kOk);
  Result<ReplayCounts> belady = replay_access_trace(trace.value(), {.capacity_bytes = 2 * kMiB});
  ASSERT_TRUE(belady.ok()) << belady.error().to_string();
  EXPECT_GT(belady->faults, 0u);
  EXPECT_EQ(spills.stats.bytes_in, belady->bytes_in);
  EXPECT_EQ(spills.stats.bytes_out, belady->bytes_out);
}

// With prefetch on, spilled buffers come back ahead of their use while the
// batch before runs: the bytes are the same as when everything fits, every
// fill is either a fault or a prefetch, and prefetched buffers get used.
TEST_F(MemoryManagerTest, PrefetchKeepsTheBytesAndItsFillsGetUsed) {
  FurthestNextUse lookahead;
  const TrainRun fits = train(/*resident=*/16 * kMiB, /*virtual=*/0, /*rounds=*/4);
  constexpr int kAttempts = 20;  // about 20 ms each; a loaded machine missed three in a row
  for (int attempt = 0; attempt < kAttempts; ++attempt) {
    const TrainRun spills = train(2 * kMiB, 8 * kMiB, /*rounds=*/4, "", &lookahead,
                                  /*queue_all_first=*/true, /*prefetch=*/true);
    for (ErrorCode code : spills.statuses) EXPECT_EQ(code, ErrorCode::kOk);
    for (std::size_t b = 0; b < kBuffers; ++b) {
      ASSERT_EQ(
          std::memcmp(fits.buffers[b].data(), spills.buffers[b].data(), kFloats * sizeof(float)), 0)
          << "buffer " << b;
    }
    EXPECT_EQ((spills.stats.faults + spills.stats.prefetches) * kFloats * sizeof(float),
              spills.stats.bytes_in);
    EXPECT_LE(spills.stats.prefetch_hits, spills.stats.prefetches);
    // The prefetch thread needs a batch running to work beside: on a
    // machine loaded enough, every batch may end before it starts.
    if (spills.stats.prefetch_hits > 0) return;
  }
  ADD_FAILURE() << kAttempts << " runs without a prefetch hit";
}

// Lending: a 6 MiB device, a borrower (quota 1 MiB, 8 MiB virtual) and an
// owner (quota 4 MiB), a session each and a queue of the borrower's.
class MemoryLending : public ::testing::Test {
 protected:
  void SetUp() override {
    vgpu.set_memory_policies(&lru, {.lend = true, .prefetch = false});
    ASSERT_TRUE(vgpu.vms()
                    .create({.name = "borrower",
                             .token = "t",
                             .memory_limit = 1 * kMiB,
                             .virtual_memory_limit = 8 * kMiB})
                    .ok());
    ASSERT_TRUE(vgpu.vms().create({.name = "owner", .token = "t", .memory_limit = 4 * kMiB}).ok());
    borrower = vgpu.open_session("borrower", "t").value();
    owner = vgpu.open_session("owner", "t").value();
    q = borrower->create_queue(accel::QueuePriority::kNormal).value();
  }

  std::unique_ptr<accel::Backend> device =
      accel::make_cpu_backend({.memory_bytes = 6 * kMiB, .workers = 2});
  FifoPolicies fifo;
  LruMemoryPolicies lru;
  VgpuService vgpu{*device, fifo};
  std::unique_ptr<VmBackend> borrower;
  std::unique_ptr<VmBackend> owner;
  accel::QueueId q;
};

// Lending: an oversubscribed VM borrows device memory nobody uses (here a
// 6 MiB device whose other VM, quota 4 MiB, is idle) and spills nothing;
// when the owner allocates its guarantee while the borrower trains, the
// borrowed buffers are evicted (and written back) for it. Neither loses a
// byte: the owner reads back what it wrote, the borrower's ring of adds
// ends where the host's own arithmetic does.
TEST_F(MemoryLending, BorrowedMemoryIsTakenBackForItsOwnerUnderLoadAndNoDataIsLost) {
  Statuses statuses;
  std::uint64_t cookie = 0;
  auto done = [&] { return accel::Completion{&Statuses::record, &statuses, cookie++}; };

  // The initial values (read by the copies when they run) and the host's
  // running result, kept apart.
  std::vector<std::vector<float>> initial(kBuffers, std::vector<float>(kFloats));
  std::vector<accel::DevicePtr> buffers;
  for (std::size_t b = 0; b < kBuffers; ++b) {
    for (std::size_t i = 0; i < kFloats; ++i) initial[b][i] = float(b) + float(i % 97) * 0.25f;
    buffers.push_back(borrower->allocate(kFloats * sizeof(float)).value());
    borrower->enqueue(q, accel::CopyH2D{initial[b].data(), buffers[b], kFloats * sizeof(float)},
                      done());
  }
  std::vector<std::vector<float>> expect = initial;
  auto ring = [&](int rounds) {
    for (int r = 0; r < rounds; ++r) {
      for (std::size_t b = 0; b < kBuffers; ++b) {
        borrower->enqueue(q, add(buffers[b], buffers[(b + 1) % kBuffers], buffers[b], kFloats),
                          done());
        for (std::size_t i = 0; i < kFloats; ++i) expect[b][i] += expect[(b + 1) % kBuffers][i];
      }
    }
  };
  ring(2);
  borrower->synchronize_all();
  Vm& vm = *borrower->vm();
  MemoryStats before = vm.memory().stats();
  EXPECT_EQ(before.evictions, 0u) << "3 MiB fit on the idle device: nothing to spill";
  EXPECT_EQ(before.borrowed_bytes, 2 * kMiB);
  EXPECT_EQ(vgpu.ledger().borrowed_bytes(), 2 * kMiB);

  // The owner takes its 4 MiB while the borrower's next rounds run.
  ring(30);
  auto owned = owner->allocate(4 * kMiB);
  ASSERT_TRUE(owned.ok()) << owned.error().to_string();
  const accel::QueueId oq = owner->create_queue(accel::QueuePriority::kNormal).value();
  std::vector<std::uint8_t> mine(4 * kMiB), back(4 * kMiB);
  for (std::size_t i = 0; i < mine.size(); ++i) mine[i] = static_cast<std::uint8_t>(i * 7 + 3);
  owner->enqueue(oq, accel::CopyH2D{mine.data(), owned.value(), mine.size()}, {});
  ring(10);
  owner->enqueue(oq, accel::CopyD2H{owned.value(), back.data(), back.size()}, {});
  owner->destroy_queue(oq);
  EXPECT_EQ(mine, back);

  std::vector<std::vector<float>> got(kBuffers, std::vector<float>(kFloats));
  for (std::size_t b = 0; b < kBuffers; ++b) {
    borrower->enqueue(q, accel::CopyD2H{buffers[b], got[b].data(), kFloats * sizeof(float)},
                      done());
  }
  borrower->destroy_queue(q);
  for (std::size_t b = 0; b < kBuffers; ++b) {
    ASSERT_EQ(std::memcmp(got[b].data(), expect[b].data(), kFloats * sizeof(float)), 0)
        << "buffer " << b;
  }
  {
    std::lock_guard lock(statuses.mutex);
    for (ErrorCode code : statuses.codes) EXPECT_EQ(code, ErrorCode::kOk);
  }
  const MemoryStats after = vm.memory().stats();
  // How much went back through the ledger's reclaim (and how much the
  // borrower evicted itself once lending closed) depends on what was in
  // flight when the owner asked: only the sum is fixed. The idle case below
  // pins the reclaim down.
  EXPECT_EQ(vgpu.ledger().reclaimed_bytes(), after.bytes_reclaimed);
  EXPECT_LE(after.borrowed_bytes, 1 * kMiB) << "6 MiB less the owner's 4 and its own 1";
  EXPECT_GT(after.evictions, 0u);
  EXPECT_EQ(after.resident_bytes + after.spilled_bytes, kBuffers * kFloats * sizeof(float));
  owner->free(owned.value());
  for (accel::DevicePtr p : buffers) borrower->free(p);
  EXPECT_EQ(vgpu.ledger().borrowed_bytes(), 0u);
  EXPECT_EQ(vm.device_memory().used(), 0u);
}

// The same lending with the borrower idle: the owner's 4 MiB take back
// exactly what the device lacks (1 MiB, four buffers) through the ledger.
TEST_F(MemoryLending, AnIdleBorrowerGivesBackExactlyWhatTheOwnerLacks) {
  std::vector<std::vector<float>> data(kBuffers, std::vector<float>(kFloats));
  std::vector<accel::DevicePtr> buffers;
  for (std::size_t b = 0; b < kBuffers; ++b) {
    for (std::size_t i = 0; i < kFloats; ++i) data[b][i] = float(b) * 3.0f + float(i % 89);
    buffers.push_back(borrower->allocate(kFloats * sizeof(float)).value());
    borrower->enqueue(q, accel::CopyH2D{data[b].data(), buffers[b], kFloats * sizeof(float)}, {});
  }
  borrower->synchronize_all();
  Vm& vm = *borrower->vm();
  ASSERT_EQ(vm.memory().stats().borrowed_bytes, 2 * kMiB);

  auto owned = owner->allocate(4 * kMiB);
  ASSERT_TRUE(owned.ok()) << owned.error().to_string();
  const accel::QueueId oq = owner->create_queue(accel::QueuePriority::kNormal).value();
  std::vector<std::uint8_t> mine(4 * kMiB, 0x5a), back(4 * kMiB);
  owner->enqueue(oq, accel::CopyH2D{mine.data(), owned.value(), mine.size()}, {});
  owner->enqueue(oq, accel::CopyD2H{owned.value(), back.data(), back.size()}, {});
  owner->synchronize_all();
  EXPECT_EQ(mine, back);
  EXPECT_EQ(vm.memory().stats().bytes_reclaimed, 1 * kMiB);
  EXPECT_EQ(vgpu.ledger().reclaimed_bytes(), 1 * kMiB);
  EXPECT_EQ(vm.memory().stats().borrowed_bytes, 1 * kMiB);

  // Nothing of the borrower's was lost: the evicted buffers come back.
  for (std::size_t b = 0; b < kBuffers; ++b) {
    std::vector<float> got(kFloats);
    borrower->enqueue(q, accel::CopyD2H{buffers[b], got.data(), kFloats * sizeof(float)}, {});
    borrower->synchronize_all();
    EXPECT_EQ(got, data[b]) << "buffer " << b;
  }
  owner->destroy_queue(oq);
  borrower->destroy_queue(q);
  owner->free(owned.value());
  for (accel::DevicePtr p : buffers) borrower->free(p);
}

// LRU that remembers which buffers it was offered.
class RecordingLru final : public MemoryPolicies {
 public:
  bool score(std::string_view vm, std::span<const malv_memory_observation> candidates,
             std::span<double> scores) override {
    for (const malv_memory_observation& o : candidates) offered.insert(o.buffer_id);
    return lru.score(vm, candidates, scores);
  }
  void feedback(std::string_view, const malv_memory_outcome&) override {}
  LruMemoryPolicies lru;
  std::set<std::uint64_t> offered;
};

// A host-owned buffer held resident (the data pipeline's staged slot) is
// never an eviction candidate; holds stop at half the resident quota, which
// must leave room for the ops' own buffers; the run's bytes are unchanged.
TEST_F(MemoryManagerTest, AHeldBufferIsNeverEvictedAndHoldsStopAtHalfTheQuota) {
  RecordingLru policy;
  VgpuService vgpu(*device_, fifo_);
  vgpu.set_memory_policies(&policy, {.prefetch = false});
  std::unique_ptr<VmBackend> view = open_vm(vgpu, 1 * kMiB, 8 * kMiB);
  const accel::QueueId q = view->create_queue(accel::QueuePriority::kNormal).value();
  std::vector<std::vector<float>> host(kBuffers, std::vector<float>(kFloats));
  std::vector<accel::DevicePtr> buffers;
  for (std::size_t b = 0; b < kBuffers; ++b) {
    buffers.push_back(view->allocate(kFloats * sizeof(float)).value());
  }
  // Two of the quota's four 256 KiB: granted (before any op, so before they
  // are resident); a third would pass half.
  EXPECT_TRUE(view->hold_resident(buffers[0]));
  EXPECT_TRUE(view->hold_resident(buffers[1]));
  EXPECT_FALSE(view->hold_resident(buffers[2]));
  for (std::size_t b = 0; b < kBuffers; ++b) {
    for (std::size_t i = 0; i < kFloats; ++i) host[b][i] = float(b) + float(i % 97) * 0.25f;
    view->enqueue(q, accel::CopyH2D{host[b].data(), buffers[b], kFloats * sizeof(float)}, {});
  }
  for (int r = 0; r < 3; ++r) {
    for (std::size_t b = 0; b < kBuffers; ++b) {
      view->enqueue(q, add(buffers[b], buffers[(b + 1) % kBuffers], buffers[b], kFloats), {});
    }
  }
  std::vector<std::vector<float>> got(kBuffers, std::vector<float>(kFloats));
  for (std::size_t b = 0; b < kBuffers; ++b) {
    view->enqueue(q, accel::CopyD2H{buffers[b], got[b].data(), kFloats * sizeof(float)}, {});
  }
  view->destroy_queue(q);
  EXPECT_GT(view->vm()->memory().stats().evictions, 0u);
  EXPECT_EQ(policy.offered.count(MemoryManager::buffer_id(buffers[0])), 0u);
  EXPECT_EQ(policy.offered.count(MemoryManager::buffer_id(buffers[1])), 0u);
  EXPECT_EQ(policy.offered.count(MemoryManager::buffer_id(buffers[2])), 1u);
  const TrainRun fits = train(/*resident=*/16 * kMiB, /*virtual=*/0, /*rounds=*/3);
  for (std::size_t b = 0; b < kBuffers; ++b) {
    ASSERT_EQ(std::memcmp(fits.buffers[b].data(), got[b].data(), kFloats * sizeof(float)), 0)
        << "buffer " << b;
  }
  view->release_resident(buffers[0]);
  view->release_resident(buffers[1]);
  EXPECT_TRUE(view->hold_resident(buffers[2]));  // room again
  view->release_resident(buffers[2]);
  for (accel::DevicePtr p : buffers) view->free(p);
}

// A trace that cannot be written is logged and dropped; the VM runs on.
TEST_F(MemoryManagerTest, AnUnwritableTraceDirectoryDoesNotStopTheVm) {
  const TrainRun spills = train(1 * kMiB, 8 * kMiB, /*rounds=*/1, "/nonexistent/malv-traces");
  for (ErrorCode code : spills.statuses) EXPECT_EQ(code, ErrorCode::kOk);
  EXPECT_GT(spills.stats.evictions, 0u);
}

TEST_F(MemoryManagerTest, AnOpWhoseBuffersCannotAllBeResidentFailsAlone) {
  VgpuService vgpu(*device_, fifo_);
  std::unique_ptr<VmBackend> view = open_vm(vgpu, 1 * kMiB, 4 * kMiB);
  const accel::QueueId q = view->create_queue(accel::QueuePriority::kNormal).value();
  const accel::DevicePtr a = view->allocate(768 * kKiB).value();
  const accel::DevicePtr b = view->allocate(768 * kKiB).value();
  std::vector<std::uint8_t> out(768 * kKiB, 1);
  Statuses statuses;
  view->enqueue(q, accel::Memset{a, 7, 768 * kKiB}, {&Statuses::record, &statuses, 0});
  view->enqueue(q, accel::CopyD2D{a, b, 768 * kKiB}, {&Statuses::record, &statuses, 1});
  view->enqueue(q, accel::CopyD2H{a, out.data(), 768 * kKiB}, {&Statuses::record, &statuses, 2});
  view->enqueue(q, accel::CopyD2H{b, out.data(), 16}, {&Statuses::record, &statuses, 3});
  view->destroy_queue(q);
  ASSERT_EQ(statuses.codes.size(), 4u);
  EXPECT_EQ(statuses.codes[0], ErrorCode::kOk);
  EXPECT_EQ(statuses.codes[1], ErrorCode::kResourceExhausted);  // 1.5 MiB at once
  EXPECT_EQ(statuses.codes[2], ErrorCode::kOk);
  EXPECT_EQ(statuses.codes[3], ErrorCode::kOk);
  // a kept its 7s through the eviction that made room for b, which still holds zeros.
  EXPECT_EQ(out[0], 0u);  // the last read (of b) wrote the first 16 bytes only
  EXPECT_EQ(out[15], 0u);
  EXPECT_EQ(out[16], 7u);
  EXPECT_EQ(out[768 * kKiB - 1], 7u);
  EXPECT_EQ(view->vm()->memory().stats().failed_placements, 1u);
  view->free(a);
  view->free(b);
  EXPECT_EQ(view->vm()->device_memory().used(), 0u);
}

// A stream whose op needs room that an op in flight pins waits (it is not
// failed), runs once that op ends, and is aborted if its session ends first.
TEST_F(MemoryManagerTest, AnOpWaitsForRoomPinnedByAnotherStreamThenRunsOrIsCancelled) {
  for (const bool cancel : {false, true}) {
    VgpuService vgpu(*device_, fifo_, {.device_slots = 2});
    std::unique_ptr<VmBackend> view = open_vm(vgpu, 1 * kMiB, 4 * kMiB);
    const accel::QueueId q1 = view->create_queue(accel::QueuePriority::kNormal).value();
    const accel::QueueId q2 = view->create_queue(accel::QueuePriority::kNormal).value();
    const accel::DevicePtr a = view->allocate(768 * kKiB).value();
    const accel::DevicePtr b = view->allocate(768 * kKiB).value();
    accel::testing::CompletionGate gate;
    Statuses statuses;
    // a stays pinned while the gate holds its op's completion.
    view->enqueue(q1, accel::Memset{a, 1, 768 * kKiB},
                  {&accel::testing::CompletionGate::hold, &gate, 0});
    gate.wait_entered();
    view->enqueue(q2, accel::Memset{b, 2, 768 * kKiB}, {&Statuses::record, &statuses, 0});
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    {
      std::lock_guard lock(statuses.mutex);
      EXPECT_TRUE(statuses.codes.empty()) << "b's op ran or failed while a was pinned";
    }
    if (cancel) view->cancel_queue(q2);
    accel::testing::CompletionGate::release(&gate, 0, ErrorCode::kOk);
    view->destroy_queue(q1);
    view->destroy_queue(q2);
    ASSERT_EQ(statuses.codes.size(), 1u);
    EXPECT_EQ(statuses.codes[0], cancel ? ErrorCode::kAborted : ErrorCode::kOk);
    EXPECT_EQ(view->vm()->memory().stats().failed_placements, 0u);
    view->free(a);
    view->free(b);
    EXPECT_EQ(view->vm()->device_memory().used(), 0u);
  }
}

TEST_F(MemoryManagerTest, AllocationPastTheVirtualLimitIsRefusedNamingIt) {
  VgpuService vgpu(*device_, fifo_);
  std::unique_ptr<VmBackend> view = open_vm(vgpu, 1 * kMiB, 2 * kMiB);
  const accel::DevicePtr a = view->allocate(2 * kMiB).value();
  Result<accel::DevicePtr> over = view->allocate(1);
  ASSERT_FALSE(over.ok());
  EXPECT_EQ(over.error().code(), ErrorCode::kResourceExhausted);
  EXPECT_NE(over.error().message().find("virtual memory limit"), std::string::npos)
      << over.error().message();
  EXPECT_NE(over.error().message().find("2097152"), std::string::npos) << over.error().message();
  // Virtual until used: nothing is resident yet.
  EXPECT_EQ(view->vm()->device_memory().used(), 0u);
  EXPECT_EQ(view->vm()->virtual_memory().used(), 2 * kMiB);
  view->free(a);
  EXPECT_EQ(view->vm()->virtual_memory().used(), 0u);
}

TEST_F(MemoryManagerTest, WithoutOversubscriptionBuffersAreDeviceMemoryAsBefore) {
  VgpuService vgpu(*device_, fifo_);
  ASSERT_TRUE(vgpu.vms().create({.name = "vm", .token = "t", .memory_limit = 1 * kMiB}).ok());
  std::unique_ptr<VmBackend> view = std::move(vgpu.open_session("vm", "t")).value();
  const accel::DevicePtr a = view->allocate(kMiB).value();
  EXPECT_FALSE(MemoryManager::is_virtual(a));
  EXPECT_EQ(view->vm()->device_memory().used(), kMiB);
  EXPECT_FALSE(view->allocate(1).ok());  // the quota is a cap
  view->free(a);
}

}  // namespace
}  // namespace malv::vgpu
