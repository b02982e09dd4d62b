// IvshmemServer end to end: a CPU backend, one VM served on a private
// socket, and the two kinds of client QEMU's place can be taken by here:
//  * guest::Connection::connect_ivshmem(socket), which stands in for QEMU
//    itself (one Connection = one QEMU attached);
//  * RawQemu below: the test reads the set-up itself, maps the region and
//    drives slots by hand (a guest that misbehaves); real guest channels
//    open sessions in its region beside that, each through a mapping of its
//    own (GuestProcessDevice: several processes in one VM sharing the
//    device).
#include "microlake/ivshmem_server.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <functional>
#include <future>
#include <mutex>
#include <random>
#include <thread>
#include <vector>

#include "guest/client_channel.h"
#include "guest/connection_core.h"
#include "guest/ivshmem_device.h"
#include "ipc/ivshmem_layout.h"
#include "ipc/ivshmem_protocol.h"
#include "ipc/shared_region.h"
#include "ipc/socket.h"
#include "malv/connection.h"
#include "proto/encoder.h"

namespace malv {
namespace {

using namespace std::chrono_literals;
using ::testing::HasSubstr;
using Clock = std::chrono::steady_clock;
using ipc::SlotState;

constexpr std::uint64_t kArenaBytes = 1ull << 20;

bool wait_for(const std::function<bool()>& condition, std::chrono::milliseconds limit) {
  const auto until = Clock::now() + limit;
  while (Clock::now() < until) {
    if (condition()) return true;
    std::this_thread::sleep_for(5ms);
  }
  return condition();
}

SlotState state_of(const ipc::SlotControl& slot) {
  return static_cast<SlotState>(slot.state.load(std::memory_order_acquire));
}

void set_state(ipc::SlotControl& slot, std::uint32_t state) {
  slot.state.store(state, std::memory_order_release);
}

void set_state(ipc::SlotControl& slot, SlotState state) {
  set_state(slot, static_cast<std::uint32_t>(state));
}

wire::HelloRequest hello_for(const std::string& vm) {
  wire::HelloRequest hello{};
  hello.magic = wire::kHelloMagic;
  hello.version = wire::kProtocolVersion;
  hello.transport = static_cast<std::uint16_t>(wire::Transport::kShm);
  hello.arena_bytes = kArenaBytes;
  std::snprintf(hello.vm_name, sizeof(hello.vm_name), "%s", vm.c_str());
  return hello;
}

// A QEMU driven by the test: the set-up read with receive_ivshmem_setup,
// the region mapped here, doorbells written into the host's eventfds.
class RawQemu final : public guest::IvshmemDevice {
 public:
  static Result<std::unique_ptr<RawQemu>> attach(const std::string& path) {
    std::unique_ptr<RawQemu> qemu(new RawQemu);
    MALV_ASSIGN_OR_RETURN(qemu->socket_, ipc::Socket::connect_unix(path));
    MALV_ASSIGN_OR_RETURN(qemu->setup_,
                          ipc::receive_ivshmem_setup(qemu->socket_, 0, Clock::now() + 5s));
    struct stat st {};
    if (::fstat(qemu->setup_.shm_fd, &st) != 0) return errno_error("fstat", errno);
    MALV_ASSIGN_OR_RETURN(qemu->shared_,
                          ipc::SharedRegion::map_fd(::dup(qemu->setup_.shm_fd),
                                                    static_cast<std::size_t>(st.st_size)));
    return qemu;
  }

  std::span<std::byte> region() override { return {shared_.data(), shared_.size()}; }
  int shm_fd() const { return setup_.shm_fd; }
  void ring(std::uint32_t peer, std::uint32_t vector) override {
    const auto it = setup_.peers.find(peer);
    if (it == setup_.peers.end() || vector >= it->second.size()) return;
    const std::uint64_t one = 1;
    (void)!::write(it->second[vector], &one, sizeof(one));
  }
  std::string describe() const override { return "the test's raw QEMU"; }

  ipc::IvshmemHeader& header() { return ipc::ivshmem_header(region()); }
  ipc::SlotControl& slot(std::uint32_t i) { return header().slots[i]; }
  std::size_t vectors() {
    const auto it = setup_.peers.find(header().host_peer_id);
    return it == setup_.peers.end() ? 0 : it->second.size();
  }
  // The control doorbell: "look at the slot table".
  void ring_control() { ring(header().host_peer_id, ipc::kIvshmemControlVector); }
  // QEMU exits: its socket closes; the mapping stays (the VM's memory).
  void hang_up() { socket_ = ipc::Socket(); }

  // What a guest does up to kHello, by hand.
  bool claim(std::uint32_t i) {
    std::uint32_t free = static_cast<std::uint32_t>(SlotState::kFree);
    if (!slot(i).state.compare_exchange_strong(free,
                                               static_cast<std::uint32_t>(SlotState::kClaimed))) {
      return false;
    }
    slot(i).heartbeat.fetch_add(1, std::memory_order_relaxed);
    return true;
  }
  void say_hello(std::uint32_t i, const wire::HelloRequest& hello) {
    std::memcpy(&slot(i).hello, &hello, sizeof(hello));
    set_state(slot(i), SlotState::kHello);
    ring_control();
  }
  // Waits until the host answers slot i's hello; its state then.
  SlotState await_answer(std::uint32_t i, std::chrono::milliseconds limit = 5s) {
    wait_for([&] { return state_of(slot(i)) != SlotState::kHello; }, limit);
    return state_of(slot(i));
  }
  wire::HelloReply reply(std::uint32_t i) {
    wire::HelloReply reply;
    std::memcpy(&reply, &slot(i).reply, sizeof(reply));
    reply.message[sizeof(reply.message) - 1] = '\0';
    return reply;
  }

