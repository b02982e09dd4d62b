#include "vgpu/trace_replay.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <memory>
#include <set>
#include <tuple>
#include <unordered_map>

#include "mlaas/mlp.h"
#include "vgpu/memory_history.h"

namespace malv::vgpu {
namespace {

constexpr std::uint64_t kNever = std::numeric_limits<std::uint64_t>::max();

bool is_access(AccessKind kind) { return kind == AccessKind::kRead || kind == AccessKind::kWrite; }

// The resident buffers that are not pinned, ordered for eviction. Each
// buffer is inserted with the op that last touched it and its next use, and
// removed when pinned, evicted or freed; pick() names the next victim.
class Evictor {
 public:
  virtual ~Evictor() = default;
  virtual void advance(std::uint64_t op) = 0;  // op is now being placed
  virtual void insert(std::uint32_t buffer, std::uint64_t last_op, std::uint64_t next_use) = 0;
  virtual void remove(std::uint32_t buffer) = 0;
  virtual std::uint32_t pick() const = 0;  // only when not empty
  virtual bool empty() const = 0;
};

// (last_op, buffer): least recently used first.
using LruKey = std::pair<std::uint64_t, std::uint32_t>;
// (~next_use, last_op, buffer): furthest next use first, then LRU.
using FurthestKey = std::tuple<std::uint64_t, std::uint64_t, std::uint32_t>;

class LruEvictor final : public Evictor {
 public:
  explicit LruEvictor(std::size_t buffers) : keys_(buffers) {}
  void advance(std::uint64_t) override {}
  void insert(std::uint32_t b, std::uint64_t last_op, std::uint64_t) override {
    keys_[b] = {last_op, b};
    set_.insert(keys_[b]);
  }
  void remove(std::uint32_t b) override { set_.erase(keys_[b]); }
  std::uint32_t pick() const override { return set_.begin()->second; }
  bool empty() const override { return set_.empty(); }

 private:
  std::vector<LruKey> keys_;
  std::set<LruKey> set_;
};

class BeladyEvictor final : public Evictor {
 public:
  explicit BeladyEvictor(std::size_t buffers) : keys_(buffers) {}
  void advance(std::uint64_t) override {}
  void insert(std::uint32_t b, std::uint64_t last_op, std::uint64_t next_use) override {
    keys_[b] = {~next_use, last_op, b};
    set_.insert(keys_[b]);
  }
  void remove(std::uint32_t b) override { set_.erase(keys_[b]); }
  std::uint32_t pick() const override { return std::get<2>(*set_.begin()); }
  bool empty() const override { return set_.empty(); }

 private:
  std::vector<FurthestKey> keys_;
  std::set<FurthestKey> set_;
};

// Buffers next used beyond the window sit in `outside_` (LRU order) and, if
// used again at all, in `pending_` by next use; advance() moves those whose
// next use came within the window into `inside_` (furthest first).
class LookaheadEvictor final : public Evictor {
 public:
  LookaheadEvictor(std::size_t buffers, std::uint64_t window) : window_(window), state_(buffers) {}

  void advance(std::uint64_t op) override {
    op_ = op;
    while (!pending_.empty() && within_window(pending_.begin()->first)) {
      const std::uint32_t b = pending_.begin()->second;
      pending_.erase(pending_.begin());
      outside_.erase({state_[b].last_op, b});
      state_[b].inside = true;
      inside_.insert({~state_[b].next_use, state_[b].last_op, b});
    }
  }
  void insert(std::uint32_t b, std::uint64_t last_op, std::uint64_t next_use) override {
    State& s = state_[b];
    s = {last_op, next_use, next_use != kNever && within_window(next_use)};
    if (s.inside) {
      inside_.insert({~next_use, last_op, b});
      return;
    }
    outside_.insert({last_op, b});
    if (next_use != kNever) pending_.insert({next_use, b});
  }
  void remove(std::uint32_t b) override {
    const State& s = state_[b];
    if (s.inside) {
      inside_.erase({~s.next_use, s.last_op, b});
      return;
    }
    outside_.erase({s.last_op, b});
    if (s.next_use != kNever) pending_.erase({s.next_use, b});
  }
  std::uint32_t pick() const override {
    return outside_.empty() ? std::get<2>(*inside_.begin()) : outside_.begin()->second;
  }
  bool empty() const override { return outside_.empty() && inside_.empty(); }

 private:
  struct State {
    std::uint64_t last_op = 0;
    std::uint64_t next_use = kNever;
    bool inside = false;
  };
  // Next uses are never before the op being placed.
  bool within_window(std::uint64_t next_use) const {
    return next_use <= op_ || next_use - op_ <= window_;
  }

  std::uint64_t window_;
  std::uint64_t op_ = 0;
  std::vector<State> state_;
  std::set<LruKey> outside_;
  std::set<LruKey> pending_;  // (next_use, buffer) of the outside ones used again
  std::set<FurthestKey> inside_;
};

// Scores every candidate with the model the first time a victim is needed
// at an op (the features depend only on the op and the histories, which do
// not change while it is placed), then hands out victims in that order.
class LearnedEvictor final : public Evictor {
 public:
  LearnedEvictor(std::size_t buffers, const mlaas::Mlp& model)
      : model_(model), history_(buffers), last_op_(buffers) {}

