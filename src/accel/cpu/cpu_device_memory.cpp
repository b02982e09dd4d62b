#include "accel/cpu/cpu_device_memory.h"

#include <fmt/format.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <bit>
#include <cstdlib>
#include <cstring>

#include "base/log.h"

namespace malv::accel::cpu {
namespace {

constexpr std::size_t kAlignment = 64;
// Freed mappings kept for reuse, at most (and at most a quarter of the
// capacity): what a VM freeing and allocating buffers of similar sizes
// cycles through, without holding much host memory idle.
constexpr std::size_t kCacheMax = std::size_t{256} << 20;
// Live and cached mappings together, at most; past it blocks come from the
// heap. The process's map count is limited (vm.max_map_count, 65530 by
// default), and threads and libraries need mappings too.
constexpr std::size_t kMaxMappings = 16384;
// A run of non-resident pages shorter than this is zeroed with memset
// rather than a madvise call.
constexpr std::size_t kDropMinPages = 16;

std::size_t page_size() {
  static const std::size_t size = [] {
    const long value = sysconf(_SC_PAGESIZE);
    return value > 0 ? static_cast<std::size_t>(value) : std::size_t{4096};
  }();
  return size;
}

// The mapping length for a block of `bytes`: four size classes per power
// of two, so a freed block serves later requests up to a quarter smaller.
// Pages past what an owner touches never become resident, so the rounding
// costs address space, not memory.
std::size_t mapping_length(std::size_t bytes) {
  const std::size_t page = page_size();
  const std::size_t pages = (bytes + page - 1) / page * page;
  const std::size_t step = std::max(page, std::bit_floor(pages) / 4);
  return (pages + step - 1) / step * step;
}

// Zeroes a mapping a previous owner may have written. Pages in RAM are
// zeroed in place (no fault when the next owner touches them); the others
// were never touched or are swapped out, and MADV_DONTNEED drops them, so
// the next touch maps a zero page. Whatever cannot be asked about or
// dropped is zeroed with memset, which is always correct.
void zero_mapping(void* base, std::size_t length) {
  constexpr std::size_t kChunkPages = 4096;
  const std::size_t page = page_size();
  std::array<unsigned char, kChunkPages> resident{};
  auto* bytes = static_cast<unsigned char*>(base);
  for (std::size_t offset = 0; offset < length;) {
    const std::size_t chunk = std::min(length - offset, kChunkPages * page);
    unsigned char* start = bytes + offset;
    offset += chunk;
    if (mincore(start, chunk, resident.data()) != 0) {
      std::memset(start, 0, chunk);
      continue;
    }
    const std::size_t pages = chunk / page;
    for (std::size_t i = 0; i < pages;) {
      const bool in_ram = (resident[i] & 1) != 0;
      std::size_t j = i + 1;
      while (j < pages && ((resident[j] & 1) != 0) == in_ram) ++j;
      unsigned char* run = start + i * page;
      const std::size_t run_bytes = (j - i) * page;
      if (in_ram || j - i < kDropMinPages || madvise(run, run_bytes, MADV_DONTNEED) != 0) {
        std::memset(run, 0, run_bytes);
      }
      i = j;
    }
  }
}

void* address(std::uint64_t value) {
  return reinterpret_cast<void*>(static_cast<std::uintptr_t>(value));
}

}  // namespace

CpuDeviceMemory::CpuDeviceMemory(std::uint64_t capacity, bool clear)
    : capacity_(capacity),
      clear_(clear),
      cache_limit_(static_cast<std::size_t>(std::min<std::uint64_t>(kCacheMax, capacity / 4))) {}

CpuDeviceMemory::~CpuDeviceMemory() {
  // Whatever the owner leaked goes with the device, as on a GPU context teardown.
  for (auto& [ptr, block] : allocations_) {
    if (block.mapped != 0) {
      munmap(address(ptr), block.mapped);
    } else {
      std::free(address(ptr));
    }
  }
  for (auto& [length, blocks] : cache_) {
    for (void* block : blocks) munmap(block, length);
  }
}

void* CpuDeviceMemory::allocate_heap(std::size_t rounded) const {
  void* block = std::aligned_alloc(kAlignment, rounded);
  if (block != nullptr && clear_) std::memset(block, 0, rounded);
  return block;
}

Result<DevicePtr> CpuDeviceMemory::allocate(std::size_t bytes) {
  // Round up to the alignment (aligned_alloc requires a multiple of it); a
  // zero-byte request still gets a block so its pointer is unique.
  const std::size_t rounded =
      (std::max<std::size_t>(bytes, 1) + kAlignment - 1) / kAlignment * kAlignment;
  const bool mapped = clear_ && rounded >= kMappedMin;
  const std::size_t length = mapped ? mapping_length(rounded) : 0;
  void* reused = nullptr;
  bool map_new = false;
  {
    std::lock_guard lock(mu_);
    if (bytes > capacity_ - in_use_) {
      return Error(ErrorCode::kResourceExhausted,
                   fmt::format("cpu device memory: requested {} bytes, {} of {} in use", bytes,
                               in_use_, capacity_));
    }
    in_use_ += bytes;  // reserved; the block is found without the lock
    if (mapped) {
      auto it = cache_.find(length);
      if (it != cache_.end() && !it->second.empty()) {
        reused = it->second.back();
        it->second.pop_back();
        cached_bytes_ -= length;
      } else if (mappings_ < kMaxMappings) {
        ++mappings_;
        map_new = true;
      }
    }
  }
  // Clearing and faulting in happen outside the lock: another VM's
  // allocation does not wait for this one's memset.
  void* block = nullptr;
  std::size_t block_mapped = 0;
  if (reused != nullptr) {
    zero_mapping(reused, length);
    block = reused;
    block_mapped = length;
  } else if (map_new) {
    void* fresh = mmap(nullptr, length, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (fresh != MAP_FAILED) {
      block = fresh;
      block_mapped = length;
    } else {
      std::lock_guard lock(mu_);
      --mappings_;
    }
  }
  if (block == nullptr) block = allocate_heap(rounded);
  std::lock_guard lock(mu_);
  if (block == nullptr) {
    in_use_ -= bytes;
    return Error(ErrorCode::kResourceExhausted,
                 fmt::format("cpu device memory: host allocation of {} bytes failed", bytes));
  }
  const auto ptr = static_cast<std::uint64_t>(reinterpret_cast<std::uintptr_t>(block));
  allocations_.emplace(ptr, Block{bytes, block_mapped});
  return DevicePtr{ptr};
}

void CpuDeviceMemory::free(DevicePtr ptr) {
  Block block;
  {
    std::lock_guard lock(mu_);
    auto it = allocations_.find(ptr.value);
    if (it == allocations_.end()) {
      log::warn("accel", "cpu device memory: free of unknown pointer {:#x} ignored", ptr.value);
      return;
    }
    block = it->second;
    in_use_ -= block.bytes;
    allocations_.erase(it);
    if (block.mapped != 0 && cached_bytes_ + block.mapped <= cache_limit_) {
      // Kept as it is; it is cleared when it is handed out again.
      cache_[block.mapped].push_back(address(ptr.value));
      cached_bytes_ += block.mapped;
      return;
    }
    if (block.mapped != 0) --mappings_;
  }
  if (block.mapped != 0) {
    munmap(address(ptr.value), block.mapped);
  } else {
    std::free(address(ptr.value));
  }
}

std::uint64_t CpuDeviceMemory::in_use() const {
  std::lock_guard lock(mu_);
  return in_use_;
}

std::uint64_t default_cpu_device_memory() {
  const long pages = sysconf(_SC_PHYS_PAGES);
  const long page_size = sysconf(_SC_PAGESIZE);
  if (pages <= 0 || page_size <= 0) return std::uint64_t{1} << 30;  // unknown: 1 GiB
  return static_cast<std::uint64_t>(pages) * static_cast<std::uint64_t>(page_size) / 4;
}

}  // namespace malv::accel::cpu
