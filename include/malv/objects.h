// Buffer, Event and Kernel: move-only client handles to host objects
// (Zircon-style). Destroying a Buffer or Event releases the host object;
// a Kernel is a looked-up entry of the host's kernel registry.
//
// Objects are made by a Connection (allocate, create_event, allocate_host)
// and hold a pointer to its internal core, never to anything the caller
// can name: they must not outlive the Connection that made them.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <utility>

#include "malv/protocol.h"

namespace malv::guest {

class Connection;
class ConnectionCore;  // internal (src/guest/connection_core.h)

// Releases a host object when the owner goes away.
class ObjectHandle {
 public:
  ObjectHandle() = default;
  ObjectHandle(ConnectionCore* connection, std::uint64_t handle, wire::Opcode destroy)
      : connection_(connection), handle_(handle), destroy_(destroy) {}
  ~ObjectHandle() { reset(); }
  ObjectHandle(ObjectHandle&& other) noexcept
      : connection_(std::exchange(other.connection_, nullptr)),
        handle_(std::exchange(other.handle_, 0)),
        destroy_(other.destroy_) {}
  ObjectHandle& operator=(ObjectHandle&& other) noexcept {
    if (this != &other) {
      reset();
      connection_ = std::exchange(other.connection_, nullptr);
      handle_ = std::exchange(other.handle_, 0);
      destroy_ = other.destroy_;
    }
    return *this;
  }

  std::uint64_t raw() const { return handle_; }
  ConnectionCore* core() const { return connection_; }
  void reset();

 private:
  ConnectionCore* connection_ = nullptr;
  std::uint64_t handle_ = 0;
  wire::Opcode destroy_ = wire::Opcode::kNop;
};

class Buffer {
 public:
  Buffer() = default;
  std::uint64_t handle() const { return handle_.raw(); }
  std::uint64_t size() const { return bytes_; }

 private:
  friend class Connection;
  Buffer(ConnectionCore* connection, std::uint64_t handle, std::uint64_t bytes)
      : handle_(connection, handle, wire::Opcode::kBufferFree), bytes_(bytes) {}

  ObjectHandle handle_;
  std::uint64_t bytes_ = 0;
};

class Event {
 public:
  Event() = default;
  std::uint64_t handle() const { return handle_.raw(); }

 private:
  friend class Connection;
  friend class ConnectionCore;  // synchronize(const Event&) waits through the event's core
  Event(ConnectionCore* connection, std::uint64_t handle)
      : handle_(connection, handle, wire::Opcode::kEventDestroy) {}

  ObjectHandle handle_;
};

// Host memory in the channel's shared arena: the guest-side buffer of a
// zero-copy transfer (what page-locked memory is to CUDA). Data written into
// data() reaches the device with one copy, made by the host (a DMA on a
// GPU); a read lands in data() directly. Released when destroyed.
class HostBuffer {
 public:
  HostBuffer() = default;
  ~HostBuffer() { reset(); }
  HostBuffer(HostBuffer&& other) noexcept
      : connection_(std::exchange(other.connection_, nullptr)),
        offset_(other.offset_),
        bytes_(std::exchange(other.bytes_, 0)),
        data_(std::exchange(other.data_, nullptr)) {}
  HostBuffer& operator=(HostBuffer&& other) noexcept {
    if (this != &other) {
      reset();
      connection_ = std::exchange(other.connection_, nullptr);
      offset_ = other.offset_;
      bytes_ = std::exchange(other.bytes_, 0);
      data_ = std::exchange(other.data_, nullptr);
    }
    return *this;
  }

  std::span<std::byte> data() const { return {data_, bytes_}; }
  std::uint64_t size() const { return bytes_; }
  std::uint64_t arena_offset() const { return offset_; }
  void reset();

 private:
  friend class Connection;
  HostBuffer(ConnectionCore* connection, std::uint64_t arena_offset, std::uint64_t bytes,
             std::byte* data)
      : connection_(connection), offset_(arena_offset), bytes_(bytes), data_(data) {}

  ConnectionCore* connection_ = nullptr;
  std::uint64_t offset_ = 0;
  std::uint64_t bytes_ = 0;
  std::byte* data_ = nullptr;
};

struct Kernel {
  std::string name;
  std::uint64_t handle = 0;
  std::uint32_t argc = 0;
};

// One kernel argument: a buffer (with byte offset), an int64 or a float.
struct KernelArg {
  static KernelArg buffer(const Buffer& b, std::uint64_t offset = 0) {
    return {{static_cast<std::uint32_t>(wire::ArgKind::kBuffer), 0, b.handle(), offset}};
  }
  static KernelArg i64(std::int64_t v) {
    return {{static_cast<std::uint32_t>(wire::ArgKind::kI64), 0, static_cast<std::uint64_t>(v), 0}};
  }
  static KernelArg f32(float v);
  wire::KernelArg wire;
};

}  // namespace malv::guest
