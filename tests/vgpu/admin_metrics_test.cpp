// The admin API's /metrics text: the per-VM memory gauge and the device's
// own memory gauge (malv_device_memory_bytes), which `malv bench soak`
// checks against each other, follow the allocations a VM's session makes.
#include <gtest/gtest.h>
#include <httplib.h>
#include <sys/socket.h>
#include <unistd.h>

#include <string>

#include "vgpu/admin_api.h"
#include "vgpu/vgpu_service.h"

namespace malv::vgpu {
namespace {

class AdminMetrics : public ::testing::Test {
 protected:
  void SetUp() override {
    path_ = "/tmp/malv-metrics-test-" + std::to_string(::getpid()) + ".sock";
    ASSERT_TRUE(vgpu_.vms().create({.name = "vm-a", .token = "t", .memory_limit = 1 << 20}).ok());
    auto api = AdminApi::start(path_, {.vgpu = &vgpu_, .backend = "cpu", .device = "test"});
    ASSERT_TRUE(api.ok()) << api.error().to_string();
    api_ = std::move(api).value();
  }

  std::string metrics() {
    httplib::Client client(path_);
    client.set_address_family(AF_UNIX);
    auto res = client.Get("/metrics");
    if (!res || res->status != 200) return "";
    return res->body;
  }

  std::string path_;
  std::unique_ptr<accel::Backend> device_ =
      accel::make_cpu_backend({.memory_bytes = 16ull << 20, .workers = 1});
  FifoPolicies fifo_;
  VgpuService vgpu_{*device_, fifo_};
  std::unique_ptr<AdminApi> api_;
};

TEST_F(AdminMetrics, DeviceMemoryGaugeFollowsWhatSessionsAllocate) {
  std::string text = metrics();
  EXPECT_NE(text.find("# TYPE malv_device_memory_bytes gauge\n"), std::string::npos) << text;
  EXPECT_NE(text.find("\nmalv_device_memory_bytes 0\n"), std::string::npos) << text;

  auto session = vgpu_.open_session("vm-a", "t");
  ASSERT_TRUE(session.ok());
  auto ptr = (*session)->allocate(4096);
  ASSERT_TRUE(ptr.ok());
  text = metrics();
  EXPECT_NE(text.find("\nmalv_vm_memory_bytes{vm=\"vm-a\"} 4096\n"), std::string::npos) << text;
  EXPECT_NE(text.find("\nmalv_device_memory_bytes 4096\n"), std::string::npos) << text;

  session->reset();  // the session ends: everything returns to the device
  text = metrics();
  EXPECT_NE(text.find("\nmalv_vm_memory_bytes{vm=\"vm-a\"} 0\n"), std::string::npos) << text;
  EXPECT_NE(text.find("\nmalv_device_memory_bytes 0\n"), std::string::npos) << text;
}

// The device-wide ledger: capacity, the quotas' sum, the pool, what is lent.
TEST_F(AdminMetrics, TheLedgerShowsCapacityGuaranteesPoolAndLending) {
  ASSERT_TRUE(vgpu_.vms().create({.name = "vm-q", .token = "t", .memory_limit = 4 << 20}).ok());
  ASSERT_TRUE(vgpu_.vms().create({.name = "vm-free", .token = "t"}).ok());
  auto session = vgpu_.open_session("vm-free", "t");
  ASSERT_TRUE(session.ok());
  auto ptr = (*session)->allocate(8192);
  ASSERT_TRUE(ptr.ok());
  const std::string text = metrics();
  for (const char* line :
       {"\nmalv_device_memory_capacity_bytes 16777216\n",
        "\nmalv_device_memory_guaranteed_bytes 5242880\n", "\nmalv_device_memory_pool_bytes 8192\n",
        "\nmalv_device_memory_lent_bytes 0\n", "\nmalv_device_memory_reclaimed_bytes_total 0\n"}) {
    EXPECT_NE(text.find(line), std::string::npos) << line << text;
  }
}

// The memory manager's gauges and counters follow a VM that spills: two
// 768 KiB buffers written in turn under a 1 MiB resident quota.
TEST_F(AdminMetrics, MemoryManagerFamiliesFollowSpillsAndFills) {
  // Fills only on demand: under load the prefetch thread could bring `a`
  // back before its op, a prefetch rather than the fault counted below.
  vgpu_.set_memory_policies(nullptr, {.prefetch = false});
  ASSERT_TRUE(vgpu_.vms()
                  .create({.name = "vm-b",
                           .token = "t",
                           .memory_limit = 1 << 20,
                           .virtual_memory_limit = 4 << 20})
                  .ok());
  auto session = vgpu_.open_session("vm-b", "t");
  ASSERT_TRUE(session.ok());
  VmBackend& view = **session;
  const accel::QueueId q = view.create_queue(accel::QueuePriority::kNormal).value();
  const accel::DevicePtr a = view.allocate(768 << 10).value();
  const accel::DevicePtr b = view.allocate(768 << 10).value();
  std::string text = metrics();
  EXPECT_NE(text.find("\nmalv_vm_virtual_memory_bytes{vm=\"vm-b\"} 1572864\n"), std::string::npos)
      << text;
  EXPECT_NE(text.find("\nmalv_vm_virtual_memory_limit_bytes{vm=\"vm-b\"} 4194304\n"),
            std::string::npos);
  EXPECT_NE(text.find("\nmalv_vm_managed_resident_bytes{vm=\"vm-b\"} 0\n"), std::string::npos);
  view.enqueue(q, accel::Memset{a, 1, 768 << 10}, {});
  view.enqueue(q, accel::Memset{b, 2, 768 << 10}, {});  // evicts a (dirty): out
  view.enqueue(q, accel::Memset{a, 3, 16}, {});         // evicts b, fills a: in, a fault
  view.destroy_queue(q);
  text = metrics();
  EXPECT_NE(text.find("\nmalv_vm_managed_resident_bytes{vm=\"vm-b\"} 786432\n"), std::string::npos)
      << text;
  EXPECT_NE(text.find("\nmalv_vm_spilled_bytes{vm=\"vm-b\"} 786432\n"), std::string::npos);
  EXPECT_NE(text.find("\nmalv_vm_memory_out_bytes_total{vm=\"vm-b\"} 1572864\n"),
            std::string::npos);
  EXPECT_NE(text.find("\nmalv_vm_memory_in_bytes_total{vm=\"vm-b\"} 786432\n"), std::string::npos);
  EXPECT_NE(text.find("\nmalv_vm_memory_faults_total{vm=\"vm-b\"} 1\n"), std::string::npos);
  EXPECT_NE(text.find("\nmalv_vm_memory_evictions_total{vm=\"vm-b\"} 2\n"), std::string::npos);
  EXPECT_NE(text.find("\nmalv_vm_memory_failed_placements_total{vm=\"vm-b\"} 0\n"),
            std::string::npos);
  EXPECT_NE(text.find("\nmalv_vm_memory_bytes{vm=\"vm-b\"} 786432\n"), std::string::npos)
      << "the resident quota counts the managed buffer on the device";
  view.free(a);
  view.free(b);
  text = metrics();
  EXPECT_NE(text.find("\nmalv_vm_virtual_memory_bytes{vm=\"vm-b\"} 0\n"), std::string::npos);
  EXPECT_NE(text.find("\nmalv_vm_memory_bytes{vm=\"vm-b\"} 0\n"), std::string::npos);
}

}  // namespace
}  // namespace malv::vgpu