  void advance(std::uint64_t op) override {
    op_ = op;
    ranked_.clear();
  }
  // Called once for each buffer an op uses, after the op's evictions.
  void insert(std::uint32_t b, std::uint64_t last_op, std::uint64_t) override {
    history_.use(b, last_op);
    last_op_[b] = last_op;
    set_.insert({last_op, b});
    ranked_.clear();
  }
  void remove(std::uint32_t b) override { set_.erase({last_op_[b], b}); }
  std::uint32_t pick() const override {
    if (ranked_.empty()) rank();
    while (!set_.contains({last_op_[ranked_[next_]], ranked_[next_]})) ++next_;
    return ranked_[next_];
  }
  bool empty() const override { return set_.empty(); }

 private:
  void rank() const {
    const std::size_t n = set_.size();
    ranked_.clear();
    inputs_.resize(n * MALV_MEMORY_FEATURE_COUNT);
    for (const auto& [last_op, b] : set_) {  // least recently used first
      history_.features(b, op_, inputs_.data() + ranked_.size() * MALV_MEMORY_FEATURE_COUNT);
      ranked_.push_back(b);
    }
    scores_.resize(n);
    model_.infer_cpu(inputs_.data(), n, scores_.data());
    std::vector<std::size_t> order(n);
    for (std::size_t i = 0; i < n; ++i) {
      order[i] = i;
      if (std::isnan(scores_[i])) scores_[i] = -std::numeric_limits<float>::infinity();
    }
    std::stable_sort(order.begin(), order.end(),
                     [&](std::size_t a, std::size_t z) { return scores_[a] > scores_[z]; });
    std::vector<std::uint32_t> by_score(n);
    for (std::size_t i = 0; i < n; ++i) by_score[i] = ranked_[order[i]];
    ranked_ = std::move(by_score);
    next_ = 0;
  }

