// VgpuScheduler: decides what the accelerator runs next, across VMs.
//
// Every VM stream is a FIFO of ops here before it reaches the backend. When
// the device has a free slot, the scheduler takes the head op of every
// stream that is not already running and decides in two levels: each VM's
// gpu_sched policy scores that VM's own candidates (its streams' heads) and
// names the VM's best; the host level (HostSchedPolicy, the admin's, see
// vgpu/host_sched_policy.h) picks which VM is served. Then a short batch is
// dispatched from the chosen stream (a batch ends at a WaitEvent, after
// kMaxBatchOps ops or once its estimated cost passes a quantum). Within a
// stream nothing is ever reordered or dropped: a stream has at most one
// batch on the device. A VM's scores are never compared with another VM's,
// so no policy a VM selects can take device time from another VM.
//
// Work ahead of the decision: as ops are queued (enqueue_many, before the
// lock), the VM's policy may start an inference per item
// (GpuSchedPolicies::prepare, batched across VMs); each pump runs what of
// it is still pending before it takes the lock, and a decision passes the
// answers that are ready in observation.model_output. Nothing waits for an
// answer under the lock (SchedulerStats::prepared_ready / _missing).
//
// Priority on the device: under the host level `priority`, a latency-class
// VM's work is urgent: it goes to the backend's high-priority queue and,
// when batch work holds every device slot, may take one of the
// latency_slots instead of waiting. Each stream owns a normal and a
// high-priority backend queue; a stream has one batch on the device at a
// time, so changing queues between batches keeps its order. Under
// `fair-share` or `fifo` nothing is urgent.
//
// Busy time is measured per batch, from dispatch to the completion of its
// last op, and charged to the VM: this is what fair-share divides, not
// request counts. Slots bound how much is on the device at once (the CPU
// backend's worker count), so measured time is time on the device.
//
// No VM waits behind another VM's queue for long, whatever the policies
// score: a VM with work ready that has had nothing dispatched for
// `starvation_bound_ns` (since its work became ready, or a batch of it was
// last dispatched or ended) is served at the next free slot, before any
// score is compared.
// So another VM's next op waits at most starvation_bound_ns plus the run
// time of one batch already on the device (one op when the op alone passes
// the quantum), however much work other VMs have queued.
//
// Cancelling: when its session ends, a stream's ops that have not reached
// the device are dropped and complete with kAborted, in order, after the
// batch on the device (if any) has finished; nothing of it waits for them.
//
// Events: a RecordEvent and a WaitEvent on different streams may reach the
// backend in another order than they were enqueued here, so a wait is held
// until its record has been handed to the backend (counted only once the
// backend call that takes it has returned; see Item::wait_target).
//
// Threads: enqueue() from session dispatchers, completions from backend
// threads; one mutex guards the stream table, and backend calls are made
// outside it.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <span>
#include <unordered_map>
#include <vector>

#include "accel/backend.h"
#include "vgpu/gpu_sched_policies.h"
#include "vgpu/host_sched_policy.h"
#include "vgpu/memory_manager.h"
#include "vgpu/vm_registry.h"

