// decode_command(): the first, structural step of handling a guest command.
//
// The host calls it on a private copy of each record it takes from the
// submission ring (never on shared memory, which the guest can change under
// it). It returns a typed Request or an Error naming what is malformed; it
// never reads past the bytes it is given.
//
//   Result<Request> req = decode_command(cmd, extension_bytes);
#pragma once

#include <cstddef>
#include <span>

#include "malv/protocol.h"
#include "malv/result.h"
#include "proto/request.h"

namespace malv::proto {

// `extensions` holds exactly cmd.extensions * 64 bytes that followed cmd.
[[nodiscard]] Result<Request> decode_command(const wire::Command& cmd,
                                             std::span<const std::byte> extensions);

// True when offset + bytes fits in `limit`, without overflow.
constexpr bool range_fits(std::uint64_t offset, std::uint64_t bytes, std::uint64_t limit) {
  return offset <= limit && bytes <= limit - offset;
}

}  // namespace malv::proto