 private:
  RawQemu() = default;
  ipc::Socket socket_;
  ipc::IvshmemClientSetup setup_;
  ipc::SharedRegion shared_;
};

// Another guest process in the RawQemu's VM: a mapping of the region of its
// own (as each process maps the BAR itself), doorbells through the RawQemu.
class GuestProcessDevice final : public guest::IvshmemDevice {
 public:
  static Result<std::unique_ptr<GuestProcessDevice>> open(RawQemu& qemu) {
    std::unique_ptr<GuestProcessDevice> device(new GuestProcessDevice(qemu));
    MALV_ASSIGN_OR_RETURN(device->mapping_,
                          ipc::SharedRegion::map_fd(::dup(qemu.shm_fd()), qemu.region().size()));
    return device;
  }
  std::span<std::byte> region() override { return {mapping_.data(), mapping_.size()}; }
  void ring(std::uint32_t peer, std::uint32_t vector) override { qemu_.ring(peer, vector); }
  std::string describe() const override { return qemu_.describe(); }

 private:
  explicit GuestProcessDevice(RawQemu& qemu) : qemu_(qemu) {}
  RawQemu& qemu_;
  ipc::SharedRegion mapping_;
};

// A session opened by such a process; `*session` is its connection core.
struct Session {
  std::unique_ptr<guest::ConnectionCore> core;
  std::uint32_t slot = 0;  // the slot its arena lies in
  guest::ConnectionCore& operator*() { return *core; }
  void reset() { core.reset(); }
};

Result<Session> open_session(RawQemu& qemu, const std::string& vm = "vm1") {
  MALV_ASSIGN_OR_RETURN(std::unique_ptr<GuestProcessDevice> device, GuestProcessDevice::open(qemu));
  const std::byte* base = device->region().data();
  MALV_ASSIGN_OR_RETURN(auto layout, ipc::read_ivshmem_header(device->region()));
  MALV_ASSIGN_OR_RETURN(auto channel, guest::open_ivshmem_channel(std::move(device), {vm, "", 0}));
  Session session;
  session.core = std::make_unique<guest::ConnectionCore>(std::move(channel));
  const auto offset = static_cast<std::uint64_t>(session.core->arena().data() - base);
  session.slot = static_cast<std::uint32_t>((offset - layout.slots_offset) / layout.slot_bytes);
  return session;
}

Status ping(guest::ConnectionCore& core) {
  MALV_ASSIGN_OR_RETURN(wire::Completion c,
                        core.call(proto::make_command(wire::Opcode::kNop, core.next_tag())));
  if (c.status != 0) return Error(static_cast<ErrorCode>(c.status), "nop failed");
  return ok_status();
}

class IvshmemServerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    static std::atomic<int> counter{0};
    socket_path_ = "/tmp/malv-ivshmem-test-" + std::to_string(::getpid()) + "-" +
                   std::to_string(counter.fetch_add(1)) + ".sock";
    backend_ = accel::make_cpu_backend({.memory_bytes = 256ull << 20, .workers = 2});
  }

  void TearDown() override {
    server_.reset();
    backend_.reset();
  }

  void start(std::uint32_t slots = 4) {
    microlake::IvshmemServerOptions options;
    options.vms = {{"vm1", socket_path_}};
    options.slots = slots;
    options.sq_entries = 256;
    options.cq_entries = 512;
    options.arena_bytes = kArenaBytes;
    options.admit = [this](const microlake::HelloInfo& info) -> Result<microlake::Admission> {
      std::lock_guard lock(mutex_);
      ++admitted_;
      last_info_ = info;
      if (refuse_) return *refuse_;
      return microlake::Admission{};
    };
    auto server = microlake::IvshmemServer::start(*backend_, std::move(options));
    ASSERT_TRUE(server.ok()) << server.error().to_string();
    server_ = std::move(server).value();
  }

  microlake::IvshmemServer::VmStatus status() {
    auto status = server_->status("vm1");
    EXPECT_TRUE(status.has_value());
    return status.value_or(microlake::IvshmemServer::VmStatus{});
  }

  std::unique_ptr<guest::Connection> connect(const std::string& vm = "vm1") {
    auto conn = guest::Connection::connect_ivshmem(socket_path_, {.vm_name = vm});
    EXPECT_TRUE(conn.ok()) << conn.error().to_string();
    return conn.ok() ? std::move(conn).value() : nullptr;
  }

  std::unique_ptr<RawQemu> raw_qemu() {
    auto qemu = RawQemu::attach(socket_path_);
    EXPECT_TRUE(qemu.ok()) << qemu.error().to_string();
    return qemu.ok() ? std::move(qemu).value() : nullptr;
  }

