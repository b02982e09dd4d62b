// The host's TOML configuration: values land where they belong, and every
// bad file is refused with the file, the key and what was expected; a VM's
// cpu_pid is checked against the users the host allows.
#include "host/host_config.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <map>
#include <string>

#include "cpu_control/cpu_list.h"
#include "host/host_daemon.h"

namespace malv::host {
namespace {

class HostConfigTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char dir[] = "/tmp/malv-host-config-XXXXXX";
    ASSERT_NE(::mkdtemp(dir), nullptr);
    dir_ = dir;
  }
  void TearDown() override {
    std::remove(path_.c_str());
    ::rmdir(dir_.c_str());
  }
  // Writes `toml` to a file and loads it.
  Result<HostConfig> load(const std::string& toml) {
    path_ = dir_ + "/host.toml";
    std::ofstream(path_) << toml;
    return load_host_config(path_);
  }
  std::string dir_;
  std::string path_;
};

TEST_F(HostConfigTest, EveryKeyLandsInItsField) {
  Result<HostConfig> config = load(R"(
[host]
socket = "/run/x/malv.sock"
admin_socket = "/run/x/admin.sock"
tcp = "127.0.0.1:7070"
vsock_port = 9999
backend = "cpu"
memory_mib = 2048
workers = 3
arena_mib = 32
policy_dir = "/p"
checkpoint_dir = "/c"
state_dir = "/s"
shutdown_grace_ms = 100
spill_link_gbps = 6.5
memory_trace_dir = "/t"
memory_prefetch = false
memory_lending = false
cpu_control = false
cpu_interval_ms = 20
cpu_mechanism = "thread-fallback"
cpu_allowed_pid_uids = [0, 64055]
host_cpus = "0"
hello_timeout_ms = 700
max_pending_per_peer = 4
max_pending = 16
data_dirs = ["/d1", "/d2"]
aten_denied = ["aten::cumsum", "_fft"]

[[vm]]
name = "train-a"
token = "secret"
memory_mib = 512
virtual_memory_mib = 1536
weight = 2.5
priority = "latency"
max_streams = 8
max_handles = 100
gpu_policy = "fair-share"
vsock_cid = 7
max_sessions = 3
host_memory_mib = 256
checkpoint_mib = 128
max_checkpoints = 9
cpu_weight_limit = 400
cpu_pid = 4242
)");
  ASSERT_TRUE(config.ok()) << config.error().to_string();
  const HostConfig& c = config.value();
  EXPECT_EQ(c.socket, "/run/x/malv.sock");
  EXPECT_EQ(c.admin_socket, "/run/x/admin.sock");
  EXPECT_EQ(c.tcp, "127.0.0.1:7070");
  EXPECT_EQ(c.vsock_port, 9999u);
  EXPECT_EQ(c.backend, "cpu");
  EXPECT_EQ(c.memory_mib, 2048u);
  EXPECT_EQ(c.workers, 3u);
  EXPECT_EQ(c.arena_mib, 32u);
  EXPECT_EQ(c.policy_dir, "/p");
  EXPECT_EQ(c.checkpoint_dir, "/c");
  EXPECT_EQ(c.state_dir, "/s");
  EXPECT_EQ(c.shutdown_grace_ms, 100u);
  EXPECT_DOUBLE_EQ(c.spill_link_gbps, 6.5);
  EXPECT_FALSE(c.memory_prefetch);
  EXPECT_FALSE(c.memory_lending);
  EXPECT_FALSE(c.cpu_control);
  EXPECT_EQ(c.cpu_interval_ms, 20u);
  EXPECT_EQ(c.cpu_mechanism, "thread-fallback");
  EXPECT_EQ(c.cpu_allowed_pid_uids, (std::vector<std::uint32_t>{0, 64055}));
  EXPECT_EQ(c.host_cpus, "0");
  EXPECT_EQ(c.memory_trace_dir, "/t");
  EXPECT_EQ(c.hello_timeout_ms, 700u);
  EXPECT_EQ(c.max_pending_per_peer, 4u);
  EXPECT_EQ(c.max_pending, 16u);
  EXPECT_EQ(c.data_dirs, (std::vector<std::string>{"/d1", "/d2"}));
  EXPECT_EQ(c.aten_denied, (std::vector<std::string>{"aten::cumsum", "_fft"}));
  ASSERT_EQ(c.vms.size(), 1u);
  const vgpu::VmConfig& vm = c.vms[0];
  EXPECT_EQ(vm.name, "train-a");
  EXPECT_EQ(vm.token, "secret");
  EXPECT_EQ(vm.memory_limit, 512ull << 20);
  EXPECT_EQ(vm.virtual_memory_limit, 1536ull << 20);
  EXPECT_DOUBLE_EQ(vm.weight, 2.5);
  EXPECT_EQ(vm.priority, vgpu::PriorityClass::kLatency);
  EXPECT_EQ(vm.max_streams, 8u);
  EXPECT_EQ(vm.max_handles, 100u);
  EXPECT_EQ(vm.gpu_policy, "fair-share");
  EXPECT_EQ(vm.vsock_cid, 7u);
  EXPECT_EQ(vm.max_sessions, 3u);
  EXPECT_EQ(vm.host_memory_limit, 256ull << 20);
  EXPECT_EQ(vm.checkpoint_bytes_limit, 128ull << 20);
  EXPECT_EQ(vm.max_checkpoints, 9u);
  EXPECT_EQ(vm.cpu_weight_limit, 400u);
  EXPECT_EQ(vm.cpu_pid, 4242u);
  EXPECT_TRUE(check_host_config(c).ok());
}

