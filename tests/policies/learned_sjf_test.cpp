// learned-sjf (malv_sched_basic) through the host's model service: it
// starts from the shipped model, ranks short work first, keeps its scores
// finite and >= 0 whatever it is shown, learns online, and its model comes
// back after an unload and after a host restart (the state directory); a
// corrupt persisted model falls back to the shipped one, a missing or
// misshapen model refuses the selection.
#include <gtest/gtest.h>
#include <spdlog/sinks/ostream_sink.h>

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <limits>
#include <random>
#include <sstream>

#include "accel/backend.h"
#include "base/log.h"
#include "malv/sjf_features.h"
#include "mlaas/feature_registry.h"
#include "mlaas/host_services.h"
#include "mlaas/inference_service.h"
#include "mlaas/mlp.h"
#include "mlaas/policy_dir.h"
#include "mlaas/policy_registry.h"
#include "mlaas/policy_runner.h"
#include "policy_host.h"

namespace malv::mlaas::testing {
namespace {

namespace fs = std::filesystem;

constexpr const char* kPolicy = "malv_sched_basic/learned-sjf";
constexpr const char* kVm = "vm-a";

// A host with an inference service and a state directory, which can be
// restarted over the same directory.
class LearnedSjf : public ::testing::Test {
 protected:
  void SetUp() override {
    dir = fs::path(::testing::TempDir()) /
          ("learned_sjf_" +
           std::string(::testing::UnitTest::GetInstance()->current_test_info()->name()));
    fs::remove_all(dir);
    fs::create_directories(dir);
    unsetenv("MALV_LEARNED_SJF_MODEL");
    start_host();
  }
  void TearDown() override {
    stop_host();
    unsetenv("MALV_LEARNED_SJF_MODEL");
  }
  void stop_host() {
    runner.reset();
    registry.reset();  // destroys the instances: they save
    services.reset();
    inference.reset();
  }
  void start_host() {
    stop_host();
    inference =
        std::make_unique<InferenceService>(backend.get(), InferenceOptions{.calibrate = false});
    services = std::make_unique<HostServices>(features, inference.get());
    services->set_state_dir((dir / "state").string());
    registry = std::make_unique<PolicyRegistry>(services->table());
    ASSERT_TRUE(registry->load_module(policy_module_path("malv_sched_basic")).ok());
    runner = std::make_unique<PolicyRunner>(
        *registry, GuardrailOptions::every_class(std::chrono::seconds(30)));
  }
  std::vector<double> scores(const std::vector<malv_gpu_sched_observation>& items) {
    std::vector<malv_gpu_sched_decision> out(items.size());
    DecisionReport report = runner->decide(kVm, std::span(items), std::span(out));
    EXPECT_EQ(report.source, DecisionSource::kPolicy) << report.detail;
    std::vector<double> s;
    for (const auto& d : out) s.push_back(d.score);
    return s;
  }
  fs::path saved() const { return dir / "state" / "models" / "learned-sjf.safetensors"; }

