#include "microlake/shm_endpoint.h"

#include <poll.h>
#include <sys/socket.h>

#include <array>
#include <cstring>
#include <thread>

#include "base/clock.h"
#include "base/log.h"
#include "base/thread_priority.h"

namespace malv::microlake {

Result<std::unique_ptr<ShmEndpoint>> ShmEndpoint::create(
    std::string vm_name, ipc::Socket socket, ipc::SharedRegion region,
    const ipc::ChannelLayout& layout, accel::Backend& shared_backend,
    std::unique_ptr<accel::Backend> own_backend, const SessionLimits& limits,
    const SessionServices& services) {
  if (!region.valid()) return Error(ErrorCode::kInvalidArgument, "channel region is not mapped");
  const std::span<std::byte> memory(region.data(), region.size());
  return create_over(std::move(vm_name), std::move(socket), std::move(region), memory, layout,
                     shared_backend, std::move(own_backend), limits, services);
}

Result<std::unique_ptr<ShmEndpoint>> ShmEndpoint::create_in_slot(
    std::string vm_name, std::span<std::byte> memory, std::shared_ptr<const void> memory_owner,
    const ipc::ChannelLayout& layout, accel::Backend& shared_backend,
    std::unique_ptr<accel::Backend> own_backend, const SessionLimits& limits,
    const SessionServices& services) {
  MALV_ASSIGN_OR_RETURN(
      auto endpoint, create_over(std::move(vm_name), ipc::Socket(), ipc::SharedRegion(), memory,
                                 layout, shared_backend, std::move(own_backend), limits, services));
  endpoint->memory_owner_ = std::move(memory_owner);
  return endpoint;
}

Result<std::unique_ptr<ShmEndpoint>> ShmEndpoint::create_over(
    std::string vm_name, ipc::Socket socket, ipc::SharedRegion region, std::span<std::byte> memory,
    const ipc::ChannelLayout& layout, accel::Backend& shared_backend,
    std::unique_ptr<accel::Backend> own_backend, const SessionLimits& limits,
    const SessionServices& services) {
  accel::Backend& backend = own_backend ? *own_backend : shared_backend;
  MALV_ASSIGN_OR_RETURN(ipc::ChannelView view, ipc::ChannelView::over(memory, layout));
  MALV_TRY(backend.register_host_memory(view.arena, view.arena_bytes));
  std::unique_ptr<ShmEndpoint> endpoint(new ShmEndpoint(std::move(vm_name), std::move(socket),
                                                        std::move(region), view, layout, backend));
  endpoint->own_backend_ = std::move(own_backend);
  endpoint->session_ = std::make_unique<Session>(
      endpoint->vm_name_, backend, std::span(view.arena, view.arena_bytes),
      static_cast<CompletionSink&>(*endpoint), limits, services);
  return endpoint;
}

ShmEndpoint::ShmEndpoint(std::string vm_name, ipc::Socket socket, ipc::SharedRegion region,
                         ipc::ChannelView view, const ipc::ChannelLayout& layout,
                         accel::Backend& backend)
    : vm_name_(std::move(vm_name)),
      socket_(std::move(socket)),
      region_(std::move(region)),
      view_(view),
      backend_(backend),
      // Ring sizes from our own layout: the copy in shared memory is the guest's to scribble on.
      submissions_(view.sq_header, view.sq_slots, layout.sq_entries),
      completions_(view.cq_header, view.cq_slots, layout.cq_entries) {}

ShmEndpoint::~ShmEndpoint() {
  session_.reset();  // drains the backend queues; their completions still land in the ring
  backend_.unregister_host_memory(view_.arena);
}

void ShmEndpoint::stop() {
  stop_.store(true, std::memory_order_release);
  // Wake the dispatcher if it sleeps on the doorbell.
  ipc::wake_ring_consumer(view_.sq_header);
}

bool ShmEndpoint::guest_alive() const {
  if (socket_.fd() < 0) return true;  // an ivshmem slot: its owner calls stop()
  pollfd pfd{socket_.fd(), POLLIN | POLLRDHUP, 0};
  if (::poll(&pfd, 1, 0) <= 0) return true;
  if (pfd.revents & (POLLHUP | POLLRDHUP | POLLERR | POLLNVAL)) return false;
  char byte;
  // The guest sends nothing after the hello; readable means EOF or junk.
  return ::recv(socket_.fd(), &byte, 1, MSG_PEEK | MSG_DONTWAIT) != 0;
}

std::optional<std::uint32_t> ShmEndpoint::completion_room() {
  std::lock_guard lock(completions_mutex_);
  if (broken_) return std::nullopt;
  Result<std::uint32_t> free = completions_.free_slots();
  if (!free.ok()) {
    broken_ = true;
    log::warn("microlake", "{}: completion ring corrupted by the guest: {}", vm_name_,
              free.error().to_string());
    return std::nullopt;
  }
  return free.value();
}

void ShmEndpoint::post(const wire::Completion& completion, proto::ArenaRange) {
  std::lock_guard lock(completions_mutex_);
  if (broken_) return;
  Result<bool> pushed = completions_.try_push(std::span(&completion, 1));
  if (!pushed.ok() || !pushed.value()) {
    // Room was reserved before the command was taken, so only a guest that
    // corrupted the ring's indices gets here. Its session is closed.
    broken_ = true;
    log::warn("microlake", "{}: completion ring unusable, closing the session", vm_name_);
    return;
  }
  // A guest waiting for one command's completion sleeps through the others.
  completions_.notify_consumer_of(completion.tag);
}

void ShmEndpoint::settled() {
  // Only a dispatcher asleep on the doorbell needs it (no system call
  // otherwise). One that is just going to sleep may miss it: it then waits
  // for the guest's doorbell, as without this hint.
  if (one_core_.load(std::memory_order_relaxed) &&
      view_.sq_header->consumer_waiting.load(std::memory_order_seq_cst) != 0) {
    ipc::wake_ring_consumer(view_.sq_header);
  }
}

void ShmEndpoint::run() {
  log::info("microlake", "{}: session started (shared memory, arena {} MiB)", vm_name_,
            view_.arena_bytes >> 20);
  std::array<std::byte, wire::kMaxExtensionRecords * wire::kRecordBytes> extensions{};
  auto last_liveness_check = MonoClock::now();
  // On a host confined to one core (--host-cpus) the backend's worker shares
  // this thread's core. A dispatcher whose poll ran out while the worker ran
  // is woken by the last completion of its guest's work to poll again
  // (settled()), so that the guest's next call (an .item()) is taken at
  // once rather than after a wake-up of a core the worker keeps busy.
  one_core_.store(usable_cpu_count() == 1, std::memory_order_relaxed);
  while (!stop_.load(std::memory_order_acquire)) {
    Result<std::uint32_t> available = submissions_.available();
    if (!available.ok()) {
      log::warn("microlake", "{}: submission ring corrupted by the guest: {}", vm_name_,
                available.error().to_string());
      break;
    }
    const auto now = MonoClock::now();
    if (now - last_liveness_check > kLivenessCheck) {
      last_liveness_check = now;
      if (!guest_alive()) break;
    }
    if (available.value() == 0) {
      session_->flush();  // the ring ran dry: what was staged goes to the device now
      // While the device runs this guest's work, the spin yields the core
      // between polls: a dispatcher that spun through it took the CPU the
      // worker needed (on a host with few cores, a training step's time
      // doubled); sleeping instead cost each new batch a wake-up.
      submissions_.wait(kDispatcherSpin, kLivenessCheck, 0,
                        /*yielding=*/session_->outstanding() > 0);
      continue;
    }
    const wire::Command cmd = submissions_.read(0);  // a private copy: the guest can't change it
    const std::uint32_t extension_count =
        cmd.extensions <= wire::kMaxExtensionRecords ? cmd.extensions : 0;
    if (available.value() < 1 + extension_count) {
      // A guest publishes a command with its extensions at once; a partial
      // one only stalls this guest. Give it time rather than spin.
      session_->flush();
      std::this_thread::sleep_for(std::chrono::microseconds(100));
      continue;
    }
    std::optional<std::uint32_t> room = completion_room();
    if (!room) break;
    if (session_->outstanding() >= room.value()) {
      // The guest is not reading completions fast enough: take nothing more
      // until it does. Only this guest waits.
      session_->flush();
      std::this_thread::sleep_for(std::chrono::microseconds(50));
      continue;
    }
    for (std::uint32_t i = 0; i < extension_count; ++i) {
      const wire::Command record = submissions_.read(1 + i);
      std::memcpy(extensions.data() + i * wire::kRecordBytes, &record, wire::kRecordBytes);
    }
    submissions_.pop(1 + extension_count);
    session_->handle(cmd,
                     std::span(extensions.data(), cmd.extensions <= wire::kMaxExtensionRecords
                                                      ? extension_count * wire::kRecordBytes
                                                      : 0),
                     Session::Flush::kLater);
  }
  session_->flush();
  log::info("microlake", "{}: session ended", vm_name_);
}

}  // namespace malv::microlake
