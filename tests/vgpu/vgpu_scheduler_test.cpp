#include "vgpu/vgpu_scheduler.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <thread>
#include <vector>

#include "../accel/completion_gate.h"
#include "vgpu/vgpu_service.h"

namespace malv::vgpu {
namespace {

using accel::testing::CompletionGate;

struct Done {
  std::mutex mutex;
  std::vector<std::pair<int, int>> order;  // (stream, sequence)
};

struct Tag {
  Done* done;
  int stream;
  int seq;
};

void record(void* context, std::uint64_t, ErrorCode) {
  auto* tag = static_cast<Tag*>(context);
  std::lock_guard lock(tag->done->mutex);
  tag->done->order.emplace_back(tag->stream, tag->seq);
}

// Prefers the VM named "favourite", otherwise first come first served.
class FavouritePolicies final : public GpuSchedPolicies {
 public:
  void score(Vm& vm, std::span<const malv_gpu_sched_observation> items,
             std::span<double> scores) override {
    ++calls;
    for (std::size_t i = 0; i < items.size(); ++i) {
      scores[i] = (vm.name() == "favourite" ? -1e18 : 0) + double(items[i].enqueue_time_ns);
    }
  }
  void feedback(Vm&, const malv_gpu_sched_outcome&) override { ++feedbacks; }
  std::atomic<int> calls{0};
  std::atomic<int> feedbacks{0};
};

class Scheduler : public ::testing::Test {
 protected:
  struct TwoVms {
    std::unique_ptr<VmBackend> other, favourite;
    accel::QueueId q_other, q_favourite;
  };
  // VMs "other" and "favourite", a stream each, with `policies` selected.
  static TwoVms open_two_vms(VgpuService& vgpu, GpuSchedPolicies& policies) {
    EXPECT_TRUE(vgpu.vms().create({.name = "other", .token = "t"}).ok());
    EXPECT_TRUE(vgpu.vms().create({.name = "favourite", .token = "t"}).ok());
    TwoVms vms;
    vms.other = std::move(vgpu.open_session("other", "t")).value();
    vms.favourite = std::move(vgpu.open_session("favourite", "t")).value();
    vms.q_other = vms.other->create_queue(accel::QueuePriority::kNormal).value();
    vms.q_favourite = vms.favourite->create_queue(accel::QueuePriority::kNormal).value();
    vgpu.scheduler().set_policies(policies);
    return vms;
  }

