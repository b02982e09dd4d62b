// The cpu_sched policies: builtin/none, malv_cpu_share_basic's class and
// gpu-aware, malv_cpu_mllb's mllb (its model through the host's inference
// service); the ABI v4 layout; the guardrails on out-of-range decisions.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstddef>
#include <cstdlib>
#include <fstream>
#include <string>

#include "malv/mllb_features.h"
#include "mlaas/inference_service.h"
#include "mlaas/mlp.h"
#include "mlaas/policy_class.h"
#include "policy_host.h"

namespace malv::mlaas::testing {
namespace {

static_assert(sizeof(malv_cpu_migration) == 88);
static_assert(offsetof(malv_cpu_sched_observation, migration) == 80);
static_assert(sizeof(malv_cpu_sched_observation) == 168);
static_assert(sizeof(malv_cpu_sched_decision) == 16);
static_assert(sizeof(malv_cpu_sched_outcome) == 208);

malv_cpu_sched_observation share(std::uint32_t priority, double weight, std::int64_t starved_ns,
                                 std::int64_t interval_ns = 50'000'000) {
  malv_cpu_sched_observation o{};
  o.kind = MALV_CPU_SCHED_SHARE;
  o.priority_class = priority;
  o.vm_id = 1;
  o.vm_weight = weight;
  o.interval_ns = interval_ns;
  o.accel_starved_ns = starved_ns;
  o.host_cpus = 2;
  o.current_weight = 100;
  return o;
}

malv_cpu_sched_observation candidate(std::uint32_t running, std::int64_t since_ran_ns) {
  malv_cpu_sched_observation o{};
  o.kind = MALV_CPU_SCHED_MIGRATE;
  o.vm_id = 1;
  o.migration.thread_id = 42;
  o.migration.src_cpu = 0;
  o.migration.dst_cpu = 1;
  o.migration.src_len = 3;
  o.migration.dst_len = 0;
  o.migration.idle_type = MALV_CPU_IDLE;
  o.migration.running = running;
  o.migration.same_node = 1;
  o.migration.cache_nice_tries = 1;
  o.migration.since_ran_ns = since_ran_ns;
  o.migration.imbalance = 3;
  return o;
}

class CpuSched : public PolicyHost {
 protected:
  // What malv serve's FeaturePublisher declares (host/feature_publisher.h):
  // gpu-aware looks it up when it is created.
  void SetUp() override {
    PolicyHost::SetUp();
    auto schema = features.declare("malv.vm",
                                   {"busy_share", "starved_share", "queue_depth", "memory_bytes",
                                    "memory_quota_share", "spilled_bytes"},
                                   64);
    ASSERT_TRUE(schema.ok());
    vm_features = *schema;
  }
  // Publishes a starved share for VM 1, as the host's publisher would.
  void publish_starved_share(float share) {
    const std::vector<float> row{0.5f, share, 0, 0, 0, 0};
    ASSERT_TRUE(features.push(vm_features, 1, row).ok());
  }
  FeatureSchemaId vm_features;

