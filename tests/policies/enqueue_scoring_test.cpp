// Scoring at enqueue (ABI 6 enqueue_inputs) with the shipped learned-sjf:
// the rows of every VM's queued items run as one batch of the host's one
// shared model, off the scheduler's lock; each item gets exactly its own
// answer (the same as a synchronous run of its row); a decision that reads
// ready answers runs no inference; an answer prepared for a policy the VM
// has since left is not passed on; and through the real scheduler every
// item of two learned-sjf VMs is prepared and decided with its answer.
#include <fmt/format.h>
#include <gtest/gtest.h>

#include <chrono>
#include <cmath>
#include <string>
#include <thread>
#include <vector>

#include "accel/backend.h"
#include "malv/sjf_features.h"
#include "mlaas/async_inference.h"
#include "policy_host.h"
#include "vgpu/mlaas_gpu_sched_policies.h"
#include "vgpu/vgpu_service.h"

namespace malv::mlaas::testing {
namespace {

constexpr const char* kLearnedSjf = "malv_sched_basic/learned-sjf";

malv_gpu_sched_observation launch(std::uint64_t vm, std::uint32_t kernel, double flops) {
  malv_gpu_sched_observation o{};
  o.vm_id = vm;
  o.queue_id = 1;
  o.kernel_id = kernel;
  o.priority_class = MALV_PRIORITY_BATCH;
  o.vm_weight = 1.0;
  o.est_flops = flops;
  o.est_bytes = flops / 4;
  return o;
}

class EnqueueScoring : public PolicyHost {
 protected:
  void SetUp() override {
    PolicyHost::SetUp();
    // Only run_pending() runs batches: what forms a batch is deterministic.
    queue = std::move(AsyncInference::create(inference, {.batching_thread = false})).value();
  }
  void TearDown() override { queue->shutdown(); }

  // A VM named `name` in a registry of its own, on learned-sjf.
  std::shared_ptr<vgpu::Vm> vm_on_learned_sjf(vgpu::VmRegistry& vms, const std::string& name) {
    EXPECT_TRUE(vms.create({.name = name, .token = "t"}).ok());
    EXPECT_TRUE(registry.select(name, PolicyClass::kGpuSched, kLearnedSjf).ok());
    return vms.find(name).value();
  }

  // The shared model's answer for one item, run synchronously.
  float synchronous_answer(std::uint64_t model, const malv_gpu_sched_observation& item) {
    float row[MALV_SJF_FEATURE_COUNT];
    malv_sjf_features(&item, row);
    float out = 0;
    EXPECT_TRUE(inference.infer(ModelId{model}, row, 1, &out, InferencePath::kCpu).ok());
    return out;
  }