TEST_F(HostConfigTest, AnEmptyFileGivesTheDefaults) {
  Result<HostConfig> config = load("");
  ASSERT_TRUE(config.ok()) << config.error().to_string();
  EXPECT_EQ(config.value().backend, "auto");
  EXPECT_EQ(config.value().arena_mib, 64u);
  EXPECT_EQ(config.value().shutdown_grace_ms, 2000u);
  EXPECT_TRUE(config.value().memory_prefetch);
  EXPECT_TRUE(config.value().memory_lending);
  EXPECT_TRUE(config.value().cpu_control);
  EXPECT_EQ(config.value().cpu_interval_ms, 50u);
  EXPECT_EQ(config.value().cpu_mechanism, "auto");
  EXPECT_TRUE(config.value().cpu_allowed_pid_uids.empty());
  EXPECT_TRUE(config.value().vms.empty());
  EXPECT_TRUE(check_host_config(config.value()).ok());
}

// The error of loading `toml`, which must fail with kInvalidArgument.
#define EXPECT_REFUSED(toml, substring)                                               \
  do {                                                                                \
    Result<HostConfig> refused = load(toml);                                          \
    ASSERT_FALSE(refused.ok()) << "accepted: " << (toml);                             \
    EXPECT_EQ(refused.error().code(), ErrorCode::kInvalidArgument);                   \
    EXPECT_NE(refused.error().message().find(substring), std::string::npos)           \
        << refused.error().message();                                                 \
    EXPECT_NE(refused.error().message().find(path_), std::string::npos) << "no file"; \
  } while (false)

TEST_F(HostConfigTest, OutOfRangeAndMistypedNumbersAreRefusedByName) {
  EXPECT_REFUSED("[host]\nmemory_mib = -1\n", "host.memory_mib must be an integer from 0 to");
  EXPECT_REFUSED("[host]\narena_mib = 0\n", "host.arena_mib must be an integer from 1 to 1024");
  EXPECT_REFUSED("[host]\nworkers = \"two\"\n", "host.workers must be an integer");
  EXPECT_REFUSED("[host]\nvsock_port = 4294967296\n", "host.vsock_port");
  EXPECT_REFUSED("[[vm]]\nname = \"a\"\nmax_streams = 0\n", "vm a.max_streams");
  EXPECT_REFUSED("[[vm]]\nname = \"a\"\nmemory_mib = 1.5\n", "vm a.memory_mib");
  EXPECT_REFUSED("[[vm]]\ntoken = \"t\"\n", "a [[vm]] has no name");
  EXPECT_REFUSED("[host]\nspill_link_gbps = -1.0\n", "host.spill_link_gbps must be a number");
  EXPECT_REFUSED("[host]\nmemory_prefetch = 1\n", "host.memory_prefetch must be true or false");
  EXPECT_REFUSED("[host]\nmemory_lending = \"yes\"\n", "host.memory_lending must be true or false");
  EXPECT_REFUSED("[[vm]]\nname = \"a\"\nvirtual_memory_mib = -5\n", "vm a.virtual_memory_mib");
  EXPECT_REFUSED("[[vm]]\nname = \"a\"\npriority = \"urgent\"\n", "urgent");
  EXPECT_REFUSED("[host]\ncpu_control = 1\n", "host.cpu_control must be true or false");
  EXPECT_REFUSED("[host]\ncpu_interval_ms = 0\n", "host.cpu_interval_ms");
  EXPECT_REFUSED("[host]\ncpu_mechanism = \"cgroup-v3\"\n", "host.cpu_mechanism");
  EXPECT_REFUSED("[host]\ncpu_allowed_pid_uids = [-1]\n", "host.cpu_allowed_pid_uids");
  EXPECT_REFUSED("[[vm]]\nname = \"a\"\ncpu_weight_limit = 0\n", "vm a.cpu_weight_limit");
  EXPECT_REFUSED("[[vm]]\nname = \"a\"\ncpu_weight_limit = 10001\n", "vm a.cpu_weight_limit");
}

