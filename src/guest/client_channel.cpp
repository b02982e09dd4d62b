#include "guest/client_channel.h"

#include <fmt/format.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstring>
#include <deque>
#include <vector>

#include "base/clock.h"
#include "ipc/channel_layout.h"
#include "ipc/frame_stream.h"
#include "ipc/shared_region.h"

namespace malv::guest {
namespace {

using namespace std::chrono_literals;

constexpr auto kSpin = std::chrono::microseconds(20);

// True when the peer hung up (EOF, error) on a socket that carries no data.
bool peer_hung_up(const ipc::Socket& socket) {
  pollfd pfd{socket.fd(), POLLIN | POLLRDHUP, 0};
  if (::poll(&pfd, 1, 0) <= 0) return false;
  if (pfd.revents & (POLLHUP | POLLRDHUP | POLLERR | POLLNVAL)) return true;
  char byte;
  return ::recv(socket.fd(), &byte, 1, MSG_PEEK | MSG_DONTWAIT) == 0;
}

class ShmClientChannel final : public ClientChannel {
 public:
  ShmClientChannel(ipc::Socket socket, ipc::SharedRegion region, ipc::ChannelView view,
                   const ipc::ChannelLayout& layout)
      : socket_(std::move(socket)),
        region_(std::move(region)),
        view_(view),
        submissions_(view.sq_header, view.sq_slots, layout.sq_entries),
        completions_(view.cq_header, view.cq_slots, layout.cq_entries) {}

  std::span<std::byte> arena() override { return {view_.arena, view_.arena_bytes}; }

  Result<bool> try_submit(std::span<const wire::Command> records, proto::ArenaRange) override {
    MALV_ASSIGN_OR_RETURN(bool pushed, submissions_.try_push(records));
    if (pushed && ++unannounced_ >= kDoorbellBatch) flush();
    return pushed;
  }

  void flush() override {
    if (unannounced_ == 0) return;
    unannounced_ = 0;
    ++doorbells_;
    submissions_.notify_consumer();  // a syscall only if the host sleeps
  }

  bool ready_for_a_burst() override { return has_burst_room(submissions_); }

  std::uint64_t doorbells() const override { return doorbells_; }

  Result<std::size_t> poll(std::span<wire::Completion> out) override {
    MALV_ASSIGN_OR_RETURN(std::uint32_t available, completions_.available());
    const std::size_t n = std::min<std::size_t>(available, out.size());
    for (std::size_t i = 0; i < n; ++i) out[i] = completions_.read(static_cast<std::uint32_t>(i));
    completions_.pop(static_cast<std::uint32_t>(n));
    return n;
  }

  Status wait(std::chrono::nanoseconds timeout, std::uint64_t wake_tag) override {
    flush();
    if (completions_.wait(kSpin, timeout, wake_tag)) return ok_status();
    if (peer_hung_up(socket_)) return Error(ErrorCode::kDisconnected, "host closed the session");
    return ok_status();
  }

 private:
  ipc::Socket socket_;
  ipc::SharedRegion region_;
  ipc::ChannelView view_;
  ipc::RingProducer<wire::Command> submissions_;
  ipc::RingConsumer<wire::Completion> completions_;
  std::uint32_t unannounced_ = 0;  // commands pushed since the doorbell was last rung
  std::uint64_t doorbells_ = 0;
};

class StreamClientChannel final : public ClientChannel {
 public:
  StreamClientChannel(ipc::Socket socket, ipc::SharedRegion arena)
      : socket_(std::move(socket)), arena_(std::move(arena)) {}

  std::span<std::byte> arena() override { return {arena_.data(), arena_.size()}; }

  Result<bool> try_submit(std::span<const wire::Command> records,
                          proto::ArenaRange publish) override {
    if (publish.bytes > 0) {
      MALV_TRY(ipc::write_frame(
          socket_, wire::FrameKind::kArenaData, publish.offset,
          std::span(arena_.data() + publish.offset, static_cast<std::size_t>(publish.bytes))));
    }
    MALV_TRY(ipc::write_frame(socket_, wire::FrameKind::kCommand, 0, std::as_bytes(records)));
    return true;
  }

  Result<std::size_t> poll(std::span<wire::Completion> out) override {
    std::size_t n = 0;
    while (n < out.size()) {
      pollfd pfd{socket_.fd(), POLLIN, 0};
      if (::poll(&pfd, 1, 0) <= 0) break;
      MALV_ASSIGN_OR_RETURN(wire::FrameHeader header, ipc::read_frame_header(socket_));
      if (header.kind == static_cast<std::uint32_t>(wire::FrameKind::kArenaData)) {
        if (header.arena_offset > arena_.size() ||
            header.bytes > arena_.size() - header.arena_offset) {
          return Error(ErrorCode::kDataLoss, "host sent an arena frame outside the arena");
        }
        MALV_TRY(ipc::read_frame_body(
            socket_, std::span(arena_.data() + header.arena_offset, header.bytes)));
      } else if (header.kind == static_cast<std::uint32_t>(wire::FrameKind::kCompletion) &&
                 header.bytes == sizeof(wire::Completion)) {
        MALV_TRY(ipc::read_frame_body(socket_, std::as_writable_bytes(std::span(&out[n], 1))));
        ++n;
      } else {
        return Error(ErrorCode::kDataLoss, fmt::format("unexpected frame kind {}", header.kind));
      }
    }
    return n;
  }

