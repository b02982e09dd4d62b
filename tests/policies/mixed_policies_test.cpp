// The two-level vGPU scheduler with the shipped gpu_sched policies: three
// VMs on three different policies (fifo, fair-share, learned-sjf), weights
// 1, 1 and 2, all backlogged on one device slot, get their weighted shares
// of the device's busy time under the host levels fair-share and priority:
// no VM's choice of policy takes device time from another.
#include <fmt/format.h>
#include <gtest/gtest.h>

#include <array>
#include <chrono>
#include <string>
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
                      public ::testing::WithParamInterface<vgpu::HostSchedPolicy> {
 protected:
  struct Attempt {
    std::array<double, 3> busy{};  // each VM's device time, ns
    double jain = 0;
    std::string text;  // for the failure message
  };
  // One run: the three VMs queue work in proportion to their weights on one
  // device slot; their busy times up to when the first runs out of work.
  Attempt run_once(int attempt);
};

MixedPolicies::Attempt MixedPolicies::run_once(int attempt) {
  auto device = accel::make_cpu_backend({.memory_bytes = 256ull << 20, .workers = 2});
  vgpu::MlaasGpuSchedPolicies policies(runner);
  // The starvation bound (tested on its own) is out of the way: on a loaded
  // machine it would serve VMs in turn, whatever their weights.
  vgpu::VgpuService vgpu(
      *device, policies,
      {.device_slots = 1, .starvation_bound_ns = 10'000'000'000, .host_policy = GetParam()});
  constexpr std::uint64_t kBytes = 4ull << 20;
  constexpr int kStreams = 2;
  struct Guest {
    std::string name;
    std::unique_ptr<vgpu::VmBackend> view;
    std::vector<accel::QueueId> queues;
    accel::DevicePtr buffer{};
  };
  std::vector<Guest> guests;
  for (const Tenant& t : kTenants) {
    Guest g;
    g.name = fmt::format("{}-{}", t.name, attempt);
    EXPECT_TRUE(vgpu.vms().create({.name = g.name, .token = "t", .weight = t.weight}).ok());
    EXPECT_TRUE(registry.select(g.name, PolicyClass::kGpuSched, t.policy).ok()) << t.policy;
    g.view = std::move(vgpu.open_session(g.name, "t")).value();
    g.buffer = g.view->allocate(kBytes).value();
    for (int s = 0; s < kStreams; ++s) {
      g.queues.push_back(g.view->create_queue(accel::QueuePriority::kNormal).value());
    }
    guests.push_back(std::move(g));
  }
  constexpr int kOpsPerWeight = 400;
  for (std::size_t v = 0; v < guests.size(); ++v) {
    const int ops = static_cast<int>(kOpsPerWeight * kTenants[v].weight);
    for (int i = 0; i < ops; ++i) {
      for (accel::QueueId q : guests[v].queues) {
        guests[v].view->enqueue(q, accel::Memset{guests[v].buffer, 1, kBytes}, {});
      }
    }
  }
  auto counters = [&](std::size_t v) -> vgpu::VmCounters& {
    return vgpu.vms().find(guests[v].name).value()->counters();
  };
  // The shares of the whole run, up to when the first VM runs out of work
  // (work is in proportion to weight, so under fair shares all three run
  // out at about the same time). Over the whole run a batch that a loaded
  // machine stretched is mostly paid back.
  Attempt out;
  for (int i = 0; i < 60000; ++i) {
    bool one_done = false;
    for (std::size_t v = 0; v < guests.size(); ++v) {
      out.busy[v] = static_cast<double>(counters(v).busy_ns.load());
      one_done = one_done || counters(v).queue_depth.load() == 0;
    }
    if (one_done) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  out.jain = jain_of_weighted_shares(out.busy);
  const double total = out.busy[0] + out.busy[1] + out.busy[2];
  out.text = fmt::format("shares {:.3f} {:.3f} {:.3f} (weights 1:1:2), Jain {:.3f}",
                         out.busy[0] / total, out.busy[1] / total, out.busy[2] / total, out.jain);
  for (Guest& g : guests) {
    for (accel::QueueId q : g.queues) g.view->cancel_queue(q);
    for (accel::QueueId q : g.queues) g.view->destroy_queue(q);
    g.view->free(g.buffer);
  }
  // Each VM's own policy made its decisions (no fallback to the baseline).
  for (std::size_t v = 0; v < guests.size(); ++v) {
    EXPECT_GT(counters(v).decisions.load(), 0u) << guests[v].name;
    EXPECT_EQ(counters(v).fallbacks.load(), 0u) << guests[v].name;
  }
  return out;
}

// Busy time on the CPU backend is wall time, so on a machine loaded far past
// its cores a batch stretched by preemption can be paid back after the run:
// up to three runs, one of which must share by weight. Before the scheduler
// had two levels every run failed (the VM on fair-share, whose scores were
// small numbers, took nearly everything from the one on fifo).
TEST_P(MixedPolicies, ThreeVmsOnThreePoliciesGetTheirWeightedShares) {
  std::string seen;
  for (int attempt = 0; attempt < 3; ++attempt) {
    const Attempt a = run_once(attempt);
    seen += fmt::format("\n  run {}: {}", attempt + 1, a.text);
    // 1 is exact; a batch stretched near the end of the run is not paid back.
    if (a.jain >= 0.9) return;
  }
  ADD_FAILURE() << "no run shared the device by weight:" << seen;
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
