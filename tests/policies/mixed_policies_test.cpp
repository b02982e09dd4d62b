// The two-level vGPU scheduler with the shipped gpu_sched policies: three
// VMs on three different policies (fifo, fair-share, learned-sjf), weights
// 1, 1 and 2, all backlogged on one device slot, get their weighted shares
// of the device's busy time under the host levels fair-share and priority:
// no VM's choice of policy takes device time from another.
#include <gtest/gtest.h>

#include <array>
#include <chrono>
#include <thread>

#include "accel/backend.h"
#include "policy_host.h"
#include "vgpu/mlaas_gpu_sched_policies.h"
#include "vgpu/vgpu_service.h"

namespace malv::mlaas::testing {
namespace {

struct Tenant {
  const char* name;
  const char* policy;
  double weight;
};
constexpr std::array<Tenant, 3> kTenants{{{"on-fifo", "malv_sched_basic/fifo", 1.0},
                                          {"on-fair-share", "malv_sched_basic/fair-share", 1.0},
                                          {"on-learned-sjf", "malv_sched_basic/learned-sjf", 2.0}}};

// Jain's index of each VM's busy time per unit of weight (1: exactly by weight).
double jain_of_weighted_shares(const std::array<double, 3>& busy) {
  double sum = 0, squares = 0;
  for (std::size_t i = 0; i < busy.size(); ++i) {
    const double x = busy[i] / kTenants[i].weight;
    sum += x;
    squares += x * x;
  }
  return squares > 0 ? sum * sum / (static_cast<double>(busy.size()) * squares) : 0.0;
}

class MixedPolicies : public PolicyHost,
                      public ::testing::WithParamInterface<vgpu::HostSchedPolicy> {};

TEST_P(MixedPolicies, ThreeVmsOnThreePoliciesGetTheirWeightedShares) {
  auto device = accel::make_cpu_backend({.memory_bytes = 256ull << 20, .workers = 2});
  vgpu::MlaasGpuSchedPolicies policies(runner);
  vgpu::VgpuService vgpu(*device, policies, {.device_slots = 1, .host_policy = GetParam()});
  constexpr std::uint64_t kBytes = 1ull << 20;
  constexpr int kStreams = 2;
  struct Guest {
    std::unique_ptr<vgpu::VmBackend> view;
    std::vector<accel::QueueId> queues;
    accel::DevicePtr buffer{};
  };
  std::vector<Guest> guests;
  for (const Tenant& t : kTenants) {
    ASSERT_TRUE(vgpu.vms().create({.name = t.name, .token = "t", .weight = t.weight}).ok());
    ASSERT_TRUE(registry.select(t.name, PolicyClass::kGpuSched, t.policy).ok()) << t.policy;
    Guest g;
    g.view = std::move(vgpu.open_session(t.name, "t")).value();
    g.buffer = g.view->allocate(kBytes).value();
    for (int s = 0; s < kStreams; ++s) {
      g.queues.push_back(g.view->create_queue(accel::QueuePriority::kNormal).value());
    }
    guests.push_back(std::move(g));
  }
  // Work in proportion to weight, so that every VM stays backlogged until
  // the snapshot below (taken at a third of the total).
  constexpr int kOpsPerWeight = 300;
  for (std::size_t v = 0; v < guests.size(); ++v) {
    const int ops = static_cast<int>(kOpsPerWeight * kTenants[v].weight);
    for (int i = 0; i < ops; ++i) {
      for (accel::QueueId q : guests[v].queues) {
        guests[v].view->enqueue(q, accel::Memset{guests[v].buffer, 1, kBytes}, {});
      }
    }
  }
  auto busy_of = [&] {
    std::array<double, 3> busy{};
    for (std::size_t v = 0; v < kTenants.size(); ++v) {
      busy[v] =
          static_cast<double>(vgpu.vms().find(kTenants[v].name).value()->counters().busy_ns.load());
    }
    return busy;
  };
  // Wait until the device has worked a while (the first busy times are
  // one batch each), then look at the shares while all three still queue.
  std::array<double, 3> busy{};
  for (int i = 0; i < 2000; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
    busy = busy_of();
    std::size_t done = 0;
    for (std::size_t v = 0; v < guests.size(); ++v) {
      done += vgpu.vms().find(kTenants[v].name).value()->counters().queue_depth.load() == 0;
    }
    ASSERT_EQ(done, 0u) << "a VM ran out of work before the snapshot";
    const double total = busy[0] + busy[1] + busy[2];
    if (total > 0 && vgpu.scheduler().stats().batches >= 60) break;
  }
  const double jain = jain_of_weighted_shares(busy);
  const double total = busy[0] + busy[1] + busy[2];
  EXPECT_GE(jain, 0.95) << "shares " << busy[0] / total << " " << busy[1] / total << " "
                        << busy[2] / total << " (weights 1:1:2)";
  for (Guest& g : guests) {
    for (accel::QueueId q : g.queues) g.view->cancel_queue(q);
    for (accel::QueueId q : g.queues) g.view->destroy_queue(q);
    g.view->free(g.buffer);
  }
  // Each VM's own policy made its decisions (no fallback to the baseline).
  for (const Tenant& t : kTenants) {
    EXPECT_GT(vgpu.vms().find(t.name).value()->counters().decisions.load(), 0u) << t.name;
    if (std::string(t.policy).ends_with("learned-sjf")) continue;  // may need the model service
    EXPECT_EQ(vgpu.vms().find(t.name).value()->counters().fallbacks.load(), 0u) << t.name;
  }
}

INSTANTIATE_TEST_SUITE_P(HostLevels, MixedPolicies,
                         ::testing::Values(vgpu::HostSchedPolicy::kFairShare,
                                           vgpu::HostSchedPolicy::kPriority),
                         [](const auto& info) {
                           return info.param == vgpu::HostSchedPolicy::kFairShare
                                      ? std::string("FairShare")
                                      : std::string("Priority");
                         });

}  // namespace
}  // namespace malv::mlaas::testing