  std::unique_ptr<AsyncInference> queue;
};

TEST_F(EnqueueScoring, EveryVmsRowsRunAsOneBatchOfTheSharedModelAndEachGetsItsOwnAnswer) {
  vgpu::VmRegistry vms;
  auto a = vm_on_learned_sjf(vms, "vm-a");
  auto b = vm_on_learned_sjf(vms, "vm-b");
  // Both instances opened the host's one learned-sjf model.
  EXPECT_EQ(services.shared_model_refs("learned-sjf"), 2u);
  vgpu::MlaasGpuSchedPolicies policies(runner, &inference, queue.get());
  ASSERT_TRUE(policies.prepares());

  std::vector<malv_gpu_sched_observation> items_a, items_b;
  for (std::uint32_t k = 0; k < 12; ++k) items_a.push_back(launch(1, k % 5, 1e3 * (k + 1)));
  for (std::uint32_t k = 0; k < 9; ++k) items_b.push_back(launch(2, 7 + k % 3, 1e7 * (k + 1)));
  std::vector<vgpu::PreparedItem> prepared_a(items_a.size()), prepared_b(items_b.size());
  policies.prepare(*a, items_a, prepared_a);
  policies.prepare(*b, items_b, prepared_b);
  EXPECT_EQ(policies.predictions().submitted, items_a.size() + items_b.size());
  EXPECT_EQ(policies.predictions().refused, 0u);
  EXPECT_EQ(queue->stats().batches, 0u);  // nothing has run yet
  EXPECT_NE(
      policies.metrics_text().find("\nmalv_gpu_sched_enqueue_rows_total{state=\"submitted\"} 21\n"),
      std::string::npos)
      << policies.metrics_text();
  EXPECT_FALSE(prepared_a[0].ready());

  const std::uint64_t runs_before = inference.stats().runs();
  policies.run_prepared();
  const AsyncInferenceCounters c = queue->stats();
  EXPECT_EQ(c.batches, 1u);  // one run for both VMs
  EXPECT_EQ(c.batch_rows, items_a.size() + items_b.size());
  EXPECT_EQ(inference.stats().runs(), runs_before + 1);

  // Each item's answer is its own row's (by content, not by position; a
  // batch of another size may round differently in the last bits).
  malv_model shared = 0;
  ASSERT_EQ(services.table()->model_open(services.table(), "learned-sjf", "/nonexistent", &shared,
                                         nullptr),
            MALV_MLAAS_OK);  // the open model: the path is not read
  for (std::size_t i = 0; i < items_a.size(); ++i) {
    ASSERT_TRUE(prepared_a[i].ready());
    EXPECT_NEAR(policies.prepared_output(*a, prepared_a[i]), synchronous_answer(shared, items_a[i]),
                1e-5)
        << "vm-a item " << i;
  }
  for (std::size_t i = 0; i < items_b.size(); ++i) {
    EXPECT_NEAR(policies.prepared_output(*b, prepared_b[i]), synchronous_answer(shared, items_b[i]),
                1e-5)
        << "vm-b item " << i;
  }
  services.table()->model_release(services.table(), shared);

  // A decision that reads ready answers runs no inference of its own.
  std::vector<malv_gpu_sched_observation> seen = items_a;
  for (std::size_t i = 0; i < seen.size(); ++i) {
    seen[i].model_output = static_cast<float>(policies.prepared_output(*a, prepared_a[i]));
    seen[i].model_output_ready = 1;
  }
  std::vector<double> scores(seen.size());
  const std::uint64_t requests_before = inference.stats().requests;
  policies.score(*a, seen, scores);
  EXPECT_EQ(inference.stats().requests, requests_before);
  for (double s : scores) EXPECT_TRUE(std::isfinite(s) && s >= 0) << s;
  // Without the answers the policy runs the model itself, once, for all.
  seen = items_a;
  std::vector<double> again(seen.size());
  policies.score(*a, seen, again);
  EXPECT_EQ(inference.stats().requests, requests_before + 1);
  for (std::size_t i = 0; i < scores.size(); ++i) {  // the same answers either way
    EXPECT_NEAR(again[i], scores[i], 1e-4 * scores[i]) << i;
  }
}

TEST_F(EnqueueScoring, AnAnswerPreparedForAPolicyTheVmLeftIsNotPassedOn) {
  vgpu::VmRegistry vms;
  auto a = vm_on_learned_sjf(vms, "vm-a");
  vgpu::MlaasGpuSchedPolicies policies(runner, &inference, queue.get());
  std::vector<malv_gpu_sched_observation> items{launch(1, 2, 1e6)};
  std::vector<vgpu::PreparedItem> prepared(1);
  policies.prepare(*a, items, prepared);
  policies.run_prepared();
  ASSERT_TRUE(prepared[0].ready());
  EXPECT_FALSE(std::isnan(policies.prepared_output(*a, prepared[0])));
  // The VM moves to fifo, then back to a new learned-sjf instance.
  ASSERT_TRUE(registry.select("vm-a", PolicyClass::kGpuSched, "malv_sched_basic/fifo").ok());
  EXPECT_TRUE(std::isnan(policies.prepared_output(*a, prepared[0])));
  ASSERT_TRUE(registry.select("vm-a", PolicyClass::kGpuSched, kLearnedSjf).ok());
  EXPECT_TRUE(std::isnan(policies.prepared_output(*a, prepared[0])));
  // A VM on a policy without enqueue_inputs prepares nothing.
  ASSERT_TRUE(registry.select("vm-a", PolicyClass::kGpuSched, "malv_sched_basic/fifo").ok());
  std::vector<vgpu::PreparedItem> none(1);
  policies.prepare(*a, items, none);
  EXPECT_FALSE(none[0].started());
}

TEST_F(EnqueueScoring, TheSchedulerPreparesEveryItemOfTwoLearnedSjfVmsAndDecidesWithTheAnswers) {
  auto device = accel::make_cpu_backend({.memory_bytes = 64ull << 20, .workers = 2});
  vgpu::MlaasGpuSchedPolicies policies(runner, &inference, queue.get());
  vgpu::VgpuService vgpu(*device, policies, {.device_slots = 1});
  struct Guest {
    std::string name;
    std::unique_ptr<vgpu::VmBackend> view;
    std::vector<accel::QueueId> queues;
    accel::DevicePtr buffer{};
  };
  std::vector<Guest> guests;
  constexpr std::uint64_t kBytes = 1ull << 20;
  for (const char* name : {"sjf-a", "sjf-b"}) {
    Guest g;
    g.name = name;
    ASSERT_TRUE(vgpu.vms().create({.name = g.name, .token = "t"}).ok());
    ASSERT_TRUE(registry.select(g.name, PolicyClass::kGpuSched, kLearnedSjf).ok());
    g.view = std::move(vgpu.open_session(g.name, "t")).value();
    g.buffer = g.view->allocate(kBytes).value();
    for (int s = 0; s < 3; ++s) {
      g.queues.push_back(g.view->create_queue(accel::QueuePriority::kNormal).value());
    }
    guests.push_back(std::move(g));
  }
  constexpr int kOps = 40;
  for (int i = 0; i < kOps; ++i) {
    for (Guest& g : guests) {
      for (accel::QueueId q : g.queues) {
        g.view->enqueue(q, accel::Memset{g.buffer, static_cast<std::uint8_t>(i), kBytes}, {});
      }
    }
  }
  for (Guest& g : guests) g.view->synchronize_all();
  const std::size_t total = kOps * 3 * guests.size();
  EXPECT_EQ(policies.predictions().submitted, total);
  EXPECT_EQ(policies.predictions().refused, 0u);
  const vgpu::SchedulerStats stats = vgpu.scheduler().stats();
  // Decisions with several candidates read prepared answers; one that came
  // in between the dispatcher's run and its lock may miss (it still runs).
  EXPECT_GT(stats.prepared_ready, 0u);
  EXPECT_GE(stats.prepared_ready, stats.prepared_missing)
      << fmt::format("ready {} missing {}", stats.prepared_ready, stats.prepared_missing);
  for (Guest& g : guests) {
    EXPECT_EQ(runner.counters(g.name, "malv_sched_basic").fallbacks, 0u);
    EXPECT_GT(runner.counters(g.name, "malv_sched_basic").decisions, 0u);
    for (accel::QueueId q : g.queues) g.view->destroy_queue(q);
    g.view->free(g.buffer);
  }
  EXPECT_EQ(queue->stats().answered, queue->stats().submitted);
}

}  // namespace
}  // namespace malv::mlaas::testing
