// The admin API route by route: what each accepts, refuses and changes, that
// every /metrics family is there, and that what the admin said survives a
// restart of the host (AdminState).
#include "vgpu/admin_api.h"

#include <gtest/gtest.h>
#include <httplib.h>
#include <sys/socket.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <iterator>
#include <nlohmann/json.hpp>
#include <string>

#include "mlaas/feature_registry.h"
#include "mlaas/host_services.h"
#include "mlaas/policy_dir.h"
#include "mlaas/policy_registry.h"
#include "mlaas/policy_runner.h"
#include "vgpu/admin_state.h"
#include "vgpu/mlaas_gpu_sched_policies.h"
#include "vgpu/vgpu_service.h"

namespace malv::vgpu {
namespace {

using nlohmann::json;
namespace fs = std::filesystem;

// One host: device, MLaaS registry with the built-in modules, vGPU, the
// admin state in `state_dir`, and the admin API on a private socket.
struct Host {
  explicit Host(const std::string& state_dir, std::vector<VmConfig> config_vms = {})
      : state(state_dir, vgpu.vms(), &policies) {
    EXPECT_TRUE(policies.load_module(mlaas::policy_module_path("malv_sched_basic")).ok());
    state.set_scheduler(&vgpu.scheduler());
    EXPECT_TRUE(state.restore(config_vms).ok());
    path = state_dir + ".admin.sock";
    auto started = AdminApi::start(
        path, {.vgpu = &vgpu,
               .state = &state,
               .checkpoint_usage =
                   [](const std::string&) {
                     return VmDiskUsage{1234, 2};
                   },
               .policies = &policies,
               .runner = &runner,
               .backend = "cpu",
               .device = "test",
               .cpu_control = "cgroup-test",
               .host_cpus = "3",
               .host_cpu_count = 1,
               .cpu_json =
                   [](const std::string& vm) {
                     return vm == "vm-a" ? std::string(R"({"weight":800})") : std::string();
                   }});
    EXPECT_TRUE(started.ok()) << started.error().to_string();
    api = std::move(started).value();
  }

  httplib::Result call(const std::string& method, const std::string& route,
                       const json& body = nullptr) {
    httplib::Client client(path);
    client.set_address_family(AF_UNIX);
    const std::string text = body.is_null() ? "" : body.dump();
    if (method == "GET") return client.Get(route);
    if (method == "POST") return client.Post(route, text, "application/json");
    if (method == "PATCH") return client.Patch(route, text, "application/json");
    if (method == "PUT") return client.Put(route, text, "application/json");
    return client.Delete(route);
  }
  json ok(const std::string& method, const std::string& route, const json& body = nullptr,
          int status = 200) {
    auto res = call(method, route, body);
    EXPECT_TRUE(res) << method << " " << route;
    if (!res) return json();
    EXPECT_EQ(res->status, status) << method << " " << route << ": " << res->body;
    return json::parse(res->body, nullptr, false);
  }
  // A refusal: its HTTP status and message.
  std::pair<int, std::string> refused(const std::string& method, const std::string& route,
                                      const json& body = nullptr) {
    auto res = call(method, route, body);
    if (!res) return {0, ""};
    json reply = json::parse(res->body, nullptr, false);
    return {res->status, reply.is_object() ? reply.value("message", "") : res->body};
  }