  std::unique_ptr<accel::Backend> device_ =
      accel::make_cpu_backend({.memory_bytes = 256ull << 20, .workers = 2});
  FifoPolicies fifo_;
};

TEST_F(Scheduler, StreamOrderIsKeptAndNothingIsLostAcrossVms) {
  VgpuService vgpu(*device_, fifo_, {.device_slots = 2, .max_batch_ops = 7});
  Done done;
  std::vector<std::unique_ptr<VmBackend>> views;
  std::vector<accel::QueueId> queues;
  for (int v = 0; v < 3; ++v) {
    std::string name = "vm-" + std::to_string(v);
    ASSERT_TRUE(vgpu.vms().create({.name = name, .token = "t"}).ok());
    views.push_back(std::move(vgpu.open_session(name, "t")).value());
    for (int s = 0; s < 2; ++s) {
      queues.push_back(views.back()->create_queue(accel::QueuePriority::kNormal).value());
    }
  }
  auto buf = device_->allocate(1 << 16).value();
  constexpr int kPerStream = 500;
  std::vector<Tag> tags;
  tags.reserve(queues.size() * kPerStream);
  for (int i = 0; i < kPerStream; ++i) {
    for (std::size_t q = 0; q < queues.size(); ++q) {
      tags.push_back({&done, static_cast<int>(q), i});
      // Each stream its own 1 KiB: streams run in parallel, like a GPU's.
      views[q / 2]->enqueue(queues[q], accel::Memset{buf + 1024 * q, 1, 1024},
                            accel::Completion{&record, &tags.back(), 0});
    }
  }
  views.clear();  // destroying the views drains their streams
  ASSERT_EQ(done.order.size(), queues.size() * kPerStream);
  std::vector<int> next(queues.size(), 0);
  for (auto [stream, seq] : done.order) EXPECT_EQ(seq, next[stream]++);
  device_->free(buf);
}

struct CookieLog {
  std::mutex mutex;
  std::vector<std::pair<std::uint64_t, ErrorCode>> entries;
  static void record(void* context, std::uint64_t cookie, ErrorCode status) {
    auto* log = static_cast<CookieLog*>(context);
    std::lock_guard lock(log->mutex);
    log->entries.emplace_back(cookie, status);
  }
};

// The accelerator waits for a guest between its ops (a guest that prepares
// its next batch on its CPU): those gaps count as the VM's starved time, a
// gap past guest_gap_limit_ns (no job running) does not, and nothing counts
// while the VM has work queued or running.
TEST_F(Scheduler, GapsBetweenAVmsWorkCountAsTheAcceleratorStarvingForIt) {
  VgpuService vgpu(*device_, fifo_, {.device_slots = 1, .guest_gap_limit_ns = 200'000'000});
  ASSERT_TRUE(vgpu.vms().create({.name = "vm", .token = "t"}).ok());
  auto view = std::move(vgpu.open_session("vm", "t")).value();
  auto queue = view->create_queue(accel::QueuePriority::kNormal).value();
  auto buf = view->allocate(4096).value();
  const std::shared_ptr<Vm> vm = vgpu.vms().find("vm").value();
  auto starved_ms = [&] { return double(vm->counters().accel_starved_ns.load()) / 1e6; };
  auto one_op = [&] {
    CookieLog log;
    view->enqueue(queue, accel::Memset{buf, 1, 64}, {&CookieLog::record, &log, 0});
    ASSERT_TRUE(vgpu.scheduler().wait_idle(std::chrono::seconds(5)));
  };
  one_op();
  EXPECT_EQ(starved_ms(), 0.0);  // nothing before its first op
  std::this_thread::sleep_for(std::chrono::milliseconds(30));
  one_op();
  EXPECT_GE(starved_ms(), 30.0);
  EXPECT_LT(starved_ms(), 200.0);
  const double after_gap = starved_ms();
  std::this_thread::sleep_for(std::chrono::milliseconds(250));  // past the limit: idle, not starved
  one_op();
  EXPECT_EQ(starved_ms(), after_gap);
  view->free(buf);
}

TEST_F(Scheduler, EnqueueManyKeepsOrderAndCookiesAndRejectsAnUnknownStream) {
  VgpuService vgpu(*device_, fifo_, {.device_slots = 1, .max_batch_ops = 5});
  ASSERT_TRUE(vgpu.vms().create({.name = "vm", .token = "t"}).ok());
  auto view = std::move(vgpu.open_session("vm", "t")).value();
  auto queue = view->create_queue(accel::QueuePriority::kNormal).value();
  auto buf = view->allocate(4096).value();
  std::vector<accel::Op> ops;
  for (int i = 0; i < 23; ++i) ops.push_back(accel::Memset{buf, static_cast<std::uint8_t>(i), 64});
  CookieLog log;
  view->enqueue_many(queue, ops, {&CookieLog::record, &log, 100});
  view->destroy_queue(queue);
  ASSERT_EQ(log.entries.size(), 23u);
  for (std::uint64_t i = 0; i < 23; ++i) {
    EXPECT_EQ(log.entries[i], std::make_pair(100 + i, ErrorCode::kOk));
  }

  CookieLog unknown;
  std::vector<accel::Op> two(2, accel::Marker{});
  vgpu.scheduler().enqueue_many(accel::QueueId{987654}, two, {&CookieLog::record, &unknown, 1});
  EXPECT_EQ(unknown.entries, (std::vector<std::pair<std::uint64_t, ErrorCode>>{
                                 {1, ErrorCode::kNotFound}, {2, ErrorCode::kNotFound}}));
  view->free(buf);
}

TEST_F(Scheduler, AVmsScoresNeverLetItOvertakeAnotherVm) {
  // "favourite"'s policy scores its work far below anything: under the host
  // level fifo the other VM's older op still runs first (before ABI 5 the
  // scores of all VMs were compared, and the favourite overtook).
  // (The starvation bound is out of the way: the first op may run longer.)
  FavouritePolicies favourite;
  VgpuService vgpu(*device_, fifo_,
                   {.device_slots = 1,
                    .max_batch_ops = 1,
                    .starvation_bound_ns = 10'000'000'000,
                    .host_policy = HostSchedPolicy::kFifo});
  TwoVms vms = open_two_vms(vgpu, favourite);
  auto big = device_->allocate(64 << 20).value();

  Done done;
  std::vector<Tag> tags(3, Tag{&done, 0, 0});
  // The first op takes the only slot; while it runs, both VMs queue work.
  tags[0] = {&done, 0, 0};
  vms.other->enqueue(vms.q_other, accel::Memset{big, 0, 64 << 20}, {&record, &tags[0], 0});
  tags[1] = {&done, 0, 1};
  vms.other->enqueue(vms.q_other, accel::Memset{big, 0, 4}, {&record, &tags[1], 0});
  tags[2] = {&done, 1, 0};
  vms.favourite->enqueue(vms.q_favourite, accel::Memset{big, 0, 4}, {&record, &tags[2], 0});
  vms.other.reset();
  vms.favourite.reset();
  ASSERT_EQ(done.order.size(), 3u);
  EXPECT_EQ(done.order[1], std::make_pair(0, 1)) << "the favourite VM's scores overtook";
  EXPECT_GT(favourite.calls.load(), 0);
  EXPECT_GT(favourite.feedbacks.load(), 0);
  device_->free(big);
}

// Newest item first: the opposite of fifo, to see a VM's own order applied.
class NewestFirstPolicies final : public GpuSchedPolicies {
 public:
  void score(Vm&, std::span<const malv_gpu_sched_observation> items,
             std::span<double> scores) override {
    for (std::size_t i = 0; i < items.size(); ++i) {
      scores[i] = 1e15 - static_cast<double>(items[i].enqueue_time_ns);
    }
  }
  void feedback(Vm&, const malv_gpu_sched_outcome&) override {}
};

TEST_F(Scheduler, AVmsPolicyOrdersItsOwnStreamsAndTheHostLevelSwitchesAtOnce) {
  NewestFirstPolicies newest;
  VgpuService vgpu(*device_, newest,
                   {.device_slots = 1,
                    .max_batch_ops = 1,
                    .starvation_bound_ns = 10'000'000'000,
                    .host_policy = HostSchedPolicy::kFifo});
  ASSERT_TRUE(vgpu.vms().create({.name = "vm", .token = "t"}).ok());
  auto view = std::move(vgpu.open_session("vm", "t")).value();
  auto q0 = view->create_queue(accel::QueuePriority::kNormal).value();
  auto q1 = view->create_queue(accel::QueuePriority::kNormal).value();
  auto q2 = view->create_queue(accel::QueuePriority::kNormal).value();
  auto big = view->allocate(64 << 20).value();
  Done done;
  std::vector<Tag> tags{{&done, 0, 0}, {&done, 1, 0}, {&done, 2, 0}};
  view->enqueue(q0, accel::Memset{big, 0, 64 << 20}, {&record, &tags[0], 0});
  view->enqueue(q1, accel::Memset{big, 0, 4}, {&record, &tags[1], 0});
  view->enqueue(q2, accel::Memset{big, 0, 4}, {&record, &tags[2], 0});
  for (auto q : {q0, q1, q2}) view->destroy_queue(q);
  ASSERT_EQ(done.order.size(), 3u);
  EXPECT_EQ(done.order[1], std::make_pair(2, 0)) << "the VM's policy runs its newest item first";
  EXPECT_EQ(done.order[2], std::make_pair(1, 0));
  EXPECT_EQ(vgpu.scheduler().host_policy(), HostSchedPolicy::kFifo);
  vgpu.scheduler().set_host_policy(HostSchedPolicy::kFairShare);
  EXPECT_EQ(vgpu.scheduler().host_policy(), HostSchedPolicy::kFairShare);
  view->free(big);
}

// The feedback's item is the head as the policy saw it at the decision:
// the VM's weight and class and the wait, not the bare enqueue record.
// Scores every item alike and keeps every outcome it is told.
class RecordingPolicies : public GpuSchedPolicies {
 public:
  void score(Vm&, std::span<const malv_gpu_sched_observation> items,
             std::span<double> scores) override {
    for (std::size_t i = 0; i < items.size(); ++i) scores[i] = 0;
  }
  void feedback(Vm&, const malv_gpu_sched_outcome& outcome) override {
    std::lock_guard lock(mutex);
    outcomes.push_back(outcome);
  }
  std::mutex mutex;
  std::vector<malv_gpu_sched_outcome> outcomes;
};

TEST_F(Scheduler, FeedbackCarriesTheObservationAsDecided) {
  RecordingPolicies recording;
  VgpuService vgpu(*device_, recording);
  ASSERT_TRUE(
      vgpu.vms()
          .create({.name = "vm", .token = "t", .weight = 3.0, .priority = PriorityClass::kLatency})
          .ok());
  auto view = std::move(vgpu.open_session("vm", "t")).value();
  auto q = view->create_queue(accel::QueuePriority::kNormal).value();
  auto buf = view->allocate(1 << 20).value();
  view->enqueue(q, accel::Memset{buf, 1, 1 << 20}, {});
  view->destroy_queue(q);
  view->free(buf);
  std::lock_guard lock(recording.mutex);
  ASSERT_FALSE(recording.outcomes.empty());
  const malv_gpu_sched_observation& item = recording.outcomes.front().item;
  EXPECT_EQ(item.vm_weight, 3.0);
  EXPECT_EQ(item.priority_class, static_cast<std::uint32_t>(MALV_PRIORITY_LATENCY));
  EXPECT_GE(item.waited_ns, 0);
  EXPECT_GT(item.enqueue_time_ns, 0);
  EXPECT_GT(recording.outcomes.front().run_ns, 0);
}

// What a policy prepares at enqueue it sees as the decision will: the VM's
// weight and class, the item's estimates and queue (a learned policy's
// inputs), only without the wait. prepare() runs outside the lock, once
// per item, before the item can be decided.
TEST_F(Scheduler, PrepareSeesEachItemAsItsDecisionWill) {
  class Preparing final : public RecordingPolicies {
   public:
    bool prepares() const override { return true; }
    void prepare(Vm&, std::span<const malv_gpu_sched_observation> items,
                 std::span<PreparedItem> prepared) override {
      std::lock_guard lock(mutex);
      EXPECT_EQ(items.size(), prepared.size());
      prepared_items.insert(prepared_items.end(), items.begin(), items.end());
    }
    std::vector<malv_gpu_sched_observation> prepared_items;
  } preparing;
  VgpuService vgpu(*device_, preparing);
  ASSERT_TRUE(vgpu.vms().create({.name = "vm", .token = "t", .weight = 2.5}).ok());
  auto view = std::move(vgpu.open_session("vm", "t")).value();
  auto q = view->create_queue(accel::QueuePriority::kNormal).value();
  auto buf = view->allocate(1 << 20).value();
  for (int i = 0; i < 4; ++i) view->enqueue(q, accel::Memset{buf, 1, 1u << (12 + i)}, {});
  view->destroy_queue(q);
  view->free(buf);
  std::lock_guard lock(preparing.mutex);
  ASSERT_EQ(preparing.prepared_items.size(), 4u);
  ASSERT_FALSE(preparing.outcomes.empty());
  for (const malv_gpu_sched_outcome& outcome : preparing.outcomes) {
    const malv_gpu_sched_observation& d = outcome.item;
    auto same =
        std::find_if(preparing.prepared_items.begin(), preparing.prepared_items.end(),
                     [&](const malv_gpu_sched_observation& p) {
                       return p.enqueue_time_ns == d.enqueue_time_ns && p.est_bytes == d.est_bytes;
                     });
    ASSERT_NE(same, preparing.prepared_items.end());
    EXPECT_EQ(same->vm_id, d.vm_id);
    EXPECT_EQ(same->queue_id, d.queue_id);
    EXPECT_EQ(same->kernel_id, d.kernel_id);
    EXPECT_EQ(same->priority_class, d.priority_class);
    EXPECT_EQ(same->priority_class, static_cast<std::uint32_t>(MALV_PRIORITY_BATCH));
    EXPECT_EQ(same->vm_weight, 2.5);
    EXPECT_EQ(same->est_flops, d.est_flops);
    EXPECT_EQ(same->waited_ns, 0);
    EXPECT_EQ(same->model_output_ready, 0u);
  }
}

TEST_F(Scheduler, BusyTimeIsChargedToTheVmThatRan) {
  VgpuService vgpu(*device_, fifo_);
  ASSERT_TRUE(vgpu.vms().create({.name = "worker", .token = "t"}).ok());
  ASSERT_TRUE(vgpu.vms().create({.name = "idle", .token = "t"}).ok());
  auto view = std::move(vgpu.open_session("worker", "t")).value();
  auto q = view->create_queue(accel::QueuePriority::kNormal).value();
  auto buf = view->allocate(8 << 20).value();
  for (int i = 0; i < 20; ++i) view->enqueue(q, accel::Memset{buf, 1, 8 << 20}, {});
  view->destroy_queue(q);
  EXPECT_GT(vgpu.vms().find("worker").value()->counters().busy_ns.load(), 0u);
  EXPECT_EQ(vgpu.vms().find("idle").value()->counters().busy_ns.load(), 0u);
}

TEST(SchedulerPriority, UrgentLatencyVmWorkRunsWhileBatchWorkHoldsEveryDeviceSlot) {
  // One general worker and one device slot, both held by a batch VM's op
  // (its completion blocks, as a long kernel would); the latency VM's op,
  // urgent by its policy, takes the latency slot and the device's
  // high-priority worker, and its completion is what releases the batch op.
  // Urgency is the host level's (priority, the default): the VMs' own
  // policy is plain fifo.
  auto device = accel::make_cpu_backend(
      {.memory_bytes = 16ull << 20, .workers = 1, .high_priority_workers = 1});
  FifoPolicies fifo;
  VgpuService vgpu(*device, fifo, {.device_slots = 1, .latency_slots = 1});
  ASSERT_TRUE(vgpu.vms().create({.name = "batch", .token = "t"}).ok());
  ASSERT_TRUE(vgpu.vms()
                  .create({.name = "latency", .token = "t", .priority = PriorityClass::kLatency})
                  .ok());
  auto batch = std::move(vgpu.open_session("batch", "t")).value();
  auto latency = std::move(vgpu.open_session("latency", "t")).value();
  auto q_batch = batch->create_queue(accel::QueuePriority::kNormal).value();
  auto q_latency = latency->create_queue(accel::QueuePriority::kNormal).value();
  // Memsets, not markers: bookkeeping ops need no slot.
  auto batch_buf = batch->allocate(64).value();
  auto latency_buf = latency->allocate(64).value();
  CompletionGate gate;
  batch->enqueue(q_batch, accel::Memset{batch_buf, 0, 64}, {&CompletionGate::hold, &gate, 0});
  gate.wait_entered();
  latency->enqueue(q_latency, accel::Memset{latency_buf, 0, 64},
                   {&CompletionGate::release, &gate, 0});
  batch->destroy_queue(q_batch);
  latency->destroy_queue(q_latency);
  batch->free(batch_buf);
  latency->free(latency_buf);
  EXPECT_TRUE(gate.released_in_time) << "the latency VM's op waited for the batch VM's slot";
}

// The second VM's op must not take the latency slot, so it runs only once
// the first releases the device slot: a batch VM even with a policy that
// scores its work below anything, or a latency VM under a host level other
// than priority.
void expect_second_waits_for_the_device_slot(GpuSchedPolicies& policies, PriorityClass second_class,
                                             HostSchedPolicy host_policy) {
  auto device = accel::make_cpu_backend(
      {.memory_bytes = 16ull << 20, .workers = 2, .high_priority_workers = 1});
  VgpuService vgpu(*device, policies,
                   {.device_slots = 1, .latency_slots = 1, .host_policy = host_policy});
  ASSERT_TRUE(vgpu.vms().create({.name = "first", .token = "t"}).ok());
  ASSERT_TRUE(vgpu.vms().create({.name = "second", .token = "t", .priority = second_class}).ok());
  auto first = std::move(vgpu.open_session("first", "t")).value();
  auto second = std::move(vgpu.open_session("second", "t")).value();
  auto q_first = first->create_queue(accel::QueuePriority::kNormal).value();
  auto q_second = second->create_queue(accel::QueuePriority::kHigh).value();  // asks, not granted
  auto first_buf = first->allocate(64).value();
  CompletionGate gate;
  first->enqueue(q_first, accel::Memset{first_buf, 0, 64}, {&CompletionGate::hold, &gate, 0});
  gate.wait_entered();
  Done done;
  Tag tag{&done, 1, 0};
  auto buf = second->allocate(64).value();  // a memset needs a slot; a marker would not
  second->enqueue(q_second, accel::Memset{buf, 0, 64}, {&record, &tag, 0});
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  {
    std::lock_guard lock(done.mutex);
    EXPECT_TRUE(done.order.empty()) << "a batch VM's op ran beyond the device slots";
  }
  CompletionGate::release(&gate, 0, ErrorCode::kOk);
  first->destroy_queue(q_first);
  second->destroy_queue(q_second);
  second->free(buf);
  first->free(first_buf);
  EXPECT_EQ(done.order.size(), 1u);
}

TEST(SchedulerPriority, BatchVmWorkWaitsForADeviceSlotWhateverItsPolicyScores) {
  class AllUrgent final : public GpuSchedPolicies {
   public:
    void score(Vm&, std::span<const malv_gpu_sched_observation> items,
               std::span<double> scores) override {
      for (std::size_t i = 0; i < items.size(); ++i) scores[i] = -1.0 - static_cast<double>(i);
    }
    void feedback(Vm&, const malv_gpu_sched_outcome&) override {}
  } all_urgent;
  expect_second_waits_for_the_device_slot(all_urgent, PriorityClass::kBatch,
                                          HostSchedPolicy::kPriority);
}

TEST(SchedulerPriority, UnderTheHostLevelsFifoAndFairShareALatencyVmWaitsLikeAnyOther) {
  FifoPolicies fifo;
  expect_second_waits_for_the_device_slot(fifo, PriorityClass::kLatency, HostSchedPolicy::kFifo);
  expect_second_waits_for_the_device_slot(fifo, PriorityClass::kLatency,
                                          HostSchedPolicy::kFairShare);
}

TEST_F(Scheduler, WaitOnAnEventRecordedOnAStreamStillQueuedHereWaitsForThatRecord) {
  // The record sits in the scheduler's FIFO for stream A (A's earlier work
  // holds the only slot) while stream B's wait is bookkeeping that needs no
  // slot: the wait must still order B after the record, not pass because
  // the backend has not seen the record yet.
  FavouritePolicies favourite;
  VgpuService vgpu(*device_, fifo_, {.device_slots = 1, .max_batch_ops = 1});
  TwoVms vms = open_two_vms(vgpu, favourite);
  auto& other = vms.other;
  auto& fav = vms.favourite;
  const accel::QueueId q_a = vms.q_other;
  const accel::QueueId q_b = vms.q_favourite;
  auto event = other->create_event().value();
  auto big = device_->allocate(64 << 20).value();

  // B reads the last byte A's second memset writes. Completion callbacks of
  // different queues race one another, so the test looks at data, not at
  // the order of callbacks.
  constexpr std::size_t kBytes = 64 << 20;
  other->enqueue(q_a, accel::Memset{big, 0, kBytes}, {});
  other->enqueue(q_a, accel::Memset{big, 7, kBytes}, {});
  other->enqueue(q_a, accel::RecordEvent{event}, {});
  fav->enqueue(q_b, accel::WaitEvent{event}, {});
  std::uint8_t seen = 0xff;
  fav->enqueue(q_b, accel::CopyD2H{big + (kBytes - 1), &seen, 1}, {});
  other->destroy_queue(q_a);
  fav->destroy_queue(q_b);
  EXPECT_EQ(seen, 7) << "stream B ran past its wait before A's record";
  other->destroy_event(event);
  device_->free(big);
}

struct Statuses {
  std::mutex mutex;
  std::vector<ErrorCode> seen;
};
void note_status(void* context, std::uint64_t, ErrorCode status) {
  auto* statuses = static_cast<Statuses*>(context);
  std::lock_guard lock(statuses->mutex);
  statuses->seen.push_back(status);
}

// One VM with a stream whose first op holds the only device slot (its
// completion blocks, as a long kernel would) until release().
class SchedulerCancel : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(vgpu_.vms().create({.name = "vm", .token = "t"}).ok());
    view_ = std::move(vgpu_.open_session("vm", "t")).value();
    q_ = view_->create_queue(accel::QueuePriority::kNormal).value();
    buf_ = view_->allocate(64).value();
    view_->enqueue(q_, accel::Memset{buf_, 0, 64}, {&CompletionGate::hold, &gate_, 0});
    gate_.wait_entered();
  }
  void TearDown() override {
    release();  // in case a test did not
    view_->destroy_queue(q_);
    view_->free(buf_);
  }
  void release() { CompletionGate::release(&gate_, 0, ErrorCode::kOk); }
  void enqueue_noted(int count) {
    for (int i = 0; i < count; ++i) {
      view_->enqueue(q_, accel::Memset{buf_, 1, 64}, {&note_status, &statuses_, 0});
    }
  }
  std::size_t completed() {
    std::lock_guard lock(statuses_.mutex);
    return statuses_.seen.size();
  }

