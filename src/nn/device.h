// Device: where nn/ keeps its tensors and runs its kernels.
//
// The model code (layers, loss, optimizers) is written once against this
// interface; two implementations carry it out:
//
//  * RemoteDevice — a MaLV-OS vGPU reached through libmalv: every buffer is a
//    host buffer, every op a kernel launch on one guest::Stream. This is how
//    a guest VM trains.
//  * NativeDevice — an accel::Backend driven in-process, with no channel in
//    between: the baseline for measuring what virtualisation costs.
//
// Semantics follow a CUDA stream: write(), read() and launch() return once
// the work is queued and run in order; read() fills its output and errors
// surface by the time synchronize() returns. write() copies the caller's
// bytes before returning, so the caller may reuse them at once.
//
//   MALV_ASSIGN_OR_RETURN(DeviceBuffer x, device.allocate(n * sizeof(float)));
//   MALV_TRY(device.write(x, 0, std::as_bytes(std::span(host))));
//   MALV_TRY(device.launch(BuiltinKernel::kRelu, {Arg::buffer(x), Arg::buffer(x), Arg::i64(n)}));
//   MALV_TRY(device.read(x, 0, std::as_writable_bytes(std::span(host))));
//   MALV_TRY(device.synchronize());
//
// A Device is used from one thread; its buffers must not outlive it.
#pragma once

#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <span>
#include <string>
#include <string_view>
#include <utility>

#include "malv/kernels.h"
#include "malv/result.h"

namespace malv::nn {

class Device;

// A move-only allocation on a Device; freed when it goes away.
class DeviceBuffer {
 public:
  DeviceBuffer() = default;
  ~DeviceBuffer() { reset(); }
  DeviceBuffer(DeviceBuffer&& other) noexcept
      : device_(std::exchange(other.device_, nullptr)),
        slot_(other.slot_),
        bytes_(std::exchange(other.bytes_, 0)) {}
  DeviceBuffer& operator=(DeviceBuffer&& other) noexcept {
    if (this != &other) {
      reset();
      device_ = std::exchange(other.device_, nullptr);
      slot_ = other.slot_;
      bytes_ = std::exchange(other.bytes_, 0);
    }
    return *this;
  }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;

  std::uint64_t size() const { return bytes_; }
  bool valid() const { return device_ != nullptr; }
  const Device* device() const { return device_; }
  // The device's own index of this buffer; meaningful to that device only.
  std::uint32_t slot() const { return slot_; }
  void reset();

 private:
  friend class Device;
  DeviceBuffer(Device* device, std::uint32_t slot, std::uint64_t bytes)
      : device_(device), slot_(slot), bytes_(bytes) {}
  Device* device_ = nullptr;
  std::uint32_t slot_ = 0;
  std::uint64_t bytes_ = 0;
};

// One kernel argument: a buffer (with a byte offset), an int64 or a float.
struct Arg {
  enum class Kind : std::uint8_t { kBuffer, kI64, kF32 };
  static Arg buffer(const DeviceBuffer& b, std::uint64_t offset = 0) {
    return Arg{Kind::kBuffer, &b, offset, 0, 0.0f};
  }
  static Arg i64(std::int64_t v) { return Arg{Kind::kI64, nullptr, 0, v, 0.0f}; }
  static Arg f32(float v) { return Arg{Kind::kF32, nullptr, 0, 0, v}; }

  Kind kind;
  const DeviceBuffer* buf;
  std::uint64_t offset;
  std::int64_t i;
  float f;
};

class Device {
 public:
  virtual ~Device() = default;
  Device() = default;
  Device(const Device&) = delete;
  Device& operator=(const Device&) = delete;

  // "remote: cpu (OpenBLAS on 2 cores)" or "native: ...", for reports.
  virtual std::string describe() const = 0;

  [[nodiscard]] Result<DeviceBuffer> allocate(std::uint64_t bytes);
  [[nodiscard]] virtual Status write(const DeviceBuffer& dst, std::uint64_t offset,
                                     std::span<const std::byte> data) = 0;
  // `out` must stay valid until synchronize() returns.
  [[nodiscard]] virtual Status read(const DeviceBuffer& src, std::uint64_t offset,
                                    std::span<std::byte> out) = 0;
  // One of the built-in kernels (malv/kernels.h); their argument lists are
  // in src/accel/kernel_registry.cpp.
  [[nodiscard]] Status launch(BuiltinKernel op, std::span<const Arg> args) {
    return enqueue_launch(op, args);
  }
  [[nodiscard]] Status launch(BuiltinKernel op, std::initializer_list<Arg> args) {
    return enqueue_launch(op, std::span(args.begin(), args.size()));
  }
  // Waits for all queued work; the first failure since the last call, if any.
  [[nodiscard]] virtual Status synchronize() = 0;

 protected:
  // A new buffer's slot, and its release (called once, from DeviceBuffer).
  [[nodiscard]] virtual Result<std::uint32_t> allocate_slot(std::uint64_t bytes) = 0;
  virtual void release_slot(std::uint32_t slot) = 0;
  [[nodiscard]] virtual Status enqueue_launch(BuiltinKernel op, std::span<const Arg> args) = 0;

  // Checks that a buffer belongs to this device and [offset, offset+bytes) fits.
  [[nodiscard]] Status check_range(const DeviceBuffer& buffer, std::uint64_t offset,
                                   std::uint64_t bytes, std::string_view what) const;

 private:
  friend class DeviceBuffer;
};

}  // namespace malv::nn