  void flush() override {}  // each command is already on the socket
  std::uint64_t doorbells() const override { return 0; }

  Status wait(std::chrono::nanoseconds timeout, std::uint64_t /*wake_tag*/) override {
    pollfd pfd{socket_.fd(), POLLIN, 0};
    const int ms = static_cast<int>(std::max<std::int64_t>(
        1, std::chrono::duration_cast<std::chrono::milliseconds>(timeout).count()));
    if (::poll(&pfd, 1, ms) < 0 && errno != EINTR) return errno_error("poll", errno);
    return ok_status();  // EOF surfaces as kDisconnected from the next poll()
  }

 private:
  ipc::Socket socket_;
  ipc::SharedRegion arena_;
};

}  // namespace

Result<HelloResult> exchange_hello(ipc::Socket& socket, const HelloParams& params,
                                   wire::Transport transport) {
  wire::HelloRequest hello{};
  hello.magic = wire::kHelloMagic;
  hello.version = wire::kProtocolVersion;
  hello.transport = static_cast<std::uint16_t>(transport);
  hello.arena_bytes = params.arena_bytes;
  if (params.vm_name.size() >= sizeof(hello.vm_name) ||
      params.credential.size() >= sizeof(hello.credential)) {
    return Error(
        ErrorCode::kInvalidArgument,
        fmt::format("vm name and credential must be shorter than {} bytes", sizeof(hello.vm_name)));
  }
  std::memcpy(hello.vm_name, params.vm_name.data(), params.vm_name.size());
  std::memcpy(hello.credential, params.credential.data(), params.credential.size());
  MALV_TRY_CONTEXT(socket.write_all(&hello, sizeof(hello)), "sending hello");
  HelloResult result;
  if (transport == wire::Transport::kShm) {
    MALV_ASSIGN_OR_RETURN(result.fd, socket.recv_fd(&result.reply, sizeof(result.reply)));
  } else {
    MALV_TRY_CONTEXT(socket.read_exact(&result.reply, sizeof(result.reply)), "reading hello reply");
  }
  const wire::HelloReply& reply = result.reply;
  auto close_fd = [&] {
    if (result.fd >= 0) ::close(result.fd);
  };
  if (reply.magic != wire::kHelloMagic) {
    close_fd();
    return Error(ErrorCode::kDataLoss, "host answered with something that is not a hello reply");
  }
  if (reply.status != 0) {
    close_fd();
    return Error(
        static_cast<ErrorCode>(reply.status),
        fmt::format("host refused the session: {}",
                    std::string(reply.message, strnlen(reply.message, sizeof(reply.message)))));
  }
  return result;
}

Result<std::unique_ptr<ClientChannel>> open_shm_channel(ipc::Socket socket,
                                                        const HelloParams& params) {
  MALV_ASSIGN_OR_RETURN(HelloResult hello, exchange_hello(socket, params, wire::Transport::kShm));
  if (hello.fd < 0) return Error(ErrorCode::kDataLoss, "host sent no shared memory");
  const wire::HelloReply& r = hello.reply;
  // Recompute the layout from the sizes and insist the host's offsets match:
  // the guest trusts nothing it did not check either.
  Result<ipc::ChannelLayout> layout =
      ipc::ChannelLayout::compute(r.sq_entries, r.cq_entries, r.arena_bytes);
  if (!layout.ok() || layout->total_bytes != r.shm_bytes ||
      layout->arena_offset != r.arena_offset) {
    ::close(hello.fd);
    return Error(ErrorCode::kDataLoss, "host offered an inconsistent channel layout");
  }
  MALV_ASSIGN_OR_RETURN(ipc::SharedRegion region, ipc::SharedRegion::map_fd(hello.fd, r.shm_bytes));
  MALV_ASSIGN_OR_RETURN(ipc::ChannelView view, ipc::ChannelView::over(region, layout.value()));
  MALV_TRY(ipc::check_control_block(view, layout.value()));
  return std::unique_ptr<ClientChannel>(
      new ShmClientChannel(std::move(socket), std::move(region), view, layout.value()));
}

Result<std::unique_ptr<ClientChannel>> open_stream_channel(ipc::Socket socket,
                                                           const HelloParams& params) {
  MALV_ASSIGN_OR_RETURN(HelloResult hello,
                        exchange_hello(socket, params, wire::Transport::kStream));
  MALV_ASSIGN_OR_RETURN(ipc::SharedRegion arena,
                        ipc::SharedRegion::create("malv-guest-arena", hello.reply.arena_bytes));
  return std::unique_ptr<ClientChannel>(
      new StreamClientChannel(std::move(socket), std::move(arena)));
}

}  // namespace malv::guest
