#include "microlake/ivshmem_server.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <linux/falloc.h>
#include <poll.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <array>
#include <cstring>

#include "base/clock.h"
#include "base/log.h"
#include "base/thread_priority.h"
#include "base/vm_metrics.h"
#include "ipc/futex.h"
#include "ipc/ivshmem_protocol.h"
#include "ipc/shared_region.h"
#include "microlake/hello_checks.h"
#include "microlake/shm_endpoint.h"

namespace malv::microlake {
namespace {

constexpr std::string_view kLog = "ivshmem";
// The host's peer id and the VM's, as QEMU sees them.
constexpr std::int64_t kHostPeerId = 0;
constexpr std::int64_t kVmPeerId = 1;
// How often the control thread looks at the slot table without a doorbell.
constexpr int kScanPeriodMs = 100;

void close_all(std::vector<int>& fds) {
  for (const int fd : fds) ::close(fd);
  fds.clear();
}

ipc::SlotState slot_state(const ipc::SlotControl& slot) {
  return static_cast<ipc::SlotState>(slot.state.load(std::memory_order_acquire));
}

void set_slot_state(ipc::SlotControl& slot, ipc::SlotState state) {
  slot.state.store(static_cast<std::uint32_t>(state), std::memory_order_release);
}

}  // namespace

// One attached QEMU: its region, its doorbells, its sessions.
class IvshmemServer::Link {
 public:
  Link(IvshmemServer& server, std::string vm, ipc::Socket qemu)
      : server_(server), vm_(std::move(vm)), qemu_(std::move(qemu)) {
    if (Result<ipc::Socket::PeerCredentials> peer = qemu_.peer_credentials(); peer.ok()) {
      peer_ = peer.value();
    }
  }
  ~Link() {
    stop();
    if (control_.joinable()) control_.join();
    close_all(host_vectors_);
    close_all(guest_vectors_);
    if (stop_fd_ >= 0) ::close(stop_fd_);
  }
  Link(const Link&) = delete;
  Link& operator=(const Link&) = delete;

  // The region, the eventfds, the set-up QEMU waits for, the control thread.
  Status open() {
    const ipc::IvshmemLayout& layout = server_.layout_;
    MALV_ASSIGN_OR_RETURN(ipc::SharedRegion region,
                          ipc::SharedRegion::create("malv-ivshmem-" + vm_, layout.total_bytes));
    region_ = std::make_shared<ipc::SharedRegion>(std::move(region));
    ipc::initialize_ivshmem_header(memory(), layout, vm_, kHostPeerId);
    stop_fd_ = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (stop_fd_ < 0) return errno_error("eventfd", errno);
    for (std::uint32_t v = 0; v < server_.vectors(); ++v) {
      const int host = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
      if (host < 0) return errno_error("eventfd", errno);
      host_vectors_.push_back(host);
      const int guest = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
      if (guest < 0) return errno_error("eventfd", errno);
      guest_vectors_.push_back(guest);
    }
    MALV_TRY(qemu_.set_timeouts(std::chrono::milliseconds(0), std::chrono::milliseconds(2000)));
    MALV_TRY(ipc::send_ivshmem_setup(qemu_, kVmPeerId, region_->fd(), kHostPeerId, host_vectors_,
                                     guest_vectors_));
    const MonoTime now = MonoClock::now();
    for (SlotRecord& record : slots_) record.heartbeat_seen = now;
    control_ = std::thread([this] {
      name_this_thread("malv-ivshmem");
      control_loop();
    });
    return ok_status();
  }