  malv_cpu_sched_decision decide(const std::string& policy, const malv_cpu_sched_observation& o,
                                 DecisionSource expect = DecisionSource::kPolicy) {
    EXPECT_TRUE(registry.select("vm1", PolicyClass::kCpuSched, policy).ok()) << policy;
    malv_cpu_sched_decision d{};
    DecisionReport report = runner.decide("vm1", std::span(&o, 1), std::span(&d, 1));
    EXPECT_EQ(report.source, expect) << report.detail;
    return d;
  }
};

TEST_F(CpuSched, NoneKeepsTheDefaultShareAndLeavesMovesToTheKernel) {
  EXPECT_EQ(registry.selected("vm1", PolicyClass::kCpuSched), "builtin/none");
  const malv_cpu_sched_decision s =
      decide("builtin/none", share(MALV_PRIORITY_LATENCY, 3, 0), DecisionSource::kBaseline);
  EXPECT_EQ(s.weight, MALV_CPU_WEIGHT_DEFAULT);
  EXPECT_EQ(s.placement, MALV_CPU_PLACE_ANY);
  const malv_cpu_sched_decision m =
      decide("builtin/none", candidate(0, -1), DecisionSource::kBaseline);
  EXPECT_EQ(m.migrate, MALV_CPU_MIGRATE_DEFAULT);
  EXPECT_EQ(m.weight, 0u);
}

TEST_F(CpuSched, ClassGivesLatencyVmsEightTimesAndBatchVmsTheirComputeWeight) {
  EXPECT_EQ(decide("class", share(MALV_PRIORITY_LATENCY, 1, 0)).weight, 800u);
  EXPECT_EQ(decide("class", share(MALV_PRIORITY_BATCH, 1, 0)).weight, 100u);
  EXPECT_EQ(decide("class", share(MALV_PRIORITY_BATCH, 2.5, 0)).weight, 250u);
  EXPECT_EQ(decide("class", share(MALV_PRIORITY_BATCH, 1e6, 0)).weight, MALV_CPU_WEIGHT_MAX);
  EXPECT_EQ(decide("class", share(MALV_PRIORITY_BATCH, 1, 0)).placement, MALV_CPU_PLACE_ANY);
  EXPECT_EQ(decide("class", share(MALV_PRIORITY_LATENCY, 1, 0)).placement,
            MALV_CPU_PLACE_DEDICATED);
  EXPECT_EQ(decide("class", candidate(0, -1)).migrate, MALV_CPU_MIGRATE_DEFAULT);
}

TEST_F(CpuSched, GpuAwareGivesMoreToTheVmWhoseAcceleratorWaits) {
  // A whole interval starved: 4x; smoothed over intervals (half the newest).
  EXPECT_EQ(decide("gpu-aware", share(MALV_PRIORITY_BATCH, 1, 50'000'000)).weight, 400u);
  EXPECT_EQ(decide("gpu-aware", share(MALV_PRIORITY_BATCH, 1, 0)).weight, 250u);  // share 0.5
  EXPECT_EQ(decide("gpu-aware", share(MALV_PRIORITY_BATCH, 1, 0)).weight, 175u);  // 0.25
  // A latency VM keeps class's weight whatever its device does.
  EXPECT_EQ(decide("gpu-aware", share(MALV_PRIORITY_LATENCY, 1, 50'000'000)).weight, 800u);
}

TEST_F(CpuSched, GpuAwareReadsTheStarvedShareTheHostPublishes) {
  // Published: the host's figure wins over the observation's own counters.
  publish_starved_share(1.0f);
  EXPECT_EQ(decide("gpu-aware", share(MALV_PRIORITY_BATCH, 1, 0)).weight, 400u);
  publish_starved_share(0.0f);
  EXPECT_EQ(decide("gpu-aware", share(MALV_PRIORITY_BATCH, 1, 50'000'000)).weight, 250u);
}

TEST(CpuSchedFeatures, GpuAwareOnAHostWithoutItsFeatureFailsAtCreateSayingSo) {
  FeatureRegistry features;  // nothing declared: no malv.vm
  HostServices services{features, nullptr};
  PolicyRegistry registry{services.table()};
  ASSERT_TRUE(registry.load_directory(policy_dir()).ok());
  const Status selected = registry.select("vm1", PolicyClass::kCpuSched, "gpu-aware");
  ASSERT_FALSE(selected.ok());
  EXPECT_EQ(selected.error().code(), ErrorCode::kNotFound);
  // The reply says why: the status and what the module logged.
  EXPECT_NE(selected.error().message().find("not_found"), std::string::npos)
      << selected.error().to_string();
  EXPECT_NE(selected.error().message().find("malv.vm/starved_share"), std::string::npos)
      << selected.error().to_string();
}

TEST_F(CpuSched, GpuAwareStartsFromNothingOnTheFirstInterval) {
  EXPECT_EQ(decide("gpu-aware", share(MALV_PRIORITY_BATCH, 1, 0, 0)).weight, 100u);
  EXPECT_EQ(decide("gpu-aware", share(MALV_PRIORITY_BATCH, 1, 25'000'000)).weight, 250u);
}

TEST(CpuSchedDecisions, OutOfRangeAnswersAreRefusedNamingTheField) {
  malv_cpu_sched_observation o = share(MALV_PRIORITY_BATCH, 1, 0);
  malv_cpu_sched_decision d{20000, 0, 0, 0};
  Status s = validate_decisions(PolicyClass::kCpuSched, &o, &d, 1);
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.error().message().find("weight 20000"), std::string::npos) << s.error().message();
  d = {100, 3, 0, 0};
  EXPECT_FALSE(validate_decisions(PolicyClass::kCpuSched, &o, &d, 1).ok());
  d = {100, 0, 1, 0};  // a share decision must not migrate
  EXPECT_FALSE(validate_decisions(PolicyClass::kCpuSched, &o, &d, 1).ok());
  d = {0, MALV_CPU_PLACE_BALANCED, 0, 0};  // 0: keep the weight
  EXPECT_TRUE(validate_decisions(PolicyClass::kCpuSched, &o, &d, 1).ok());
  o = candidate(0, 1000);
  d = {0, 0, 3, 0};
  EXPECT_FALSE(validate_decisions(PolicyClass::kCpuSched, &o, &d, 1).ok());
  d = {100, 0, 1, 0};  // a migrate decision carries no weight
  EXPECT_FALSE(validate_decisions(PolicyClass::kCpuSched, &o, &d, 1).ok());
  d = {0, 0, MALV_CPU_MIGRATE_YES, 0};
  EXPECT_TRUE(validate_decisions(PolicyClass::kCpuSched, &o, &d, 1).ok());
  // An unwritten decision (the poison) is refused.
  poison_decisions(PolicyClass::kCpuSched, &d, 1);
  EXPECT_FALSE(validate_decisions(PolicyClass::kCpuSched, &o, &d, 1).ok());
}

// A one-layer model whose output is input `pick` (weight 1, no bias).
std::string write_model(const std::string& name, std::size_t inputs, std::size_t pick) {
  DenseLayer layer;
  layer.in = inputs;
  layer.out = 1;
  layer.weight.assign(inputs, 0.0f);
  layer.weight[pick] = 1.0f;
  layer.bias.assign(1, 0.0f);
  const std::string path = ::testing::TempDir() + name;
  Result<Mlp> mlp = Mlp::create({layer});
  EXPECT_TRUE(mlp.ok());
  EXPECT_TRUE(mlp->save(path).ok());
  return path;
}

class Mllb : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_TRUE(registry.load_directory(policy_dir()).ok()); }
  void TearDown() override { ::unsetenv("MALV_MLLB_MODEL"); }

  Status select_with_model(const std::string& path) {
    if (path.empty()) {
      ::unsetenv("MALV_MLLB_MODEL");
    } else {
      ::setenv("MALV_MLLB_MODEL", path.c_str(), 1);
    }
    return registry.select("vm1", PolicyClass::kCpuSched, "malv_cpu_mllb/mllb");
  }
  std::vector<malv_cpu_sched_decision> decide(std::vector<malv_cpu_sched_observation> obs) {
    std::vector<malv_cpu_sched_decision> d(obs.size());
    DecisionReport report = runner.decide("vm1", std::span(obs), std::span(d));
    EXPECT_EQ(report.source, DecisionSource::kPolicy) << report.detail;
    return d;
  }

  FeatureRegistry features;
  InferenceService inference{nullptr, {.calibrate = false}};
  HostServices services{features, &inference};
  PolicyRegistry registry{services.table()};
  // These tests check the model's answers, not its speed: a budget no
  // loaded machine runs out of (under ASan, with other tests beside it, the
  // first inference passed the 2 ms default once and the baseline decided).
  PolicyRunner runner{registry, GuardrailOptions::every_class(std::chrono::seconds(30))};
};

