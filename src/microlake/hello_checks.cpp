#include "microlake/hello_checks.h"

#include <fmt/format.h>

#include <atomic>
#include <cstdio>
#include <cstring>

namespace malv::microlake {

std::string bounded_string(const char* field, std::size_t size) {
  return std::string(field, strnlen(field, size));
}

wire::HelloReply refusal_reply(const Error& error) {
  wire::HelloReply reply{};
  reply.magic = wire::kHelloMagic;
  reply.version = wire::kProtocolVersion;
  reply.status = static_cast<std::uint16_t>(error.code());
  std::snprintf(reply.message, sizeof(reply.message), "%s", error.to_string().c_str());
  return reply;
}

std::uint64_t next_session_id() {
  static std::atomic<std::uint64_t> next{1};
  return next.fetch_add(1, std::memory_order_relaxed);
}

Status check_hello(const wire::HelloRequest& hello, HelloInfo::Via via) {
  if (hello.magic != wire::kHelloMagic) {
    return Error(ErrorCode::kInvalidArgument, "not a MaLV-OS hello (bad magic)");
  }
  if (hello.version != wire::kProtocolVersion) {
    return Error(ErrorCode::kUnimplemented,
                 fmt::format("protocol version {} is not supported; this host speaks {}",
                             hello.version, wire::kProtocolVersion));
  }
  const auto transport = static_cast<wire::Transport>(hello.transport);
  if (transport != wire::Transport::kShm && transport != wire::Transport::kStream) {
    return Error(ErrorCode::kInvalidArgument, fmt::format("unknown transport {}", hello.transport));
  }
  if (transport == wire::Transport::kShm && via != HelloInfo::Via::kUnix &&
      via != HelloInfo::Via::kIvshmem) {
    return Error(ErrorCode::kInvalidArgument,
                 "shared memory is only offered over a Unix socket or an ivshmem device");
  }
  if (transport == wire::Transport::kStream && via == HelloInfo::Via::kIvshmem) {
    return Error(ErrorCode::kInvalidArgument, "an ivshmem slot is shared memory, not a stream");
  }
  if (strnlen(hello.vm_name, sizeof(hello.vm_name)) == sizeof(hello.vm_name) ||
      strnlen(hello.credential, sizeof(hello.credential)) == sizeof(hello.credential)) {
    return Error(ErrorCode::kInvalidArgument, "vm name or credential is not NUL-terminated");
  }
  if (hello.vm_name[0] == '\0') return Error(ErrorCode::kInvalidArgument, "empty vm name");
  return ok_status();
}

}  // namespace malv::microlake
