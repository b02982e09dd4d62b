#include "nn/native_device.h"

#include <fmt/format.h>

#include <cstring>

#include "accel/kernel_ids.h"

namespace malv::nn {

Result<std::unique_ptr<NativeDevice>> NativeDevice::create(accel::Backend& backend) {
  MALV_ASSIGN_OR_RETURN(accel::QueueId queue, backend.create_queue(accel::QueuePriority::kNormal));
  return std::unique_ptr<NativeDevice>(new NativeDevice(nullptr, backend, queue));
}

Result<std::unique_ptr<NativeDevice>> NativeDevice::create_cpu(
    const accel::CpuBackendOptions& options) {
  std::unique_ptr<accel::Backend> backend = accel::make_cpu_backend(options);
  MALV_ASSIGN_OR_RETURN(accel::QueueId queue, backend->create_queue(accel::QueuePriority::kNormal));
  accel::Backend& ref = *backend;
  return std::unique_ptr<NativeDevice>(new NativeDevice(std::move(backend), ref, queue));
}

NativeDevice::NativeDevice(std::unique_ptr<accel::Backend> owned, accel::Backend& backend,
                           accel::QueueId queue)
    : owned_(std::move(owned)), backend_(backend), queue_(queue) {
  const accel::DeviceInfo info = backend_.info();
  description_ = fmt::format("native: {} ({})", info.backend, info.name);
}

NativeDevice::~NativeDevice() {
  (void)synchronize();
  backend_.destroy_queue(queue_);
  for (const Slot& slot : slots_) {
    if (slot.bytes != 0) backend_.free(slot.ptr);
  }
}

void NativeDevice::on_complete(void* context, std::uint64_t cookie, ErrorCode status) {
  auto* self = static_cast<NativeDevice*>(context);
  const std::uint64_t seq = cookie >> 8;
  const auto what = static_cast<std::uint8_t>(cookie & 0xff);
  if (status != ErrorCode::kOk) {
    std::lock_guard lock(self->mu_);
    if (!self->first_error_) self->first_error_ = FailedOp{seq, what, status};
  }
  // One queue completes in order, so this is a high-water mark.
  self->completed_seq_.store(seq, std::memory_order_release);
  if (what == kMarker) {
    std::lock_guard lock(self->mu_);
    self->marker_seq_done_ = seq;
    self->marker_done_.notify_all();
  }
}

void NativeDevice::enqueue(accel::Op op, std::uint8_t what) {
  const std::uint64_t seq = ++submitted_seq_;
  backend_.enqueue(queue_, std::move(op), accel::Completion{&on_complete, this, (seq << 8) | what});
}

void NativeDevice::reclaim_staging() {
  const std::uint64_t done = completed_seq_.load(std::memory_order_acquire);
  while (!staging_.empty() && staging_.front().seq <= done) {
    if (spare_staging_.size() < 8) spare_staging_.push_back(std::move(staging_.front().data));
    staging_.pop_front();
  }
}

Result<std::uint32_t> NativeDevice::allocate_slot(std::uint64_t bytes) {
  // A zero-byte buffer still gets distinct device memory (and a slot).
  MALV_ASSIGN_OR_RETURN(accel::DevicePtr ptr, backend_.allocate(std::max<std::uint64_t>(bytes, 4)));
  const Slot slot{ptr, std::max<std::uint64_t>(bytes, 1)};
  if (!free_slots_.empty()) {
    const std::uint32_t index = free_slots_.back();
    free_slots_.pop_back();
    slots_[index] = slot;
    return index;
  }
  slots_.push_back(slot);
  return static_cast<std::uint32_t>(slots_.size() - 1);
}

void NativeDevice::release_slot(std::uint32_t index) {
  // Ops queued before this may still use the memory: free it once they ran.
  deferred_frees_.push_back(slots_[index].ptr);
  slots_[index] = Slot{};
  free_slots_.push_back(index);
}

Status NativeDevice::write(const DeviceBuffer& dst, std::uint64_t offset,
                           std::span<const std::byte> data) {
  MALV_TRY(check_range(dst, offset, data.size(), "write"));
  if (data.empty()) return ok_status();
  reclaim_staging();
  std::vector<std::byte> copy;
  if (!spare_staging_.empty()) {
    copy = std::move(spare_staging_.back());
    spare_staging_.pop_back();
  }
  copy.assign(data.begin(), data.end());
  const void* src = copy.data();
  enqueue(accel::CopyH2D{src, slots_[dst.slot()].ptr + offset, data.size()}, kWrite);
  staging_.push_back(Staging{submitted_seq_, std::move(copy)});
  return ok_status();
}

Status NativeDevice::read(const DeviceBuffer& src, std::uint64_t offset, std::span<std::byte> out) {
  MALV_TRY(check_range(src, offset, out.size(), "read"));
  if (out.empty()) return ok_status();
  enqueue(accel::CopyD2H{slots_[src.slot()].ptr + offset, out.data(), out.size()}, kRead);
  return ok_status();
}

Status NativeDevice::enqueue_launch(BuiltinKernel op, std::span<const Arg> args) {
  const accel::KernelDef* kernel = accel::find_kernel(accel::kernel_id(op));
  if (kernel == nullptr) {
    return Error(ErrorCode::kNotFound,
                 fmt::format("kernel '{}' is not in the registry", kernel_name(op)));
  }
  accel::Launch launch{kernel->id, {}, static_cast<std::uint32_t>(args.size())};
  if (args.size() > launch.args.size()) {
    return Error(ErrorCode::kInvalidArgument,
                 fmt::format("{}: {} arguments is too many", kernel->name, args.size()));
  }
  for (std::size_t i = 0; i < args.size(); ++i) {
    const Arg& arg = args[i];
    accel::KernelArgValue& value = launch.args[i];
    switch (arg.kind) {
      case Arg::Kind::kBuffer: {
        MALV_TRY(check_range(*arg.buf, arg.offset, 0, kernel->name));
        const Slot& slot = slots_[arg.buf->slot()];
        value.kind = accel::ArgKind::kBuffer;
        value.ptr = slot.ptr + arg.offset;
        value.extent = arg.buf->size() - arg.offset;
        break;
      }
      case Arg::Kind::kI64:
        value.kind = accel::ArgKind::kI64;
        value.i64 = arg.i;
        break;
      case Arg::Kind::kF32:
        value.kind = accel::ArgKind::kF32;
        value.f32 = arg.f;
        break;
    }
  }
  MALV_TRY(accel::validate_launch(*kernel, std::span(launch.args.data(), args.size())));
  enqueue(launch, static_cast<std::uint8_t>(kFirstKernel + static_cast<std::uint8_t>(op)));
  return ok_status();
}

Status NativeDevice::synchronize() {
  enqueue(accel::Marker{}, kMarker);
  const std::uint64_t marker = submitted_seq_;
  std::optional<FailedOp> failed;
  {
    std::unique_lock lock(mu_);
    marker_done_.wait(lock, [&] { return marker_seq_done_ >= marker; });
    failed = std::exchange(first_error_, std::nullopt);
  }
  staging_.clear();
  for (accel::DevicePtr ptr : deferred_frees_) backend_.free(ptr);
  deferred_frees_.clear();
  if (!failed) return ok_status();
  std::string what;
  switch (failed->what) {
    case kWrite: what = "write"; break;
    case kRead: what = "read"; break;
    case kMarker: what = "marker"; break;
    default:
      what = fmt::format("kernel '{}'",
                         kernel_name(static_cast<BuiltinKernel>(failed->what - kFirstKernel)));
  }
  return Error(failed->status, fmt::format("{} (op #{}) failed on the device", what, failed->seq));
}

}  // namespace malv::nn