namespace malv::vgpu {

struct SchedulerOptions {
  unsigned device_slots = 2;  // batches on the device at once
  // Further batches of latency-class VMs on the device at once, beyond
  // device_slots: such a batch need not wait for a batch VM's batch to end.
  // Latency-class batches go to the backend's high-priority queues, which
  // the CPU backend runs on its high-priority workers and a GPU on its
  // highest stream priority.
  unsigned latency_slots = 1;
  unsigned max_batch_ops = 64;       // ops per batch at most
  double batch_quantum_ns = 2e6;     // estimated device time per batch
  double device_flops_per_s = 2e10;  // for estimates only
  double device_bytes_per_s = 5e9;   // for estimates only
  // A VM with ready work is served after at most this long without a
  // dispatch, whatever the policies score (see the overview).
  std::int64_t starvation_bound_ns = 5'000'000;
  // A gap between a VM's work longer than this is the guest not running a
  // job, not the device waiting for its CPU side: it is not counted as
  // starvation (VmCounters::accel_starved_ns).
  std::int64_t guest_gap_limit_ns = 1'000'000'000;
  // The host level: which VM is served next (see vgpu/host_sched_policy.h).
  HostSchedPolicy host_policy = HostSchedPolicy::kPriority;
  // Half-life of the busy time fair sharing compares (its aging).
  std::int64_t share_half_life_ns = 500'000'000;
};

struct SchedulerStats {
  std::uint64_t decisions = 0;
  std::uint64_t batches = 0;
  std::uint64_t ops = 0;
  std::uint64_t starvation_overrides = 0;  // decisions the starvation bound made
  std::uint64_t cancelled_ops = 0;         // ops dropped by cancel_stream()
  // Candidates of policy decisions with work prepared at enqueue
  // (GpuSchedPolicies::prepare): answer ready by the decision, or not.
  std::uint64_t prepared_ready = 0;
  std::uint64_t prepared_missing = 0;
};

class VgpuScheduler {
 public:
  VgpuScheduler(accel::Backend& backend, GpuSchedPolicies& policies, SchedulerOptions options = {});
  ~VgpuScheduler();

  // A stream of `vm`: real backend queues behind a scheduler FIFO. Its
  // device priority follows the VM's class (see above), not the guest.
  [[nodiscard]] Result<accel::QueueId> create_stream(std::shared_ptr<Vm> vm);
  // Waits until everything queued on the stream has run, then destroys it.
  void destroy_stream(accel::QueueId stream);
  // Drops the stream's ops that are not on the device: each completes with
  // kAborted, in stream order, once the batch on the device (if any) is
  // done. Ops enqueued afterwards are aborted too. For a session that ends.
  void cancel_stream(accel::QueueId stream);
  // Waits until no stream has work queued or running, or `timeout` passes;
  // whether it became idle. The host's grace period at shutdown.
  bool wait_idle(std::chrono::nanoseconds timeout);
  void enqueue(accel::QueueId stream, accel::Op op, accel::Completion done);
  // Ops in order, op i completing with cookie done.cookie + i (see
  // accel::Backend::enqueue_many); one lock for the whole batch.
  void enqueue_many(accel::QueueId stream, std::span<accel::Op> ops, accel::Completion done);

  // The event is gone: waits on it held here proceed (as the backend's do).
  void forget_event(accel::EventId event);

  // Replaces the policy source; takes effect at the next decision.
  void set_policies(GpuSchedPolicies& policies);
  // The host level; takes effect at the next decision.
  void set_host_policy(HostSchedPolicy policy);
  HostSchedPolicy host_policy() const { return host_policy_.load(); }
  SchedulerStats stats() const;
  // Monotonic time of the most recent decision (0: none yet).
  std::int64_t last_decision_ns() const { return last_decision_ns_.load(); }

