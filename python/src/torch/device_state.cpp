// The torch device's connection, memory and operator ids (device_state.h).
#include "device_state.h"

#include <c10/util/Exception.h>
#include <pybind11/pybind11.h>
#include <sys/mman.h>
#include <torch/csrc/Exceptions.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <thread>
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
  api_.store(api, std::memory_order_release);
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
  state.forget_locations();
  for (auto& [base, allocation] : state.allocations_) allocation.buffer = guest::Buffer();
  for (const auto& [bytes, base] : state.cache_) {
    auto it = state.allocations_.find(base);
    if (it == state.allocations_.end()) continue;
    ::munmap(reinterpret_cast<void*>(base), it->second.bytes);
    state.allocations_.erase(it);
  }
  state.cache_.clear();
  state.cached_.clear();
  state.cached_bytes_ = 0;
  state.operators_.clear();
}

namespace {
// Sizes round up to this, so that a freed block fits the next request of a
// similar tensor.
constexpr std::size_t kRounding = 512;
}  // namespace

void* DeviceState::allocate(Session& session, std::size_t bytes) {
  const std::size_t rounded =
      (std::max<std::size_t>(bytes, 1) + kRounding - 1) / kRounding * kRounding;
  {
    std::lock_guard lock(mu_);
    auto hit = cache_.find(rounded);
    if (hit != cache_.end()) {
      const std::uintptr_t base = hit->second;
      cache_.erase(hit);
      cached_.erase(base);
      cached_bytes_ -= rounded;
      return reinterpret_cast<void*>(base);
    }
  }
  // Reserved, never accessible: a CPU access to device memory faults
  // instead of reading garbage.
  void* base =
      ::mmap(nullptr, rounded, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  TORCH_CHECK(base != MAP_FAILED, "malv: cannot reserve ", rounded, " bytes of address space");
  Result<guest::Buffer> buffer = session.connection().allocate(rounded);
  if (!buffer.ok() && buffer.error().code() == ErrorCode::kResourceExhausted &&
      cached_bytes() > 0) {
    {
      std::lock_guard lock(mu_);
      drop_cache();
    }
    buffer = session.connection().allocate(rounded);
  }
  if (!buffer.ok()) {
    ::munmap(base, rounded);
    if (buffer.error().code() == ErrorCode::kResourceExhausted) {
      // The VM's quota and what it uses, as the host reports them to it
      // (a failed completion carries no text).
      std::string quota;
      if (Result<guest::DeviceInfo> info = session.connection().device_info(); info.ok()) {
        quota = "; the VM's quota is " + std::to_string(info->total_memory) + " bytes, " +
                std::to_string(info->total_memory - info->free_memory) + " of them in use";
      }
      // Raised once the connection's lock is released (the caller's
      // Session), as malv.QuotaExceeded: see raise_quota_exceeded().
      throw QuotaExceeded("malv: the VM's device memory quota refuses " + std::to_string(rounded) +
                          " more bytes (this process holds " + std::to_string(bytes_live()) +
                          " bytes of device tensors; its cache was given back first" + quota +
                          "): " + buffer.error().to_string());
    }
    TORCH_CHECK(false, "malv: allocating ", bytes,
                " bytes on the device: ", buffer.error().to_string());
  }
  std::lock_guard lock(mu_);
  allocations_.emplace(reinterpret_cast<std::uintptr_t>(base),
                       Allocation{rounded, std::move(buffer).value()});
  return base;
}

void DeviceState::release(void* base) {
  if (base == nullptr) return;
  const auto at = reinterpret_cast<std::uintptr_t>(base);
  Allocation gone;
  {
    std::lock_guard lock(mu_);
    auto it = allocations_.find(at);
    if (it == allocations_.end()) return;
    if (it->second.buffer.handle() != 0 && cached_bytes_ + it->second.bytes <= kCacheLimit) {
      cache_.emplace(it->second.bytes, at);
      cached_.emplace(at, true);
      cached_bytes_ += it->second.bytes;
      return;
    }
    forget_locations();
    gone = std::move(it->second);
    allocations_.erase(it);
  }
  free_now(at, std::move(gone));
}

void DeviceState::free_now(std::uintptr_t base, Allocation gone) {
  ::munmap(reinterpret_cast<void*>(base), gone.bytes);
  const python::ConnectionApi* api = this->api();
  if (api == nullptr || gone.buffer.handle() == 0) return;
  guest::Stream* stream = nullptr;
  if (api->lock(api->context, &stream) == nullptr) return;  // closed: already freed
  gone.buffer = guest::Buffer();                            // kBufferFree, lock held
  api->unlock(api->context);
}

void DeviceState::drop_cache() {
  // With the connection's lock held by the caller (an allocation): the
  // buffers go back at once.
  forget_locations();
  for (const auto& [bytes, base] : cache_) {
    auto it = allocations_.find(base);
    if (it == allocations_.end()) continue;
    ::munmap(reinterpret_cast<void*>(base), it->second.bytes);
    it->second.buffer = guest::Buffer();
    allocations_.erase(it);
  }
  cache_.clear();
  cached_.clear();
  cached_bytes_ = 0;
}

void DeviceState::empty_cache() {
  Session session;
  std::lock_guard lock(mu_);
  drop_cache();
}

std::uint64_t DeviceState::cached_bytes() const {
  std::lock_guard lock(mu_);
  return cached_bytes_;
}

void DeviceState::forget_locations() { locations_.fetch_add(1, std::memory_order_acq_rel); }

DeviceSpan DeviceState::locate(const void* address) const {
  const auto at = reinterpret_cast<std::uintptr_t>(address);
  // The allocations this thread located last, valid while no allocation
  // went away since (the fallback locates every tensor of every call; a
  // loop names the same few).
  struct Located {
    std::uint64_t generation = ~std::uint64_t{0};
    std::uintptr_t base = 0;
    DeviceSpan span;
  };
  thread_local std::array<Located, 8> recent;
  thread_local std::size_t next = 0;
  const std::uint64_t generation = locations_.load(std::memory_order_acquire);
  for (const Located& hit : recent) {
    // Strictly inside: the byte just past one allocation may be the first
    // of the next one mapped (the lookup below decides that case).
    if (hit.generation == generation && at >= hit.base && at < hit.base + hit.span.bytes) {
      DeviceSpan span = hit.span;
      span.offset = at - hit.base;
      return span;
    }
  }
  std::lock_guard lock(mu_);
  auto it = allocations_.upper_bound(at);
  TORCH_CHECK(it != allocations_.begin(), "malv: a tensor whose memory is not on this device");
  --it;
  TORCH_CHECK(at >= it->first && at <= it->first + it->second.bytes,
              "malv: a tensor whose memory is not on this device");
  TORCH_CHECK(it->second.buffer.handle() != 0, "malv: a tensor of a connection that was closed");
  const DeviceSpan span{&it->second.buffer, it->second.buffer.handle(), at - it->first,
                        it->second.bytes};
  // Read before the lookup: an allocation that went away meanwhile made it
  // stale already.
  recent[next++ % recent.size()] = Located{generation, it->first, span};
  return span;
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
  return allocations_.size() - cached_.size();
}

std::uint64_t DeviceState::bytes_live() const {
  std::lock_guard lock(mu_);
  std::uint64_t total = 0;
  for (const auto& [base, allocation] : allocations_) {
    if (!cached_.contains(base)) total += allocation.bytes;
  }
  return total;
}

void DeviceState::after_enqueue(guest::Connection& connection) {
  if (guest::aten_held(connection) == 0) return;
  // Read after the operator was queued (the connection's lock held): a
  // flusher that stops sending takes the lock and looks again, so it
  // either sees this operator or this sees it stopped and wakes it.
  if (flusher_active_.load(std::memory_order_seq_cst)) return;
  {
    std::lock_guard lock(flush_mu_);
    flush_wanted_ = true;
    if (!flusher_started_) {
      flusher_started_ = true;
      // Never joined: the state lives as long as the process.
      std::thread([this] { flusher(); }).detach();
    }
  }
  flush_cv_.notify_one();
}

void DeviceState::flusher() {
  // How often it looks while the program runs operators, and how long it
  // stays awake once none is held: woken for each held operator, it took
  // the program's CPU turn every few microseconds (a wake-up, a lock and a
  // sleep per operator), on a machine whose other core runs the host.
  constexpr auto kFirstPause = std::chrono::microseconds(50);
  constexpr auto kLongestPause = std::chrono::microseconds(200);
  constexpr auto kStayAwake = std::chrono::milliseconds(2);
  for (;;) {
    {
      std::unique_lock lock(flush_mu_);
      flush_cv_.wait(lock, [this] { return flush_wanted_; });
      flush_wanted_ = false;
    }
    flusher_active_.store(true, std::memory_order_seq_cst);
    // While the program keeps queueing, its own calls send the batches; the
    // flusher matters when it stops (a wait, other work): it looks after
    // 50 us, then less and less often, up to every 200 us, and sleeps once
    // nothing was held for 2 ms.
    auto pause = kFirstPause;
    auto last_held = std::chrono::steady_clock::now();
    for (;;) {
      const python::ConnectionApi* api = this->api();
      guest::Stream* stream = nullptr;
      guest::Connection* conn = api == nullptr ? nullptr : api->lock(api->context, &stream);
      if (conn == nullptr) break;  // closed, or a forked child's
      Result<std::uint32_t> held = guest::aten_flush_if_idle(*conn);
      if (!held.ok()) {
        api->unlock(api->context);
        break;  // the connection failed: its next call says so
      }
      const auto now = std::chrono::steady_clock::now();
      if (held.value() > 0) {
        last_held = now;  // the batch in flight has not completed: look again soon
      } else if (now - last_held >= kStayAwake) {
        // Stop, unless an operator came since (after_enqueue saw us active).
        flusher_active_.store(false, std::memory_order_seq_cst);
        const bool more = guest::aten_held(*conn) > 0;
        if (more) flusher_active_.store(true, std::memory_order_seq_cst);
        api->unlock(api->context);
        if (!more) break;
        continue;
      }
      api->unlock(api->context);
      std::this_thread::sleep_for(pause);
      pause = std::min(pause * 2, kLongestPause);
    }
    flusher_active_.store(false, std::memory_order_seq_cst);
  }
}

void raise_quota_exceeded(const QuotaExceeded& refused) {
  {
    pybind11::gil_scoped_acquire gil;
    try {
      pybind11::object cls = pybind11::module_::import("malv").attr("QuotaExceeded");
      pybind11::object error =
          cls(std::string(refused.what()), "resource_exhausted",
              static_cast<int>(ErrorCode::kResourceExhausted), pybind11::tuple());
      PyErr_SetObject(cls.ptr(), error.ptr());
    } catch (const pybind11::error_already_set&) {
      PyErr_Clear();  // no malv package to raise it from: a RuntimeError below
    }
    if (PyErr_Occurred()) {
      // torch's bindings restore a Python error carried by python_error.
      ::python_error error;
      error.persist();
      throw error;
    }
  }
  TORCH_CHECK(false, refused.what());
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