  // The server shows VM `vm` with its `attaches`-th QEMU attached and
  // `sessions` sessions. Waited for: IvshmemServer::attach records a QEMU
  // only after sending it the set-up, so its first session can run (even
  // end) before status() shows it attached.
  bool wait_attached(std::uint64_t attaches, std::uint32_t sessions,
                     const std::string& vm = "vm1") {
    return wait_for(
        [&] {
          auto s = server_->status(vm);
          return s && s->connected && s->connections == attaches && s->sessions == sessions;
        },
        2s);
  }

  // The `attaches`-th QEMU has gone and its sessions have ended.
  bool wait_detached(std::uint64_t attaches, std::chrono::milliseconds limit = 2s) {
    return wait_for(
        [&] {
          auto s = server_->status("vm1");
          return s && s->connections == attaches && !s->connected && s->sessions == 0 &&
                 server_->session_count() == 0;
        },
        limit);
  }

  std::string socket_path_;
  std::unique_ptr<accel::Backend> backend_;
  std::unique_ptr<microlake::IvshmemServer> server_;
  int admitted() {
    std::lock_guard lock(mutex_);
    return admitted_;
  }
  std::optional<microlake::HelloInfo> last_info() {
    std::lock_guard lock(mutex_);
    return last_info_;
  }
  void refuse_with(std::optional<Error> error) {
    std::lock_guard lock(mutex_);
    refuse_ = std::move(error);
  }

 private:
  std::mutex mutex_;  // the admit callback runs on session threads
  int admitted_ = 0;
  std::optional<microlake::HelloInfo> last_info_;
  std::optional<Error> refuse_;
};

std::vector<std::byte> pattern(std::size_t n, unsigned seed) {
  std::vector<std::byte> data(n);
  std::mt19937 rng(seed);
  for (auto& b : data) b = static_cast<std::byte>(rng());
  return data;
}

TEST_F(IvshmemServerTest, AGuestStandingInForQemuRunsCommandsAndIsCountedAsASession) {
  start();
  EXPECT_EQ(server_->vectors(), 5u);
  auto conn = connect();
  ASSERT_TRUE(conn);
  ASSERT_TRUE(conn->ping().ok());
  auto info = conn->device_info();
  ASSERT_TRUE(info.ok()) << info.error().to_string();
  EXPECT_EQ(info->backend, "cpu");
  EXPECT_EQ(conn->arena_bytes(), kArenaBytes);

  {
    auto stream = conn->create_stream();
    ASSERT_TRUE(stream.ok()) << stream.error().to_string();
    for (std::size_t size : {1ul, 4097ul, 3 * kArenaBytes + 5}) {  // the last is chunked
      auto buffer = conn->allocate(size + 3);
      ASSERT_TRUE(buffer.ok()) << buffer.error().to_string();
      const auto data = pattern(size, static_cast<unsigned>(size));
      std::vector<std::byte> back(size);
      ASSERT_TRUE(stream->write(*buffer, 3, data).ok());
      ASSERT_TRUE(stream->read(*buffer, 3, back).ok());
      ASSERT_TRUE(stream->synchronize().ok());
      EXPECT_EQ(data, back) << "size " << size;
    }
  }

  ASSERT_TRUE(wait_attached(1, 1));
  const auto s = status();
  EXPECT_EQ(s.qemu_pid, ::getpid());
  EXPECT_EQ(s.connections, 1u);
  EXPECT_EQ(s.socket_path, socket_path_);
  EXPECT_EQ(server_->session_count(), 1u);
  EXPECT_FALSE(server_->status("not-a-vm").has_value());

  ASSERT_EQ(admitted(), 1);
  const auto info_seen = last_info();
  ASSERT_TRUE(info_seen.has_value());
  EXPECT_EQ(info_seen->vm_name, "vm1");
  EXPECT_EQ(info_seen->via, microlake::HelloInfo::Via::kIvshmem);
  ASSERT_TRUE(info_seen->peer.has_value());
  EXPECT_EQ(info_seen->peer->pid, ::getpid());
  EXPECT_EQ(info_seen->arena_bytes, kArenaBytes);

  conn.reset();
  EXPECT_TRUE(wait_detached(1)) << "sessions " << status().sessions;
}

TEST_F(IvshmemServerTest, QemusAttachedOneAfterAnotherEachGetAWorkingSession) {
  start();
  for (int i = 0; i < 5; ++i) {
    auto conn = connect();
    ASSERT_TRUE(conn) << "attach " << i;
    EXPECT_TRUE(conn->ping().ok()) << "attach " << i;
    EXPECT_TRUE(wait_attached(i + 1, 1)) << "attach " << i;
    conn.reset();
    ASSERT_TRUE(wait_detached(i + 1)) << "attach " << i;
  }
  EXPECT_EQ(status().connections, 5u);
  EXPECT_EQ(status().refused, 0u);
}

