#include "vgpu/memory_training_data.h"

#include <fmt/format.h>

#include <algorithm>
#include <limits>
#include <unordered_map>

#include "base/atomic_file.h"
#include "mlaas/mlp.h"

namespace malv::vgpu {
namespace {

constexpr std::uint64_t kNever = std::numeric_limits<std::uint64_t>::max();

bool is_access(AccessKind kind) { return kind == AccessKind::kRead || kind == AccessKind::kWrite; }

std::uint64_t splitmix64(std::uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

// The op numbered `op` (over all the traces) as a uniform number in [0, 1).
double op_hash(std::uint64_t seed, std::uint64_t op) {
  return static_cast<double>(splitmix64(splitmix64(seed) ^ op) >> 11) * 0x1.0p-53;
}

// Which ops to keep: those whose hash is below a threshold, the largest
// threshold at or under 1/sample_every that keeps at most max_rows rows. A
// uniform sample of whole ops, the same for the same seed, that never stops
// early (the last ops are the held-out future).
std::vector<bool> sample_ops(const std::vector<std::uint64_t>& candidates,
                             const MemoryTrainingOptions& options) {
  const double every = options.sample_every == 0 ? 1.0 : static_cast<double>(options.sample_every);
  const std::uint64_t limit = options.max_rows == 0 ? kNever : options.max_rows;
  std::vector<std::pair<double, std::uint64_t>> order;  // (hash, op) of the ops with candidates
  for (std::uint64_t op = 0; op < candidates.size(); ++op) {
    const double u = op_hash(options.seed, op);
    if (candidates[op] != 0 && u * every < 1.0) order.emplace_back(u, op);
  }
  std::sort(order.begin(), order.end());
  std::vector<bool> keep(candidates.size(), false);
  std::uint64_t rows = 0;
  for (const auto& [u, op] : order) {
    if (candidates[op] > limit - rows) break;
    rows += candidates[op];
    keep[op] = true;
  }
  return keep;
}

// One pass over a validated trace: at each op, its candidates (as dense
// buffer indices, in buffer-id order) and, with their histories, the op's
// index. Calls on_op(t, op_number, candidates, history, next_use, ids) for
// every op; on_op returns false to stop.
class TraceWalk {
 public:
  explicit TraceWalk(std::span<const AccessRecord> trace) : trace_(trace) {
    std::unordered_map<std::uint64_t, std::uint32_t> dense;
    dense_.resize(trace.size());
    for (std::size_t i = 0; i < trace.size(); ++i) {
      auto [it, inserted] =
          dense.try_emplace(trace[i].buffer_id, static_cast<std::uint32_t>(ids_.size()));
      if (inserted) ids_.push_back(trace[i].buffer_id);
      dense_[i] = it->second;
    }
    // Each access's next use: the op of the buffer's next access, or kNever.
    next_after_.assign(trace.size(), kNever);
    std::vector<std::uint64_t> next(ids_.size(), kNever);
    for (std::size_t i = trace.size(); i-- > 0;) {
      if (!is_access(trace[i].kind)) continue;
      next_after_[i] = next[dense_[i]];
      next[dense_[i]] = trace[i].op_index;
    }
  }

  std::uint64_t id(std::uint32_t buffer) const { return ids_[buffer]; }

  // on_op(t, candidates, history, next_use) -> bool (false: stop).
  template <typename OnOp>
  void run(OnOp&& on_op) const {
    MemoryHistory history(ids_.size());
    std::vector<std::uint64_t> next_use(ids_.size(), kNever);  // after the last use
    std::vector<std::uint32_t> live;                           // live and used once or more
    std::vector<std::size_t> position(ids_.size(), kAbsent);
    std::vector<std::uint64_t> stamp(ids_.size(), kNever);  // the last op (record) that used it
    std::vector<std::uint32_t> candidates;
    for (std::size_t i = 0; i < trace_.size();) {
      const AccessRecord& r = trace_[i];
      const std::uint32_t b = dense_[i];
      if (r.kind == AccessKind::kAllocate) {
        history.allocate(b, r.op_index);
        ++i;
        continue;
      }
      if (r.kind == AccessKind::kFree) {
        if (position[b] != kAbsent) {
          live[position[b]] = live.back();
          position[live.back()] = position[b];
          live.pop_back();
          position[b] = kAbsent;
        }
        ++i;
        continue;
      }
      std::size_t end = i;
      while (end < trace_.size() && is_access(trace_[end].kind) &&
             trace_[end].op_index == r.op_index) {
        stamp[dense_[end]] = i;
        ++end;
      }
      candidates.clear();
      for (std::uint32_t c : live) {
        if (stamp[c] != i) candidates.push_back(c);
      }
      std::sort(candidates.begin(), candidates.end(),
                [&](std::uint32_t a, std::uint32_t z) { return ids_[a] < ids_[z]; });
      if (!on_op(r.op_index, std::span<const std::uint32_t>(candidates), history, next_use)) return;
      for (std::size_t k = i; k < end; ++k) {
        const std::uint32_t u = dense_[k];
        history.use(u, r.op_index);
        next_use[u] = next_after_[k];
        if (position[u] == kAbsent) {
          position[u] = live.size();
          live.push_back(u);
        }
      }
      i = end;
    }
  }

 private:
  static constexpr std::size_t kAbsent = std::numeric_limits<std::size_t>::max();

  std::span<const AccessRecord> trace_;
  std::vector<std::uint32_t> dense_;       // per record
  std::vector<std::uint64_t> next_after_;  // per record (accesses)
  std::vector<std::uint64_t> ids_;         // per dense buffer
};

}  // namespace

Result<MemoryTrainingRows> extract_memory_training_rows(std::span<const NamedTrace> traces,
                                                        const MemoryTrainingOptions& options) {
  std::vector<TraceWalk> walks;
  for (const NamedTrace& t : traces) {
    MALV_TRY(validate_access_trace(t.records, t.name));
    walks.emplace_back(t.records);
  }
  MemoryTrainingRows rows;
  for (std::string_view name : memory_feature_names()) rows.columns.emplace_back(name);
  rows.columns.emplace_back(kMemoryTargetName);
  // First pass: each op's candidates, for the sampling.
  std::vector<std::uint64_t> per_op;
  for (const TraceWalk& walk : walks) {
    walk.run([&](std::uint64_t, std::span<const std::uint32_t> candidates, const MemoryHistory&,
                 const std::vector<std::uint64_t>&) {
      per_op.push_back(candidates.size());
      rows.candidates += candidates.size();
      return true;
    });
  }
  rows.ops = per_op.size();
  if (rows.candidates == 0) {
    std::string names;
    for (const NamedTrace& t : traces) names += (names.empty() ? "" : ", ") + t.name;
    return Error(ErrorCode::kInvalidArgument,
                 fmt::format("{}: no samples: no op leaves a buffer that was used before and is "
                             "still allocated unused (the traces hold {} ops)",
                             names.empty() ? std::string("no traces") : names, rows.ops));
  }
  const std::vector<bool> keep = sample_ops(per_op, options);
  std::uint64_t op_number = 0;
  float in[MALV_MEMORY_FEATURE_COUNT];
  for (const TraceWalk& walk : walks) {
    walk.run([&](std::uint64_t t, std::span<const std::uint32_t> candidates,
                 const MemoryHistory& history, const std::vector<std::uint64_t>& next_use) {
      const std::uint64_t decision = op_number++;
      if (!keep[decision]) return true;
      ++rows.sampled_ops;
      for (std::uint32_t b : candidates) {
        history.features(b, t, in);
        const std::uint64_t ops = next_use[b] == kNever ? MALV_MEMORY_FAR_OPS : next_use[b] - t;
        rows.values.insert(rows.values.end(), in, in + MALV_MEMORY_FEATURE_COUNT);
        rows.values.push_back(malv_memory_distance_target(ops));
        rows.ops_until_use.push_back(std::min<std::uint64_t>(ops, MALV_MEMORY_FAR_OPS));
        rows.decision.push_back(decision);
        rows.buffer_id.push_back(walk.id(b));
      }
      return true;
    });
  }
  if (rows.rows() == 0) {
    return Error(ErrorCode::kInvalidArgument,
                 fmt::format("max_rows {} is fewer than the candidates of the op sampled first "
                             "(ops have up to {})",
                             options.max_rows, *std::max_element(per_op.begin(), per_op.end())));
  }
  const auto with_candidates = static_cast<std::uint64_t>(
      std::count_if(per_op.begin(), per_op.end(), [](std::uint64_t n) { return n != 0; }));
  rows.sample_every = rows.sampled_ops == 0 ? 0.0
                                            : static_cast<double>(with_candidates) /
                                                  static_cast<double>(rows.sampled_ops);
  return rows;
}

Result<MemoryTrainingRows> read_memory_training_rows(const std::vector<std::string>& paths,
                                                     const MemoryTrainingOptions& options) {
  std::vector<std::vector<AccessRecord>> traces;
  std::vector<NamedTrace> named;
  traces.reserve(paths.size());
  for (const std::string& path : paths) {
    MALV_ASSIGN_OR_RETURN(std::vector<AccessRecord> trace, read_access_trace(path));
    traces.push_back(std::move(trace));
    named.push_back({path, traces.back()});
  }
  return extract_memory_training_rows(named, options);
}

Status write_memory_training_csv(const MemoryTrainingRows& rows, const std::string& path) {
  std::string text;
  for (std::size_t c = 0; c < rows.columns.size(); ++c) {
    text += (c == 0 ? "" : ",") + rows.columns[c];
  }
  text += '\n';
  for (std::size_t r = 0; r < rows.rows(); ++r) {
    for (std::size_t c = 0; c < MemoryTrainingRows::kColumns; ++c) {
      // Shortest text that reads back as the same float.
      text +=
          fmt::format("{}{}", c == 0 ? "" : ",", rows.values[r * MemoryTrainingRows::kColumns + c]);
    }
    text += '\n';
  }
  MALV_TRY_CONTEXT(write_file_atomically(path, std::as_bytes(std::span(text))),
                   "writing training rows " + path);
  return ok_status();
}

EvictionOrderAgreement eviction_order_agreement(const mlaas::Mlp& model,
                                                const MemoryTrainingRows& rows, std::size_t first) {
  EvictionOrderAgreement out;
  const std::size_t n = rows.rows() > first ? rows.rows() - first : 0;
  std::vector<float> in(n * MALV_MEMORY_FEATURE_COUNT);
  for (std::size_t r = 0; r < n; ++r) {
    std::copy_n(rows.features(first + r), MALV_MEMORY_FEATURE_COUNT,
                in.begin() + static_cast<std::ptrdiff_t>(r * MALV_MEMORY_FEATURE_COUNT));
  }
  std::vector<float> predicted(n);
  model.infer_cpu(in.data(), n, predicted.data());
  // score(a) > score(b): a is evicted before b. 1 if ordered like the truth, 0.5 at a tie.
  auto agree = [](double score_a, double score_b, std::uint64_t true_a, std::uint64_t true_b) {
    if (score_a == score_b) return 0.5;
    return (score_a > score_b) == (true_a > true_b) ? 1.0 : 0.0;
  };
  double model_pairs = 0;
  double lru_pairs = 0;
  double model_first = 0;
  double lru_first = 0;
  for (std::size_t begin = 0; begin < n;) {
    std::size_t end = begin;
    while (end < n && rows.decision[first + end] == rows.decision[first + begin]) ++end;
    std::uint64_t furthest = 0;
    std::size_t model_pick = begin;
    std::size_t lru_pick = begin;
    for (std::size_t a = begin; a < end; ++a) {
      const std::uint64_t true_a = rows.ops_until_use[first + a];
      const double lru_a = rows.features(first + a)[0];
      furthest = std::max(furthest, true_a);
      if (predicted[a] > predicted[model_pick]) model_pick = a;
      if (lru_a > rows.features(first + lru_pick)[0]) lru_pick = a;
      for (std::size_t b = a + 1; b < end; ++b) {
        const std::uint64_t true_b = rows.ops_until_use[first + b];
        if (true_a == true_b) continue;
        ++out.pairs;
        model_pairs += agree(predicted[a], predicted[b], true_a, true_b);
        lru_pairs += agree(lru_a, rows.features(first + b)[0], true_a, true_b);
      }
    }
    if (end - begin >= 2) {
      ++out.decisions;
      model_first += rows.ops_until_use[first + model_pick] == furthest ? 1 : 0;
      lru_first += rows.ops_until_use[first + lru_pick] == furthest ? 1 : 0;
    }
    begin = end;
  }
  if (out.pairs != 0) {
    out.model_pairs = model_pairs / static_cast<double>(out.pairs);
    out.lru_pairs = lru_pairs / static_cast<double>(out.pairs);
  }
  if (out.decisions != 0) {
    out.model_first_victim = model_first / static_cast<double>(out.decisions);
    out.lru_first_victim = lru_first / static_cast<double>(out.decisions);
  }
  return out;
}

}  // namespace malv::vgpu
