#include "guest/arena_allocator.h"

namespace malv::guest {

ArenaAllocator::ArenaAllocator(std::uint64_t bytes)
    : capacity_(bytes / kAlignment * kAlignment), free_bytes_(capacity_) {
  if (capacity_ > 0) free_.emplace(0, capacity_);
}

std::optional<std::uint64_t> ArenaAllocator::allocate(std::uint64_t bytes) {
  const std::uint64_t size = round_up(bytes == 0 ? 1 : bytes);
  for (auto it = free_.begin(); it != free_.end(); ++it) {
    if (it->second < size) continue;
    const std::uint64_t offset = it->first;
    const std::uint64_t rest = it->second - size;
    free_.erase(it);
    if (rest > 0) free_.emplace(offset + size, rest);
    free_bytes_ -= size;
    return offset;
  }
  return std::nullopt;
}

void ArenaAllocator::release(std::uint64_t offset, std::uint64_t bytes) {
  std::uint64_t size = round_up(bytes == 0 ? 1 : bytes);
  free_bytes_ += size;
  auto next = free_.lower_bound(offset);
  if (next != free_.end() && offset + size == next->first) {
    size += next->second;
    next = free_.erase(next);
  }
  if (next != free_.begin()) {
    auto prev = std::prev(next);
    if (prev->first + prev->second == offset) {
      prev->second += size;
      return;
    }
  }
  free_.emplace(offset, size);
}

}  // namespace malv::guest
