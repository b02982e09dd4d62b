// RemoteDevice: an nn::Device on a MaLV-OS vGPU, through libmalv.
//
// Every DeviceBuffer is a host buffer (guest::Buffer), every op a launch on
// one guest::Stream; kernels are looked up by name once, at create(). The
// host validates every command, so a bad launch is reported (at the next
// synchronize) rather than trusted.
//
//   MALV_ASSIGN_OR_RETURN(auto conn, guest::Connection::connect_unix(path, {}));
//   MALV_ASSIGN_OR_RETURN(auto device, RemoteDevice::create(*conn));
//
// The Connection must outlive the device.
//
// With `synchronous` set, every launch and write waits for the stream to
// finish it before returning, as a guest that blocks on each op does: the
// host then never sees work queued ahead (the memory benchmark's `sync`
// variant). The default queues work ahead and returns at once.
#pragma once

#include <array>
#include <memory>
#include <vector>

#include "malv/connection.h"
#include "nn/device.h"

namespace malv::nn {

struct RemoteDeviceOptions {
  bool synchronous = false;  // wait for each launch and write to complete
};

class RemoteDevice final : public Device {
 public:
  [[nodiscard]] static Result<std::unique_ptr<RemoteDevice>> create(
      guest::Connection& connection, RemoteDeviceOptions options = {});
  ~RemoteDevice() override;

  std::string describe() const override { return description_; }
  Status write(const DeviceBuffer& dst, std::uint64_t offset,
               std::span<const std::byte> data) override;
  Status read(const DeviceBuffer& src, std::uint64_t offset, std::span<std::byte> out) override;
  Status synchronize() override;

  // The libmalv objects behind this device, for offload services that work
  // on its buffers in its stream order (nn/batch_source.h).
  guest::Connection& connection() { return connection_; }
  guest::Stream& stream() { return stream_; }
  const guest::Buffer& guest_buffer(const DeviceBuffer& buffer) const {
    return buffers_[buffer.slot()];
  }

 protected:
  Result<std::uint32_t> allocate_slot(std::uint64_t bytes) override;
  void release_slot(std::uint32_t slot) override;
  Status enqueue_launch(BuiltinKernel op, std::span<const Arg> args) override;

 private:
  RemoteDevice(guest::Connection& connection, guest::Stream stream,
               std::array<guest::Kernel, kBuiltinKernelCount> kernels, std::string description,
               RemoteDeviceOptions options)
      : connection_(connection),
        stream_(std::move(stream)),
        kernels_(std::move(kernels)),
        description_(std::move(description)),
        options_(options) {}

  // In synchronous mode, waits for `queued` (just enqueued) to complete.
  Status complete(Status queued);

  guest::Connection& connection_;
  guest::Stream stream_;
  std::array<guest::Kernel, kBuiltinKernelCount> kernels_;
  std::string description_;
  RemoteDeviceOptions options_;
  std::vector<guest::Buffer> buffers_;  // by slot; a freed slot holds an empty Buffer
  std::vector<std::uint32_t> free_slots_;
};

}  // namespace malv::nn