  void stop() {
    stopping_.store(true, std::memory_order_release);
    if (stop_fd_ >= 0) {
      const std::uint64_t one = 1;
      (void)!::write(stop_fd_, &one, sizeof(one));
    }
  }
  bool finished() const { return finished_.load(std::memory_order_acquire); }
  // open() failed: no thread runs, nothing is left to end.
  void abandon() {
    stop();
    finished_.store(true, std::memory_order_release);
  }
  // Its QEMU is gone (its sessions may still be ending): another may attach.
  // Looks at the socket itself too: a QEMU that just hung up is gone even
  // before the control thread has noticed.
  bool detached() const {
    if (detached_.load(std::memory_order_acquire) || finished()) return true;
    pollfd pfd{qemu_.fd(), POLLIN | POLLRDHUP, 0};
    if (::poll(&pfd, 1, 0) <= 0) return false;
    return (pfd.revents & (POLLHUP | POLLRDHUP | POLLERR | POLLNVAL | POLLIN)) != 0;
  }
  pid_t qemu_pid() const { return peer_ ? peer_->pid : 0; }
  std::uint32_t sessions() const { return sessions_.load(std::memory_order_relaxed); }

 private:
  struct SlotRecord {
    std::thread thread;               // a session (or its hello) runs
    std::atomic<bool> done{false};    // that thread has ended
    bool refused = false;             // it refused the hello (set before done)
    ShmEndpoint* endpoint = nullptr;  // guarded by mutex_
    bool stop_requested = false;      // guarded by mutex_
    std::uint64_t last_heartbeat = 0;
    MonoTime heartbeat_seen;
  };

  std::span<std::byte> memory() const { return {region_->data(), region_->size()}; }
  ipc::SlotControl& control(std::uint32_t slot) const {
    return ipc::ivshmem_header(memory()).slots[slot];
  }

  void control_loop() {
    const int epoll = ::epoll_create1(EPOLL_CLOEXEC);
    if (epoll < 0) {
      log::warn(kLog, "{}: epoll_create1: {}", vm_, std::strerror(errno));
      finish();
      return;
    }
    auto watch = [&](int fd, std::uint64_t tag, std::uint32_t events) {
      epoll_event event{};
      event.events = events;
      event.data.u64 = tag;
      (void)::epoll_ctl(epoll, EPOLL_CTL_ADD, fd, &event);
    };
    constexpr std::uint64_t kStopTag = ~0ull, kQemuTag = ~0ull - 1;
    watch(stop_fd_, kStopTag, EPOLLIN);
    watch(qemu_.fd(), kQemuTag, EPOLLIN | EPOLLRDHUP);
    for (std::uint32_t v = 0; v < host_vectors_.size(); ++v) watch(host_vectors_[v], v, EPOLLIN);

    const char* why = "the host is stopping";
    std::array<epoll_event, 16> events{};
    while (!stopping_.load(std::memory_order_acquire)) {
      const int n =
          ::epoll_wait(epoll, events.data(), static_cast<int>(events.size()), kScanPeriodMs);
      bool qemu_gone = false;
      for (int i = 0; i < n; ++i) {
        const std::uint64_t tag = events[i].data.u64;
        if (tag == kStopTag) continue;
        if (tag == kQemuTag) {
          qemu_gone = true;  // QEMU never writes after its set-up: readable is its end
          continue;
        }
        std::uint64_t count = 0;
        (void)!::read(host_vectors_[tag], &count, sizeof(count));
        if (tag != ipc::kIvshmemControlVector) ring_submission_doorbell(tag - 1);
      }
      if (qemu_gone) {
        why = "its QEMU went away";
        detached_.store(true, std::memory_order_release);
        break;
      }
      scan_slots();
    }
    ::close(epoll);
    log::info(kLog, "{}: detached ({}); ending {} session(s)", vm_, why, sessions());
    for (std::uint32_t slot = 0; slot < server_.layout_.slot_count; ++slot) {
      end_session(slot, why);
    }
    for (std::uint32_t slot = 0; slot < server_.layout_.slot_count; ++slot) {
      if (slots_[slot].thread.joinable()) slots_[slot].thread.join();
      // A guest still polling (QEMU lives on when the host stops) sees its
      // slot freed, and its session end.
      reclaim(slot);
    }
    finish();
  }

  void finish() {
    qemu_.shutdown();
    finished_.store(true, std::memory_order_release);
  }

