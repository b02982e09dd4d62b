// The CPU backend: the conformance suite, plus what only the CPU backend
// promises (scheduling with a given number of workers, enqueue throughput).
#include <condition_variable>
#include <cstdio>
#include <mutex>
#include <thread>

#include "backend_conformance.h"
#include "base/clock.h"
#include "completion_gate.h"

namespace malv::accel::testing {
namespace {

std::unique_ptr<Backend> make_cpu() {
  // Small capacity, so the capacity tests allocate little; more workers than
  // the CI machine's cores, so queues really run concurrently.
  return make_cpu_backend(CpuBackendOptions{.memory_bytes = 64 << 20, .workers = 4});
}
std::unique_ptr<Backend> make_cpu_single_worker() {
  return make_cpu_backend(CpuBackendOptions{.memory_bytes = 64 << 20, .workers = 1});
}

INSTANTIATE_TEST_SUITE_P(Cpu, BackendConformance,
                         ::testing::Values(BackendFactory{"cpu", &make_cpu},
                                           BackendFactory{"cpu_one_worker",
                                                          &make_cpu_single_worker}),
                         backend_factory_name);
INSTANTIATE_TEST_SUITE_P(Cpu, KernelConformance,
                         ::testing::Values(BackendFactory{"cpu", &make_cpu}), backend_factory_name);

TEST(CpuBackend, DefaultsGiveAtLeastOneWorkerAndNonZeroCapacity) {
  auto backend = make_cpu_backend({});
  DeviceInfo info = backend->info();
  EXPECT_EQ(info.backend, "cpu");
  EXPECT_GE(info.compute_units, 1u);
  EXPECT_GT(info.total_memory, 0u);
}

TEST(CpuBackend, AllocationPastCapacityNamesRequestedUsedAndCapacity) {
  auto backend = make_cpu_backend(CpuBackendOptions{.memory_bytes = 1000, .workers = 1});
  DevicePtr held = *backend->allocate(600);
  auto failed = backend->allocate(500);
  ASSERT_FALSE(failed.ok());
  EXPECT_EQ(failed.error().code(), ErrorCode::kResourceExhausted);
  const std::string& message = failed.error().message();
  EXPECT_NE(message.find("500"), std::string::npos) << message;
  EXPECT_NE(message.find("600"), std::string::npos) << message;
  EXPECT_NE(message.find("1000"), std::string::npos) << message;
  backend->free(held);
  EXPECT_TRUE(backend->allocate(1000).ok());
}

TEST(CpuBackend, EnqueueOnUnknownQueueReportsNotFound) {
  auto backend = make_cpu_backend(CpuBackendOptions{.memory_bytes = 1 << 20, .workers = 1});
  CompletionLog log;
  backend->enqueue(QueueId{999}, Marker{}, log.completion(5));
  EXPECT_EQ(log.entries(),
            (std::vector<std::pair<std::uint64_t, ErrorCode>>{{5, ErrorCode::kNotFound}}));
}

TEST(CpuBackend, EnqueueManyOnUnknownQueueReportsEveryOpNotFound) {
  auto backend = make_cpu_backend(CpuBackendOptions{.memory_bytes = 1 << 20, .workers = 1});
  CompletionLog log;
  std::vector<Op> ops(3, Marker{});
  backend->enqueue_many(QueueId{999}, ops, log.completion(7));
  EXPECT_EQ(log.entries(),
            (std::vector<std::pair<std::uint64_t, ErrorCode>>{
                {7, ErrorCode::kNotFound}, {8, ErrorCode::kNotFound}, {9, ErrorCode::kNotFound}}));
}

TEST(CpuBackend, ParkedWaitDoesNotHoldTheOnlyWorker) {
  // One worker. Queue `waiter` (high priority, so it is taken first) waits
  // for an event that queue `recorder` records: the worker must leave the
  // parked queue and run the recorder, or this never finishes.
  auto backend = make_cpu_backend(
      CpuBackendOptions{.memory_bytes = 64 << 20, .workers = 1, .high_priority_workers = 0});
  QueueId busy = *backend->create_queue(QueuePriority::kNormal);
  QueueId recorder = *backend->create_queue(QueuePriority::kNormal);
  QueueId waiter = *backend->create_queue(QueuePriority::kHigh);
  EventId event = *backend->create_event();
  DevicePtr block = *backend->allocate(16 << 20);
  for (int i = 0; i < 10; ++i) backend->enqueue(busy, Memset{block, 1, 16 << 20}, {});
  backend->enqueue(recorder, RecordEvent{event}, {});
  CompletionLog log;
  backend->enqueue(waiter, WaitEvent{event}, log.completion(1));
  backend->enqueue(waiter, Marker{}, log.completion(2));
  backend->synchronize_all();
  EXPECT_EQ(log.entries().size(), 2u);
  EXPECT_TRUE(backend->query_event(event).complete);
  backend->free(block);
}

TEST(CpuBackend, HighPriorityWorkRunsWhileEveryGeneralWorkerIsBusy) {
  // The only general worker is held inside an op's completion (as inside a
  // long kernel); a high-priority queue's op must still run, on the
  // high-priority worker, and its completion is what lets the first go.
  auto backend = make_cpu_backend(
      CpuBackendOptions{.memory_bytes = 1 << 20, .workers = 1, .high_priority_workers = 1});
  EXPECT_NE(backend->info().name.find("+1 high-priority"), std::string::npos)
      << backend->info().name;
  QueueId batch = *backend->create_queue(QueuePriority::kNormal);
  QueueId urgent = *backend->create_queue(QueuePriority::kHigh);
  CompletionGate gate;
  backend->enqueue(batch, Marker{}, Completion{&CompletionGate::hold, &gate, 0});
  gate.wait_entered();
  backend->enqueue(urgent, Marker{}, Completion{&CompletionGate::release, &gate, 0});
  backend->synchronize_all();
  EXPECT_TRUE(gate.released_in_time) << "the high-priority op waited for the general worker";
}

TEST(CpuBackend, HighPriorityWorkersLeaveNormalQueuesAlone) {
  // Without a general worker free, a normal queue waits: high-priority
  // workers never take it (they are kept free for high-priority work).
  auto backend = make_cpu_backend(
      CpuBackendOptions{.memory_bytes = 1 << 20, .workers = 1, .high_priority_workers = 1});
  QueueId first = *backend->create_queue(QueuePriority::kNormal);
  QueueId second = *backend->create_queue(QueuePriority::kNormal);
  CompletionGate gate;
  backend->enqueue(first, Marker{}, Completion{&CompletionGate::hold, &gate, 0});
  gate.wait_entered();
  CompletionLog log;
  backend->enqueue(second, Marker{}, log.completion(1));
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  EXPECT_TRUE(log.entries().empty()) << "a high-priority worker ran a normal queue";
  CompletionGate::release(&gate, 0, ErrorCode::kOk);
  backend->synchronize_all();
  EXPECT_EQ(log.entries().size(), 1u);
}

TEST(CpuBackend, DestroyingTheBackendDrainsQueuedWork) {
  CompletionLog log;
  {
    auto backend = make_cpu_backend(CpuBackendOptions{.memory_bytes = 1 << 20, .workers = 2});
    QueueId queue = *backend->create_queue(QueuePriority::kNormal);
    for (std::uint64_t i = 0; i < 1000; ++i) backend->enqueue(queue, Marker{}, log.completion(i));
  }
  EXPECT_EQ(log.entries().size(), 1000u);
}

// Measures (does not assert) how many no-op launches one thread can enqueue
// per second; the figure goes to docs, the test checks they all complete.
TEST(CpuBackend, MillionNoOpLaunchesFromOneThreadAllComplete) {
  auto backend = make_cpu_backend(CpuBackendOptions{.memory_bytes = 1 << 20, .workers = 0});
  QueueId queue = *backend->create_queue(QueuePriority::kNormal);
  std::atomic<std::uint64_t> completed{0};
  auto count = [](void* context, std::uint64_t, ErrorCode status) {
    if (status == ErrorCode::kOk) {
      static_cast<std::atomic<std::uint64_t>*>(context)->fetch_add(1, std::memory_order_relaxed);
    }
  };
  Launch nop{};
  nop.kernel = find_kernel("nop")->id;
  nop.argc = 0;
  constexpr std::uint64_t kLaunches = 1'000'000;
  Stopwatch watch;
  for (std::uint64_t i = 0; i < kLaunches; ++i) {
    backend->enqueue(queue, nop, Completion{count, &completed, i});
  }
  const double enqueue_s = watch.elapsed_s();
  backend->synchronize_all();
  const double total_s = watch.elapsed_s();
  EXPECT_EQ(completed.load(), kLaunches);
  std::printf("[ measure  ] %.2f M no-op launches/s enqueued, %.2f M/s completed\n",
              kLaunches / enqueue_s / 1e6, kLaunches / total_s / 1e6);
}

// Large blocks are mappings kept for reuse and cleared when handed out
// again: pages in RAM by memset, the others dropped (cpu_device_memory.h).
// A block written in alternating 128 KiB stripes (runs of resident and of
// never-touched pages), freed, and handed out again for a request of the
// same size class, reads as zeros everywhere.
TEST(CpuBackend, StripeWrittenLargeBlockReadsAsZerosWhenReusedForItsSizeClass) {
  auto backend = make_cpu_backend(CpuBackendOptions{.memory_bytes = 64 << 20, .workers = 1});
  auto queue = backend->create_queue(QueuePriority::kNormal);
  ASSERT_TRUE(queue.ok());
  auto run = [&](Op op) {
    backend->enqueue(*queue, std::move(op), Completion{});
    backend->synchronize_all();
  };
  constexpr std::size_t kStripe = 128 << 10;
  const std::vector<std::uint8_t> marker(kStripe, 0xa5);
  std::size_t bytes = 1'000'000;
  for (int round = 0; round < 6; ++round) {
    auto ptr = backend->allocate(bytes);
    ASSERT_TRUE(ptr.ok());
    if (round > 0) {
      std::vector<std::uint8_t> back(bytes, 0xff);
      run(CopyD2H{*ptr, back.data(), bytes});
      for (std::size_t i = 0; i < bytes; ++i) {
        ASSERT_EQ(back[i], 0) << "round " << round << ", offset " << i;
      }
    }
    // Every other stripe, starting with the first or the second.
    for (std::size_t offset = (round % 2) * kStripe; offset < bytes; offset += 2 * kStripe) {
      run(CopyH2D{marker.data(), DevicePtr{ptr->value + offset},
                  std::min(kStripe, bytes - offset)});
    }
    backend->free(*ptr);
    bytes = round % 2 == 0 ? 1'040'000 : 1'000'000;  // the same 1 MiB class
  }
  backend->destroy_queue(*queue);
}

}  // namespace
}  // namespace malv::accel::testing
