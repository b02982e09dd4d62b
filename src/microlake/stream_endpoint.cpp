#include "microlake/stream_endpoint.h"

#include <array>
#include <cstring>

#include "base/log.h"
#include "ipc/frame_stream.h"
#include "proto/decoder.h"

namespace malv::microlake {

Result<std::unique_ptr<StreamEndpoint>> StreamEndpoint::create(
    std::string vm_name, ipc::Socket socket, std::uint64_t arena_bytes,
    std::uint32_t completion_window, accel::Backend& shared_backend,
    std::unique_ptr<accel::Backend> own_backend, const SessionLimits& limits,
    const SessionServices& services) {
  accel::Backend& backend = own_backend ? *own_backend : shared_backend;
  MALV_ASSIGN_OR_RETURN(ipc::SharedRegion arena,
                        ipc::SharedRegion::create("malv-stream-arena", arena_bytes));
  MALV_TRY(backend.register_host_memory(arena.data(), arena.size()));
  std::unique_ptr<StreamEndpoint> endpoint(new StreamEndpoint(
      std::move(vm_name), std::move(socket), std::move(arena), completion_window, backend));
  endpoint->own_backend_ = std::move(own_backend);
  endpoint->session_ = std::make_unique<Session>(
      endpoint->vm_name_, backend, std::span(endpoint->arena_.data(), endpoint->arena_.size()),
      static_cast<CompletionSink&>(*endpoint), limits, services);
  endpoint->writer_ = std::thread([raw = endpoint.get()] { raw->write_loop(); });
  return endpoint;
}

StreamEndpoint::StreamEndpoint(std::string vm_name, ipc::Socket socket, ipc::SharedRegion arena,
                               std::uint32_t completion_window, accel::Backend& backend)
    : vm_name_(std::move(vm_name)),
      socket_(std::move(socket)),
      arena_(std::move(arena)),
      completion_window_(completion_window),
      backend_(backend) {}

StreamEndpoint::~StreamEndpoint() {
  session_.reset();  // drains queues; the last completions go to the writer
  {
    std::lock_guard lock(mutex_);
    closing_ = true;
  }
  changed_.notify_all();
  socket_.shutdown();
  if (writer_.joinable()) writer_.join();
  backend_.unregister_host_memory(arena_.data());
}

void StreamEndpoint::stop() {
  stop_.store(true, std::memory_order_release);
  socket_.shutdown();  // unblocks the reader
}

void StreamEndpoint::post(const wire::Completion& completion, proto::ArenaRange arena_out) {
  {
    std::lock_guard lock(mutex_);
    outgoing_.push_back({completion, arena_out});
  }
  changed_.notify_all();
}

void StreamEndpoint::write_loop() {
  for (;;) {
    Outgoing item;
    {
      std::unique_lock lock(mutex_);
      changed_.wait(lock, [&] { return closing_ || !outgoing_.empty(); });
      if (outgoing_.empty()) return;
      item = outgoing_.front();
      outgoing_.pop_front();
    }
    changed_.notify_all();  // the reader may wait for the window to open
    Status sent = ok_status();
    if (item.arena_out.bytes > 0) {
      sent = ipc::write_frame(socket_, wire::FrameKind::kArenaData, item.arena_out.offset,
                              std::span(arena_.data() + item.arena_out.offset,
                                        static_cast<std::size_t>(item.arena_out.bytes)));
    }
    if (sent.ok()) {
      sent = ipc::write_frame(socket_, wire::FrameKind::kCompletion, 0,
                              std::as_bytes(std::span(&item.completion, 1)));
    }
    if (!sent.ok()) {
      // The guest is gone; keep draining so nobody waits on the window.
      socket_.shutdown();
    }
  }
}

Status StreamEndpoint::read_one_frame() {
  MALV_ASSIGN_OR_RETURN(wire::FrameHeader header, ipc::read_frame_header(socket_));
  switch (static_cast<wire::FrameKind>(header.kind)) {
    case wire::FrameKind::kArenaData: {
      if (!proto::range_fits(header.arena_offset, header.bytes, arena_.size())) {
        return Error(ErrorCode::kOutOfRange,
                     fmt::format("arena frame [{}, +{}) outside the {}-byte arena",
                                 header.arena_offset, header.bytes, arena_.size()));
      }
      return ipc::read_frame_body(socket_,
                                  std::span(arena_.data() + header.arena_offset, header.bytes));
    }
    case wire::FrameKind::kCommand: {
      constexpr std::size_t kMaxBytes = (1 + wire::kMaxExtensionRecords) * wire::kRecordBytes;
      if (header.bytes < wire::kRecordBytes || header.bytes > kMaxBytes ||
          header.bytes % wire::kRecordBytes != 0) {
        return Error(ErrorCode::kInvalidArgument,
                     fmt::format("command frame of {} bytes", header.bytes));
      }
      std::array<std::byte, kMaxBytes> body;
      MALV_TRY(ipc::read_frame_body(socket_, std::span(body.data(), header.bytes)));
      wire::Command cmd;
      std::memcpy(&cmd, body.data(), sizeof(cmd));
      {
        // Completions skipped on success (kFlagSkipSuccess) free the window
        // without posting anything, so re-check on a short period as well.
        std::unique_lock lock(mutex_);
        while (session_->outstanding() + outgoing_.size() >= completion_window_ &&
               !stop_.load(std::memory_order_acquire)) {
          changed_.wait_for(lock, std::chrono::microseconds(200));
        }
      }
      session_->handle(
          cmd, std::span(body.data() + wire::kRecordBytes, header.bytes - wire::kRecordBytes));
      return ok_status();
    }
    default:
      return Error(ErrorCode::kInvalidArgument,
                   fmt::format("frame kind {} is not sent by guests", header.kind));
  }
}

void StreamEndpoint::run() {
  log::info("microlake", "{}: session started (stream, arena {} MiB)", vm_name_,
            arena_.size() >> 20);
  while (!stop_.load(std::memory_order_acquire)) {
    Status status = read_one_frame();
    if (!status.ok()) {
      if (status.error().code() != ErrorCode::kDisconnected) {
        log::warn("microlake", "{}: closing session: {}", vm_name_, status.error().to_string());
      }
      break;
    }
  }
  log::info("microlake", "{}: session ended", vm_name_);
}

}  // namespace malv::microlake
