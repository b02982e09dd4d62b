#include "vgpu/memory_manager.h"

#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <optional>
#include <thread>

#include "base/clock.h"
#include "base/log.h"

namespace malv::vgpu {

struct MemoryManager::Buffer {
  std::uint64_t bytes = 0;
  accel::DevicePtr device{};             // value 0: not resident
  std::unique_ptr<std::byte[]> backing;  // the host copy, once it has been spilled
  bool backing_valid = false;            // the host copy holds the data
  bool dirty = false;                    // the device copy is newer than the host copy
  std::uint32_t pins = 0;                // ops in flight or being placed that use it
  std::uint32_t holds = 0;               // host-owned and about to be used: never evicted (hold())
  bool borrowed = false;    // resident above the quota, on memory lent (DeviceMemoryLedger)
  bool moving = false;      // the prefetch thread copies it, outside the lock
  bool prefetched = false;  // brought in ahead of time and not used since
  std::int64_t last_use_ns = 0;
  std::uint64_t accesses = 0;
  // Its history in the VM's op indices (the observation's, ABI version 3):
  // the op of its last use (of its allocation until it is used) and the
  // gaps between its uses, latest first.
  std::uint64_t last_use_op = 0;
  std::array<std::uint64_t, MALV_MEMORY_GAP_HISTORY> reuse_gaps{};
  std::uint32_t gap_count = 0;
  // The last eviction, reported to the policy when the buffer is needed again.
  std::int64_t evicted_ns = -1;
  malv_memory_observation evicted_as{};