  // The guest published commands and saw the dispatcher asleep: wake it.
  void ring_submission_doorbell(std::uint64_t slot) {
    if (slot >= server_.layout_.slot_count) return;
    // Only a slot whose session runs: before that, its control block is
    // being made (a guest ringing early gains nothing).
    std::lock_guard lock(mutex_);
    if (slots_[slot].endpoint == nullptr) return;
    const std::span<std::byte> channel = server_.layout_.slot_memory(memory(), slot);
    auto* block = reinterpret_cast<ipc::ControlBlock*>(channel.data());
    ipc::wake_ring_consumer(&block->sq);
  }

  void scan_slots() {
    const MonoTime now = MonoClock::now();
    ipc::ivshmem_header(memory()).host_heartbeat.fetch_add(1, std::memory_order_relaxed);
    for (std::uint32_t slot = 0; slot < server_.layout_.slot_count; ++slot) {
      SlotRecord& record = slots_[slot];
      ipc::SlotControl& ctl = control(slot);
      const std::uint64_t heartbeat = ctl.heartbeat.load(std::memory_order_relaxed);
      if (heartbeat != record.last_heartbeat) {
        record.last_heartbeat = heartbeat;
        record.heartbeat_seen = now;
      }
      const bool silent = now - record.heartbeat_seen > ipc::kIvshmemHeartbeatTimeout;
      const ipc::SlotState state = slot_state(ctl);
      if (record.thread.joinable()) {
        if (record.done.load(std::memory_order_acquire)) {
          record.thread.join();
          // A refusal stays for the guest to read: it frees the slot itself
          // (and may at once claim it again), or its heartbeat stops and
          // the host does. Only a session that ran is reclaimed here.
          if (!record.refused) reclaim(slot);
        } else if (state == ipc::SlotState::kClosing) {
          end_session(slot, "the guest closed it");
        } else if (state != ipc::SlotState::kActive && state != ipc::SlotState::kHello &&
                   state != ipc::SlotState::kRefused) {
          end_session(slot, "the guest garbled its slot's state");
        } else if (silent) {
          end_session(slot, "the guest's heartbeat stopped");
        }
        continue;
      }
      switch (state) {
        case ipc::SlotState::kFree: break;
        case ipc::SlotState::kHello: start_session(slot); break;
        case ipc::SlotState::kClosing: reclaim(slot); break;
        case ipc::SlotState::kClaimed:
        case ipc::SlotState::kRefused:
        case ipc::SlotState::kActive:
          if (silent) {
            log::info(kLog, "{}: slot {} reclaimed: its guest stopped its heartbeat", vm_, slot);
            reclaim(slot);
          }
          break;
        default: reclaim(slot); break;  // not a state at all
      }
    }
  }

  void start_session(std::uint32_t slot) {
    SlotRecord& record = slots_[slot];
    record.done.store(false, std::memory_order_relaxed);
    record.refused = false;
    {
      std::lock_guard lock(mutex_);
      record.stop_requested = false;
    }
    record.heartbeat_seen = MonoClock::now();
    record.thread = std::thread([this, slot] {
      name_this_thread("malv-dispatch");
      request_short_slice(kShortSlice);
      run_session(slot);
      slots_[slot].done.store(true, std::memory_order_release);
    });
  }

  void refuse(std::uint32_t slot, const Error& error) {
    log::warn(kLog, "{}: slot {}: guest refused: {}", vm_, slot, error.to_string());
    slots_[slot].refused = true;
    ipc::SlotControl& ctl = control(slot);
    const wire::HelloReply reply = refusal_reply(error);
    std::memcpy(&ctl.reply, &reply, sizeof(reply));
    set_slot_state(ctl, ipc::SlotState::kRefused);
  }

