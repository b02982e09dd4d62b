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

}  // namespace
}  // namespace malv::vgpu
