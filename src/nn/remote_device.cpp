#include "nn/remote_device.h"

#include <fmt/format.h>

namespace malv::nn {
namespace {

// Where a kernel's handle is kept: ids are 1-based.
std::size_t index_of(BuiltinKernel kernel) { return static_cast<std::size_t>(kernel) - 1; }

}  // namespace

Result<std::unique_ptr<RemoteDevice>> RemoteDevice::create(guest::Connection& connection,
                                                           RemoteDeviceOptions options) {
  std::array<guest::Kernel, kBuiltinKernelCount> kernels;
  for (BuiltinKernel kernel : all_builtin_kernels()) {
    MALV_ASSIGN_OR_RETURN(kernels[index_of(kernel)], connection.kernel(kernel_name(kernel)));
  }
  MALV_ASSIGN_OR_RETURN(guest::Stream stream, connection.create_stream());
  MALV_ASSIGN_OR_RETURN(guest::DeviceInfo info, connection.device_info());
  std::string description = fmt::format("remote vGPU: {} ({})", info.backend, info.name);
  return std::unique_ptr<RemoteDevice>(new RemoteDevice(
      connection, std::move(stream), std::move(kernels), std::move(description), options));
}

RemoteDevice::~RemoteDevice() {
  // Buffers still alive at this point are released with the stream; errors
  // of work nobody synchronised can no longer be reported to anyone.
  (void)stream_.synchronize();
}

Result<std::uint32_t> RemoteDevice::allocate_slot(std::uint64_t bytes) {
  MALV_ASSIGN_OR_RETURN(guest::Buffer buffer, connection_.allocate(bytes));
  if (!free_slots_.empty()) {
    const std::uint32_t slot = free_slots_.back();
    free_slots_.pop_back();
    buffers_[slot] = std::move(buffer);
    return slot;
  }
  buffers_.push_back(std::move(buffer));
  return static_cast<std::uint32_t>(buffers_.size() - 1);
}

void RemoteDevice::release_slot(std::uint32_t slot) {
  // The host orders a free after the stream work that uses the buffer.
  buffers_[slot] = guest::Buffer();
  free_slots_.push_back(slot);
}

Status RemoteDevice::write(const DeviceBuffer& dst, std::uint64_t offset,
                           std::span<const std::byte> data) {
  MALV_TRY(check_range(dst, offset, data.size(), "write"));
  return complete(stream_.write(buffers_[dst.slot()], offset, data));
}

Status RemoteDevice::read(const DeviceBuffer& src, std::uint64_t offset, std::span<std::byte> out) {
  MALV_TRY(check_range(src, offset, out.size(), "read"));
  return stream_.read(buffers_[src.slot()], offset, out);
}

Status RemoteDevice::synchronize() { return stream_.synchronize(); }

Status RemoteDevice::complete(Status queued) {
  if (!queued.ok() || !options_.synchronous) return queued;
  return stream_.synchronize();
}

Status RemoteDevice::enqueue_launch(BuiltinKernel op, std::span<const Arg> args) {
  std::array<guest::KernelArg, 10> wire_args;
  if (args.size() > wire_args.size()) {
    return Error(ErrorCode::kInvalidArgument,
                 fmt::format("{}: {} arguments is too many", kernel_name(op), args.size()));
  }
  for (std::size_t i = 0; i < args.size(); ++i) {
    const Arg& arg = args[i];
    switch (arg.kind) {
      case Arg::Kind::kBuffer:
        // The host checks the extent against the kernel's shapes.
        MALV_TRY(check_range(*arg.buf, arg.offset, 0, kernel_name(op)));
        wire_args[i] = guest::KernelArg::buffer(buffers_[arg.buf->slot()], arg.offset);
        break;
      case Arg::Kind::kI64: wire_args[i] = guest::KernelArg::i64(arg.i); break;
      case Arg::Kind::kF32: wire_args[i] = guest::KernelArg::f32(arg.f); break;
    }
  }
  return complete(stream_.launch(kernels_[index_of(op)],
                                 std::span<const guest::KernelArg>(wire_args.data(), args.size())));
}

}  // namespace malv::nn