TEST_F(IvshmemServerTest, SlotsGoBackToFreeAndAreReusedWithinOneQemu) {
  start(2);
  auto qemu = raw_qemu();
  ASSERT_TRUE(qemu);
  EXPECT_EQ(qemu->vectors(), server_->vectors());
  auto layout = ipc::read_ivshmem_header(qemu->region());
  ASSERT_TRUE(layout.ok()) << layout.error().to_string();
  EXPECT_EQ(*layout, server_->layout());
  EXPECT_STREQ(qemu->header().vm_name, "vm1");

  std::vector<std::uint32_t> used;
  for (int i = 0; i < 6; ++i) {
    auto core = open_session(*qemu);
    ASSERT_TRUE(core.ok()) << "session " << i << ": " << core.error().to_string();
    ASSERT_TRUE(ping(**core).ok()) << "session " << i;
    const std::uint32_t slot = core->slot;
    used.push_back(slot);
    EXPECT_EQ(state_of(qemu->slot(slot)), SlotState::kActive);
    EXPECT_TRUE(wait_for([&] { return status().sessions == 1; }, 2s));
    core->reset();
    EXPECT_TRUE(wait_for([&] { return state_of(qemu->slot(slot)) == SlotState::kFree; }, 2s))
        << "session " << i << ": slot " << slot << " left in state "
        << static_cast<int>(state_of(qemu->slot(slot)));
    EXPECT_TRUE(wait_for([&] { return status().sessions == 0; }, 2s)) << "session " << i;
  }
  EXPECT_EQ(used, std::vector<std::uint32_t>(6, 0u)) << "the first free slot is taken each time";
  EXPECT_TRUE(status().connected);
  EXPECT_EQ(status().connections, 1u);
}

TEST_F(IvshmemServerTest, EverySlotRunsASessionAtOnce) {
  start(3);
  auto qemu = raw_qemu();
  ASSERT_TRUE(qemu);
  std::vector<Session> cores;
  for (int i = 0; i < 3; ++i) {
    auto core = open_session(*qemu);
    ASSERT_TRUE(core.ok()) << core.error().to_string();
    cores.push_back(std::move(core).value());
  }
  for (auto& core : cores) EXPECT_TRUE(ping(*core).ok());
  EXPECT_TRUE(wait_attached(1, 3));
  EXPECT_EQ(server_->session_count(), 3u);
  std::vector<std::uint32_t> slots;
  for (auto& core : cores) slots.push_back(core.slot);
  EXPECT_EQ(slots, (std::vector<std::uint32_t>{0, 1, 2}));
}

// Waits for the guest's hello timeout (20 s in guest/ivshmem_channel.cpp,
// not settable): slow for what it checks.
TEST_F(IvshmemServerTest, AGuestFindingEverySlotBusyIsToldTheRegionIsExhausted) {
  start(2);
  auto qemu = raw_qemu();
  ASSERT_TRUE(qemu);
  auto first = open_session(*qemu);
  auto second = open_session(*qemu);
  ASSERT_TRUE(first.ok() && second.ok());
  const auto begin = Clock::now();
  auto third = open_session(*qemu);
  ASSERT_FALSE(third.ok());
  EXPECT_EQ(third.error().code(), ErrorCode::kResourceExhausted);
  EXPECT_THAT(third.error().message(), HasSubstr("all 2 ivshmem slots"));
  EXPECT_THAT(third.error().message(), HasSubstr("vm1"));
  EXPECT_GE(Clock::now() - begin, 15s);
  // The two sessions were not disturbed.
  EXPECT_TRUE(ping(**first).ok());
  EXPECT_TRUE(ping(**second).ok());
  EXPECT_EQ(status().sessions, 2u);
}

TEST_F(IvshmemServerTest, AGuestFindingEverySlotBusyGetsTheFirstOneFreed) {
  start(2);
  auto qemu = raw_qemu();
  ASSERT_TRUE(qemu);
  auto first = open_session(*qemu);
  auto second = open_session(*qemu);
  ASSERT_TRUE(first.ok() && second.ok());
  auto third = std::async(std::launch::async, [&] { return open_session(*qemu); });
  EXPECT_EQ(third.wait_for(300ms), std::future_status::timeout) << "a third session got in";
  const std::uint32_t freed = second->slot;
  second->reset();
  ASSERT_EQ(third.wait_for(5s), std::future_status::ready);
  auto core = third.get();
  ASSERT_TRUE(core.ok()) << core.error().to_string();
  EXPECT_EQ(core->slot, freed);
  EXPECT_TRUE(ping(**core).ok());
  EXPECT_TRUE(ping(**first).ok());
}

TEST_F(IvshmemServerTest, TheAdmitCallbacksRefusalReachesTheGuestWithItsCodeAndMessage) {
  start();
  refuse_with(Error(ErrorCode::kResourceExhausted, "vm1 has spent its accelerator quota"));
  auto refused = guest::Connection::connect_ivshmem(socket_path_, {.vm_name = "vm1"});
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.error().code(), ErrorCode::kResourceExhausted);
  EXPECT_THAT(refused.error().message(), HasSubstr("vm1 has spent its accelerator quota"));
  EXPECT_EQ(admitted(), 1);
  ASSERT_TRUE(wait_detached(1));

  // Within one QEMU: the refused guest gives its slot back, and once the
  // host has looked at the slot table again the next guest gets it.
  auto qemu = raw_qemu();
  ASSERT_TRUE(qemu);
  auto again = open_session(*qemu);
  ASSERT_FALSE(again.ok());
  EXPECT_EQ(again.error().code(), ErrorCode::kResourceExhausted);
  EXPECT_EQ(state_of(qemu->slot(0)), SlotState::kFree);
  refuse_with(std::nullopt);
  std::this_thread::sleep_for(300ms);  // a few of the host's 100 ms scans
  auto accepted = open_session(*qemu);
  ASSERT_TRUE(accepted.ok()) << accepted.error().to_string();
  EXPECT_EQ(accepted->slot, 0u);
  EXPECT_TRUE(ping(**accepted).ok());
}