  void run_session(std::uint32_t slot) {
    const ipc::IvshmemLayout& layout = server_.layout_;
    ipc::SlotControl& ctl = control(slot);
    wire::HelloRequest hello;  // a copy: the guest cannot change what was checked
    std::memcpy(&hello, &ctl.hello, sizeof(hello));
    if (Status checked = check_hello(hello, HelloInfo::Via::kIvshmem); !checked.ok()) {
      refuse(slot, checked.error());
      return;
    }
    const std::string claimed = bounded_string(hello.vm_name, sizeof(hello.vm_name));
    if (claimed != vm_) {
      refuse(slot,
             Error(ErrorCode::kPermissionDenied,
                   fmt::format("this ivshmem device belongs to VM '{}', not '{}'", vm_, claimed)));
      return;
    }
    HelloInfo info;
    info.vm_name = vm_;
    info.credential = bounded_string(hello.credential, sizeof(hello.credential));
    info.via = HelloInfo::Via::kIvshmem;
    info.peer = peer_;
    info.arena_bytes = layout.channel.arena_bytes;
    Admission admission;
    admission.limits = server_.options_.limits;
    if (server_.options_.admit) {
      Result<Admission> admitted = server_.options_.admit(info);
      if (!admitted.ok()) {
        refuse(slot, admitted.error());
        return;
      }
      admission = std::move(admitted).value();
    }
    const std::span<std::byte> channel = layout.slot_memory(memory(), slot);
    Result<ipc::ChannelView> view = ipc::ChannelView::over(channel, layout.channel);
    if (!view.ok()) {
      refuse(slot, view.error());
      return;
    }
    ipc::initialize_control_block(view.value(), layout.channel);
    Result<std::unique_ptr<ShmEndpoint>> endpoint = ShmEndpoint::create_in_slot(
        vm_, channel, region_, layout.channel, server_.backend_, std::move(admission.backend),
        admission.limits, admission.services);
    if (!endpoint.ok()) {
      refuse(slot, endpoint.error());
      return;
    }
    wire::HelloReply reply{};
    reply.magic = wire::kHelloMagic;
    reply.version = wire::kProtocolVersion;
    reply.session_id = next_session_id();
    reply.shm_bytes = layout.slot_bytes;
    reply.sq_entries = layout.channel.sq_entries;
    reply.cq_entries = layout.channel.cq_entries;
    reply.arena_offset = layout.channel.arena_offset;
    reply.arena_bytes = layout.channel.arena_bytes;
    std::memcpy(&ctl.reply, &reply, sizeof(reply));
    set_slot_state(ctl, ipc::SlotState::kActive);
    {
      std::lock_guard lock(mutex_);
      slots_[slot].endpoint = endpoint.value().get();
      if (slots_[slot].stop_requested) endpoint.value()->stop();
    }
    log::info(kLog, "{}: slot {}: session {} (guest pid {} in the VM)", vm_, slot, reply.session_id,
              ctl.guest_pid);
    sessions_.fetch_add(1, std::memory_order_relaxed);
    endpoint.value()->run();
    {
      std::lock_guard lock(mutex_);
      slots_[slot].endpoint = nullptr;
    }
    endpoint.value().reset();  // the session's resources go back now
    sessions_.fetch_sub(1, std::memory_order_relaxed);
  }

  void end_session(std::uint32_t slot, const char* why) {
    std::lock_guard lock(mutex_);
    SlotRecord& record = slots_[slot];
    if (!record.stop_requested && record.endpoint != nullptr) {
      log::info(kLog, "{}: slot {}: session ends: {}", vm_, slot, why);
    }
    record.stop_requested = true;
    if (record.endpoint != nullptr) record.endpoint->stop();
  }

  // The slot's memory goes back to zero pages (nothing of the last session
  // is left for the next) and the slot is free again.
  void reclaim(std::uint32_t slot) {
    const ipc::IvshmemLayout& layout = server_.layout_;
    // First out of kActive: a guest that then sees its rings zeroed knows
    // why.
    set_slot_state(control(slot), ipc::SlotState::kReclaiming);
    if (::fallocate(region_->fd(), FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
                    static_cast<off_t>(layout.slot_offset(slot)),
                    static_cast<off_t>(layout.slot_bytes)) != 0) {
      std::memset(layout.slot_memory(memory(), slot).data(), 0, layout.slot_bytes);
    }
    ipc::SlotControl& ctl = control(slot);
    ctl.guest_pid = 0;
    set_slot_state(ctl, ipc::SlotState::kFree);
  }

