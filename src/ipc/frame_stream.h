// Frames over a stream socket: how records and arena ranges travel on TCP
// and vsock channels, where there is no shared memory.
//
// A frame is a wire::FrameHeader (kind, body length, arena offset) followed
// by `bytes` of body. The reader validates the header before it trusts the
// length: an unknown kind or a body over wire::kMaxFrameBytes is
// kInvalidArgument, so a hostile peer cannot make us allocate or read an
// unbounded amount.
//
//   MALV_TRY(write_frame(sock, wire::FrameKind::kCommand, 0, as_bytes(span(&cmd, 1))));
//   ...
//   MALV_ASSIGN_OR_RETURN(wire::FrameHeader h, read_frame_header(sock));
//   std::vector<std::byte> body(h.bytes);
//   MALV_TRY(read_frame_body(sock, body));
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>

#include "ipc/socket.h"
#include "malv/protocol.h"
#include "malv/result.h"

namespace malv::ipc {

// Writes header and body with one gather write. kInvalidArgument if the
// body is over kMaxFrameBytes or the kind is unknown.
[[nodiscard]] Status write_frame(Socket& socket, wire::FrameKind kind, std::uint64_t arena_offset,
                                 std::span<const std::byte> body);

// Reads and validates one header (kind known, bytes <= kMaxFrameBytes).
// kDisconnected on EOF.
[[nodiscard]] Result<wire::FrameHeader> read_frame_header(Socket& socket);

// Reads exactly body.size() bytes (the header's `bytes`). kDisconnected if
// the peer closes before the body is complete.
[[nodiscard]] Status read_frame_body(Socket& socket, std::span<std::byte> body);

// True for the FrameKind values this protocol version knows.
bool is_known_frame_kind(std::uint32_t kind);

}  // namespace malv::ipc
