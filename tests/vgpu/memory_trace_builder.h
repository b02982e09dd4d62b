// Access traces for the learned memory policy's tests, built the way the
// memory manager records them: allocations and frees carry the index of the
// next op, an op's accesses are consecutive.
#pragma once

#include <cstdint>
#include <unordered_map>
#include <vector>

#include "vgpu/access_trace.h"

namespace malv::vgpu::testing {

class MemoryTraceBuilder {
 public:
  MemoryTraceBuilder& alloc(std::uint64_t id, std::uint64_t bytes) {
    sizes_[id] = bytes;
    return add(id, AccessKind::kAllocate);
  }
  MemoryTraceBuilder& free(std::uint64_t id) { return add(id, AccessKind::kFree); }
  MemoryTraceBuilder& op(const std::vector<std::uint64_t>& reads,
                         const std::vector<std::uint64_t>& writes = {}) {
    for (std::uint64_t id : reads) add(id, AccessKind::kRead);
    for (std::uint64_t id : writes) add(id, AccessKind::kWrite);
    ++op_;
    return *this;
  }
  const std::vector<AccessRecord>& records() const { return records_; }

 private:
  MemoryTraceBuilder& add(std::uint64_t id, AccessKind kind) {
    records_.push_back({.op_index = op_,
                        .buffer_id = id,
                        .bytes = sizes_[id],
                        .time_ns = static_cast<std::int64_t>(records_.size()) * 1000,
                        .kind = kind});
    return *this;
  }
  std::uint64_t op_ = 0;
  std::unordered_map<std::uint64_t, std::uint64_t> sizes_;
  std::vector<AccessRecord> records_;
};

// A training loop's trace: `layers` layers, each with weights, a gradient of
// the weights and optimizer state (sizes 64, 96 or 128 KiB by layer), and
// activations and their gradients (48 or 64 KiB); each step is a forward
// pass (one op a layer), the loss, a backward pass (two ops a layer: the
// input's gradient, then the weights') and an optimizer op a layer. Every
// buffer is used 1 to 3 times a step, with gaps that repeat from step to
// step. Everything is freed at the end. About 2.4 MiB allocated for 6 layers.
inline std::vector<AccessRecord> training_loop_trace(int steps, int layers) {
  constexpr std::uint64_t kKiB = 1024;
  MemoryTraceBuilder t;
  std::uint64_t next_id = 1;
  auto make = [&](std::vector<std::uint64_t>& ids, int count, auto size_of) {
    for (int i = 0; i < count; ++i) {
      ids.push_back(next_id++);
      t.alloc(ids.back(), size_of(i));
    }
  };
  auto parameter = [&](int i) { return (64 + 32 * static_cast<std::uint64_t>(i % 3)) * kKiB; };
  auto activation = [&](int i) { return (48 + 16 * static_cast<std::uint64_t>(i % 2)) * kKiB; };
  std::vector<std::uint64_t> w, m, dw, a, g;
  make(w, layers, parameter);
  make(m, layers, parameter);
  make(dw, layers, parameter);
  make(a, layers + 1, activation);
  make(g, layers + 1, activation);
  const auto l = static_cast<std::size_t>(layers);
  for (int s = 0; s < steps; ++s) {
    t.op({}, {a[0]});  // the input batch
    for (std::size_t i = 0; i < l; ++i) t.op({w[i], a[i]}, {a[i + 1]});
    t.op({a[l]}, {g[l]});  // the loss
    for (std::size_t i = l; i-- > 0;) {
      t.op({w[i], g[i + 1]}, {g[i]});
      t.op({a[i], g[i + 1]}, {dw[i]});
    }
    for (std::size_t i = 0; i < l; ++i) t.op({dw[i]}, {w[i], m[i]});
  }
  for (const auto* ids : {&w, &m, &dw, &a, &g}) {
    for (std::uint64_t id : *ids) t.free(id);
  }
  return t.records();
}

}  // namespace malv::vgpu::testing
