#include "base/byte_quota.h"

#include <fmt/format.h>

namespace malv {

Status ByteQuota::reserve(std::uint64_t bytes) {
  std::uint64_t used = used_.load(std::memory_order_relaxed);
  for (;;) {
    const std::uint64_t limit = limit_.load(std::memory_order_relaxed);
    if (limit != 0 && (bytes > limit || used > limit - bytes)) {
      return Error(
          ErrorCode::kResourceExhausted,
          fmt::format("{}: {} bytes in use + {} requested > limit {}", what_, used, bytes, limit));
    }
    if (used_.compare_exchange_weak(used, used + bytes, std::memory_order_acq_rel)) {
      return ok_status();
    }
  }
}

void ByteQuota::release(std::uint64_t bytes) { used_.fetch_sub(bytes, std::memory_order_acq_rel); }

}  // namespace malv
