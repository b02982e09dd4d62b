#include "ipc/frame_stream.h"

#include <fmt/format.h>
#include <sys/uio.h>

#include <array>

namespace malv::ipc {

bool is_known_frame_kind(std::uint32_t kind) {
  switch (static_cast<wire::FrameKind>(kind)) {
    case wire::FrameKind::kCommand:
    case wire::FrameKind::kCompletion:
    case wire::FrameKind::kArenaData: return true;
  }
  return false;
}

Status write_frame(Socket& socket, wire::FrameKind kind, std::uint64_t arena_offset,
                   std::span<const std::byte> body) {
  if (!is_known_frame_kind(static_cast<std::uint32_t>(kind))) {
    return Error(ErrorCode::kInvalidArgument,
                 fmt::format("unknown frame kind {}", static_cast<std::uint32_t>(kind)));
  }
  if (body.size() > wire::kMaxFrameBytes) {
    return Error(ErrorCode::kInvalidArgument, fmt::format("frame body of {} bytes exceeds {}",
                                                          body.size(), wire::kMaxFrameBytes));
  }
  wire::FrameHeader header{};
  header.kind = static_cast<std::uint32_t>(kind);
  header.bytes = static_cast<std::uint32_t>(body.size());
  header.arena_offset = arena_offset;
  std::array<iovec, 2> parts{{
      {&header, sizeof header},
      {const_cast<std::byte*>(body.data()), body.size()},
  }};
  return socket.write_vectored(parts);
}

Result<wire::FrameHeader> read_frame_header(Socket& socket) {
  wire::FrameHeader header{};
  MALV_TRY(socket.read_exact(&header, sizeof header));
  if (!is_known_frame_kind(header.kind)) {
    return Error(ErrorCode::kInvalidArgument, fmt::format("unknown frame kind {}", header.kind));
  }
  if (header.bytes > wire::kMaxFrameBytes) {
    return Error(ErrorCode::kInvalidArgument, fmt::format("frame body of {} bytes exceeds {}",
                                                          header.bytes, wire::kMaxFrameBytes));
  }
  return header;
}

Status read_frame_body(Socket& socket, std::span<std::byte> body) {
  return socket.read_exact(body.data(), body.size());
}

}  // namespace malv::ipc