// A refused guest frees the slot itself at once; a guest that claims it and
// says hello before the host's next scan must be served, not have its hello
// reclaimed with the refusal's slot (it was, until the host remembered that
// the ended thread was a refusal).
TEST_F(IvshmemServerTest, AGuestSayingHelloRightAfterARefusalInTheSameSlotIsServed) {
  start();
  auto qemu = raw_qemu();
  ASSERT_TRUE(qemu);
  refuse_with(Error(ErrorCode::kResourceExhausted, "vm1 has spent its accelerator quota"));
  auto refused = open_session(*qemu);
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.error().code(), ErrorCode::kResourceExhausted);
  refuse_with(std::nullopt);
  auto accepted = open_session(*qemu);  // a retry, or another process of the VM
  ASSERT_TRUE(accepted.ok()) << accepted.error().to_string();
  EXPECT_TRUE(ping(**accepted).ok());
}

TEST_F(IvshmemServerTest, AHelloNamingAnotherVmIsRefusedNamingBoth) {
  start();
  auto refused = guest::Connection::connect_ivshmem(socket_path_, {.vm_name = "vm2"});
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.error().code(), ErrorCode::kPermissionDenied);
  EXPECT_THAT(refused.error().message(), HasSubstr("'vm1'"));
  EXPECT_THAT(refused.error().message(), HasSubstr("'vm2'"));
  EXPECT_EQ(admitted(), 0) << "the admit callback saw a guest of another VM";
  ASSERT_TRUE(wait_detached(1));
  EXPECT_TRUE(connect());
}

TEST_F(IvshmemServerTest, ASecondQemuIsClosedWithoutASetUpAndTheFirstKeepsWorking) {
  start();
  auto conn = connect();
  ASSERT_TRUE(conn);
  ASSERT_TRUE(conn->ping().ok());
  auto second = ipc::Socket::connect_unix(socket_path_);
  ASSERT_TRUE(second.ok()) << second.error().to_string();
  const auto begin = Clock::now();
  auto setup = ipc::receive_ivshmem_setup(*second, 0, begin + 5s);
  ASSERT_FALSE(setup.ok()) << "the second QEMU got a set-up";
  EXPECT_EQ(setup.error().code(), ErrorCode::kAlreadyExists) << setup.error().to_string();
  EXPECT_LT(Clock::now() - begin, 3s);
  EXPECT_TRUE(wait_for([&] { return status().refused == 1; }, 2s));
  EXPECT_TRUE(wait_attached(1, 1));
  for (int i = 0; i < 10; ++i) ASSERT_TRUE(conn->ping().ok());
  // A Connection standing in for a second QEMU is refused the same way.
  auto third = guest::Connection::connect_ivshmem(socket_path_, {.vm_name = "vm1"});
  EXPECT_FALSE(third.ok());
  EXPECT_TRUE(wait_for([&] { return status().refused == 2; }, 2s));
  EXPECT_TRUE(conn->ping().ok());
}

TEST_F(IvshmemServerTest, AHandDrivenHelloIsAnsweredWithAReplyAndActive) {
  start();
  auto qemu = raw_qemu();
  ASSERT_TRUE(qemu);
  ASSERT_TRUE(qemu->claim(1));
  qemu->say_hello(1, hello_for("vm1"));
  ASSERT_EQ(qemu->await_answer(1), SlotState::kActive);
  const wire::HelloReply reply = qemu->reply(1);
  const ipc::IvshmemLayout& layout = server_->layout();
  EXPECT_EQ(reply.magic, wire::kHelloMagic);
  EXPECT_EQ(reply.status, 0u);
  EXPECT_NE(reply.session_id, 0u);
  EXPECT_EQ(reply.shm_bytes, layout.slot_bytes);
  EXPECT_EQ(reply.sq_entries, layout.channel.sq_entries);
  EXPECT_EQ(reply.cq_entries, layout.channel.cq_entries);
  EXPECT_EQ(reply.arena_offset, layout.channel.arena_offset);
  EXPECT_EQ(reply.arena_bytes, layout.channel.arena_bytes);
  EXPECT_TRUE(wait_for([&] { return status().sessions == 1; }, 2s));
  // kClosing ends it and frees the slot.
  set_state(qemu->slot(1), SlotState::kClosing);
  qemu->ring_control();
  EXPECT_TRUE(wait_for([&] { return state_of(qemu->slot(1)) == SlotState::kFree; }, 2s));
  EXPECT_TRUE(wait_for([&] { return status().sessions == 0; }, 2s));
}

TEST_F(IvshmemServerTest, QemuGoingAwayEndsItsSessionsAndLetsTheNextQemuAttach) {
  start();
  auto qemu = raw_qemu();
  ASSERT_TRUE(qemu);
  ASSERT_TRUE(qemu->claim(0));
  qemu->say_hello(0, hello_for("vm1"));
  ASSERT_EQ(qemu->await_answer(0), SlotState::kActive);
  auto core = open_session(*qemu);  // and a real guest beside it
  ASSERT_TRUE(core.ok()) << core.error().to_string();
  EXPECT_TRUE(wait_attached(1, 2));

  qemu->hang_up();
  const auto begin = Clock::now();
  EXPECT_TRUE(wait_detached(1, 1000ms))
      << "connected " << status().connected << ", sessions " << status().sessions;
  EXPECT_LT(Clock::now() - begin, 1100ms);

  auto next = connect();
  ASSERT_TRUE(next);
  EXPECT_TRUE(next->ping().ok());
  EXPECT_TRUE(wait_attached(2, 1));
  core->reset();  // its QEMU is gone; nothing of it must reach the new one
  EXPECT_TRUE(next->ping().ok());
}