  const mlaas::Mlp& model_;
  MemoryHistory history_;
  std::vector<std::uint64_t> last_op_;
  std::set<LruKey> set_;
  std::uint64_t op_ = 0;
  // The candidates at op_ by predicted distance, furthest first (empty:
  // not ranked since the last change); victims are handed out from next_.
  mutable std::vector<std::uint32_t> ranked_;
  mutable std::size_t next_ = 0;
  mutable std::vector<float> inputs_;
  mutable std::vector<float> scores_;
};

std::unique_ptr<Evictor> make_evictor(const ReplayOptions& options, std::size_t buffers) {
  switch (options.policy) {
    case ReplayPolicy::kLru: return std::make_unique<LruEvictor>(buffers);
    case ReplayPolicy::kLookahead:
      return std::make_unique<LookaheadEvictor>(buffers, options.window_ops);
    case ReplayPolicy::kBelady: return std::make_unique<BeladyEvictor>(buffers);
    case ReplayPolicy::kLearned: return std::make_unique<LearnedEvictor>(buffers, *options.model);
  }
  return nullptr;
}

}  // namespace

std::string_view replay_policy_name(ReplayPolicy policy) {
  switch (policy) {
    case ReplayPolicy::kLru: return "lru";
    case ReplayPolicy::kLookahead: return "lookahead";
    case ReplayPolicy::kBelady: return "belady";
    case ReplayPolicy::kLearned: return "learned";
  }
  return "unknown";
}

std::optional<ReplayPolicy> parse_replay_policy(std::string_view name) {
  for (ReplayPolicy p : {ReplayPolicy::kLru, ReplayPolicy::kLookahead, ReplayPolicy::kBelady,
                         ReplayPolicy::kLearned}) {
    if (name == replay_policy_name(p)) return p;
  }
  return std::nullopt;
}

std::optional<double> bytes_over_belady(const ReplayCounts& counts, const ReplayCounts& belady) {
  if (belady.bytes_moved() == 0) {
    return counts.bytes_moved() == 0 ? std::optional<double>(1.0) : std::nullopt;
  }
  return static_cast<double>(counts.bytes_moved()) / static_cast<double>(belady.bytes_moved());
}

Result<TraceReplay> TraceReplay::create(std::span<const AccessRecord> trace,
                                        std::string_view name) {
  MALV_TRY(validate_access_trace(trace, name));
  TraceReplay replay;
  replay.name_ = std::string(name);
  replay.records_ = trace.size();
  replay.steps_.resize(trace.size());
  std::unordered_map<std::uint64_t, std::uint32_t> dense;
  std::uint64_t allocated = 0;
  for (std::size_t i = 0; i < trace.size(); ++i) {
    const AccessRecord& r = trace[i];
    auto [it, inserted] =
        dense.try_emplace(r.buffer_id, static_cast<std::uint32_t>(replay.buffer_bytes_.size()));
    if (inserted) replay.buffer_bytes_.push_back(r.bytes);
    replay.steps_[i] = {
        .op_index = r.op_index, .next_use = kNever, .buffer = it->second, .kind = r.kind};
    if (r.kind == AccessKind::kAllocate) {
      allocated += r.bytes;
      replay.peak_allocated_bytes_ = std::max(replay.peak_allocated_bytes_, allocated);
    } else if (r.kind == AccessKind::kFree) {
      allocated -= r.bytes;
    } else if (replay.ops_.empty() || replay.ops_.back().last != i ||
               r.op_index != replay.steps_[i - 1].op_index) {
      replay.ops_.push_back({.first = i, .last = i + 1, .bytes = r.bytes});
    } else {
      replay.ops_.back().last = i + 1;
      replay.ops_.back().bytes += r.bytes;
    }
  }
  for (const Op& op : replay.ops_) {
    replay.largest_op_bytes_ = std::max(replay.largest_op_bytes_, op.bytes);
  }
  // Backward pass: each access's next use is the op of the buffer's next access.
  std::vector<std::uint64_t> next(replay.buffer_bytes_.size(), kNever);
  for (std::size_t i = trace.size(); i-- > 0;) {
    Step& s = replay.steps_[i];
    if (!is_access(s.kind)) continue;
    s.next_use = next[s.buffer];
    next[s.buffer] = s.op_index;
  }
  return replay;
}

Result<ReplayCounts> TraceReplay::run(const ReplayOptions& options) const {
  if (options.policy == ReplayPolicy::kLearned) {
    if (options.model == nullptr) {
      return Error(
          ErrorCode::kInvalidArgument,
          fmt::format("{}: the learned policy needs a model (ReplayOptions::model)", name_));
    }
    MALV_TRY(check_memory_model(*options.model, "the learned policy's model"));
  }
  if (largest_op_bytes_ > options.capacity_bytes) {
    for (const Op& op : ops_) {
      if (op.bytes <= options.capacity_bytes) continue;
      return Error(ErrorCode::kResourceExhausted,
                   fmt::format("{}: op {} (record {}) touches {} buffers of {} bytes in all, more "
                               "than the capacity of {} bytes; the least capacity for this trace "
                               "is {} bytes",
                               name_, steps_[op.first].op_index, op.first, op.last - op.first,
                               op.bytes, options.capacity_bytes, largest_op_bytes_));
    }
  }
  struct Buffer {
    bool resident = false;
    bool dirty = false;
    bool backed = false;  // has a copy in host memory
  };
  std::vector<Buffer> buffers(buffer_bytes_.size());
  std::unique_ptr<Evictor> evictor = make_evictor(options, buffers.size());
  ReplayCounts counts;
  std::uint64_t resident_bytes = 0;
  std::size_t next_op = 0;  // in ops_
  for (std::size_t i = 0; i < steps_.size();) {
    const Step& step = steps_[i];
    if (step.kind == AccessKind::kAllocate) {
      ++i;
      continue;
    }
    if (step.kind == AccessKind::kFree) {
      Buffer& b = buffers[step.buffer];
      if (b.resident) {
        evictor->remove(step.buffer);
        resident_bytes -= buffer_bytes_[step.buffer];
      }
      b = {};
      ++i;
      continue;
    }
    const Op& op = ops_[next_op++];
    evictor->advance(step.op_index);
    std::uint64_t missing = 0;
    for (std::size_t k = op.first; k < op.last; ++k) {
      const std::uint32_t id = steps_[k].buffer;
      if (buffers[id].resident) {
        evictor->remove(id);  // pinned while the op is placed
      } else {
        missing += buffer_bytes_[id];
      }
    }
    while (options.capacity_bytes - resident_bytes < missing) {
      // Never empty here: the op fits the capacity on its own.
      const std::uint32_t victim = evictor->pick();
      evictor->remove(victim);
      Buffer& v = buffers[victim];
      if (v.dirty) {
        counts.bytes_out += buffer_bytes_[victim];
        v.backed = true;
      }
      v.resident = false;
      v.dirty = false;
      resident_bytes -= buffer_bytes_[victim];
      ++counts.evictions;
    }
    for (std::size_t k = op.first; k < op.last; ++k) {
      const Step& s = steps_[k];
      Buffer& b = buffers[s.buffer];
      if (!b.resident) {
        if (b.backed) {
          counts.bytes_in += buffer_bytes_[s.buffer];
          ++counts.faults;
        }
        b.resident = true;
        resident_bytes += buffer_bytes_[s.buffer];
      }
      if (s.kind == AccessKind::kWrite) b.dirty = true;
      evictor->insert(s.buffer, s.op_index, s.next_use);
    }
    i = op.last;
  }
  return counts;
}

Result<ReplayCounts> replay_access_trace(std::span<const AccessRecord> trace,
                                         const ReplayOptions& options) {
  MALV_ASSIGN_OR_RETURN(TraceReplay replay, TraceReplay::create(trace));
  return replay.run(options);
}

}  // namespace malv::vgpu
