// Stream: an ordered queue of work on the host's accelerator (a CUDA stream).
//
// Every call returns once the command is submitted; the work runs later, in
// submission order. Transfers of any size are split into chunks that fit the
// arena. write() copies the caller's bytes into the shared arena before
// returning (the only copy: the host's device copy reads the arena directly),
// so the caller may reuse its memory at once. read() fills `out` by the time
// synchronize() returns. A command that fails is reported by the next
// synchronize() as an Error naming it; later successes never hide it.
#pragma once

#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <span>

#include "malv/objects.h"
#include "malv/result.h"

namespace malv::guest {

class Stream {
 public:
  Stream() = default;

  std::uint64_t handle() const { return handle_.raw(); }

  [[nodiscard]] Status write(const Buffer& dst, std::uint64_t offset,
                             std::span<const std::byte> data);
  [[nodiscard]] Status read(const Buffer& src, std::uint64_t offset, std::span<std::byte> out);
  // Zero-copy transfers between a device buffer and a HostBuffer: no copy
  // on the guest side. The HostBuffer must stay alive until synchronize().
  [[nodiscard]] Status write(const Buffer& dst, std::uint64_t offset, const HostBuffer& src,
                             std::uint64_t src_offset, std::uint64_t bytes);
  [[nodiscard]] Status read(const Buffer& src, std::uint64_t offset, const HostBuffer& dst,
                            std::uint64_t dst_offset, std::uint64_t bytes);
  [[nodiscard]] Status copy(const Buffer& src, std::uint64_t src_offset, const Buffer& dst,
                            std::uint64_t dst_offset, std::uint64_t bytes);
  [[nodiscard]] Status memset(const Buffer& dst, std::uint64_t offset, std::uint64_t bytes,
                              std::uint8_t value);
  [[nodiscard]] Status launch(const Kernel& kernel, std::span<const KernelArg> args);
  [[nodiscard]] Status launch(const Kernel& kernel, std::initializer_list<KernelArg> args) {
    return launch(kernel, std::span(args.begin(), args.size()));
  }
  [[nodiscard]] Status record(const Event& event);
  // Work submitted after this waits until `event` has happened (any stream).
  [[nodiscard]] Status wait(const Event& event);
  [[nodiscard]] Status synchronize();

 private:
  friend class Connection;
  Stream(ConnectionCore* connection, std::uint64_t handle)
      : handle_(connection, handle, wire::Opcode::kStreamDestroy) {}
  ConnectionCore& core() const { return *handle_.core(); }

  ObjectHandle handle_;
};

// Blocks until the event's latest record has happened.
[[nodiscard]] Status synchronize(const Event& event);

}  // namespace malv::guest