  std::unique_ptr<accel::Backend> device_ =
      accel::make_cpu_backend({.memory_bytes = 16ull << 20, .workers = 1});
  FifoPolicies fifo_;
  VgpuService vgpu_{*device_, fifo_, {.device_slots = 1, .max_batch_ops = 1}};
  std::unique_ptr<VmBackend> view_;
  accel::QueueId q_;
  accel::DevicePtr buf_;
  CompletionGate gate_;
  Statuses statuses_;
};

TEST_F(SchedulerCancel, CancelAbortsWhatIsQueuedInOrderAfterTheOpOnTheDevice) {
  enqueue_noted(50);
  view_->cancel_queue(q_);
  EXPECT_EQ(completed(), 0u) << "nothing completes before the op on the device";
  release();
  view_->destroy_queue(q_);  // returns once the aborted completions ran
  ASSERT_EQ(completed(), 50u);
  for (ErrorCode status : statuses_.seen) EXPECT_EQ(status, ErrorCode::kAborted);
  EXPECT_EQ(vgpu_.scheduler().stats().cancelled_ops, 50u);
  EXPECT_EQ(vgpu_.vms().find("vm").value()->counters().queue_depth.load(), 0u);
}

TEST_F(SchedulerCancel, WorkEnqueuedAfterCancelIsAbortedAndWaitIdleTimesOutOnBusyWork) {
  EXPECT_FALSE(vgpu_.scheduler().wait_idle(std::chrono::milliseconds(20)))
      << "an op on the device is not idle";
  release();
  EXPECT_TRUE(vgpu_.scheduler().wait_idle(std::chrono::seconds(10)));
  view_->cancel_queue(q_);
  enqueue_noted(1);
  ASSERT_EQ(completed(), 1u);
  EXPECT_EQ(statuses_.seen[0], ErrorCode::kAborted);
}

}  // namespace
}  // namespace malv::vgpu
