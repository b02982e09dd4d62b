// A guest lists the host's MLaaS policies and selects its own through the
// protocol (kPolicyList, kPolicySelect), within the admin's allow-lists.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>

#include "guest/connection_core.h"
#include "host_fixture.h"
#include "malv/policy_selection.h"
#include "mlaas/feature_registry.h"
#include "mlaas/host_services.h"
#include "mlaas/policy_dir.h"
#include "mlaas/policy_registry.h"
#include "proto/encoder.h"

namespace malv::testing {
namespace {

using mlaas::PolicyClass;

class GuestPolicyTest : public HostFixture {
 protected:
  void SetUp() override {
    auto loaded = registry_.load_directory(MALV_TEST_POLICY_DIR);
    ASSERT_TRUE(loaded.ok()) << loaded.error().to_string();
    HostFixture::SetUp();
  }
  void customize(microlake::ServerOptions& options) override {
    options.admit = [this](const microlake::HelloInfo& info) -> Result<microlake::Admission> {
      microlake::Admission admission;
      if (info.vm_name != "vm-without-services") admission.services.policies = &registry_;
      return admission;
    };
  }

  static const guest::PolicyEntry* find(const std::vector<guest::PolicyEntry>& entries,
                                        std::string_view cls, std::string_view name) {
    auto it = std::find_if(entries.begin(), entries.end(), [&](const guest::PolicyEntry& e) {
      return e.policy_class == cls && e.name == name;
    });
    return it == entries.end() ? nullptr : &*it;
  }

