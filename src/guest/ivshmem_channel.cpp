// IvshmemClientChannel: a session in one slot of a VM's ivshmem region
// (ipc/ivshmem_layout.h), the guest end of microlake/ivshmem_server.h.
//
// The rings are a process guest's; what differs is how each side learns
// that the other wrote. The guest rings the host's doorbell vector for its
// slot (no futex reaches across the VM boundary) when the host's
// dispatcher sleeps, and polls its completion ring with back-off: without a
// kernel driver, a guest process cannot take the device's interrupts. A
// thread bumps the slot's heartbeat while the session lives, so the host
// can tell a live, idle guest from a dead one.
#include <fmt/format.h>
#include <unistd.h>

#include <algorithm>
#include <condition_variable>
#include <cstring>
#include <mutex>
#include <optional>
#include <thread>

#include "base/clock.h"
#include "guest/client_channel.h"
#include "guest/ivshmem_device.h"
#include "ipc/channel_layout.h"
#include "ipc/ivshmem_layout.h"

namespace malv::guest {
namespace {

using namespace std::chrono_literals;

// How a waiting guest polls: spin this long, then sleep from the shortest
// to the longest back-off, doubling.
constexpr auto kPollSpin = 30us;
constexpr auto kShortestSleep = 10us;
constexpr auto kLongestSleep = 500us;
// How long a hello may take (a slot busy, a host slow under emulation).
constexpr auto kHelloTimeout = 20s;

ipc::SlotState state_of(const ipc::SlotControl& slot) {
  return static_cast<ipc::SlotState>(slot.state.load(std::memory_order_acquire));
}

void sleep_backing_off(std::chrono::microseconds& sleep) {
  std::this_thread::sleep_for(sleep);
  sleep = std::min(sleep * 2, std::chrono::microseconds(kLongestSleep));
}

class IvshmemClientChannel final : public ClientChannel {
 public:
  IvshmemClientChannel(std::unique_ptr<IvshmemDevice> device, std::uint32_t slot,
                       std::uint32_t host_peer, ipc::ChannelView view,
                       const ipc::ChannelLayout& layout)
      : device_(std::move(device)),
        slot_(slot),
        host_peer_(host_peer),
        header_(ipc::ivshmem_header(device_->region())),
        control_(header_.slots[slot]),
        view_(view),
        submissions_(view.sq_header, view.sq_slots, layout.sq_entries),
        completions_(view.cq_header, view.cq_slots, layout.cq_entries) {
    heartbeat_ = std::thread([this] { beat(); });
  }

  ~IvshmemClientChannel() override {
    {
      std::lock_guard lock(mutex_);
      stopping_ = true;
    }
    cv_.notify_all();
    heartbeat_.join();
    // Done with the slot: the host ends the session and frees it.
    std::uint32_t active = static_cast<std::uint32_t>(ipc::SlotState::kActive);
    if (control_.state.compare_exchange_strong(
            active, static_cast<std::uint32_t>(ipc::SlotState::kClosing))) {
      device_->ring(host_peer_, ipc::kIvshmemControlVector);
    }
  }

  std::span<std::byte> arena() override { return {view_.arena, view_.arena_bytes}; }

  Result<bool> try_submit(std::span<const wire::Command> records, proto::ArenaRange) override {
    Result<bool> pushed_or = submissions_.try_push(records);
    if (!pushed_or.ok()) return session_ended_or(std::move(pushed_or).error());
    const bool pushed = pushed_or.value();
    if (pushed) start_polling_afresh();  // an answer is coming soon
    if (pushed && ++unannounced_ >= kDoorbellBatch) flush();
    return pushed;
  }

  void flush() override {
    if (unannounced_ == 0) return;
    unannounced_ = 0;
    if (submissions_.notify_remote_consumer()) {
      ++doorbells_;
      device_->ring(host_peer_, 1 + slot_);
    }
  }

  bool ready_for_a_burst() override { return has_burst_room(submissions_); }

  std::uint64_t doorbells() const override { return doorbells_; }

  Result<std::size_t> poll(std::span<wire::Completion> out) override {
    Result<std::uint32_t> available_or = completions_.available();
    if (!available_or.ok()) return session_ended_or(std::move(available_or).error());
    const std::uint32_t available = available_or.value();
    const std::size_t n = std::min<std::size_t>(available, out.size());
    for (std::size_t i = 0; i < n; ++i) out[i] = completions_.read(static_cast<std::uint32_t>(i));
    completions_.pop(static_cast<std::uint32_t>(n));
    return n;
  }