  IvshmemServer& server_;
  std::string vm_;
  ipc::Socket qemu_;
  std::optional<ipc::Socket::PeerCredentials> peer_;
  std::shared_ptr<ipc::SharedRegion> region_;
  std::vector<int> host_vectors_, guest_vectors_;
  int stop_fd_ = -1;
  std::atomic<bool> stopping_{false};
  std::atomic<bool> finished_{false};
  std::atomic<bool> detached_{false};
  std::atomic<std::uint32_t> sessions_{0};
  std::mutex mutex_;
  std::array<SlotRecord, ipc::kIvshmemMaxSlots> slots_;
  std::thread control_;  // last: started once everything above exists
};

IvshmemServer::IvshmemServer(accel::Backend& backend, IvshmemServerOptions options,
                             ipc::IvshmemLayout layout)
    : backend_(backend), options_(std::move(options)), layout_(layout) {}

Result<std::unique_ptr<IvshmemServer>> IvshmemServer::start(accel::Backend& backend,
                                                            IvshmemServerOptions options) {
  MALV_ASSIGN_OR_RETURN(ipc::IvshmemLayout layout,
                        ipc::IvshmemLayout::compute(options.slots, options.sq_entries,
                                                    options.cq_entries, options.arena_bytes));
  std::unique_ptr<IvshmemServer> server(new IvshmemServer(backend, std::move(options), layout));
  server->stop_fd_ = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (server->stop_fd_ < 0) return errno_error("eventfd", errno);
  for (const IvshmemVm& vm : server->options_.vms) {
    auto entry = std::make_unique<VmEntry>();
    entry->config = vm;
    Result<ipc::Socket> listener = ipc::Socket::listen_unix(vm.socket_path);
    if (!listener.ok()) {
      return std::move(listener).error().with_context(
          fmt::format("VM {}: ivshmem socket {}", vm.vm_name, vm.socket_path));
    }
    entry->listener = std::make_unique<ipc::Socket>(std::move(listener).value());
    log::info(kLog, "VM {}: ivshmem server on {} ({} slots of {} MiB arena, vectors={})",
              vm.vm_name, vm.socket_path, layout.slot_count, layout.channel.arena_bytes >> 20,
              server->vectors());
    server->vms_.push_back(std::move(entry));
  }
  server->acceptor_ = std::thread([raw = server.get()] {
    name_this_thread("malv-ivshmem-accept");
    raw->accept_loop();
  });
  return server;
}

IvshmemServer::~IvshmemServer() {
  stop();
  if (stop_fd_ >= 0) ::close(stop_fd_);
}

void IvshmemServer::stop() {
  if (stopping_.exchange(true)) return;
  const std::uint64_t one = 1;
  (void)!::write(stop_fd_, &one, sizeof(one));
  if (acceptor_.joinable()) acceptor_.join();
  std::vector<std::shared_ptr<Link>> links;
  {
    std::lock_guard lock(mutex_);
    for (auto& vm : vms_) {
      if (vm->link) links.push_back(std::move(vm->link));
    }
    for (auto& link : retired_) links.push_back(std::move(link));
    retired_.clear();
  }
  links.clear();  // each Link's destructor ends its sessions and joins
  for (auto& vm : vms_) {
    vm->listener.reset();
    ::unlink(vm->config.socket_path.c_str());
  }
}

void IvshmemServer::accept_loop() {
  std::vector<pollfd> fds;
  fds.push_back({stop_fd_, POLLIN, 0});
  for (const auto& vm : vms_) fds.push_back({vm->listener->fd(), POLLIN, 0});
  while (!stopping_.load(std::memory_order_acquire)) {
    if (::poll(fds.data(), fds.size(), 500) < 0 && errno != EINTR) {
      log::warn(kLog, "poll: {}", std::strerror(errno));
      return;
    }
    {
      // Links whose QEMU left have ended their sessions: let them go.
      std::lock_guard lock(mutex_);
      std::erase_if(retired_, [](const std::shared_ptr<Link>& link) { return link->finished(); });
    }
    for (std::size_t i = 1; i < fds.size(); ++i) {
      if ((fds[i].revents & POLLIN) == 0) continue;
      Result<ipc::Socket> accepted = vms_[i - 1]->listener->accept();
      if (!accepted.ok()) {
        log::warn(kLog, "VM {}: accept: {}", vms_[i - 1]->config.vm_name,
                  accepted.error().to_string());
        continue;
      }
      attach(*vms_[i - 1], std::move(accepted).value());
    }
  }
}

void IvshmemServer::attach(VmEntry& vm, ipc::Socket socket) {
  std::shared_ptr<Link> old;
  {
    std::lock_guard lock(mutex_);
    if (vm.link && !vm.link->detached()) {
      ++vm.refused;
      const Result<ipc::Socket::PeerCredentials> peer = socket.peer_credentials();
      log::warn(kLog, "VM {}: refused a second QEMU (pid {}) on {}: QEMU pid {} is attached to it",
                vm.config.vm_name, peer.ok() ? peer->pid : 0, vm.config.socket_path,
                vm.link->qemu_pid());
      (void)socket.set_timeouts(std::chrono::milliseconds(0), std::chrono::milliseconds(500));
      (void)ipc::send_ivshmem_refusal(socket);
      return;  // the socket closes: that QEMU's device fails to start, and QEMU exits
    }
    old = std::move(vm.link);
  }
  auto link = std::make_shared<Link>(*this, vm.config.vm_name, std::move(socket));
  {
    // Recorded before QEMU hears from us: status() never lags a session.
    std::lock_guard lock(mutex_);
    if (old) retired_.push_back(std::move(old));
    vm.link = link;
    ++vm.connections;
  }
  if (Status opened = link->open(); !opened.ok()) {
    log::warn(kLog, "VM {}: QEMU could not be set up: {}", vm.config.vm_name,
              opened.error().to_string());
    link->abandon();
    std::lock_guard lock(mutex_);
    retired_.push_back(std::move(vm.link));
    return;
  }
  log::info(kLog, "VM {}: QEMU (pid {}) attached", vm.config.vm_name, link->qemu_pid());
}

std::vector<IvshmemServer::VmStatus> IvshmemServer::status() const {
  std::lock_guard lock(mutex_);
  std::vector<VmStatus> all;
  for (const auto& entry : vms_) {
    VmStatus& status = all.emplace_back();
    status.vm = entry->config.vm_name;
    status.socket_path = entry->config.socket_path;
    status.connections = entry->connections;
    status.refused = entry->refused;
    if (entry->link && !entry->link->detached()) {
      status.connected = true;
      status.qemu_pid = entry->link->qemu_pid();
      status.sessions = entry->link->sessions();
    }
  }
  return all;
}

std::optional<IvshmemServer::VmStatus> IvshmemServer::status(const std::string& vm) const {
  for (VmStatus& status : status()) {
    if (status.vm == vm) return std::move(status);
  }
  return std::nullopt;
}

std::string IvshmemServer::metrics_text() const {
  const std::vector<VmStatus> all = status();
  std::string out;
  auto family = [&](const char* name, const char* type, const char* help, auto value) {
    append_vm_family(out, name, type, help, all, value);
  };
  family("malv_vm_ivshmem_attached", "gauge",
         "1 while a QEMU is attached to the VM's ivshmem socket",
         [](const VmStatus& s) { return s.connected ? 1 : 0; });
  family("malv_vm_ivshmem_sessions", "gauge", "Sessions open in the VM's ivshmem region",
         [](const VmStatus& s) { return s.sessions; });
  family("malv_vm_ivshmem_attaches_total", "counter", "QEMUs attached to the VM's ivshmem socket",
         [](const VmStatus& s) { return s.connections; });
  family("malv_vm_ivshmem_refused_total", "counter",
         "Second QEMUs turned away while one was attached",
         [](const VmStatus& s) { return s.refused; });
  return out;
}

std::size_t IvshmemServer::session_count() const {
  std::lock_guard lock(mutex_);
  std::size_t n = 0;
  for (const auto& entry : vms_) {
    if (entry->link) n += entry->link->sessions();
  }
  for (const auto& link : retired_) n += link->sessions();
  return n;
}

}  // namespace malv::microlake