  mlaas::FeatureRegistry features_;
  mlaas::HostServices services_{features_, nullptr};
  mlaas::PolicyRegistry registry_{services_.table()};
};

TEST_F(GuestPolicyTest, ListsEveryPolicyWithBaselinesSelected) {
  auto conn = connect("vm-a");
  ASSERT_NE(conn, nullptr);
  auto entries = guest::list_policies(*conn);
  ASSERT_TRUE(entries.ok()) << entries.error().to_string();
  for (std::string_view cls : {"gpu_sched", "memory", "cpu_sched", "prefetch"}) {
    const auto baseline = std::find_if(entries->begin(), entries->end(), [&](const auto& e) {
      return e.policy_class == cls && e.baseline;
    });
    ASSERT_NE(baseline, entries->end()) << cls;
    EXPECT_TRUE(baseline->selected) << cls;
    EXPECT_TRUE(baseline->allowed) << cls;
  }
  const guest::PolicyEntry* fair = find(*entries, "gpu_sched", "malv_sched_basic/fair-share");
  ASSERT_NE(fair, nullptr);
  EXPECT_TRUE(fair->allowed);
  EXPECT_FALSE(fair->selected);
}

TEST_F(GuestPolicyTest, SelectionTakesEffectForThisVmOnly) {
  auto a = connect("vm-a");
  auto b = connect("vm-b");
  ASSERT_TRUE(a && b);
  Status s = guest::select_policy(*a, "gpu_sched=fair-share");
  ASSERT_TRUE(s.ok()) << s.error().to_string();
  EXPECT_EQ(registry_.selected("vm-a", PolicyClass::kGpuSched), "malv_sched_basic/fair-share");
  EXPECT_NE(registry_.selected("vm-b", PolicyClass::kGpuSched), "malv_sched_basic/fair-share");
  auto entries = guest::list_policies(*a);
  ASSERT_TRUE(entries.ok());
  EXPECT_TRUE(find(*entries, "gpu_sched", "malv_sched_basic/fair-share")->selected);
  // Qualified names work too, and switching again replaces the selection.
  ASSERT_TRUE(guest::select_policy(*a, "gpu_sched=malv_sched_basic/fifo").ok());
  EXPECT_EQ(registry_.selected("vm-a", PolicyClass::kGpuSched), "malv_sched_basic/fifo");
}

TEST_F(GuestPolicyTest, AllowListIsEnforcedOnTheHost) {
  ASSERT_TRUE(
      registry_.set_allow_list("vm-a", PolicyClass::kGpuSched, {"malv_sched_basic/fifo"}).ok());
  auto conn = connect("vm-a");
  ASSERT_NE(conn, nullptr);
  const std::string before = registry_.selected("vm-a", PolicyClass::kGpuSched);
  Status s = guest::select_policy(*conn, "gpu_sched=fair-share");
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.error().code(), ErrorCode::kPermissionDenied);
  EXPECT_NE(s.error().message().find("malv_sched_basic/fifo"), std::string::npos)
      << s.error().to_string();
  EXPECT_EQ(registry_.selected("vm-a", PolicyClass::kGpuSched), before);
  auto entries = guest::list_policies(*conn);
  ASSERT_TRUE(entries.ok());
  EXPECT_FALSE(find(*entries, "gpu_sched", "malv_sched_basic/fair-share")->allowed);
  EXPECT_TRUE(find(*entries, "gpu_sched", "malv_sched_basic/fifo")->allowed);
  ASSERT_TRUE(guest::select_policy(*conn, "gpu_sched=malv_sched_basic/fifo").ok());
  // The session is still healthy after the refusal.
  EXPECT_TRUE(conn->ping().ok());
}

TEST_F(GuestPolicyTest, BadSelectionsGetPreciseErrors) {
  auto conn = connect("vm-a");
  ASSERT_NE(conn, nullptr);
  EXPECT_EQ(guest::select_policy(*conn, "no-equals-sign").error().code(),
            ErrorCode::kInvalidArgument);
  EXPECT_EQ(guest::select_policy(*conn, "bogus_class=fifo").error().code(),
            ErrorCode::kInvalidArgument);
  EXPECT_EQ(guest::select_policy(*conn, "gpu_sched=no-such-policy").error().code(),
            ErrorCode::kNotFound);
  EXPECT_EQ(guest::select_policy(*conn, "memory=fair-share").error().code(),
            ErrorCode::kNotFound);  // a policy of another class
  const std::string huge = "gpu_sched=" + std::string(300, 'x');
  EXPECT_EQ(guest::select_policy(*conn, huge).error().code(), ErrorCode::kInvalidArgument);
  EXPECT_TRUE(conn->ping().ok());
}

TEST_F(GuestPolicyTest, ForgedArenaRangesAreRefused) {
  auto conn = connect("vm-a");
  ASSERT_NE(conn, nullptr);
  guest::ConnectionCore& core = guest::core_of(*conn);
  const std::uint64_t past_end = conn->arena_bytes() - 8;
  auto list =
      core.call(proto::make_command(wire::Opcode::kPolicyList, core.next_tag(), {past_end, 4096}));
  ASSERT_TRUE(list.ok());
  EXPECT_EQ(static_cast<ErrorCode>(list->status), ErrorCode::kOutOfRange);
  auto select =
      core.call(proto::make_command(wire::Opcode::kPolicySelect, core.next_tag(), {~0ull - 4, 16}));
  ASSERT_TRUE(select.ok());
  EXPECT_EQ(static_cast<ErrorCode>(select->status), ErrorCode::kOutOfRange);
  EXPECT_EQ(registry_.selected("vm-a", PolicyClass::kGpuSched), "builtin/fifo");
}

TEST_F(GuestPolicyTest, TooSmallListRangeSaysHowMuchIsNeeded) {
  auto conn = connect("vm-a");
  ASSERT_NE(conn, nullptr);
  guest::ConnectionCore& core = guest::core_of(*conn);
  auto c = core.call(proto::make_command(wire::Opcode::kPolicyList, core.next_tag(), {0, 8}));
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(static_cast<ErrorCode>(c->status), ErrorCode::kOutOfRange);
  EXPECT_GT(c->result, 8u);
}

TEST_F(GuestPolicyTest, WorksOverTcp) {
  auto conn = connect_tcp("vm-tcp");
  ASSERT_NE(conn, nullptr);
  ASSERT_TRUE(guest::select_policy(*conn, "gpu_sched=fair-share").ok());
  auto entries = guest::list_policies(*conn);
  ASSERT_TRUE(entries.ok()) << entries.error().to_string();
  EXPECT_TRUE(find(*entries, "gpu_sched", "malv_sched_basic/fair-share")->selected);
}

TEST_F(GuestPolicyTest, HostWithoutPolicyServiceSaysSo) {
  auto conn = connect("vm-without-services");
  ASSERT_NE(conn, nullptr);
  auto entries = guest::list_policies(*conn);
  ASSERT_FALSE(entries.ok());
  EXPECT_EQ(entries.error().code(), ErrorCode::kUnimplemented);
  EXPECT_EQ(guest::select_policy(*conn, "gpu_sched=fifo").error().code(),
            ErrorCode::kUnimplemented);
}

}  // namespace
}  // namespace malv::testing
