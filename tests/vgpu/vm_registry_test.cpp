#include "vgpu/vm_registry.h"

#include <gtest/gtest.h>

#include <random>
#include <vector>

#include "accel/backend.h"
#include "vgpu/vgpu_service.h"

namespace malv::vgpu {
namespace {

TEST(VmRegistry, ForgedCredentialIsRefusedWithoutNamingWhichPartWasWrong) {
  VmRegistry vms;
  ASSERT_TRUE(vms.create({.name = "vm-a", .token = "right"}).ok());
  auto wrong = vms.authenticate("vm-a", "wrong");
  ASSERT_FALSE(wrong.ok());
  EXPECT_EQ(wrong.error().code(), ErrorCode::kUnauthenticated);
  auto unknown = vms.authenticate("vm-zz", "right");
  EXPECT_EQ(unknown.error().code(), ErrorCode::kUnauthenticated);
  EXPECT_TRUE(vms.authenticate("vm-a", "right").ok());
}

TEST(VmRegistry, InvalidConfigsAreRejected) {
  VmRegistry vms;
  EXPECT_EQ(vms.create({.name = ""}).error().code(), ErrorCode::kInvalidArgument);
  EXPECT_EQ(vms.create({.name = "x", .weight = 0}).error().code(), ErrorCode::kInvalidArgument);
  ASSERT_TRUE(vms.create({.name = "x"}).ok());
  EXPECT_EQ(vms.create({.name = "x"}).error().code(), ErrorCode::kAlreadyExists);
  EXPECT_EQ(vms.update("x", {.name = "y"}).error().code(), ErrorCode::kInvalidArgument);
  EXPECT_EQ(vms.remove("nope").error().code(), ErrorCode::kNotFound);
}

class Quota : public ::testing::Test {
 protected:
  std::unique_ptr<accel::Backend> device_ =
      accel::make_cpu_backend({.memory_bytes = 64ull << 20, .workers = 1});
  FifoPolicies fifo_;
  VgpuService vgpu_{*device_, fifo_};
};

TEST_F(Quota, AllocationOneByteOverTheQuotaFailsNamingUsageAndLimit) {
  ASSERT_TRUE(vgpu_.vms().create({.name = "vm-q", .token = "t", .memory_limit = 1 << 20}).ok());
  auto view = vgpu_.open_session("vm-q", "t");
  ASSERT_TRUE(view.ok());
  auto a = (*view)->allocate(1 << 20);
  ASSERT_TRUE(a.ok());
  auto over = (*view)->allocate(1);
  ASSERT_FALSE(over.ok());
  EXPECT_EQ(over.error().code(), ErrorCode::kResourceExhausted);
  EXPECT_NE(over.error().message().find("1048576 bytes in use"), std::string::npos);
  EXPECT_NE(over.error().message().find("limit 1048576"), std::string::npos);
  (*view)->free(a.value());
  EXPECT_TRUE((*view)->allocate(1).ok());
}

TEST_F(Quota, AccountingEqualsTheSumOfLiveAllocationsAtAllTimes) {
  ASSERT_TRUE(vgpu_.vms().create({.name = "vm-q", .token = "t", .memory_limit = 8 << 20}).ok());
  auto vm = vgpu_.vms().find("vm-q").value();
  auto view = std::move(vgpu_.open_session("vm-q", "t")).value();
  std::mt19937 rng(1);
  std::vector<std::pair<accel::DevicePtr, std::size_t>> live;
  std::uint64_t sum = 0;
  int refused = 0;
  for (int i = 0; i < 2000; ++i) {
    if (live.empty() || rng() % 3 != 0) {
      std::size_t bytes = 1 + rng() % (1 << 20);
      auto p = view->allocate(bytes);
      if (p.ok()) {
        live.emplace_back(p.value(), bytes);
        sum += bytes;
      } else {
        ++refused;
      }
    } else {
      std::size_t k = rng() % live.size();
      view->free(live[k].first);
      sum -= live[k].second;
      live.erase(live.begin() + static_cast<long>(k));
    }
    ASSERT_EQ(vm->device_memory().used(), sum);
  }
  EXPECT_GT(refused, 0) << "the quota was reached at least once";
  view.reset();  // a session ending returns everything it still held
  EXPECT_EQ(vm->device_memory().used(), 0u);
  EXPECT_EQ(device_->memory_in_use(), 0u);
}

TEST_F(Quota, QuotaChangesApplyWhileTheVmRuns) {
  ASSERT_TRUE(vgpu_.vms().create({.name = "vm-q", .token = "t", .memory_limit = 1 << 20}).ok());
  auto view = std::move(vgpu_.open_session("vm-q", "t")).value();
  EXPECT_FALSE(view->allocate(2 << 20).ok());
  ASSERT_TRUE(
      vgpu_.vms().update("vm-q", {.name = "vm-q", .token = "t", .memory_limit = 4 << 20}).ok());
  EXPECT_TRUE(view->allocate(2 << 20).ok());
}

TEST_F(Quota, OverVsockThePeerCidIdentifiesTheVm) {
  ASSERT_TRUE(vgpu_.vms().create({.name = "vm-v", .token = "t", .vsock_cid = 7}).ok());
  ASSERT_TRUE(vgpu_.vms().create({.name = "vm-w", .token = "u"}).ok());
  auto view = vgpu_.open_vsock_session(7, "vm-v");
  ASSERT_TRUE(view.ok()) << view.error().to_string();
  EXPECT_EQ(view.value()->vm()->name(), "vm-v");
  // Another VM's name with this CID, an unknown CID, CID 0 (unset): refused.
  EXPECT_EQ(vgpu_.open_vsock_session(7, "vm-w").error().code(), ErrorCode::kUnauthenticated);
  EXPECT_EQ(vgpu_.open_vsock_session(8, "vm-v").error().code(), ErrorCode::kUnauthenticated);
  EXPECT_EQ(vgpu_.open_vsock_session(0, "vm-w").error().code(), ErrorCode::kUnauthenticated);
  // A CID belongs to one VM; the host's CID (2) is nobody's.
  EXPECT_EQ(vgpu_.vms().create({.name = "vm-x", .vsock_cid = 7}).error().code(),
            ErrorCode::kAlreadyExists);
  EXPECT_EQ(
      vgpu_.vms().update("vm-w", {.name = "vm-w", .token = "u", .vsock_cid = 7}).error().code(),
      ErrorCode::kAlreadyExists);
  EXPECT_EQ(vgpu_.vms().create({.name = "vm-y", .vsock_cid = 2}).error().code(),
            ErrorCode::kInvalidArgument);
}

TEST_F(Quota, StreamQuotaIsEnforced) {
  ASSERT_TRUE(vgpu_.vms().create({.name = "vm-s", .token = "t", .max_streams = 2}).ok());
  auto view = std::move(vgpu_.open_session("vm-s", "t")).value();
  EXPECT_TRUE(view->create_queue(accel::QueuePriority::kNormal).ok());
  EXPECT_TRUE(view->create_queue(accel::QueuePriority::kNormal).ok());
  EXPECT_EQ(view->create_queue(accel::QueuePriority::kNormal).error().code(),
            ErrorCode::kResourceExhausted);
}

// Admission: the resident quotas together fit the device (64 MiB here); a
// quota that does not is refused naming it, the device and what the others
// hold, and room comes back when a quota shrinks or its VM goes.
TEST_F(Quota, AQuotaThatDoesNotFitBesideTheOthersIsRefusedNamingBoth) {
  EXPECT_EQ(vgpu_.ledger().capacity(), 64ull << 20);
  ASSERT_TRUE(vgpu_.vms().create({.name = "a", .memory_limit = 40ull << 20}).ok());
  Result<std::shared_ptr<Vm>> b = vgpu_.vms().create({.name = "b", .memory_limit = 30ull << 20});
  ASSERT_FALSE(b.ok());
  EXPECT_EQ(b.error().code(), ErrorCode::kResourceExhausted);
  EXPECT_NE(b.error().message().find("VM 'b': a resident quota of 31457280 bytes does not fit: the "
                                     "device has 67108864 bytes and the other VMs' quotas "
                                     "guarantee 41943040 of them (25165824 left)"),
            std::string::npos)
      << b.error().to_string();
  EXPECT_EQ(vgpu_.ledger().guaranteed(), 40ull << 20);
  ASSERT_TRUE(vgpu_.vms().update("a", {.name = "a", .memory_limit = 20ull << 20}).ok());
  ASSERT_TRUE(vgpu_.vms().create({.name = "b", .memory_limit = 30ull << 20}).ok());
  EXPECT_EQ(vgpu_.ledger().guaranteed(), 50ull << 20);
  // Raising a quota past the device is refused too, and changes nothing.
  Status raised = vgpu_.vms().update("b", {.name = "b", .memory_limit = 50ull << 20});
  EXPECT_EQ(raised.error().code(), ErrorCode::kResourceExhausted);
  EXPECT_EQ(vgpu_.vms().find("b").value()->config().memory_limit, 30ull << 20);
  ASSERT_TRUE(vgpu_.vms().remove("a").ok());
  EXPECT_TRUE(vgpu_.vms().update("b", {.name = "b", .memory_limit = 50ull << 20}).ok());
  EXPECT_EQ(vgpu_.ledger().guaranteed(), 50ull << 20);
}

// VMs without a quota share what the quotas leave: 64 - 48 = 16 MiB here.
TEST_F(Quota, VmsWithoutAQuotaShareWhatTheQuotasLeave) {
  ASSERT_TRUE(vgpu_.vms().create({.name = "q", .token = "t", .memory_limit = 48ull << 20}).ok());
  ASSERT_TRUE(vgpu_.vms().create({.name = "free1", .token = "t"}).ok());
  ASSERT_TRUE(vgpu_.vms().create({.name = "free2", .token = "t"}).ok());
  auto one = vgpu_.open_session("free1", "t");
  auto two = vgpu_.open_session("free2", "t");
  auto quota = vgpu_.open_session("q", "t");
  ASSERT_TRUE(one.ok() && two.ok() && quota.ok());
  auto a = (*one)->allocate(10ull << 20);
  ASSERT_TRUE(a.ok()) << a.error().to_string();
  auto b = (*two)->allocate(8ull << 20);
  ASSERT_FALSE(b.ok());
  EXPECT_EQ(b.error().code(), ErrorCode::kResourceExhausted);
  EXPECT_NE(b.error().message().find("the device memory no quota guarantees"), std::string::npos)
      << b.error().to_string();
  EXPECT_TRUE((*two)->allocate(6ull << 20).ok());
  // The VM with the quota still gets all of it.
  auto guaranteed = (*quota)->allocate(48ull << 20);
  EXPECT_TRUE(guaranteed.ok()) << guaranteed.error().to_string();
  (*one)->free(a.value());
  EXPECT_EQ(vgpu_.ledger().pool()->used(), 6ull << 20);
  // What the pool holds cannot be promised to a new quota: 64 - 48 - 6 left.
  Result<std::shared_ptr<Vm>> more =
      vgpu_.vms().create({.name = "q2", .memory_limit = 12ull << 20});
  ASSERT_FALSE(more.ok());
  EXPECT_NE(more.error().message().find(", VMs without a quota hold 6291456 (10485760 left)"),
            std::string::npos)
      << more.error().to_string();
  EXPECT_TRUE(vgpu_.vms().create({.name = "q2", .memory_limit = 10ull << 20}).ok());
}

}  // namespace
}  // namespace malv::vgpu