  // Polls with back-off. The back-off lives across calls: it starts over
  // (a short spin, then the shortest sleep) only when a completion arrives
  // or new commands go out, so a guest that waits long in many short calls
  // sleeps long, not spins.
  Status wait(std::chrono::nanoseconds timeout, std::uint64_t) override {
    flush();
    const MonoTime deadline = MonoClock::now() + timeout;
    while (true) {
      Result<std::uint32_t> available_or = completions_.available();
      if (!available_or.ok()) return session_ended_or(std::move(available_or).error());
      const std::uint32_t available = available_or.value();
      if (available > 0) {
        start_polling_afresh();
        return ok_status();
      }
      if (state_of(control_) != ipc::SlotState::kActive) {
        return Error(ErrorCode::kDisconnected,
                     fmt::format("the host ended this session (ivshmem slot {})", slot_));
      }
      const MonoTime now = MonoClock::now();
      MALV_TRY(check_host_alive(now));
      if (now >= deadline) return ok_status();
      if (!idle_since_) idle_since_ = now;
      if (now - *idle_since_ < kPollSpin) continue;
      std::this_thread::sleep_for(std::min<std::chrono::nanoseconds>(sleep_, deadline - now));
      sleep_ = std::min(sleep_ * 2, std::chrono::microseconds(kLongestSleep));
    }
  }

 private:
  // The host frees a slot after it discards its memory, so a guest whose
  // session the host ended may first see its rings zeroed: that is the
  // session's end, not corruption.
  Error session_ended_or(Error error) const {
    if (state_of(control_) != ipc::SlotState::kActive) {
      return Error(ErrorCode::kDisconnected,
                   fmt::format("the host ended this session (ivshmem slot {})", slot_));
    }
    return error;
  }

  void start_polling_afresh() {
    idle_since_.reset();
    sleep_ = kShortestSleep;
  }

  // kDisconnected once the host's heartbeat has stood still for
  // kIvshmemHeartbeatTimeout (the host stopped or died; QEMU lives on).
  Status check_host_alive(MonoTime now) {
    const std::uint64_t beat = header_.host_heartbeat.load(std::memory_order_relaxed);
    if (beat != host_beat_) {
      host_beat_ = beat;
      host_beat_seen_ = now;
    } else if (now - host_beat_seen_ > ipc::kIvshmemHeartbeatTimeout) {
      return Error(ErrorCode::kDisconnected,
                   fmt::format("the host stopped serving this VM's ivshmem region (no heartbeat "
                               "for {} ms)",
                               ipc::kIvshmemHeartbeatTimeout.count()));
    }
    return ok_status();
  }

  void beat() {
    std::unique_lock lock(mutex_);
    while (!stopping_) {
      control_.heartbeat.fetch_add(1, std::memory_order_relaxed);
      cv_.wait_for(lock, ipc::kIvshmemHeartbeatPeriod, [this] { return stopping_; });
    }
  }

