// The out-of-tree example module (examples/mlaas-module) builds with its own
// CMake project against an installed MaLV-OS (the prefix tests/install made:
// find_package(Malv), Malv::policy_module_sdk), loads, can be selected for a
// VM and decides.
#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "mlaas/feature_registry.h"
#include "mlaas/host_services.h"
#include "mlaas/policy_registry.h"
#include "mlaas/policy_runner.h"

namespace malv::mlaas {
namespace {

int run(const std::string& command) {
  std::string quiet = command + " > " + MALV_TEST_WORK_DIR + ".log 2>&1";
  return std::system(quiet.c_str());
}

// The prefix tests/install's install.prefix test installed into.
std::string installed_prefix() {
  std::ifstream state(MALV_INSTALL_STATE);
  std::string work;
  std::getline(state, work);
  return work.empty() ? std::string() : work + "/prefix";
}

TEST(ExampleModule, BuildsOutOfTreeLoadsAndServesVmsInTurn) {
  const std::string prefix = installed_prefix();
  ASSERT_FALSE(prefix.empty()) << "no installed prefix in " << MALV_INSTALL_STATE
                               << " (run the install.prefix test first)";
  std::filesystem::remove_all(MALV_TEST_WORK_DIR);
  const std::string cmake = MALV_CMAKE_COMMAND;
  ASSERT_EQ(run("\"" + cmake + "\" -S \"" + MALV_EXAMPLE_SOURCE_DIR + "\" -B \"" +
                MALV_TEST_WORK_DIR + "\" -DCMAKE_PREFIX_PATH=\"" + prefix +
                "\" -DCMAKE_FIND_USE_PACKAGE_REGISTRY=OFF -DCMAKE_C_COMPILER=\"" + MALV_C_COMPILER +
                "\""),
            0)
      << "configure failed; see " << MALV_TEST_WORK_DIR << ".log";
  ASSERT_EQ(run("\"" + cmake + "\" --build \"" + MALV_TEST_WORK_DIR + "\""), 0)
      << "build failed; see " << MALV_TEST_WORK_DIR << ".log";

  FeatureRegistry features;
  HostServices services(features, nullptr);
  PolicyRegistry registry(services.table());
  PolicyRunner runner(registry, GuardrailOptions{std::chrono::milliseconds(20), 5});
  auto loaded = registry.load_module(std::string(MALV_TEST_WORK_DIR) + "/libmalv_round_robin.so");
  ASSERT_TRUE(loaded.ok()) << loaded.error().to_string();
  EXPECT_EQ(loaded->name, "malv_round_robin");
  ASSERT_TRUE(registry.select("host", PolicyClass::kGpuSched, "round-robin").ok());

  // Three VMs with work; VM 1's items are the oldest. Round robin serves
  // 1, 2, 3, 1, ... regardless of age.
  std::vector<malv_gpu_sched_observation> items(3);
  for (std::size_t i = 0; i < 3; ++i) {
    items[i].vm_id = i + 1;
    items[i].vm_weight = 1.0;
    items[i].enqueue_time_ns = static_cast<std::int64_t>(i) * 100;
  }
  std::vector<std::uint64_t> served;
  for (int round = 0; round < 6; ++round) {
    std::vector<malv_gpu_sched_decision> scores(items.size());
    DecisionReport report = runner.decide("host", std::span(items), std::span(scores));
    ASSERT_EQ(report.source, DecisionSource::kPolicy) << report.detail;
    served.push_back(items[lowest_score(scores)].vm_id);
  }
  EXPECT_EQ(served, (std::vector<std::uint64_t>{1, 2, 3, 1, 2, 3}));
  EXPECT_EQ(runner.counters("host", "malv_round_robin").decisions, 6u);
  EXPECT_EQ(runner.counters("host", "malv_round_robin").fallbacks, 0u);
}

}  // namespace
}  // namespace malv::mlaas
