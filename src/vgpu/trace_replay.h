// Trace replay: what a memory manager would move for one VM's access trace
// (vgpu/access_trace.h) on a device of a given capacity, under an eviction
// policy or under Belady's offline optimum. `malv memory replay` prints it,
// and the memory benchmark divides each policy's bytes by Belady's.
//
//   MALV_ASSIGN_OR_RETURN(auto trace, read_access_trace(path));
//   MALV_ASSIGN_OR_RETURN(TraceReplay replay, TraceReplay::create(trace, path));
//   MALV_ASSIGN_OR_RETURN(ReplayCounts lru, replay.run({.capacity_bytes = 64 << 20,
//                                                       .policy = ReplayPolicy::kLru}));
//
// The model, one op at a time (all of an op's records share its op_index):
//  - Every buffer the op touches must be resident together; they are pinned
//    while the op is placed. Missing ones are brought in after evicting
//    victims, chosen by the policy among the other resident buffers, until
//    the missing ones fit. An op whose own buffers exceed the capacity is an
//    error (resource_exhausted) naming the op, its bytes and the capacity.
//  - An allocation is neither resident nor backed: its first access makes it
//    resident without a copy (it holds zeros). A kWrite makes it dirty.
//  - A dirty victim is written back (bytes_out) and is backed from then on; a
//    clean victim is dropped for free (a never-written one goes back to
//    holding zeros, still unbacked).
//  - An access to a spilled, backed buffer copies it in (bytes_in) and is a
//    fault. A kWrite copies in too: the trace does not say whether the op
//    also reads the buffer or overwrites all of it, and a manager must assume
//    it reads it.
//  - A free drops the buffer, resident or not, without a copy.
//  - Nothing is evicted before it must be, and nothing is prefetched: the
//    counts are the traffic, not its timing.
//
// Policies:
//  - lru: the least recently used buffer (by the last op that touched it).
//  - lookahead (window W ops): at op N, buffers not used again in ops
//    N+1..N+W go first, least recently used first; then the one whose next
//    use is furthest. What a manager sees in W ops of queued work.
//  - belady: the buffer whose next use is furthest in the whole trace (never
//    used again counts as furthest; ties go least recently used first).
//    lookahead with kInfiniteWindow chooses exactly as belady does.
//  - learned: the buffer whose next use a model predicts furthest, from its
//    history alone (no future): at each op that must evict, every candidate's
//    features (vgpu/memory_history.h; include/malv/memory_features.h) as of
//    that op go through the model (ReplayOptions::model, mlaas::Mlp::infer_cpu,
//    one batch of all candidates), and the largest predicted distance goes
//    first; ties go least recently used first. The model is trained by `malv
//    memory train` (vgpu/memory_training_data.h) on exactly these inputs.
//
// How optimal "belady" is. Belady's MIN minimises faults when every buffer
// has the same size and an eviction costs nothing: then, on traces where
// every buffer is written by its first access (so each re-access after an
// eviction is a fault), it is the optimum and its bytes_in are too. With
// buffers of different sizes (where the optimum is NP-hard), with dirty
// write-backs that cost bytes, and with never-written buffers that cost
// nothing to drop and re-create, furthest-next-use is the standard
// generalisation, not the optimum: a policy can move fewer bytes on some
// traces. The tests compare it with an exhaustive search on tiny traces and
// report how far it is (docs/operations.md, "Memory traces").
//
// Cost: create() is O(n) expected (one hash-map pass, next uses from a
// backward pass); run() is O(n log b) for n records and b buffers resident,
// and learned adds one model inference of the b candidates per op that evicts.
#pragma once

#include <cstdint>
#include <limits>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "malv/result.h"
#include "vgpu/access_trace.h"

namespace malv::mlaas {
class Mlp;
}

namespace malv::vgpu {

enum class ReplayPolicy : std::uint8_t { kLru, kLookahead, kBelady, kLearned };

// "lru", "lookahead", "belady", "learned".
std::string_view replay_policy_name(ReplayPolicy policy);
std::optional<ReplayPolicy> parse_replay_policy(std::string_view name);

inline constexpr std::uint64_t kDefaultLookaheadWindowOps = 64;
inline constexpr std::uint64_t kInfiniteWindow = std::numeric_limits<std::uint64_t>::max();

struct ReplayOptions {
  std::uint64_t capacity_bytes = 0;
  ReplayPolicy policy = ReplayPolicy::kBelady;
  std::uint64_t window_ops = kDefaultLookaheadWindowOps;  // lookahead only
  // learned only (required): borrowed for the run; MALV_MEMORY_FEATURE_COUNT
  // inputs and one output (check_memory_model), else run() fails.
  const mlaas::Mlp* model = nullptr;
};

struct ReplayCounts {
  std::uint64_t bytes_in = 0;   // copy-ins of spilled, backed buffers
  std::uint64_t bytes_out = 0;  // write-backs of dirty victims
  std::uint64_t faults = 0;     // accesses that needed a copy-in
  std::uint64_t evictions = 0;  // victims, dirty or clean

  std::uint64_t bytes_moved() const { return bytes_in + bytes_out; }
};

// A policy's bytes moved over Belady's at the same capacity: 1 when both
// moved nothing, nullopt when only Belady moved nothing (no finite ratio).
std::optional<double> bytes_over_belady(const ReplayCounts& counts, const ReplayCounts& belady);

// A validated trace, indexed for replay (next uses precomputed), replayed as
// often as wanted: one trace, many policies and capacities.
class TraceReplay {
 public:
  // Validates the trace (validate_access_trace; `name` opens every error).
  [[nodiscard]] static Result<TraceReplay> create(std::span<const AccessRecord> trace,
                                                  std::string_view name = "trace");

  [[nodiscard]] Result<ReplayCounts> run(const ReplayOptions& options) const;

  std::size_t records() const { return records_; }
  std::size_t ops() const { return ops_.size(); }  // ops that touch a buffer
  std::size_t buffers() const { return buffer_bytes_.size(); }
  // The least capacity a replay accepts: the bytes of the largest op.
  std::uint64_t largest_op_bytes() const { return largest_op_bytes_; }
  // The most bytes allocated at once: at this capacity nothing moves.
  std::uint64_t peak_allocated_bytes() const { return peak_allocated_bytes_; }

 private:
  struct Step {  // one record, buffers by dense index
    std::uint64_t op_index = 0;
    std::uint64_t next_use = 0;  // accesses: op of the buffer's next access, or kNever
    std::uint32_t buffer = 0;
    AccessKind kind = AccessKind::kRead;
  };
  struct Op {  // the access steps [first, last) of one op
    std::size_t first = 0;
    std::size_t last = 0;
    std::uint64_t bytes = 0;
  };

  TraceReplay() = default;

  std::string name_;
  std::size_t records_ = 0;
  std::vector<Step> steps_;
  std::vector<Op> ops_;
  std::vector<std::uint64_t> buffer_bytes_;
  std::uint64_t largest_op_bytes_ = 0;
  std::uint64_t peak_allocated_bytes_ = 0;
};

// One replay of a trace (validating and indexing it each time).
[[nodiscard]] Result<ReplayCounts> replay_access_trace(std::span<const AccessRecord> trace,
                                                       const ReplayOptions& options);

}  // namespace malv::vgpu