  std::unique_ptr<accel::Backend> backend =
      accel::make_cpu_backend(accel::CpuBackendOptions{.memory_bytes = 64 << 20, .workers = 1});
  FeatureRegistry features;
  std::unique_ptr<InferenceService> inference;
  std::unique_ptr<HostServices> services;
  std::unique_ptr<PolicyRegistry> registry;
  std::unique_ptr<PolicyRunner> runner;
  fs::path dir;
};

malv_gpu_sched_observation gemm_item(std::int64_t n, std::int64_t waited_ns = 0) {
  malv_gpu_sched_observation o{};
  o.vm_id = 1;
  o.vm_weight = 1.0;
  o.kernel_id = 2;  // gemm
  o.est_flops = 2.0 * static_cast<double>(n * n * n);
  o.est_bytes = 12.0 * static_cast<double>(n * n);
  o.waited_ns = waited_ns;
  return o;
}

TEST_F(LearnedSjf, AColdStartWithTheShippedModelRanksShortWorkFirst) {
  ASSERT_TRUE(registry->select(kVm, PolicyClass::kGpuSched, kPolicy).ok());
  const std::vector<double> s = scores({gemm_item(512), gemm_item(64), gemm_item(256)});
  EXPECT_LT(s[1], s[2]);
  EXPECT_LT(s[2], s[0]);
  EXPECT_FALSE(fs::exists(saved()));  // nothing learned yet, nothing saved
}

TEST_F(LearnedSjf, ScoresAreFiniteAndNeverNegativeWhateverTheItemsSay) {
  ASSERT_TRUE(registry->select(kVm, PolicyClass::kGpuSched, kPolicy).ok());
  std::mt19937 rng(4);
  std::uniform_real_distribution<double> unit(0.0, 1.0);
  const double inf = std::numeric_limits<double>::infinity();
  const double nan = std::numeric_limits<double>::quiet_NaN();
  std::vector<malv_gpu_sched_observation> items;
  for (double flops : {0.0, -1.0, 1.0, 1e30, inf, nan}) {
    for (std::int64_t waited : {std::int64_t{-5}, std::int64_t{0}, std::int64_t{1'000'000},
                                std::numeric_limits<std::int64_t>::max()}) {
      malv_gpu_sched_observation o = gemm_item(64, waited);
      o.est_flops = flops;
      o.est_bytes = flops;
      o.kernel_id = static_cast<std::uint32_t>(rng());
      o.priority_class = static_cast<std::uint32_t>(rng() % 2);
      items.push_back(o);
    }
  }
  for (int i = 0; i < 64; ++i) {
    malv_gpu_sched_observation o = gemm_item(1 + static_cast<std::int64_t>(unit(rng) * 600),
                                             static_cast<std::int64_t>(unit(rng) * 1e8));
    items.push_back(o);
  }
  for (double score : scores(items)) {
    EXPECT_TRUE(std::isfinite(score));
    EXPECT_GE(score, 0.0);
    EXPECT_LE(score, MALV_SJF_MAX_NS);
  }
}

TEST_F(LearnedSjf, ALongItemThatWaitedItsPredictedTimeRunsBeforeFreshShortWork) {
  ASSERT_TRUE(registry->select(kVm, PolicyClass::kGpuSched, kPolicy).ok());
  std::vector<double> s = scores({gemm_item(512, 0), gemm_item(64, 0)});
  ASSERT_GT(s[0], s[1]);
  // Waited longer than its predicted run time: score 0, before any newcomer.
  s = scores({gemm_item(512, 10'000'000'000), gemm_item(64, 0)});
  EXPECT_EQ(s[0], 0.0);
  EXPECT_GT(s[1], 0.0);
}

// Outcomes saying that kernel 9 items run 4 ms and kernel 8 items of the
// same size 4 us.
std::vector<malv_gpu_sched_outcome> two_kinds(int n) {
  std::vector<malv_gpu_sched_outcome> outcomes;
  for (int i = 0; i < n; ++i) {
    malv_gpu_sched_observation o = gemm_item(128);
    o.kernel_id = 8;
    outcomes.push_back({o, 4'000});
    o.kernel_id = 9;
    outcomes.push_back({o, 4'000'000});
  }
  return outcomes;
}

TEST_F(LearnedSjf, ItLearnsOnlineThatOneKindOfItemIsShortAndRanksItFirst) {
  ASSERT_TRUE(registry->select(kVm, PolicyClass::kGpuSched, kPolicy).ok());
  malv_gpu_sched_observation short_kind = gemm_item(128), long_kind = gemm_item(128);
  short_kind.kernel_id = 8;
  long_kind.kernel_id = 9;
  const auto outcomes = two_kinds(1500);
  runner->feedback(kVm, std::span<const malv_gpu_sched_outcome>(outcomes));
  const std::vector<double> s = scores({long_kind, short_kind});
  EXPECT_LT(s[1], s[0]);
  EXPECT_NEAR(std::log(s[1]), std::log(4'000.0), 1.5);
  EXPECT_NEAR(std::log(s[0]), std::log(4'000'000.0), 1.5);
}

TEST_F(LearnedSjf, ItsModelComesBackAfterAnUnloadAndAfterAHostRestart) {
  ASSERT_TRUE(registry->select(kVm, PolicyClass::kGpuSched, kPolicy).ok());
  const std::vector<malv_gpu_sched_observation> probe = {gemm_item(128), gemm_item(64)};
  const std::vector<double> cold = scores(probe);
  auto outcomes = two_kinds(200);
  for (auto& o : outcomes) o.item.kernel_id = 2;  // gemm 128 said to run 4 us or 4 ms
  runner->feedback(kVm, std::span<const malv_gpu_sched_outcome>(outcomes));
  const std::vector<double> learned = scores(probe);
  ASSERT_NE(learned, cold);

  registry->select_baseline(kVm, PolicyClass::kGpuSched);  // the instance goes: it saves
  ASSERT_TRUE(fs::exists(saved()));
  ASSERT_TRUE(registry->select(kVm, PolicyClass::kGpuSched, kPolicy).ok());
  EXPECT_EQ(scores(probe), learned);

  start_host();  // a new process over the same state directory
  ASSERT_TRUE(registry->select(kVm, PolicyClass::kGpuSched, kPolicy).ok());
  EXPECT_EQ(scores(probe), learned);
  // Another VM on this host starts from the persisted model too.
  std::vector<malv_gpu_sched_decision> other(probe.size());
  ASSERT_TRUE(registry->select("vm-b", PolicyClass::kGpuSched, kPolicy).ok());
  ASSERT_EQ(runner->decide("vm-b", std::span(probe), std::span(other)).source,
            DecisionSource::kPolicy);
  EXPECT_EQ(other[0].score, learned[0]);
}

TEST_F(LearnedSjf, ACorruptPersistedModelFallsBackToTheShippedOneWithTheReasonLogged) {
  ASSERT_TRUE(registry->select(kVm, PolicyClass::kGpuSched, kPolicy).ok());
  const std::vector<malv_gpu_sched_observation> probe = {gemm_item(128), gemm_item(64)};
  const std::vector<double> cold = scores(probe);
  fs::create_directories(saved().parent_path());
  // A file of the right name whose weights are NaN.
  SafetensorsFile file =
      Mlp::load(policy_dir() + "/malv_learned_sjf.safetensors").value().to_safetensors();
  file.tensors["layers.0.weight"].data[0] = std::numeric_limits<float>::quiet_NaN();
  ASSERT_TRUE(write_safetensors(saved().string(), file).ok());
  registry->select_baseline(kVm, PolicyClass::kGpuSched);

  std::ostringstream captured;
  log::logger().sinks().push_back(std::make_shared<spdlog::sinks::ostream_sink_mt>(captured));
  const Status selected = registry->select(kVm, PolicyClass::kGpuSched, kPolicy);
  log::logger().sinks().pop_back();
  ASSERT_TRUE(selected.ok()) << selected.error().to_string();
  EXPECT_EQ(scores(probe), cold);
  EXPECT_NE(captured.str().find("the persisted file is not used"), std::string::npos)
      << captured.str();
  EXPECT_NE(captured.str().find("is nan"), std::string::npos) << captured.str();
}

TEST_F(LearnedSjf, APersistedModelOfAnotherShapeGivesWayToTheShippedOne) {
  ASSERT_TRUE(registry->select(kVm, PolicyClass::kGpuSched, kPolicy).ok());
  const std::vector<malv_gpu_sched_observation> probe = {gemm_item(128), gemm_item(64)};
  const std::vector<double> cold = scores(probe);
  registry->select_baseline(kVm, PolicyClass::kGpuSched);
  fs::create_directories(saved().parent_path());
  ASSERT_TRUE(Mlp::create({DenseLayer{4, 1, {1, 2, 3, 4}, {0}, Activation::kIdentity}})
                  .value()
                  .save(saved().string())
                  .ok());
  ASSERT_TRUE(registry->select(kVm, PolicyClass::kGpuSched, kPolicy).ok());
  EXPECT_EQ(scores(probe), cold);
}

TEST_F(LearnedSjf, AMissingOrMisshapenModelRefusesTheSelection) {
  setenv("MALV_LEARNED_SJF_MODEL", (dir / "missing.safetensors").c_str(), 1);
  EXPECT_FALSE(registry->select(kVm, PolicyClass::kGpuSched, kPolicy).ok());
  const std::string wrong = (dir / "wrong.safetensors").string();
  ASSERT_TRUE(Mlp::create({DenseLayer{4, 1, {1, 2, 3, 4}, {0}, Activation::kIdentity}})
                  .value()
                  .save(wrong)
                  .ok());
  setenv("MALV_LEARNED_SJF_MODEL", wrong.c_str(), 1);
  EXPECT_FALSE(registry->select(kVm, PolicyClass::kGpuSched, kPolicy).ok());
  // A host without an inference service cannot run it either.
  FeatureRegistry no_features;
  HostServices bare(no_features, nullptr);
  PolicyRegistry bare_registry(bare.table());
  ASSERT_TRUE(bare_registry.load_module(policy_module_path("malv_sched_basic")).ok());
  unsetenv("MALV_LEARNED_SJF_MODEL");
  EXPECT_FALSE(bare_registry.select(kVm, PolicyClass::kGpuSched, kPolicy).ok());
}

}  // namespace
}  // namespace malv::mlaas::testing