TEST_F(HostConfigTest, IvshmemVmsGetTheirSocketsAndBadValuesAreRefused) {
  Result<HostConfig> config = load(R"(
[host]
ivshmem_slots = 2
ivshmem_arena_mib = 8
[[vm]]
name = "a"
ivshmem = true
[[vm]]
name = "b"
ivshmem_socket = "/run/x/b.ivshmem"
[[vm]]
name = "c"
ivshmem = false
[[vm]]
name = "d"
)");
  ASSERT_TRUE(config.ok()) << config.error().to_string();
  EXPECT_EQ(config->ivshmem_slots, 2u);
  EXPECT_EQ(config->ivshmem_arena_mib, 8u);
  EXPECT_EQ(config->ivshmem_sockets,
            (std::map<std::string, std::string>{{"a", ""}, {"b", "/run/x/b.ivshmem"}}));
  const Result<HostConfig> defaults = load("");
  ASSERT_TRUE(defaults.ok());
  EXPECT_EQ(defaults->ivshmem_slots, 4u);
  EXPECT_EQ(defaults->ivshmem_arena_mib, 16u);
  EXPECT_TRUE(defaults->ivshmem_sockets.empty());

  EXPECT_REFUSED("[[vm]]\nname = \"a\"\nivshmem = 1\n", "vm a: ivshmem must be true or false");
  EXPECT_REFUSED("[[vm]]\nname = \"a\"\nivshmem_socket = \"\"\n", "ivshmem_socket must be a path");
  EXPECT_REFUSED("[[vm]]\nname = \"a\"\nivshmem_socket = 3\n", "ivshmem_socket must be a path");
  EXPECT_REFUSED("[host]\nivshmem_slots = 0\n", "host.ivshmem_slots");
  EXPECT_REFUSED("[host]\nivshmem_slots = 33\n", "host.ivshmem_slots");
  EXPECT_REFUSED("[host]\nivshmem_arena_mib = 257\n", "host.ivshmem_arena_mib");
}

TEST_F(HostConfigTest, TheSchedulersHostLevelDefaultsToPriorityAndBadNamesAreRefused) {
  const Result<HostConfig> defaults = load("");
  ASSERT_TRUE(defaults.ok());
  EXPECT_EQ(defaults->gpu_host_policy, vgpu::HostSchedPolicy::kPriority);
  for (const auto& [text, level] : std::vector<std::pair<std::string, vgpu::HostSchedPolicy>>{
           {"fifo", vgpu::HostSchedPolicy::kFifo},
           {"fair-share", vgpu::HostSchedPolicy::kFairShare},
           {"priority", vgpu::HostSchedPolicy::kPriority}}) {
    const Result<HostConfig> config = load("[host]\ngpu_host_policy = \"" + text + "\"\n");
    ASSERT_TRUE(config.ok()) << text;
    EXPECT_EQ(config->gpu_host_policy, level) << text;
  }
  EXPECT_REFUSED("[host]\ngpu_host_policy = \"lottery\"\n",
                 "host.gpu_host_policy must be priority, fair-share or fifo");
  EXPECT_REFUSED("[host]\ngpu_host_policy = 1\n", "host.gpu_host_policy");
}

TEST_F(HostConfigTest, HostCpusMustBeAString) {
  EXPECT_REFUSED("[host]\nhost_cpus = 3\n", "host.host_cpus must be a CPU list as a string");
}

TEST_F(HostConfigTest, UnknownKeysAreRefusedRatherThanIgnored) {
  EXPECT_REFUSED("[host]\nmemory_mb = 64\n", "unknown key 'memory_mb'");
  EXPECT_REFUSED("[[vm]]\nname = \"a\"\nmemroy_mib = 64\n", "unknown key 'memroy_mib'");
  EXPECT_REFUSED("[hots]\nsocket = \"x\"\n", "unknown key 'hots'");
}