  std::unique_ptr<accel::Backend> device =
      accel::make_cpu_backend({.memory_bytes = 64ull << 20, .workers = 1});
  mlaas::FeatureRegistry features;
  mlaas::HostServices services{features, nullptr};
  mlaas::PolicyRegistry policies{services.table()};
  mlaas::PolicyRunner runner{policies};
  MlaasGpuSchedPolicies sched{runner};
  VgpuService vgpu{*device, sched};
  AdminState state;
  std::string path;
  std::unique_ptr<AdminApi> api;
};

class AdminApiTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/malv-admin-test-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override { fs::remove_all(dir_); }
  std::string state_dir() const { return dir_ + "/state"; }
  std::string dir_;
};

TEST_F(AdminApiTest, HealthSaysTheBackend) {
  Host host(state_dir());
  json health = host.ok("GET", "/health");
  EXPECT_EQ(health.value("status", ""), "ok");
  EXPECT_EQ(health.value("backend", ""), "cpu");
  EXPECT_EQ(health.value("cpu_control", ""), "cgroup-test");
  EXPECT_EQ(health.value("host_cpus", ""), "3");
  // The gauge of the host's own cores.
  auto res = host.call("GET", "/metrics");
  ASSERT_TRUE(res);
  EXPECT_NE(res->body.find("\nmalv_host_cpus 1\n"), std::string::npos) << res->body;
}

TEST_F(AdminApiTest, CreateTakesEverySettingAndShowsItBack) {
  Host host(state_dir());
  json vm = host.ok("POST", "/vms",
                    {{"name", "vm-a"},
                     {"token", "t"},
                     {"memory_bytes", 1 << 20},
                     {"virtual_memory_bytes", 3 << 20},
                     {"weight", 2.5},
                     {"priority", "latency"},
                     {"max_streams", 7},
                     {"max_handles", 99},
                     {"max_sessions", 3},
                     {"host_memory_bytes", 5 << 20},
                     {"checkpoint_bytes", 6 << 20},
                     {"max_checkpoints", 4},
                     {"cpu_weight_limit", 300},
                     {"gpu_policy", "fair-share"}},
                    201);
  EXPECT_EQ(vm["cpu_weight_limit"], 300);
  EXPECT_EQ(vm["cpu_pid"], 0);
  EXPECT_EQ(vm["cpu"]["weight"], 800);  // the host's CPU control's view of it
  EXPECT_EQ(vm["stats"]["accel_starved_seconds"], 0.0);
  EXPECT_EQ(vm["memory_limit"], 1 << 20);
  EXPECT_EQ(vm["virtual_memory_limit"], 3 << 20);
  EXPECT_EQ(vm["stats"]["virtual_memory_used"], 0);
  for (const char* key : {"resident_bytes", "spilled_bytes", "bytes_in", "bytes_out", "faults",
                          "prefetches", "prefetch_hits", "evictions", "policy_fallbacks",
                          "failed_placements", "borrowed_bytes", "bytes_reclaimed"}) {
    EXPECT_EQ(vm["stats"]["memory_manager"][key], 0) << key;
  }
  EXPECT_EQ(vm["weight"], 2.5);
  EXPECT_EQ(vm["priority"], "latency");
  EXPECT_EQ(vm["max_streams"], 7);
  EXPECT_EQ(vm["max_handles"], 99);
  EXPECT_EQ(vm["max_sessions"], 3);
  EXPECT_EQ(vm["host_memory_limit"], 5 << 20);
  EXPECT_EQ(vm["checkpoint_limit_bytes"], 6 << 20);
  EXPECT_EQ(vm["max_checkpoints"], 4);
  EXPECT_EQ(vm["policies"]["gpu_sched"], "malv_sched_basic/fair-share");
  EXPECT_EQ(vm["origin"], "admin");
  EXPECT_EQ(vm["stats"]["checkpoint_bytes"], 1234);
  EXPECT_EQ(host.ok("GET", "/vms/vm-a")["max_sessions"], 3);
  EXPECT_EQ(host.ok("GET", "/vms").size(), 1u);
  // A limit out of the weight scale is refused, naming it.
  auto [status, message] = host.refused("PATCH", "/vms/vm-a", {{"cpu_weight_limit", 0}});
  EXPECT_EQ(status, 400);
  EXPECT_NE(message.find("cpu_weight_limit 0"), std::string::npos) << message;
  host.ok("POST", "/vms", {{"name", "vm-b"}}, 201);
  EXPECT_TRUE(host.ok("GET", "/vms/vm-b")["cpu"].is_null());
}

TEST_F(AdminApiTest, CreateRefusesUnknownFieldsBadTypesAndDuplicates) {
  Host host(state_dir());
  auto [status, message] = host.refused("POST", "/vms", {{"name", "vm-a"}, {"memroy_bytes", 5}});
  EXPECT_EQ(status, 400);
  EXPECT_NE(message.find("unknown VM field 'memroy_bytes'"), std::string::npos) << message;
  std::tie(status, message) =
      host.refused("POST", "/vms", {{"name", "vm-a"}, {"max_streams", 1ll << 40}});
  EXPECT_EQ(status, 400);
  EXPECT_NE(message.find("out of range"), std::string::npos) << message;
  std::tie(status, message) = host.refused("POST", "/vms", {{"name", "vm-a"}, {"weight", "x"}});
  EXPECT_EQ(status, 400);
  std::tie(status, message) =
      host.refused("POST", "/vms", {{"name", "vm-a"}, {"virtual_memory_bytes", -1}});
  EXPECT_EQ(status, 400);
  EXPECT_NE(message.find("virtual_memory_bytes"), std::string::npos) << message;
  std::tie(status, message) =
      host.refused("POST", "/vms", {{"name", "vm-a"}, {"gpu_policy", "no-such-policy"}});
  EXPECT_EQ(status, 404) << message;
  EXPECT_FALSE(host.vgpu.vms().find("vm-a").ok()) << "a refused create leaves no VM";
  host.ok("POST", "/vms", {{"name", "vm-a"}}, 201);
  std::tie(status, message) = host.refused("POST", "/vms", {{"name", "vm-a"}});
  EXPECT_EQ(status, 409);
}

TEST_F(AdminApiTest, PatchAppliesEveryFieldItAcceptsGpuPolicyIncluded) {
  Host host(state_dir());
  host.ok("POST", "/vms", {{"name", "vm-a"}}, 201);
  json vm = host.ok("PATCH", "/vms/vm-a",
                    {{"memory_bytes", 2 << 20},
                     {"virtual_memory_bytes", 4 << 20},
                     {"weight", 3.0},
                     {"priority", "latency"},
                     {"max_streams", 5},
                     {"max_handles", 6},
                     {"max_sessions", 2},
                     {"host_memory_bytes", 7 << 20},
                     {"checkpoint_bytes", 8 << 20},
                     {"max_checkpoints", 9},
                     {"token", "new"},
                     {"gpu_policy", "fair-share"}});
  EXPECT_EQ(vm["memory_limit"], 2 << 20);
  EXPECT_EQ(vm["virtual_memory_limit"], 4 << 20);
  EXPECT_TRUE(host.vgpu.vms().find("vm-a").value()->oversubscribed());
  EXPECT_EQ(host.vgpu.vms().find("vm-a").value()->virtual_memory().limit(), 4u << 20)
      << "the live virtual limit follows the setting";
  EXPECT_EQ(vm["weight"], 3.0);
  EXPECT_EQ(vm["priority"], "latency");
  EXPECT_EQ(vm["max_streams"], 5);
  EXPECT_EQ(vm["max_handles"], 6);
  EXPECT_EQ(vm["max_sessions"], 2);
  EXPECT_EQ(vm["host_memory_limit"], 7 << 20);
  EXPECT_EQ(vm["checkpoint_limit_bytes"], 8 << 20);
  EXPECT_EQ(vm["max_checkpoints"], 9);
  EXPECT_EQ(vm["policies"]["gpu_sched"], "malv_sched_basic/fair-share");
  EXPECT_TRUE(host.vgpu.vms().authenticate("vm-a", "new").ok());
  EXPECT_EQ(host.vgpu.vms().find("vm-a").value()->host_memory()->limit(), 7u << 20)
      << "the live quota follows the setting";
}

TEST_F(AdminApiTest, PatchRefusesWhatItDoesNotAcceptAndChangesNothing) {
  Host host(state_dir());
  host.ok("POST", "/vms", {{"name", "vm-a"}, {"weight", 1.0}}, 201);
  auto [status, message] = host.refused("PATCH", "/vms/vm-a", {{"wieght", 2.0}});
  EXPECT_EQ(status, 400);
  EXPECT_NE(message.find("unknown VM field 'wieght'"), std::string::npos) << message;
  std::tie(status, message) = host.refused("PATCH", "/vms/vm-a", {{"name", "vm-b"}});
  EXPECT_EQ(status, 400);
  EXPECT_NE(message.find("renamed"), std::string::npos) << message;
  // All or nothing: a policy that does not exist undoes the weight.
  std::tie(status, message) =
      host.refused("PATCH", "/vms/vm-a", {{"weight", 4.0}, {"gpu_policy", "nope"}});
  EXPECT_EQ(status, 404) << message;
  EXPECT_EQ(host.vgpu.vms().find("vm-a").value()->config().weight, 1.0);
  std::tie(status, message) = host.refused("PATCH", "/vms/vm-x", {{"weight", 2.0}});
  EXPECT_EQ(status, 404);
}

TEST_F(AdminApiTest, DeleteRemovesTheVm) {
  Host host(state_dir());
  host.ok("POST", "/vms", {{"name", "vm-a"}}, 201);
  host.ok("DELETE", "/vms/vm-a");
  EXPECT_FALSE(host.vgpu.vms().find("vm-a").ok());
  EXPECT_EQ(host.refused("DELETE", "/vms/vm-a").first, 404);
}

TEST_F(AdminApiTest, PolicyAndAllowListRoutesSelectAndRestrict) {
  Host host(state_dir());
  host.ok("POST", "/vms", {{"name", "vm-a"}}, 201);
  json selected = host.ok("PUT", "/vms/vm-a/policy/gpu_sched", {{"policy", "fair-share"}});
  EXPECT_EQ(selected["policy"], "malv_sched_basic/fair-share");
  EXPECT_EQ(host.refused("PUT", "/vms/vm-a/policy/gpu_sched", {{"policy", "nope"}}).first, 404);
  EXPECT_EQ(host.refused("PUT", "/vms/vm-a/policy/no_class", {{"policy", "fifo"}}).first, 400);
  json allowed = host.ok("PUT", "/vms/vm-a/allowed/gpu_sched", {{"policies", {"fair-share"}}});
  EXPECT_EQ(allowed["allowed"], json({"malv_sched_basic/fair-share"}));
  allowed = host.ok("PUT", "/vms/vm-a/allowed/gpu_sched", {{"any", true}});
  EXPECT_EQ(allowed["allowed"], "any");
  EXPECT_EQ(host.refused("PUT", "/vms/vm-a/allowed/gpu_sched", {{"policies", 3}}).first, 400);
}

TEST_F(AdminApiTest, PolicyModuleRoutesListLoadAndUnload) {
  Host host(state_dir());
  json modules = host.ok("GET", "/policies");
  bool found = false;
  for (const json& m : modules) found = found || m["module"] == "malv_sched_basic";
  EXPECT_TRUE(found) << modules.dump();
  host.ok("POST", "/policies", {{"path", mlaas::policy_module_path("malv_memory_basic")}}, 201);
  EXPECT_EQ(host.refused("POST", "/policies", {{"path", "/nonexistent.so"}}).first / 100, 4);
  host.ok("DELETE", "/policies/malv_memory_basic");
  EXPECT_EQ(host.refused("DELETE", "/policies/malv_memory_basic").first, 404);
}

TEST_F(AdminApiTest, MetricsHasEveryFamilyForEveryVm) {
  Host host(state_dir());
  host.ok("POST", "/vms", {{"name", "vm-a"}, {"max_sessions", 3}}, 201);
  auto res = host.call("GET", "/metrics");
  ASSERT_TRUE(res);
  const std::string& text = res->body;
  for (const char* family : {"malv_vm_memory_bytes",
                             "malv_vm_memory_limit_bytes",
                             "malv_vm_busy_seconds_total",
                             "malv_vm_data_stall_seconds_total",
                             "malv_vm_commands_total",
                             "malv_vm_errors_total",
                             "malv_vm_queue_depth",
                             "malv_vm_policy_decisions_total",
                             "malv_vm_policy_fallbacks_total",
                             "malv_vm_host_memory_bytes",
                             "malv_vm_host_memory_limit_bytes",
                             "malv_vm_sessions",
                             "malv_vm_session_limit",
                             "malv_vm_checkpoint_limit_bytes",
                             "malv_vm_checkpoint_count_limit",
                             "malv_vm_checkpoint_bytes",
                             "malv_vm_checkpoints",
                             "malv_vm_virtual_memory_bytes",
                             "malv_vm_virtual_memory_limit_bytes",
                             "malv_vm_managed_resident_bytes",
                             "malv_vm_spilled_bytes",
                             "malv_vm_memory_in_bytes_total",
                             "malv_vm_memory_out_bytes_total",
                             "malv_vm_memory_faults_total",
                             "malv_vm_memory_prefetches_total",
                             "malv_vm_memory_prefetch_hits_total",
                             "malv_vm_memory_evictions_total",
                             "malv_vm_memory_policy_fallbacks_total",
                             "malv_vm_memory_failed_placements_total",
                             "malv_vm_memory_borrowed_bytes",
                             "malv_vm_memory_reclaimed_bytes_total"}) {
    EXPECT_NE(text.find(std::string("# TYPE ") + family + " "), std::string::npos) << family;
    EXPECT_NE(text.find(std::string("\n") + family + "{vm=\"vm-a\"} "), std::string::npos)
        << family;
  }
  EXPECT_NE(text.find("\nmalv_vm_session_limit{vm=\"vm-a\"} 3\n"), std::string::npos) << text;
  EXPECT_NE(text.find("\nmalv_vm_checkpoint_bytes{vm=\"vm-a\"} 1234\n"), std::string::npos);
  auto session = host.vgpu.open_session("vm-a", "");
  ASSERT_TRUE(session.ok());
  res = host.call("GET", "/metrics");
  ASSERT_TRUE(res);
  EXPECT_NE(res->body.find("\nmalv_vm_sessions{vm=\"vm-a\"} 1\n"), std::string::npos) << res->body;
}

TEST_F(AdminApiTest, WhatTheAdminSaidSurvivesARestart) {
  const std::vector<VmConfig> config{{.name = "from-config", .token = "c", .weight = 1.0},
                                     {.name = "deleted-config", .token = "d"}};
  {
    Host host(state_dir(), config);
    EXPECT_EQ(host.ok("GET", "/vms/from-config")["origin"], "config");
    host.ok("POST", "/vms", {{"name", "vm-a"}, {"memory_bytes", 3 << 20}, {"max_sessions", 5}},
            201);
    host.ok("PATCH", "/vms/from-config", {{"weight", 4.0}});
    host.ok("PUT", "/vms/vm-a/policy/gpu_sched", {{"policy", "fair-share"}});
    host.ok("PUT", "/vms/vm-a/allowed/gpu_sched", {{"policies", {"fair-share"}}});
    host.ok("DELETE", "/vms/deleted-config");
  }
  Host host(state_dir(), config);  // the same config file, restarted
  json a = host.ok("GET", "/vms/vm-a");
  EXPECT_EQ(a["memory_limit"], 3 << 20);
  EXPECT_EQ(a["max_sessions"], 5);
  EXPECT_EQ(a["policies"]["gpu_sched"], "malv_sched_basic/fair-share");
  EXPECT_EQ(a["origin"], "admin");
  auto allowed = host.policies.allow_list("vm-a", mlaas::PolicyClass::kGpuSched);
  ASSERT_TRUE(allowed.has_value());
  EXPECT_EQ(*allowed, std::vector<std::string>{"malv_sched_basic/fair-share"});
  json c = host.ok("GET", "/vms/from-config");
  EXPECT_EQ(c["weight"], 4.0) << "the admin's change wins over the config file";
  EXPECT_EQ(c["origin"], "config+admin");
  EXPECT_FALSE(host.vgpu.vms().find("deleted-config").ok()) << "a deleted config VM stays deleted";
}

TEST_F(AdminApiTest, TheSchedulersHostLevelIsShownSetCheckedAndKeptAcrossARestart) {
  {
    Host host(state_dir());
    json shown = host.ok("GET", "/scheduler");
    EXPECT_EQ(shown["host_policy"], "priority") << "the default";
    EXPECT_EQ(shown["host_policies"], json({"priority", "fair-share", "fifo"}));
    EXPECT_TRUE(shown.contains("decisions") && shown.contains("starvation_overrides"));
    EXPECT_TRUE(shown.contains("prepared_ready") && shown.contains("prepared_missing"));
    // Until the admin sets it, the state file does not keep it (the config's word holds).
    host.ok("POST", "/vms", {{"name", "vm-a"}}, 201);
    std::ifstream before(state_dir() + "/admin-state.json");
    const std::string saved((std::istreambuf_iterator<char>(before)), {});
    EXPECT_EQ(saved.find("gpu_host_policy"), std::string::npos) << saved;

    json set = host.ok("PUT", "/scheduler", {{"host_policy", "fair-share"}});
    EXPECT_EQ(set["host_policy"], "fair-share");
    EXPECT_EQ(host.vgpu.scheduler().host_policy(), HostSchedPolicy::kFairShare);
    auto metrics = host.call("GET", "/metrics");
    ASSERT_TRUE(metrics);
    EXPECT_NE(metrics->body.find("\nmalv_scheduler_host_policy{policy=\"fair-share\"} 1\n"),
              std::string::npos)
        << metrics->body;
    EXPECT_NE(metrics->body.find("\nmalv_scheduler_host_policy{policy=\"priority\"} 0\n"),
              std::string::npos);
    for (const char* family :
         {"malv_scheduler_decisions_total", "malv_scheduler_starvation_overrides_total",
          "malv_scheduler_prepared_answers_total"}) {
      EXPECT_NE(metrics->body.find(std::string("# TYPE ") + family + " counter"), std::string::npos)
          << family;
    }
    // Bad bodies are refused, naming what is accepted, and change nothing.
    for (const json& bad : {json{{"host_policy", "lottery"}}, json{{"host_policy", 3}},
                            json::object(), json{{"policy", "fifo"}}}) {
      auto [status, message] = host.refused("PUT", "/scheduler", bad);
      EXPECT_EQ(status, 400) << bad.dump();
      EXPECT_NE(message.find("fair-share"), std::string::npos) << message;
    }
    EXPECT_EQ(host.vgpu.scheduler().host_policy(), HostSchedPolicy::kFairShare);
  }
  Host host(state_dir());  // restarted: the admin's word is kept
  EXPECT_EQ(host.ok("GET", "/scheduler")["host_policy"], "fair-share");
  EXPECT_EQ(host.vgpu.scheduler().host_policy(), HostSchedPolicy::kFairShare);
}

TEST_F(AdminApiTest, ACorruptStateFileFailsTheStartNamingTheFile) {
  fs::create_directories(state_dir());
  std::ofstream(state_dir() + "/admin-state.json") << "{not json";
  std::unique_ptr<accel::Backend> device = accel::make_cpu_backend({.memory_bytes = 1 << 20});
  FifoPolicies fifo;
  VgpuService vgpu(*device, fifo);
  AdminState state(state_dir(), vgpu.vms(), nullptr);
  Status restored = state.restore({});
  ASSERT_FALSE(restored.ok());
  EXPECT_EQ(restored.error().code(), ErrorCode::kDataLoss);
  EXPECT_NE(restored.error().message().find("admin-state.json"), std::string::npos);
}

}  // namespace
}  // namespace malv::vgpu
