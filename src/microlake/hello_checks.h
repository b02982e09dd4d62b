// The checks every front door (Server's sockets, IvshmemServer's slots)
// applies to a guest's wire::HelloRequest, and the refusal it answers with.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

#include "malv/error.h"
#include "malv/protocol.h"
#include "malv/result.h"
#include "microlake/server.h"

namespace malv::microlake {

// The NUL-terminated string in a fixed-size field (at most `size` bytes).
std::string bounded_string(const char* field, std::size_t size);

// Magic, version, a known transport that this way in offers (shared memory
// only over a Unix socket or an ivshmem slot), NUL-terminated non-empty
// name and credential.
[[nodiscard]] Status check_hello(const wire::HelloRequest& hello, HelloInfo::Via via);

// A HelloReply carrying `error`'s code and message.
wire::HelloReply refusal_reply(const Error& error);

// A session id no other session of this host has had.
std::uint64_t next_session_id();

}  // namespace malv::microlake
