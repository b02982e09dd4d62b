// The torch device's connection, memory and operator ids (device_state.h).
#include "device_state.h"

#include <c10/util/Exception.h>
#include <sys/mman.h>

#include <utility>

#include "malv/aten.h"

namespace malv::torch_device {

Session::Session() {
  const python::ConnectionApi* api = DeviceState::get().api();
  TORCH_CHECK(api != nullptr,
              "malv: no connection is attached to the torch device (call malv.torch.device(conn))");
  connection_ = api->lock(api->context, &stream_);
  TORCH_CHECK(connection_ != nullptr && stream_ != nullptr,
              "malv: the torch device's connection is closed");
}

Session::~Session() {
  const python::ConnectionApi* api = DeviceState::get().api();
  api->unlock(api->context);
}

DeviceState& DeviceState::get() {
  static auto* state = new DeviceState();  // never destroyed: tensors may outlive statics
  return *state;
}

void DeviceState::attach(const python::ConnectionApi* api) {
  TORCH_CHECK(api != nullptr && api->version == python::kConnectionApiVersion,
              "malv: the connection's C API is not the one this torch device speaks");
  api_ = api;
  guest::Stream* stream = nullptr;
  guest::Connection* conn = api->lock(api->context, &stream);
  TORCH_CHECK(conn != nullptr, "malv: the connection is closed");
  closer_ = api->add_closer(api->context, &DeviceState::on_close, this);
  operators_.clear();  // ids are per session
  api->unlock(api->context);
}

void DeviceState::on_close(void* self) {
  // The connection's lock is held: the buffers go before the session ends.
  auto& state = *static_cast<DeviceState*>(self);
  std::lock_guard lock(state.mu_);
  for (auto& [base, allocation] : state.allocations_) allocation.buffer = guest::Buffer();
  state.operators_.clear();
}

void* DeviceState::allocate(Session& session, std::size_t bytes) {
  // Reserved, never accessible: a CPU access to device memory faults
  // instead of reading garbage.
  void* base =
      ::mmap(nullptr, bytes, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  TORCH_CHECK(base != MAP_FAILED, "malv: cannot reserve ", bytes, " bytes of address space");
  Result<guest::Buffer> buffer = session.connection().allocate(bytes);
  if (!buffer.ok()) {
    ::munmap(base, bytes);
    TORCH_CHECK(false, "malv: allocating ", bytes,
                " bytes on the device: ", buffer.error().to_string());
  }
  std::lock_guard lock(mu_);
  allocations_.emplace(reinterpret_cast<std::uintptr_t>(base),
                       Allocation{bytes, std::move(buffer).value()});
  return base;
}

void DeviceState::release(void* base) {
  if (base == nullptr) return;
  Allocation gone;
  {
    std::lock_guard lock(mu_);
    auto it = allocations_.find(reinterpret_cast<std::uintptr_t>(base));
    if (it == allocations_.end()) return;
    gone = std::move(it->second);
    allocations_.erase(it);
  }
  ::munmap(base, gone.bytes);
  if (api_ == nullptr || gone.buffer.handle() == 0) return;
  guest::Stream* stream = nullptr;
  if (api_->lock(api_->context, &stream) == nullptr) return;  // closed: already freed
  gone.buffer = guest::Buffer();                              // kBufferFree, lock held
  api_->unlock(api_->context);
}

DeviceSpan DeviceState::locate(const void* address) const {
  const auto at = reinterpret_cast<std::uintptr_t>(address);
  std::lock_guard lock(mu_);
  auto it = allocations_.upper_bound(at);
  TORCH_CHECK(it != allocations_.begin(), "malv: a tensor whose memory is not on this device");
  --it;
  TORCH_CHECK(at >= it->first && at <= it->first + it->second.bytes,
              "malv: a tensor whose memory is not on this device");
  TORCH_CHECK(it->second.buffer.handle() != 0, "malv: a tensor of a connection that was closed");
  return DeviceSpan{&it->second.buffer, it->second.buffer.handle(), at - it->first,
                    it->second.bytes};
}

std::uint32_t DeviceState::operator_id(Session& session, const std::string& name) {
  auto it = operators_.find(name);
  if (it != operators_.end()) return it->second;
  Result<std::uint32_t> id = guest::aten_intern(session.connection(), name);
  if (!id.ok()) {
    const Error& e = id.error();
    if (e.code() == ErrorCode::kPermissionDenied || e.code() == ErrorCode::kNotFound ||
        e.code() == ErrorCode::kUnimplemented) {
      TORCH_CHECK_NOT_IMPLEMENTED(false, "malv: the host does not run ", name, ": ", e.to_string());
    }
    TORCH_CHECK(false, "malv: ", name, ": ", e.to_string());
  }
  operators_.emplace(name, *id);
  return *id;
}

std::uint64_t DeviceState::buffers_live() const {
  std::lock_guard lock(mu_);
  return allocations_.size();
}

std::uint64_t DeviceState::bytes_live() const {
  std::lock_guard lock(mu_);
  std::uint64_t total = 0;
  for (const auto& [base, allocation] : allocations_) total += allocation.bytes;
  return total;
}

DeviceSpan span_of(const at::Tensor& tensor) {
  const at::Storage& storage = tensor.storage();
  TORCH_CHECK(storage.data() != nullptr || tensor.numel() == 0,
              "malv: a device tensor without memory");
  DeviceSpan span = DeviceState::get().locate(storage.data());
  span.offset += static_cast<std::uint64_t>(tensor.storage_offset()) * tensor.itemsize();
  return span;
}

}  // namespace malv::torch_device