TEST_F(IvshmemServerTest, GarbageInAFreeSlotsStateIsReclaimedAndOtherSlotsKeepServing) {
  start();
  auto qemu = raw_qemu();
  ASSERT_TRUE(qemu);
  auto core = open_session(*qemu);  // slot 0
  ASSERT_TRUE(core.ok()) << core.error().to_string();
  ASSERT_EQ(core->slot, 0u);
  set_state(qemu->slot(2), 77);
  qemu->ring_control();
  EXPECT_TRUE(wait_for([&] { return state_of(qemu->slot(2)) == SlotState::kFree; }, 2s))
      << "state " << static_cast<int>(state_of(qemu->slot(2)));
  EXPECT_TRUE(ping(**core).ok());
  EXPECT_TRUE(wait_attached(1, 1));
}

TEST_F(IvshmemServerTest, GarbageInALiveSessionsStateEndsThatSessionOnly) {
  start();
  auto qemu = raw_qemu();
  ASSERT_TRUE(qemu);
  auto core = open_session(*qemu);  // slot 0
  ASSERT_TRUE(core.ok()) << core.error().to_string();
  ASSERT_TRUE(qemu->claim(1));
  qemu->say_hello(1, hello_for("vm1"));
  ASSERT_EQ(qemu->await_answer(1), SlotState::kActive);
  EXPECT_TRUE(wait_for([&] { return status().sessions == 2; }, 2s));
  set_state(qemu->slot(1), 0xdeadbeef);
  qemu->ring_control();
  EXPECT_TRUE(wait_for([&] { return state_of(qemu->slot(1)) == SlotState::kFree; }, 2s))
      << "state " << static_cast<int>(state_of(qemu->slot(1)));
  EXPECT_TRUE(wait_for([&] { return status().sessions == 1; }, 2s));
  EXPECT_TRUE(ping(**core).ok());
}

TEST_F(IvshmemServerTest, MalformedHellosAreRefusedWithTheReason) {
  start(6);
  auto qemu = raw_qemu();
  ASSERT_TRUE(qemu);
  struct Case {
    const char* what;
    std::function<void(wire::HelloRequest&)> spoil;
    ErrorCode code;
    const char* reason;
  };
  const std::vector<Case> cases = {
      {"bad magic", [](wire::HelloRequest& h) { h.magic = 0x0BADF00D; },
       ErrorCode::kInvalidArgument, "bad magic"},
      {"other version", [](wire::HelloRequest& h) { h.version = wire::kProtocolVersion + 9; },
       ErrorCode::kUnimplemented, "protocol version"},
      {"stream transport",
       [](wire::HelloRequest& h) {
         h.transport = static_cast<std::uint16_t>(wire::Transport::kStream);
       },
       ErrorCode::kInvalidArgument, "not a stream"},
      {"unterminated name",
       [](wire::HelloRequest& h) { std::memset(h.vm_name, 'x', sizeof(h.vm_name)); },
       ErrorCode::kInvalidArgument, "NUL-terminated"},
      {"empty name", [](wire::HelloRequest& h) { h.vm_name[0] = '\0'; },
       ErrorCode::kInvalidArgument, "empty vm name"},
  };
  auto core = open_session(*qemu);  // a good session beside the bad ones, in slot 0
  ASSERT_TRUE(core.ok()) << core.error().to_string();
  // Each in a slot of its own: a slot reused at once after a refusal is
  // AGuestSayingHelloRightAfterARefusalInTheSameSlotIsServed's bug.
  std::uint32_t slot = 1;
  for (const Case& c : cases) {
    ASSERT_TRUE(qemu->claim(slot)) << c.what;
    wire::HelloRequest hello = hello_for("vm1");
    c.spoil(hello);
    qemu->say_hello(slot, hello);
    ASSERT_EQ(qemu->await_answer(slot), SlotState::kRefused) << c.what;
    const wire::HelloReply reply = qemu->reply(slot);
    EXPECT_EQ(reply.magic, wire::kHelloMagic) << c.what;
    EXPECT_EQ(static_cast<ErrorCode>(reply.status), c.code) << c.what;
    EXPECT_THAT(reply.message, HasSubstr(c.reason)) << c.what;
    set_state(qemu->slot(slot), SlotState::kFree);  // the guest read its refusal
    EXPECT_TRUE(ping(**core).ok()) << c.what;
    ++slot;
  }
  EXPECT_EQ(admitted(), 1) << "only the good session reached the admit callback";
  EXPECT_TRUE(wait_attached(1, 1));
}