TEST_F(Mllb, EachCandidateGetsTheModelsAnswerOnItsFeatures) {
  // Feature 1 is never_ran: this model moves exactly the threads that never ran.
  ASSERT_TRUE(
      select_with_model(write_model("mllb_never_ran.safetensors", MALV_MLLB_FEATURE_COUNT, 1))
          .ok());
  const auto d = decide({candidate(0, -1), candidate(0, 5'000'000), candidate(1, -1)});
  EXPECT_EQ(d[0].migrate, MALV_CPU_MIGRATE_YES);
  EXPECT_EQ(d[1].migrate, MALV_CPU_MIGRATE_NO);
  // A running thread is described by `running` alone (the kernel never
  // moves one), so this model leaves it.
  EXPECT_EQ(d[2].migrate, MALV_CPU_MIGRATE_NO);
  for (const auto& x : d) EXPECT_EQ(x.weight, 0u);
}

TEST_F(Mllb, ItsSharesAreClassesAndItAsksToPlaceTheThreadsItself) {
  ASSERT_TRUE(
      select_with_model(write_model("mllb_any.safetensors", MALV_MLLB_FEATURE_COUNT, 0)).ok());
  const auto d = decide({share(MALV_PRIORITY_LATENCY, 1, 0), share(MALV_PRIORITY_BATCH, 2, 0)});
  EXPECT_EQ(d[0].weight, 800u);
  EXPECT_EQ(d[1].weight, 200u);
  EXPECT_EQ(d[0].placement, MALV_CPU_PLACE_DEDICATED);
  EXPECT_EQ(d[1].placement, MALV_CPU_PLACE_BALANCED);
}

TEST_F(Mllb, AModelOfTheWrongShapeOrNoneMakesSelectionFail) {
  EXPECT_FALSE(select_with_model(write_model("mllb_wrong.safetensors", 3, 0)).ok());
  EXPECT_FALSE(select_with_model(::testing::TempDir() + "no-such-model.safetensors").ok());
  EXPECT_EQ(registry.selected("vm1", PolicyClass::kCpuSched), "builtin/none");
}

TEST_F(Mllb, TheShippedModelNeverMovesARunningThread) {
  if (!std::ifstream(policy_dir() + "/malv_mllb.safetensors")) {
    GTEST_SKIP() << "no shipped model in " << policy_dir();
  }
  ASSERT_TRUE(select_with_model("").ok());
  const auto d = decide({candidate(1, 100'000), candidate(1, 50'000'000)});
  EXPECT_EQ(d[0].migrate, MALV_CPU_MIGRATE_NO);
  EXPECT_EQ(d[1].migrate, MALV_CPU_MIGRATE_NO);
}

}  // namespace
}  // namespace malv::mlaas::testing
