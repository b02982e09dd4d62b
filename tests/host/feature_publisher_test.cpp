#include "host/feature_publisher.h"

#include <gtest/gtest.h>

#include <chrono>
#include <thread>
#include <vector>

#include "accel/backend.h"
#include "vgpu/gpu_sched_policies.h"

namespace malv::host {
namespace {

using namespace std::chrono_literals;

class FeaturePublisherTest : public ::testing::Test {
 protected:
  // The VM's rows in `schema`, oldest first (count features each).
  std::vector<std::vector<float>> rows(const char* schema, std::uint64_t vm) {
    Result<mlaas::FeatureSchema> found = features_.find(schema);
    EXPECT_TRUE(found.ok()) << schema;
    if (!found.ok()) return {};
    const std::size_t count = found->features.size();
    std::vector<float> flat(kFeatureWindow * count);
    Result<std::size_t> n = features_.read(found->id, vm, flat);
    EXPECT_TRUE(n.ok());
    std::vector<std::vector<float>> out;
    for (std::size_t r = 0; n.ok() && r < n.value(); ++r) {
      out.emplace_back(flat.begin() + static_cast<long>(r * count),
                       flat.begin() + static_cast<long>((r + 1) * count));
    }
    return out;
  }

  std::unique_ptr<accel::Backend> device_ =
      accel::make_cpu_backend({.memory_bytes = 16ull << 20, .workers = 1});
  vgpu::FifoPolicies fifo_;
  vgpu::VgpuService vgpu_{*device_, fifo_};
  mlaas::FeatureRegistry features_;
};

TEST_F(FeaturePublisherTest, SchemasNameTheirFeatures) {
  auto publisher = FeaturePublisher::start(features_, vgpu_, 1h);
  ASSERT_TRUE(publisher.ok()) << publisher.error().to_string();
  const auto vm = features_.find(kVmFeatures);
  ASSERT_TRUE(vm.ok());
  EXPECT_EQ(vm->features,
            (std::vector<std::string>{"busy_share", "starved_share", "queue_depth", "memory_bytes",
                                      "memory_quota_share", "spilled_bytes", "data_stall_share"}));
  EXPECT_EQ(vm->window, kFeatureWindow);
  const auto device = features_.find(kDeviceFeatures);
  ASSERT_TRUE(device.ok());
  EXPECT_EQ(device->features, (std::vector<std::string>{"busy_share", "memory_share"}));
  EXPECT_FALSE(FeaturePublisher::start(features_, vgpu_, 0ms).ok());
}

TEST_F(FeaturePublisherTest, EachRoundPushesWhatEachVmDidInTheInterval) {
  auto a = vgpu_.vms().create({.name = "a", .memory_limit = 4 << 20});
  auto b = vgpu_.vms().create({.name = "b"});
  ASSERT_TRUE(a.ok() && b.ok());
  auto publisher = FeaturePublisher::start(features_, vgpu_, 1h);  // rounds by hand
  ASSERT_TRUE(publisher.ok());
  (*publisher)->publish();  // first sight: no interval behind it, zeros
  const auto first = rows(kVmFeatures, (*a)->id().value());
  ASSERT_EQ(first.size(), 1u);
  EXPECT_EQ(first[0][0], 0.0f);

  // In the next interval, a keeps the device busy about half the time.
  const auto start = std::chrono::steady_clock::now();
  std::this_thread::sleep_for(200ms);
  (*a)->counters().busy_ns += 100'000'000;
  (*a)->counters().accel_starved_ns += 20'000'000;
  (*a)->counters().data_stall_ns += 50'000'000;
  (*a)->counters().queue_depth = 7;
  ASSERT_TRUE((*a)->reserve_memory(1 << 20).ok());
  const double elapsed =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  (*publisher)->publish();
  const auto second = rows(kVmFeatures, (*a)->id().value());
  ASSERT_EQ(second.size(), 2u);
  const std::vector<float>& r = second[1];
  // busy 0.1 s of the interval since the last round (at least `elapsed`):
  // a share above 0, at most 0.1 / elapsed; starved is a fifth of busy.
  EXPECT_GT(r[0], 0.0f);
  EXPECT_LE(r[0], 0.1 / elapsed + 1e-3);
  EXPECT_NEAR(r[1] / r[0], 0.2, 1e-3);
  EXPECT_EQ(r[2], 7.0f);
  EXPECT_EQ(r[3], static_cast<float>(1 << 20));
  EXPECT_NEAR(r[4], 0.25, 1e-6);  // 1 MiB of a 4 MiB quota
  EXPECT_EQ(r[5], 0.0f);
  EXPECT_NEAR(r[6] / r[0], 0.5, 1e-3);  // its guests waited for data half as long as it ran
  const auto idle = rows(kVmFeatures, (*b)->id().value());
  ASSERT_EQ(idle.size(), 2u);
  EXPECT_EQ(idle[1][0], 0.0f);
  EXPECT_EQ(idle[1][4], 0.0f);  // no quota: 0
  const auto device = rows(kDeviceFeatures, 0);
  ASSERT_EQ(device.size(), 2u);
  EXPECT_FLOAT_EQ(device[1][0], r[0]);  // only a was busy
  (*a)->release_memory(1 << 20);
}

TEST_F(FeaturePublisherTest, ADeletedVmsFeaturesGoWithIt) {
  auto a = vgpu_.vms().create({.name = "a"});
  ASSERT_TRUE(a.ok());
  const std::uint64_t id = (*a)->id().value();
  auto publisher = FeaturePublisher::start(features_, vgpu_, 1h);
  ASSERT_TRUE(publisher.ok());
  (*publisher)->publish();
  ASSERT_EQ(rows(kVmFeatures, id).size(), 1u);
  a->reset();
  ASSERT_TRUE(vgpu_.vms().remove("a").ok());
  (*publisher)->publish();
  EXPECT_TRUE(rows(kVmFeatures, id).empty());
}

TEST_F(FeaturePublisherTest, ItsThreadPublishesEveryIntervalUntilItStops) {
  auto a = vgpu_.vms().create({.name = "a"});
  ASSERT_TRUE(a.ok());
  {
    auto publisher = FeaturePublisher::start(features_, vgpu_, 10ms);
    ASSERT_TRUE(publisher.ok());
    const auto deadline = std::chrono::steady_clock::now() + 10s;
    while (rows(kVmFeatures, (*a)->id().value()).size() < 3 &&
           std::chrono::steady_clock::now() < deadline) {
      std::this_thread::sleep_for(5ms);
    }
    EXPECT_GE(rows(kVmFeatures, (*a)->id().value()).size(), 3u);
  }
  const std::size_t after_stop = rows(kVmFeatures, (*a)->id().value()).size();
  std::this_thread::sleep_for(50ms);
  EXPECT_EQ(rows(kVmFeatures, (*a)->id().value()).size(), after_stop);
}

}  // namespace
}  // namespace malv::host