// One test for every heartbeat case: each waits out
// ipc::kIvshmemHeartbeatTimeout (3 s).
TEST_F(IvshmemServerTest, SlotsWhoseHeartbeatStopsAreReclaimedAndLiveOnesAreKept) {
  start();
  auto qemu = raw_qemu();
  ASSERT_TRUE(qemu);
  auto live = open_session(*qemu);  // slot 0: its heartbeat thread keeps it
  ASSERT_TRUE(live.ok()) << live.error().to_string();
  // Slot 1: an admitted session whose guest never beats.
  ASSERT_TRUE(qemu->claim(1));
  qemu->say_hello(1, hello_for("vm1"));
  ASSERT_EQ(qemu->await_answer(1), SlotState::kActive);
  // Slot 2: claimed, then the guest died before its hello.
  ASSERT_TRUE(qemu->claim(2));
  // Slot 3: refused, and the guest died before reading the refusal.
  ASSERT_TRUE(qemu->claim(3));
  wire::HelloRequest bad = hello_for("vm1");
  bad.magic = 1;
  qemu->say_hello(3, bad);
  ASSERT_EQ(qemu->await_answer(3), SlotState::kRefused);
  const auto begin = Clock::now();
  EXPECT_TRUE(wait_for([&] { return status().sessions == 2; }, 2s));

  auto all_free = [&] {
    for (std::uint32_t i : {1u, 2u, 3u}) {
      if (state_of(qemu->slot(i)) != SlotState::kFree) return false;
    }
    return true;
  };
  EXPECT_FALSE(wait_for(all_free, 2000ms)) << "reclaimed long before the heartbeat timeout";
  EXPECT_TRUE(wait_for(all_free, 3000ms))
      << "slot states " << static_cast<int>(state_of(qemu->slot(1))) << " "
      << static_cast<int>(state_of(qemu->slot(2))) << " "
      << static_cast<int>(state_of(qemu->slot(3)));
  const auto took = Clock::now() - begin;
  EXPECT_GE(took, 2500ms);
  EXPECT_LT(took, 5000ms);
  EXPECT_TRUE(wait_for([&] { return status().sessions == 1; }, 1s));
  EXPECT_EQ(state_of(qemu->slot(0)), SlotState::kActive);
  EXPECT_TRUE(ping(**live).ok()) << "a session that beats was ended";
}

TEST_F(IvshmemServerTest, ASlotCountTheRegionCannotHoldIsRefusedAtStart) {
  for (std::uint32_t slots : {0u, ipc::kIvshmemMaxSlots + 1}) {
    microlake::IvshmemServerOptions options;
    options.vms = {{"vm1", socket_path_}};
    options.slots = slots;
    auto server = microlake::IvshmemServer::start(*backend_, std::move(options));
    ASSERT_FALSE(server.ok()) << slots;
    EXPECT_EQ(server.error().code(), ErrorCode::kInvalidArgument);
  }
}

TEST_F(IvshmemServerTest, EachVmHasItsOwnSocketAndRegion) {
  const std::string other_path = socket_path_ + ".vm2";
  microlake::IvshmemServerOptions options;
  options.vms = {{"vm1", socket_path_}, {"vm2", other_path}};
  options.slots = 2;
  options.sq_entries = 256;
  options.cq_entries = 512;
  options.arena_bytes = kArenaBytes;
  auto started = microlake::IvshmemServer::start(*backend_, std::move(options));
  ASSERT_TRUE(started.ok()) << started.error().to_string();
  server_ = std::move(started).value();
  auto vm1 = connect("vm1");
  ASSERT_TRUE(vm1);
  auto vm2 = guest::Connection::connect_ivshmem(other_path, {.vm_name = "vm2"});
  ASSERT_TRUE(vm2.ok()) << vm2.error().to_string();
  EXPECT_TRUE(vm1->ping().ok());
  EXPECT_TRUE((*vm2)->ping().ok());
  EXPECT_TRUE(wait_attached(1, 1, "vm1"));
  EXPECT_TRUE(wait_attached(1, 1, "vm2"));
  EXPECT_EQ(server_->session_count(), 2u);
  const auto all = server_->status();
  ASSERT_EQ(all.size(), 2u);
  EXPECT_EQ(all[0].vm, "vm1");
  EXPECT_EQ(all[1].vm, "vm2");
  EXPECT_THAT(server_->metrics_text(), HasSubstr("malv_vm_ivshmem_sessions{vm=\"vm2\"} 1\n"));
  // vm2's socket does not serve vm1, however its guest names itself.
  vm2->reset();
  ASSERT_TRUE(wait_for([&] { return !server_->status("vm2")->connected; }, 2s));
  auto impostor = guest::Connection::connect_ivshmem(other_path, {.vm_name = "vm1"});
  ASSERT_FALSE(impostor.ok());
  EXPECT_EQ(impostor.error().code(), ErrorCode::kPermissionDenied);
  EXPECT_TRUE(vm1->ping().ok());
}

TEST_F(IvshmemServerTest, StopEndsSessionsAndRemovesTheSocketFile) {
  start();
  // A guest process's session beside the test's QEMU, whose slot the test
  // can watch.
  auto qemu = raw_qemu();
  ASSERT_TRUE(qemu);
  auto core = open_session(*qemu);
  ASSERT_TRUE(core.ok()) << core.error().to_string();
  ASSERT_TRUE(ping(**core).ok());
  EXPECT_TRUE(wait_attached(1, 1));
  ASSERT_EQ(::access(socket_path_.c_str(), F_OK), 0);
  server_->stop();
  EXPECT_EQ(server_->session_count(), 0u);
  EXPECT_FALSE(status().connected);
  EXPECT_NE(::access(socket_path_.c_str(), F_OK), 0);
  EXPECT_FALSE(ipc::Socket::connect_unix(socket_path_).ok());
  EXPECT_EQ(state_of(qemu->slot(core->slot)), SlotState::kFree) << "the guest is not told";
  server_->stop();  // a second stop is harmless
}