 private:
  struct Item {
    accel::Op op;
    accel::Completion done;
    std::int64_t enqueue_ns = 0;
    malv_gpu_sched_observation observation{};
    PreparedItem prepared;  // what the VM's policy started at enqueue
    // WaitEvent: how many records of its event were enqueued here before it.
    // It goes to the backend only once that many have gone there, so the
    // backend (which numbers records as it receives them) sees the record
    // the wait is for even when another stream still holds it here.
    std::uint64_t wait_target = 0;
  };
  struct EventRecords {
    std::uint64_t enqueued = 0;    // RecordEvents enqueued here
    std::uint64_t dispatched = 0;  // of those, handed to the backend
  };
  enum class Slot { kNone, kDevice, kLatency };
  struct Stream;
  // What the starvation bound needs per VM (by VM id).
  struct VmState {
    std::size_t pending = 0;         // items queued here on any of its streams
    std::int64_t waiting_since = 0;  // ready, or last served (dispatch, batch end)
    std::size_t streams = 0;
    // Since when the device has had none of the VM's work (queued here or
    // running); 0 while it has some. The gap until its next op arrives is
    // time the device waited for the guest (VmCounters::accel_starved_ns).
    std::int64_t idle_since = 0;
    // Busy time for fair sharing, aged: worth share_ns at share_at.
    double share_ns = 0;
    std::int64_t share_at = 0;
  };
  // The host level's key for a VM whose oldest candidate was queued at
  // `oldest_ns` (not the one its policy picked: a VM's policy never moves it
  // in the host's order); the lowest key is served (mutex_ held).
  struct HostKey {
    int tier = 0;  // priority: 0 latency-class VMs, 1 batch VMs
    double key = 0;
    bool operator<(const HostKey& o) const { return tier != o.tier ? tier < o.tier : key < o.key; }
  };
  HostKey host_key(HostSchedPolicy policy, Vm& vm, const VmConfig& config, std::int64_t oldest_ns,
                   std::int64_t now);
  // The head of the stream as a policy sees it at a decision at `now`: the
  // VM's weight and class, the wait so far, busy times (mutex_ held).
  // (mutex_ held; counts the prepared answers it passes or misses)
  malv_gpu_sched_observation decision_view(const Stream& stream, const VmConfig& config,
                                           std::int64_t now);
  // The VM's aged busy time as of `now` (mutex_ held).
  double aged_share(VmState& state, std::int64_t now) const;

  void pump();
  // The head of the stream is a wait whose record has not reached the backend (mutex_ held).
  bool head_waits_for_record(const Stream& stream) const;
  // Which slot a non-bookkeeping batch of the stream would take now, its
  // head scored urgent or not (mutex_ held).
  Slot free_slot_for(const Stream& stream, bool urgent) const;
  // The stream's VM is latency class and a latency slot is free (mutex_ held).
  bool may_use_latency_lane(const Stream& stream) const;
  // Some stream of the VM has a batch on the device (mutex_ held).
  bool vm_has_running_stream(const Vm& vm) const;
  void on_item_done(Stream* stream, std::size_t index_in_batch, ErrorCode status);
  // Makes the batch's managed buffers resident and sets their device
  // addresses (mutex_ not held; the stream is running, so only this thread
  // touches its batch). Ops that must wait for room go back to the stream;
  // false when none is left to run (the stream no longer runs a batch).
  // batch_records is brought in line with the ops that stay.
  bool place_memory(Stream& stream, std::vector<std::uint64_t>& batch_records);
  // Where each managed buffer of `vm` is next used in its streams' queues.
  NextUses queued_uses(const Vm& vm) const;
  // Takes the cancelled stream's queued items out (mutex_ held); the caller
  // completes them with kAborted once the lock is released.
  std::vector<Item> take_cancelled(Stream& stream);
  static void abort_items(std::vector<Item>& items);
  malv_gpu_sched_observation observe(std::uint64_t vm_id, accel::QueueId queue, const accel::Op& op,
                                     std::int64_t now);
  static void item_callback(void* context, std::uint64_t cookie, ErrorCode status);

  accel::Backend& backend_;
  std::atomic<GpuSchedPolicies*> policies_;
  const SchedulerOptions options_;
  std::atomic<HostSchedPolicy> host_policy_;

  mutable std::mutex mutex_;
  std::condition_variable idle_;
  std::unordered_map<std::uint64_t, std::unique_ptr<Stream>> streams_;  // by queue id
  std::unordered_map<std::uint64_t, EventRecords> events_;  // by event id, once recorded
  std::unordered_map<std::uint64_t, VmState> vm_states_;    // by VM id, while it has streams
  std::uint64_t unpins_ = 0;  // batches of managed memory that ended (their pins released)
  unsigned busy_slots_ = 0;
  unsigned busy_latency_slots_ = 0;
  SchedulerStats stats_;
  std::atomic<std::int64_t> last_decision_ns_{0};
};

}  // namespace malv::vgpu
