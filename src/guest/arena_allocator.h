// ArenaAllocator: hands out ranges of the channel's data arena to commands
// in flight. A range is taken when a command that reads or writes the arena
// is submitted and given back when its completion arrives, so completions
// arriving out of order (different streams) are fine. First fit over a free
// list kept sorted by offset, with neighbours merged on release; arena
// traffic is a few large transfer chunks plus small names, where this is
// both simple and fast.
#pragma once

#include <cstdint>
#include <map>
#include <optional>

namespace malv::guest {

class ArenaAllocator {
 public:
  static constexpr std::uint64_t kAlignment = 64;

  explicit ArenaAllocator(std::uint64_t bytes);

  // An aligned range of `bytes`, or nullopt when no free block is big enough.
  std::optional<std::uint64_t> allocate(std::uint64_t bytes);
  void release(std::uint64_t offset, std::uint64_t bytes);

  std::uint64_t capacity() const { return capacity_; }
  std::uint64_t free_bytes() const { return free_bytes_; }

 private:
  static std::uint64_t round_up(std::uint64_t bytes) {
    return (bytes + kAlignment - 1) / kAlignment * kAlignment;
  }
  std::uint64_t capacity_;
  std::uint64_t free_bytes_;
  std::map<std::uint64_t, std::uint64_t> free_;  // offset -> size
};

}  // namespace malv::guest