  std::unique_ptr<IvshmemDevice> device_;
  std::uint32_t slot_;
  std::uint32_t host_peer_;
  ipc::IvshmemHeader& header_;
  ipc::SlotControl& control_;
  std::optional<MonoTime> idle_since_;  // polling found nothing since
  std::chrono::microseconds sleep_ = kShortestSleep;
  std::uint64_t host_beat_ = 0;
  MonoTime host_beat_seen_ = MonoClock::now();
  ipc::ChannelView view_;
  ipc::RingProducer<wire::Command> submissions_;
  ipc::RingConsumer<wire::Completion> completions_;
  std::uint32_t unannounced_ = 0;
  std::uint64_t doorbells_ = 0;
  std::mutex mutex_;
  std::condition_variable cv_;
  bool stopping_ = false;  // guarded by mutex_
  std::thread heartbeat_;  // last: started once the rest exists
};

// Claims a free slot; a busy region is waited on (the host reclaims the
// slots of guests that died) until the hello's deadline.
Result<std::uint32_t> claim_slot(ipc::IvshmemHeader& header, const ipc::IvshmemLayout& layout,
                                 const std::string& vm, MonoTime deadline) {
  while (true) {
    for (std::uint32_t slot = 0; slot < layout.slot_count; ++slot) {
      std::uint32_t free = static_cast<std::uint32_t>(ipc::SlotState::kFree);
      if (header.slots[slot].state.compare_exchange_strong(
              free, static_cast<std::uint32_t>(ipc::SlotState::kClaimed))) {
        return slot;
      }
    }
    if (MonoClock::now() >= deadline) {
      return Error(ErrorCode::kResourceExhausted,
                   fmt::format("all {} ivshmem slots of VM '{}' are in use (the host's "
                               "ivshmem_slots)",
                               layout.slot_count, vm));
    }
    std::this_thread::sleep_for(50ms);
  }
}

}  // namespace

Result<std::unique_ptr<ClientChannel>> open_ivshmem_channel(std::unique_ptr<IvshmemDevice> device,
                                                            const HelloParams& params) {
  const std::span<std::byte> region = device->region();
  MALV_ASSIGN_OR_RETURN(ipc::IvshmemLayout layout, ipc::read_ivshmem_header(region));
  ipc::IvshmemHeader& header = ipc::ivshmem_header(region);
  const std::uint32_t host_peer = header.host_peer_id;
  if (params.vm_name.size() >= wire::kNameBytes ||
      params.credential.size() >= wire::kCredentialBytes) {
    return Error(ErrorCode::kInvalidArgument, "vm name or token too long");
  }
  const MonoTime deadline = MonoClock::now() + kHelloTimeout;
  MALV_ASSIGN_OR_RETURN(std::uint32_t slot, claim_slot(header, layout, params.vm_name, deadline));
  ipc::SlotControl& control = header.slots[slot];
  control.heartbeat.fetch_add(1, std::memory_order_relaxed);
  control.guest_pid = static_cast<std::uint32_t>(::getpid());
  wire::HelloRequest hello{};
  hello.magic = wire::kHelloMagic;
  hello.version = wire::kProtocolVersion;
  hello.transport = static_cast<std::uint16_t>(wire::Transport::kShm);
  hello.arena_bytes = layout.channel.arena_bytes;
  std::memcpy(hello.vm_name, params.vm_name.data(), params.vm_name.size());
  std::memcpy(hello.credential, params.credential.data(), params.credential.size());
  std::memcpy(&control.hello, &hello, sizeof(hello));
  control.state.store(static_cast<std::uint32_t>(ipc::SlotState::kHello),
                      std::memory_order_release);
  device->ring(host_peer, ipc::kIvshmemControlVector);

  auto sleep = std::chrono::microseconds(kShortestSleep);
  ipc::SlotState state = state_of(control);
  while (state == ipc::SlotState::kHello) {
    if (MonoClock::now() >= deadline) {
      control.state.store(static_cast<std::uint32_t>(ipc::SlotState::kClosing),
                          std::memory_order_release);
      return Error(ErrorCode::kDeadlineExceeded,
                   fmt::format("the host did not answer the hello on {} (is `malv serve` "
                               "serving VM '{}' over ivshmem?)",
                               device->describe(), params.vm_name));
    }
    control.heartbeat.fetch_add(1, std::memory_order_relaxed);
    sleep_backing_off(sleep);
    state = state_of(control);
  }
  wire::HelloReply reply;
  std::memcpy(&reply, &control.reply, sizeof(reply));
  reply.message[sizeof(reply.message) - 1] = '\0';
  if (state == ipc::SlotState::kRefused) {
    control.state.store(static_cast<std::uint32_t>(ipc::SlotState::kFree),
                        std::memory_order_release);
    return Error(static_cast<ErrorCode>(reply.status), reply.message);
  }
  // From here on a failure gives the slot back to the host.
  auto abandon = [&](Error error) -> Result<std::unique_ptr<ClientChannel>> {
    control.state.store(static_cast<std::uint32_t>(ipc::SlotState::kClosing),
                        std::memory_order_release);
    device->ring(host_peer, ipc::kIvshmemControlVector);
    return error.with_context(fmt::format("ivshmem slot {} on {}", slot, device->describe()));
  };
  if (state != ipc::SlotState::kActive || reply.magic != wire::kHelloMagic || reply.status != 0) {
    return abandon(Error(ErrorCode::kDataLoss, "a garbled hello reply"));
  }
  Result<ipc::ChannelLayout> channel =
      ipc::ChannelLayout::compute(reply.sq_entries, reply.cq_entries, reply.arena_bytes);
  if (!channel.ok()) return abandon(channel.error());
  if (!(channel.value() == layout.channel) || reply.shm_bytes != layout.slot_bytes ||
      reply.arena_offset != channel->arena_offset) {
    return abandon(
        Error(ErrorCode::kDataLoss, "the hello reply's sizes differ from the region's header"));
  }
  Result<ipc::ChannelView> view =
      ipc::ChannelView::over(layout.slot_memory(region, slot), channel.value());
  if (!view.ok()) return abandon(view.error());
  if (Status checked = ipc::check_control_block(view.value(), channel.value()); !checked.ok()) {
    return abandon(checked.error());
  }
  return std::unique_ptr<ClientChannel>(
      new IvshmemClientChannel(std::move(device), slot, host_peer, view.value(), channel.value()));
}

}  // namespace malv::guest
