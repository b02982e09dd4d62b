// The `malv` torch device's state in the guest: the connection it uses
// (the Python package's, through its C API), the device memory it holds
// (one host buffer per storage, at an address reserved in this process so
// that PyTorch's pointer arithmetic works and any CPU access faults) and
// the operators it interned. docs/torch.md has the design.
#pragma once

#include <ATen/ATen.h>

#include <atomic>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <unordered_map>

#include "connection_capi.h"
#include "malv/connection.h"
#include "malv/stream.h"

namespace malv::torch_device {

// The VM's quota refused an allocation (thrown with the connection's lock
// held; raise_quota_exceeded() turns it into malv.QuotaExceeded once the
// lock is released).
class QuotaExceeded : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};
// Raises malv.QuotaExceeded in Python (through torch's python_error), or a
// RuntimeError when the malv package cannot be imported. Never holds the
// connection's lock: it takes the GIL.
[[noreturn]] void raise_quota_exceeded(const QuotaExceeded& refused);

// The device tensors' storage: where a tensor's bytes are on the host.
struct DeviceSpan {
  const guest::Buffer* object = nullptr;  // valid while the storage lives
  std::uint64_t buffer = 0;               // the session's buffer handle
  std::uint64_t offset = 0;               // bytes from the buffer's start
  std::uint64_t bytes = 0;                // of the buffer
};

// Holds the connection's lock for as long as it lives; raises (as a
// c10::Error) when no connection is attached or it is closed.
class Session {
 public:
  Session();
  ~Session();
  Session(const Session&) = delete;
  Session& operator=(const Session&) = delete;
  guest::Connection& connection() { return *connection_; }
  guest::Stream& stream() { return *stream_; }

 private:
  guest::Connection* connection_ = nullptr;
  guest::Stream* stream_ = nullptr;
};

class DeviceState {
 public:
  static DeviceState& get();

  // Attaches the connection the capsule (conn._c_api()) describes; device
  // memory of an earlier connection is gone with it.
  void attach(const python::ConnectionApi* api);
  bool attached() const { return api() != nullptr; }
  const python::ConnectionApi* api() const { return api_.load(std::memory_order_acquire); }

  // A reserved range of at least `bytes` backed by a host buffer (lock
  // held): a cached one of the same rounded size if there is one (no round
  // trip), else a new one; when the VM's quota refuses, the cache is given
  // back to the host and the allocation tried once more.
  void* allocate(Session& session, std::size_t bytes);
  // The storage is gone: its buffer joins the cache (as CUDA's caching
  // allocator keeps blocks), or goes back to the host past the cache's
  // limit. Safe to reuse at once: the device runs one stream in order, so
  // whatever used it before runs before whatever uses it next.
  void release(void* base);
  // Gives every cached buffer back to the host (malv.torch.empty_cache()).
  void empty_cache();
  std::uint64_t cached_bytes() const;
  // Where the byte at `address` lives: kInvalidArgument-like c10::Error
  // for an address no storage of this device holds.
  DeviceSpan locate(const void* address) const;

  // The host's id of an operator ("aten::add.Tensor"), interned once.
  std::uint32_t operator_id(Session& session, const std::string& name);

  // Operators libmalv held back (gathered while the host runs the batch in
  // flight) are sent once that batch completes by the device's flusher
  // thread: without it they would wait for the program's next call, and a
  // step that queues its work and then waits would run it only then. Call
  // with the connection's lock held, after queueing an operator.
  void after_enqueue(guest::Connection& connection);

  // Counters for malv.torch.stats().
  std::uint64_t buffers_live() const;
  std::uint64_t bytes_live() const;
  std::uint64_t operators_sent() const { return operators_sent_; }
  void count_operator() { ++operators_sent_; }
  // Operators without a meta kernel that ran on the guest's CPU instead.
  std::uint64_t operators_in_guest() const { return operators_in_guest_; }
  void count_guest_operator() { ++operators_in_guest_; }

 private:
  struct Allocation {
    std::size_t bytes = 0;
    guest::Buffer buffer;
  };
  static void on_close(void* self);  // the connection closes: drop every buffer
  void flusher();                    // the flusher thread's loop

  std::mutex flush_mu_;
  std::condition_variable flush_cv_;
  bool flush_wanted_ = false;                // guarded by flush_mu_
  bool flusher_started_ = false;             // guarded by flush_mu_
  std::atomic<bool> flusher_active_{false};  // it is sending: no need to wake it

  // Buffers freed by PyTorch and kept for reuse, by rounded size.
  static constexpr std::size_t kCacheLimit = 256u << 20;
  void free_now(std::uintptr_t base, Allocation gone);  // munmap, then kBufferFree
  void drop_cache();                                    // lock held
  // An allocation goes away (or loses its buffer): what threads located
  // before is stale (locate()'s per-thread memory of recent hits).
  void forget_locations();
  std::atomic<std::uint64_t> locations_{0};

  mutable std::mutex mu_;  // allocations_, cache_ (released from any thread)
  std::multimap<std::size_t, std::uintptr_t> cache_;  // rounded bytes -> base (in allocations_)
  std::unordered_map<std::uintptr_t, bool> cached_;   // base -> in the cache
  std::size_t cached_bytes_ = 0;
  std::atomic<const python::ConnectionApi*> api_{nullptr};
  std::uint64_t closer_ = 0;
  std::map<std::uintptr_t, Allocation> allocations_;  // by reserved base address
  std::unordered_map<std::string, std::uint32_t> operators_;
  std::uint64_t operators_sent_ = 0;
  std::uint64_t operators_in_guest_ = 0;
};

// The storage range of a device tensor as the wire's view wants it.
DeviceSpan span_of(const at::Tensor& tensor);

}  // namespace malv::torch_device
