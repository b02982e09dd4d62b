// ByteQuota: bytes a tenant holds of one resource, against a limit the
// admin may change while it runs.
//
// The host keeps one per VM and resource it does not get from the device
// (host memory for arenas and checkpoint snapshots, say). Components below
// the vGPU layer see only this, not the VM: the session charges a snapshot
// to the quota it was handed at admission.
//
//   ByteQuota host_memory("VM 'vm-a' host memory", 1 << 30);
//   MALV_TRY(host_memory.reserve(64 << 20));  // kResourceExhausted past the limit
//   host_memory.release(64 << 20);
//
// Thread-safe. Lowering the limit frees nothing: it stops new reservations
// until usage is below it.
#pragma once

#include <atomic>
#include <cstdint>
#include <string>

#include "malv/result.h"

namespace malv {

class ByteQuota {
 public:
  // `what` names the holder and the resource in errors; limit 0: unlimited.
  explicit ByteQuota(std::string what, std::uint64_t limit = 0)
      : what_(std::move(what)), limit_(limit) {}
  ByteQuota(const ByteQuota&) = delete;
  ByteQuota& operator=(const ByteQuota&) = delete;

  // Reserves `bytes`, or fails with kResourceExhausted naming the usage,
  // the request and the limit.
  [[nodiscard]] Status reserve(std::uint64_t bytes);
  void release(std::uint64_t bytes);

  std::uint64_t used() const { return used_.load(std::memory_order_relaxed); }
  std::uint64_t limit() const { return limit_.load(std::memory_order_relaxed); }
  void set_limit(std::uint64_t limit) { limit_.store(limit, std::memory_order_relaxed); }
  const std::string& what() const { return what_; }

 private:
  const std::string what_;
  std::atomic<std::uint64_t> limit_;
  std::atomic<std::uint64_t> used_{0};
};

}  // namespace malv