TEST_F(HostConfigTest, DeniedPyTorchOperatorsMustBeNonEmptyStrings) {
  EXPECT_REFUSED("[host]\naten_denied = [\"\"]\n", "host.aten_denied");
  EXPECT_REFUSED("[host]\naten_denied = [3]\n", "host.aten_denied");
  Result<HostConfig> none = load("");
  ASSERT_TRUE(none.ok());
  EXPECT_TRUE(none.value().aten_denied.empty());
}

TEST_F(HostConfigTest, SyntaxErrorsNameTheLine) { EXPECT_REFUSED("[host]\nsocket = \n", ":2:"); }

TEST(CheckHostConfig, RefusesWhatFlagsCouldAlsoSetWrongly) {
  HostConfig config;
  config.tcp = "127.0.0.1:abc";
  Status bad_tcp = check_host_config(config);
  ASSERT_FALSE(bad_tcp.ok());
  EXPECT_NE(bad_tcp.error().message().find("tcp (--tcp)"), std::string::npos);

  config = HostConfig{};
  config.arena_mib = kMaxArenaMib + 1;
  Status big_arena = check_host_config(config);
  ASSERT_FALSE(big_arena.ok());
  EXPECT_NE(big_arena.error().message().find("arena_mib (--arena-mib)"), std::string::npos);

  config = HostConfig{};
  config.workers = kMaxWorkers + 1;
  EXPECT_FALSE(check_host_config(config).ok());
  config = HostConfig{};
  config.memory_mib = kMaxMemoryMib + 1;
  EXPECT_FALSE(check_host_config(config).ok());
  config = HostConfig{};
  config.tcp = "[::1]:0";  // a listener may take any free port
  EXPECT_TRUE(check_host_config(config).ok());
}

TEST(CheckHostConfig, HostCpusMustNameCoresThisHostMayRunOn) {
  HostConfig config;
  config.host_cpus = "0-1,x";
  Status malformed = check_host_config(config);
  ASSERT_FALSE(malformed.ok());
  EXPECT_NE(malformed.error().message().find("host_cpus (--host-cpus)"), std::string::npos);
  config.host_cpus = " ";
  ASSERT_FALSE(check_host_config(config).ok());
  EXPECT_NE(check_host_config(config).error().message().find("names no CPU"), std::string::npos);
  config.host_cpus = "1000";  // not among this process's cores
  Status absent = check_host_config(config);
  ASSERT_FALSE(absent.ok());
  EXPECT_NE(absent.error().message().find("CPUs 1000 are not among"), std::string::npos)
      << absent.error().message();
  Result<std::vector<int>> mine = cpu_control::thread_affinity(0);
  ASSERT_TRUE(mine.ok());
  config.host_cpus = std::to_string(mine->back());
  EXPECT_TRUE(check_host_config(config).ok());
  Result<std::vector<int>> parsed = host_cpu_list(config.host_cpus);
  ASSERT_TRUE(parsed.ok());
  EXPECT_EQ(*parsed, std::vector<int>{mine->back()});
}

}  // namespace
}  // namespace malv::host

namespace malv::host {
namespace {

// A VM's cpu_pid: none, a process of an allowed user, or refused naming why.
TEST(CpuPid, OnlyARunningProcessOfAnAllowedUserIsAccepted) {
  vgpu::VmConfig vm{.name = "vm1"};
  EXPECT_TRUE(check_cpu_pid(vm, {}).ok());  // 0: none
  vm.cpu_pid = static_cast<std::uint32_t>(::getpid());
  EXPECT_TRUE(check_cpu_pid(vm, {static_cast<std::uint32_t>(::getuid())}).ok());
  Status refused = check_cpu_pid(vm, {});
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.error().code(), ErrorCode::kPermissionDenied);
  EXPECT_NE(refused.error().message().find("belongs to uid " + std::to_string(::getuid())),
            std::string::npos)
      << refused.error().message();
  vm.cpu_pid = 0x7ffffff0;  // past pid_max
  Status gone = check_cpu_pid(vm, {static_cast<std::uint32_t>(::getuid())});
  ASSERT_FALSE(gone.ok());
  EXPECT_NE(gone.error().message().find("is not a running process"), std::string::npos);
}

}  // namespace
}  // namespace malv::host