  bool resident() const { return device.value != 0; }
};

// One call of place(): its time, and the queued future, read once if needed.
struct MemoryManager::Placement {
  std::int64_t now_ns = 0;
  const std::function<NextUses()>* next_uses = nullptr;
  // The ops being placed and the index of the one being placed now: the
  // batch's later ops are the nearest future, before the streams' queues.
  std::span<accel::Op> ops;
  std::size_t current = 0;
  std::optional<NextUses> queued;  // the streams' queues, read once per place()
  std::optional<NextUses> future;  // as seen from the op being placed
};

namespace {

constexpr std::uint64_t kOffsetMask = (1ull << MemoryManager::kOffsetBits) - 1;
// Buffers the prefetch thread is handed per placement at most.
constexpr std::size_t kMaxPrefetchPlan = 4;

}  // namespace

MemoryManager::MemoryManager(std::string vm_name, ByteQuota& resident)
    : vm_name_(std::move(vm_name)), resident_(resident) {}

MemoryManager::~MemoryManager() {
  if (ledger_ != nullptr) ledger_->remove_borrower(this);  // not with our lock held
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  prefetch_wanted_.notify_all();
  if (prefetcher_.joinable()) prefetcher_.join();
  std::lock_guard lock(mutex_);
  for (auto& [id, buffer] : buffers_) {
    if (buffer->resident()) release_device(*buffer);
  }
}

void MemoryManager::release_device(Buffer& buffer) {
  device_->free(buffer.device);
  if (buffer.borrowed) {
    ledger_->returned(buffer.bytes);
    buffer.borrowed = false;
  } else {
    resident_.release(buffer.bytes);
  }
  buffer.device = {};
}

Status MemoryManager::allocate_device(std::uint64_t id, Buffer& buffer, bool needed_now) {
  const bool own = resident_.reserve(buffer.bytes).ok();
  // Above the quota, an oversubscribed VM may borrow while the device has
  // room: memory nobody uses now, taken back (DeviceMemoryLedger::allocate)
  // when needed. A prefetch neither borrows nor takes anything back.
  const bool borrow =
      !own && needed_now && ledger_ != nullptr && options_.lend && ledger_->lending_open();
  if (!own && !borrow) {
    return Error(ErrorCode::kUnavailable,
                 fmt::format("VM '{}': buffer {} needs room in the resident quota", vm_name_, id));
  }
  // Within the quota, what other VMs borrowed comes back first.
  Result<accel::DevicePtr> device = own && needed_now && ledger_ != nullptr
                                        ? ledger_->allocate(*device_, buffer.bytes, this)
                                        : device_->allocate(buffer.bytes);
  if (!device.ok()) {
    if (own) resident_.release(buffer.bytes);
    if (device.error().code() != ErrorCode::kResourceExhausted) return std::move(device).error();
    return Error(ErrorCode::kUnavailable,
                 fmt::format("VM '{}': the device has no room for buffer {}", vm_name_, id));
  }
  buffer.device = device.value();
  buffer.borrowed = borrow;
  if (borrow) ledger_->borrowed(buffer.bytes);
  return ok_status();
}

std::uint64_t MemoryManager::give_back(std::uint64_t bytes) {
  std::unique_lock lock(mutex_, std::try_to_lock);
  if (!lock.owns_lock()) return 0;  // placing or copying: asked again later
  std::uint64_t freed = 0;
  Placement placement;
  placement.now_ns = mono_now_ns();
  while (freed < bytes) {
    const std::uint64_t victim = choose_victim(
        placement, [this](std::uint64_t candidate) { return buffers_.at(candidate)->borrowed; });
    if (victim == 0) break;
    Buffer& buffer = *buffers_.at(victim);
    const std::uint64_t size = buffer.bytes;
    if (!evict(victim, buffer).ok()) break;
    freed += size;
    stats_.bytes_reclaimed += size;
  }
  return freed;
}

void MemoryManager::attach(accel::Backend& device, MemoryPolicies* policies, MemoryOptions options,
                           DeviceMemoryLedger* ledger) {
  std::lock_guard lock(mutex_);
  if (device_ != nullptr) return;
  device_ = &device;
  policies_ = policies;
  options_ = options;
  ledger_ = ledger;
  if (ledger_ != nullptr) ledger_->add_borrower(this);
  if (options_.prefetch) prefetcher_ = std::thread([this] { prefetch_loop(); });
  if (!options_.trace_dir.empty()) {
    const std::string path = options_.trace_dir + "/" + vm_name_ + ".trace";
    Result<std::unique_ptr<AccessTraceWriter>> writer = AccessTraceWriter::create(path);
    if (writer.ok()) {
      trace_ = std::move(writer).value();
      log::info("memory", "VM '{}': access trace to {}", vm_name_, path);
    } else {
      log::warn("memory", "VM '{}': no access trace: {}", vm_name_, writer.error().to_string());
    }
  }
}

void MemoryManager::trace(std::uint64_t id, std::uint64_t bytes, AccessKind kind,
                          std::int64_t now_ns) {
  if (!trace_) return;
  Status appended = trace_->append(
      {.op_index = ops_placed_, .buffer_id = id, .bytes = bytes, .time_ns = now_ns, .kind = kind});
  if (!appended.ok()) {
    log::warn("memory", "VM '{}': the access trace stops: {}", vm_name_,
              appended.error().to_string());
    trace_.reset();
  }
}

Result<accel::DevicePtr> MemoryManager::allocate(std::uint64_t bytes) {
  if (bytes == 0 || bytes > kOffsetMask) {
    return Error(ErrorCode::kInvalidArgument,
                 fmt::format("a managed buffer holds 1 to {} bytes, not {}", kOffsetMask, bytes));
  }
  std::lock_guard lock(mutex_);
  if (device_ == nullptr) {
    return Error(ErrorCode::kFailedPrecondition, "the memory manager has no device yet");
  }
  if (next_id_ >= (1ull << (63 - kOffsetBits))) {
    return Error(ErrorCode::kResourceExhausted,
                 fmt::format("VM '{}' has used every managed buffer id", vm_name_));
  }
  const std::uint64_t id = next_id_++;
  auto buffer = std::make_unique<Buffer>();
  buffer->bytes = bytes;
  buffer->last_use_ns = mono_now_ns();
  buffer->last_use_op = ops_placed_;
  trace(id, bytes, AccessKind::kAllocate, buffer->last_use_ns);
  buffers_.emplace(id, std::move(buffer));
  live_buffers_.fetch_add(1, std::memory_order_relaxed);
  return accel::DevicePtr{kVirtualBit | (id << kOffsetBits)};
}

void MemoryManager::free(accel::DevicePtr ptr) {
  std::unique_lock lock(mutex_);
  const std::uint64_t id = buffer_id(ptr);
  wait_not_moving(std::span(&id, 1), lock);
  auto it = buffers_.find(id);
  if (it == buffers_.end()) return;
  Buffer& buffer = *it->second;
  if (buffer.resident()) release_device(buffer);
  if (buffer.holds > 0) held_bytes_ -= buffer.bytes;
  trace(it->first, buffer.bytes, AccessKind::kFree, mono_now_ns());
  buffers_.erase(it);
  live_buffers_.fetch_sub(1, std::memory_order_relaxed);
}

std::size_t MemoryManager::place(std::span<accel::Op> ops, std::span<ErrorCode> status,
                                 std::vector<std::uint64_t>& pins,
                                 const std::function<NextUses()>& next_uses) {
  std::unique_lock lock(mutex_);
  Placement placement;
  placement.now_ns = mono_now_ns();
  placement.next_uses = &next_uses;
  placement.ops = ops;
  std::vector<std::uint64_t> ids;  // the op's buffers, each once
  std::vector<bool> written;       // ... and whether it writes them
  for (std::size_t i = 0; i < ops.size(); ++i) {
    status[i] = ErrorCode::kOk;
    placement.current = i;
    placement.future.reset();  // distances are counted from this op
    ids.clear();
    MemoryManager::for_each_pointer(ops[i], [&](accel::DevicePtr ptr, bool) {
      if (is_virtual(ptr) && std::find(ids.begin(), ids.end(), buffer_id(ptr)) == ids.end()) {
        ids.push_back(buffer_id(ptr));
      }
    });
    if (ids.empty()) continue;
    // Pinned first, so that making one resident cannot evict another.
    std::size_t pinned = 0;
    Status placed = ok_status();
    for (; pinned < ids.size(); ++pinned) {
      auto it = buffers_.find(ids[pinned]);
      if (it == buffers_.end()) {
        placed = Error(ErrorCode::kInternal,
                       fmt::format("VM '{}': an op names managed buffer {}, which is not live",
                                   vm_name_, ids[pinned]));
        break;
      }
      ++it->second->pins;
    }
    // Pinned, the prefetch thread cannot take them; one it is copying now
    // is waited for.
    if (placed.ok()) wait_not_moving(ids, lock);
    for (std::size_t k = 0; placed.ok() && k < ids.size(); ++k) {
      Buffer& buffer = *buffers_.at(ids[k]);
      if (!buffer.resident()) placed = make_resident(ids[k], buffer, placement);
    }
    if (!placed.ok()) {
      for (std::size_t k = 0; k < pinned; ++k) --buffers_.at(ids[k])->pins;
      if (placed.error().code() == ErrorCode::kUnavailable) {
        // Room is held by pins: of ops in flight, or of this batch's earlier
        // ops. The op can run once they end, unless it could never fit.
        std::uint64_t op_bytes = 0;
        for (std::uint64_t id : ids) op_bytes += buffers_.at(id)->bytes;
        const std::uint64_t limit = resident_.limit();
        bool others_pinned = false;
        for (const auto& [id, b] : buffers_) others_pinned = others_pinned || b->pins > 0;
        if (i > 0 || ((limit == 0 || op_bytes <= limit) && others_pinned)) {
          plan_prefetch(placement, i);
          return i;
        }
        placed = Error(
            ErrorCode::kResourceExhausted,
            fmt::format(
                "VM '{}': an op uses {} buffers of {} bytes in all, which "
                "must be resident at once; the resident quota is {} bytes{}",
                vm_name_, ids.size(), op_bytes, limit,
                limit == 0 || op_bytes <= limit ? " and the device has no room for them" : ""));
      }
      status[i] = placed.error().code();
      ++stats_.failed_placements;
      log::warn("memory", "{}; the op is not run", placed.error().message());
      continue;
    }
    written.assign(ids.size(), false);
    MemoryManager::for_each_pointer(ops[i], [&](accel::DevicePtr& ptr, bool writes) {
      if (!is_virtual(ptr)) return;
      const std::uint64_t id = buffer_id(ptr);
      Buffer& buffer = *buffers_.at(id);
      ptr = accel::DevicePtr{buffer.device.value + (ptr.value & kOffsetMask)};
      if (writes) {
        buffer.dirty = true;
        written[static_cast<std::size_t>(std::find(ids.begin(), ids.end(), id) - ids.begin())] =
            true;
      }
    });
    // Every op gets its own time, later than the one before, so that the
    // ops of one batch keep their order in what LRU sees.
    last_use_stamp_ns_ = std::max(placement.now_ns, last_use_stamp_ns_ + 1);
    for (std::size_t k = 0; k < ids.size(); ++k) {
      Buffer& buffer = *buffers_.at(ids[k]);
      buffer.last_use_ns = last_use_stamp_ns_;
      if (buffer.accesses > 0) {
        std::copy_backward(buffer.reuse_gaps.begin(), buffer.reuse_gaps.end() - 1,
                           buffer.reuse_gaps.end());
        buffer.reuse_gaps[0] = ops_placed_ - buffer.last_use_op;
        buffer.gap_count = std::min<std::uint32_t>(buffer.gap_count + 1, MALV_MEMORY_GAP_HISTORY);
      }
      buffer.last_use_op = ops_placed_;
      ++buffer.accesses;
      if (buffer.prefetched) {
        buffer.prefetched = false;
        ++stats_.prefetch_hits;
      }
      pins.push_back(ids[k]);
      trace(ids[k], buffer.bytes, written[k] ? AccessKind::kWrite : AccessKind::kRead,
            placement.now_ns);
    }
    ++ops_placed_;
  }
  plan_prefetch(placement, ops.size());
  return ops.size();
}

bool MemoryManager::hold(accel::DevicePtr ptr) {
  std::lock_guard lock(mutex_);
  auto it = buffers_.find(buffer_id(ptr));
  if (it == buffers_.end()) return false;
  Buffer& buffer = *it->second;
  if (buffer.holds == 0) {
    const std::uint64_t limit = resident_.limit();
    if (limit != 0 && held_bytes_ + buffer.bytes > limit / 2) return false;
    held_bytes_ += buffer.bytes;
  }
  ++buffer.holds;
  return true;
}

void MemoryManager::release_hold(accel::DevicePtr ptr) {
  std::lock_guard lock(mutex_);
  auto it = buffers_.find(buffer_id(ptr));
  if (it == buffers_.end() || it->second->holds == 0) return;
  if (--it->second->holds == 0) held_bytes_ -= it->second->bytes;
}

void MemoryManager::unpin(std::span<const std::uint64_t> pins) {
  std::lock_guard lock(mutex_);
  for (std::uint64_t id : pins) {
    auto it = buffers_.find(id);
    if (it != buffers_.end() && it->second->pins > 0) --it->second->pins;
  }
}

Status MemoryManager::make_resident(std::uint64_t id, Buffer& buffer, Placement& placement) {
  for (;;) {
    Status allocated = allocate_device(id, buffer, /*needed_now=*/true);
    if (allocated.ok()) break;
    if (allocated.error().code() != ErrorCode::kUnavailable) return allocated;
    if (placement.current > 0) {
      // An eviction now could only choose among buffers that the batch's
      // earlier ops do not use: those are pinned until the batch ends,
      // although most of them are done with for a while. This op starts the
      // next batch instead, when they are not pinned any more and the policy
      // chooses among them too (on the training benchmark, at half the
      // footprint resident, this halves what lookahead moves above Belady).
      return Error(ErrorCode::kUnavailable,
                   fmt::format("VM '{}': buffer {} needs an eviction; it waits for the batch "
                               "before it to end",
                               vm_name_, id));
    }
    const std::uint64_t victim = choose_victim(placement);
    if (victim == 0) {
      // Everything resident is pinned: place() decides whether to wait.
      return Error(ErrorCode::kUnavailable,
                   fmt::format("VM '{}': no unpinned buffer to evict for buffer {}", vm_name_, id));
    }
    MALV_TRY(evict(victim, *buffers_.at(victim)));
  }
  if (buffer.backing_valid) {
    // Its data is in host memory: the op waits for this copy (a fault).
    const std::int64_t started = mono_now_ns();
    Status filled = device_->copy_to_device_now(buffer.device, buffer.backing.get(), buffer.bytes);
    if (!filled.ok()) {
      release_device(buffer);
      return filled;
    }
    pace(buffer.bytes, started, Link::kIn);
    stats_.bytes_in += buffer.bytes;
    ++stats_.faults;
  }
  // Otherwise it was never written: the fresh allocation holds its zeros.
  buffer.dirty = false;
  if (buffer.evicted_ns >= 0 && policies_ != nullptr) {
    malv_memory_outcome outcome{};
    outcome.buffer = buffer.evicted_as;
    outcome.refault_after_ns = placement.now_ns - buffer.evicted_ns;
    policies_->feedback(vm_name_, outcome);
  }
  buffer.evicted_ns = -1;
  return ok_status();
}

Status MemoryManager::evict(std::uint64_t id, Buffer& buffer) {
  if (buffer.dirty) {
    if (!buffer.backing) buffer.backing.reset(new std::byte[buffer.bytes]);
    const std::int64_t started = mono_now_ns();
    MALV_TRY(device_->copy_to_host_now(buffer.backing.get(), buffer.device, buffer.bytes));
    pace(buffer.bytes, started, Link::kOut);
    buffer.backing_valid = true;
    buffer.dirty = false;
    stats_.bytes_out += buffer.bytes;
  }
  (void)id;
  release_device(buffer);
  ++stats_.evictions;
  return ok_status();
}

std::uint64_t MemoryManager::choose_victim(Placement& placement,
                                           const std::function<bool(std::uint64_t id)>& eligible) {
  std::vector<std::uint64_t> ids;
  std::vector<malv_memory_observation> candidates;
  for (const auto& [id, buffer] : buffers_) {
    if (!buffer->resident() || buffer->pins > 0 || buffer->holds > 0 || buffer->moving) continue;
    if (eligible && !eligible(id)) continue;
    malv_memory_observation o{};
    o.buffer_id = id;
    o.bytes = buffer->bytes;
    o.last_use_ns = buffer->last_use_ns;
    o.age_ns = placement.now_ns - buffer->last_use_ns;
    o.access_count = buffer->accesses;
    o.next_use_ops = MALV_MEMORY_NOT_QUEUED;
    o.next_use_ns = -1;
    o.dirty = buffer->dirty ? 1 : 0;
    o.ops_since_use = ops_placed_ - buffer->last_use_op;
    std::copy(buffer->reuse_gaps.begin(), buffer->reuse_gaps.end(), o.reuse_gaps);
    o.gap_count = buffer->gap_count;
    ids.push_back(id);
    candidates.push_back(o);
  }
  if (candidates.empty()) return 0;
  if (policies_ == nullptr) {
    std::size_t oldest = 0;
    for (std::size_t i = 1; i < candidates.size(); ++i) {
      if (candidates[i].last_use_ns < candidates[oldest].last_use_ns) oldest = i;
    }
    return ids[oldest];
  }
  if (!placement.future) placement.future = future_after(placement, placement.current + 1);
  if (placement.future) {
    for (auto& o : candidates) {
      auto use = placement.future->find(o.buffer_id);
      if (use == placement.future->end()) continue;
      o.next_use_ops = use->second.ops;
      o.next_use_ns = use->second.est_ns;
    }
  }
  std::vector<double> scores(candidates.size(), 0.0);
  if (policies_->score(vm_name_, candidates, scores)) ++stats_.policy_fallbacks;
  std::size_t best = 0;
  for (std::size_t i = 1; i < scores.size(); ++i) {
    if (scores[i] > scores[best]) best = i;
  }
  Buffer& victim = *buffers_.at(ids[best]);
  victim.evicted_ns = placement.now_ns;
  victim.evicted_as = candidates[best];
  return ids[best];
}

NextUses MemoryManager::future_after(Placement& placement, std::size_t placed) {
  // The batch's ops from `placed` on first (distance 0 is the next op),
  // then the streams' queued ops behind them.
  NextUses future;
  const std::size_t later = placement.ops.size() - placed;
  if (placement.next_uses != nullptr && *placement.next_uses) {
    if (!placement.queued) placement.queued = (*placement.next_uses)();
    for (const auto& [id, use] : *placement.queued) future[id] = {use.ops + later, use.est_ns};
  }
  for (std::size_t k = placement.ops.size(); k-- > placed;) {
    MemoryManager::for_each_pointer(placement.ops[k], [&](accel::DevicePtr ptr, bool) {
      if (is_virtual(ptr)) future[buffer_id(ptr)] = {k - placed, 0};
    });
  }
  return future;
}

void MemoryManager::plan_prefetch(Placement& placement, std::size_t placed) {
  if (!prefetcher_.joinable()) return;
  const bool any_spilled = std::any_of(buffers_.begin(), buffers_.end(), [](const auto& entry) {
    return !entry.second->resident() && entry.second->backing_valid;
  });
  if (!any_spilled) return;
  prefetch_future_ = future_after(placement, placed);
  prefetch_plan_.clear();
  for (const auto& [id, use] : prefetch_future_) {
    auto it = buffers_.find(id);
    if (it == buffers_.end()) continue;
    const Buffer& buffer = *it->second;
    if (!buffer.resident() && buffer.backing_valid) prefetch_plan_.emplace_back(use.ops, id);
  }
  std::sort(prefetch_plan_.begin(), prefetch_plan_.end());
  if (prefetch_plan_.size() > kMaxPrefetchPlan) prefetch_plan_.resize(kMaxPrefetchPlan);
  if (!prefetch_plan_.empty()) prefetch_wanted_.notify_one();
}

void MemoryManager::prefetch_loop() {
  std::unique_lock lock(mutex_);
  for (;;) {
    prefetch_wanted_.wait(lock, [this] { return stopping_ || !prefetch_plan_.empty(); });
    if (stopping_) return;
    const auto [distance, id] = prefetch_plan_.front();
    prefetch_plan_.erase(prefetch_plan_.begin());
    (void)distance;
    if (!prefetch_one(id, lock)) prefetch_plan_.clear();
  }
}

bool MemoryManager::prefetch_one(std::uint64_t id, std::unique_lock<std::mutex>& lock) {
  for (;;) {
    // The lock was released during copies: look everything up again.
    auto it = buffers_.find(id);
    if (stopping_ || it == buffers_.end()) return !stopping_;
    Buffer& buffer = *it->second;
    if (buffer.resident() || buffer.moving || !buffer.backing_valid) return true;
    auto use = prefetch_future_.find(id);
    if (use == prefetch_future_.end()) return true;  // a newer plan does not need it
    const std::uint64_t distance = use->second.ops;
    Status allocated = allocate_device(id, buffer, /*needed_now=*/false);
    if (allocated.ok()) {
      buffer.moving = true;
      const std::int64_t started = mono_now_ns();
      lock.unlock();
      Status filled =
          device_->copy_to_device_now(buffer.device, buffer.backing.get(), buffer.bytes);
      if (filled.ok()) pace(buffer.bytes, started, Link::kIn);
      lock.lock();
      // Still live: free() waits while it moves.
      buffer.moving = false;
      moved_.notify_all();
      if (!filled.ok()) {
        release_device(buffer);
        log::warn("memory", "VM '{}': prefetch of buffer {} failed: {}", vm_name_, id,
                  filled.error().to_string());
        return false;
      }
      buffer.dirty = false;
      buffer.prefetched = true;
      buffer.evicted_ns = -1;
      stats_.bytes_in += buffer.bytes;
      ++stats_.prefetches;
      return true;
    }
    // Room, from a buffer whose next use is further away than this one's,
    // and no nearer than that of any buffer the running batch pins: once
    // the batch ends, a placement could evict those, and evicting a nearer
    // one now would be a worse choice than it would make (Belady's, with
    // the same future). Pinned buffers no queued op uses are the most
    // recently used, so they never come before an unpinned unqueued one.
    std::uint64_t pinned_next = 0;
    for (const auto& [other, b] : buffers_) {
      if (b->pins == 0 || !b->resident()) continue;
      auto next = prefetch_future_.find(other);
      if (next != prefetch_future_.end()) pinned_next = std::max(pinned_next, next->second.ops);
    }
    Placement placement;
    placement.now_ns = mono_now_ns();
    placement.future = prefetch_future_;
    const std::uint64_t victim_id = choose_victim(placement, [&](std::uint64_t candidate) {
      auto next = prefetch_future_.find(candidate);
      return next == prefetch_future_.end() ||
             (next->second.ops > distance && next->second.ops >= pinned_next);
    });
    if (victim_id == 0) return false;
    Buffer& victim = *buffers_.at(victim_id);
    if (victim.dirty) {
      if (!victim.backing) victim.backing.reset(new std::byte[victim.bytes]);
      victim.moving = true;
      const std::int64_t started = mono_now_ns();
      lock.unlock();
      Status spilled = device_->copy_to_host_now(victim.backing.get(), victim.device, victim.bytes);
      if (spilled.ok()) pace(victim.bytes, started, Link::kOut);
      lock.lock();
      victim.moving = false;
      moved_.notify_all();
      if (!spilled.ok()) {
        log::warn("memory", "VM '{}': spilling buffer {} for a prefetch failed: {}", vm_name_,
                  victim_id, spilled.error().to_string());
        return false;
      }
      victim.backing_valid = true;
      victim.dirty = false;
      stats_.bytes_out += victim.bytes;
      // A placement pinned it while it was copied: it stays, clean.
      if (victim.pins > 0) return true;
    }
    release_device(victim);
    victim.prefetched = false;
    ++stats_.evictions;
  }
}

void MemoryManager::wait_not_moving(std::span<const std::uint64_t> ids,
                                    std::unique_lock<std::mutex>& lock) {
  moved_.wait(lock, [&] {
    return std::none_of(ids.begin(), ids.end(), [&](std::uint64_t id) {
      auto it = buffers_.find(id);
      return it != buffers_.end() && it->second->moving;
    });
  });
}

void MemoryManager::pace(std::uint64_t bytes, std::int64_t started_ns, Link link) const {
  if (options_.link_bytes_per_s <= 0) return;
  // The copy takes as long as the link would, after the link's earlier
  // copies in its direction: what the memcpy took already counts, the rest
  // is waited for.
  const auto link_ns =
      static_cast<std::int64_t>(1e9 * static_cast<double>(bytes) / options_.link_bytes_per_s);
  std::int64_t done_ns = 0;
  {
    std::lock_guard lock(link_mutex_);
    std::int64_t& free_ns = link_free_ns_[static_cast<int>(link)];
    done_ns = std::max(started_ns, free_ns) + link_ns;
    free_ns = done_ns;
  }
  const std::int64_t left_ns = done_ns - mono_now_ns();
  if (left_ns > 0) std::this_thread::sleep_for(std::chrono::nanoseconds(left_ns));
}

MemoryStats MemoryManager::stats() const {
  std::lock_guard lock(mutex_);
  MemoryStats s = stats_;
  for (const auto& [id, buffer] : buffers_) {
    if (buffer->resident()) {
      s.resident_bytes += buffer->bytes;
      if (buffer->borrowed) s.borrowed_bytes += buffer->bytes;
    } else if (buffer->backing_valid) {
      s.spilled_bytes += buffer->bytes;
    }
  }
  return s;
}

}  // namespace malv::vgpu