// A QEMU that attaches right after the last one hung up (a QEMU restarted at
// once; here a guest standing in for QEMU that reconnects) is not a second
// QEMU, though the old one's sessions may still be ending (it was refused
// until a link counted as gone when its hang-up was seen).
TEST_F(IvshmemServerTest, AQemuAttachingRightAfterTheLastOneLeftIsNotTakenForASecondOne) {
  start();
  for (int i = 0; i < 20; ++i) {
    auto conn = guest::Connection::connect_ivshmem(socket_path_, {.vm_name = "vm1"});
    ASSERT_TRUE(conn.ok()) << "attach " << i << ": " << conn.error().to_string();
    ASSERT_TRUE((*conn)->ping().ok()) << "attach " << i;
  }
  EXPECT_EQ(status().refused, 0u);
  EXPECT_EQ(status().connections, 20u);
}

// A guest whose host stopped is told its session ended (kDisconnected): the
// host frees every slot, leaving kActive before it zeroes the slot's memory
// (kReclaiming), so a guest that finds its rings zeroed knows why (it got
// kDataLoss from the zeroed ring header before; before that it polled for
// ever: the 5 s guard below lets it go if that comes back).
TEST_F(IvshmemServerTest, AGuestWhoseHostStoppedIsToldItsSessionEnded) {
  start();
  auto qemu = raw_qemu();
  ASSERT_TRUE(qemu);
  auto core = open_session(*qemu);
  ASSERT_TRUE(core.ok()) << core.error().to_string();
  ASSERT_TRUE(ping(**core).ok());
  const std::uint32_t slot = core->slot;
  server_->stop();
  auto pinged = std::async(std::launch::async, [&] { return ping(**core); });
  const bool answered = pinged.wait_for(5s) == std::future_status::ready;
  EXPECT_TRUE(answered) << "the guest still waits on a host that stopped; slot " << slot
                        << " is in state " << static_cast<int>(state_of(qemu->slot(slot)));
  if (!answered) set_state(qemu->slot(slot), SlotState::kFree);  // let the guest go
  const Status result = pinged.get();
  ASSERT_FALSE(result.ok());
  EXPECT_EQ(result.error().code(), ErrorCode::kDisconnected) << result.error().to_string();
}

// A region with no IvshmemServer behind it: the test answers one hello by
// hand, as a host would, and then the host is gone for good (it died: no
// one bumps the region's host heartbeat or frees the slot).
class RegionDevice final : public guest::IvshmemDevice {
 public:
  explicit RegionDevice(std::span<std::byte> memory) : memory_(memory) {}
  std::span<std::byte> region() override { return memory_; }
  void ring(std::uint32_t, std::uint32_t) override {}
  std::string describe() const override { return "a region whose host died"; }

 private:
  std::span<std::byte> memory_;
};

TEST(IvshmemGuest, AGuestWhoseHostDiedIsToldWithinTheHeartbeatTimeout) {
  auto layout = ipc::IvshmemLayout::compute(2, 256, 512, kArenaBytes);
  ASSERT_TRUE(layout.ok()) << layout.error().to_string();
  auto region = ipc::SharedRegion::create("malv-test-dead-host", layout->total_bytes);
  ASSERT_TRUE(region.ok()) << region.error().to_string();
  const std::span<std::byte> memory(region->data(), region->size());
  ipc::initialize_ivshmem_header(memory, *layout, "vm1", 0);
  std::thread host([&] {
    ipc::SlotControl& ctl = ipc::ivshmem_header(memory).slots[0];
    if (!wait_for([&] { return state_of(ctl) == SlotState::kHello; }, 5s)) return;
    auto view = ipc::ChannelView::over(layout->slot_memory(memory, 0), layout->channel);
    if (!view.ok()) return;
    ipc::initialize_control_block(*view, layout->channel);
    wire::HelloReply reply{};
    reply.magic = wire::kHelloMagic;
    reply.version = wire::kProtocolVersion;
    reply.session_id = 1;
    reply.shm_bytes = layout->slot_bytes;
    reply.sq_entries = layout->channel.sq_entries;
    reply.cq_entries = layout->channel.cq_entries;
    reply.arena_offset = layout->channel.arena_offset;
    reply.arena_bytes = layout->channel.arena_bytes;
    std::memcpy(&ctl.reply, &reply, sizeof(reply));
    set_state(ctl, SlotState::kActive);
  });
  auto channel =
      guest::open_ivshmem_channel(std::make_unique<RegionDevice>(memory), {"vm1", "", 0});
  host.join();
  ASSERT_TRUE(channel.ok()) << channel.error().to_string();
  guest::ConnectionCore core(std::move(channel).value());
  const auto begin = Clock::now();
  const Status pinged = ping(core);  // no one will answer
  const auto took = Clock::now() - begin;
  ASSERT_FALSE(pinged.ok());
  EXPECT_EQ(pinged.error().code(), ErrorCode::kDisconnected) << pinged.error().to_string();
  EXPECT_THAT(pinged.error().message(), HasSubstr("heartbeat"));
  EXPECT_GE(took, 2500ms);
  EXPECT_LT(took, 6s);
}

}  // namespace
}  // namespace malv
