#include "vgpu/vgpu_scheduler.h"

#include <atomic>
#include <cmath>
#include <limits>
#include <vector>

#include "accel/kernel_ids.h"
#include "base/clock.h"
#include "base/fifo.h"
#include "base/log.h"

namespace malv::vgpu {

struct VgpuScheduler::Stream {
  VgpuScheduler* scheduler = nullptr;
  std::shared_ptr<Vm> vm;
  accel::QueueId queue;       // normal priority; also the stream's id
  accel::QueueId high_queue;  // high priority, for batches of a latency-class VM
  Fifo<Item> pending;
  // The batch on the device, if any: its ops (moved out of their items,
  // handed to the backend in one call), their completions, and the
  // observation of its first op (the policy's feedback).
  bool running = false;
  Slot slot = Slot::kNone;  // the slot the running batch holds
  std::vector<accel::Op> batch_ops;
  std::vector<accel::Completion> batch_done;
  // For a VM with managed memory: each op's placement (kOk, or why it does
  // not run) and the buffers the batch pinned (vgpu/memory_manager.h).
  std::vector<ErrorCode> batch_status;
  std::vector<std::uint64_t> batch_pins;
  // What the batch's items were besides their ops and completions, so that
  // ops the memory manager cannot place yet go back to `pending` as they were.
  struct ItemMeta {
    std::int64_t enqueue_ns = 0;
    malv_gpu_sched_observation observation{};
    std::uint64_t wait_target = 0;
  };
  std::vector<ItemMeta> batch_meta;
  // Its head waits for room in the VM's memory: skipped until a batch ends.
  bool memory_blocked = false;
  std::uint64_t unpins_seen = 0;  // VgpuScheduler::unpins_ when its batch was built
  malv_gpu_sched_observation batch_head{};
  // Ops of the batch not yet complete; set before the batch is enqueued,
  // counted down by completions without the scheduler's lock.
  std::atomic<std::size_t> remaining{0};
  std::int64_t dispatch_ns = 0;
  std::int64_t busy_ns = 0;  // device time its batches took (the observation's queue_busy_ns)
  bool destroying = false;
  bool cancelled = false;  // its session ended: queued ops are aborted, never run
  bool aborting = false;   // aborted items' completions are running (outside the lock)
};

namespace {

// Estimated work of an op, for batch sizing and for policy features.
void estimate(const accel::Op& op, double* flops, double* bytes, std::uint32_t* kernel) {
  *flops = 0;
  *bytes = 0;
  *kernel = 0;
  if (const auto* launch = std::get_if<accel::Launch>(&op)) {
    *kernel = launch->kernel.value();
    const auto& a = launch->args;
    if (launch->kernel == accel::kernel_id(accel::BuiltinKernel::kGemm) && launch->argc >= 6) {
      *flops = 2.0 * static_cast<double>(a[3].i64) * static_cast<double>(a[4].i64) *
               static_cast<double>(a[5].i64);
      *bytes = 4.0 *
               static_cast<double>(a[3].i64 * a[5].i64 + a[5].i64 * a[4].i64 + a[3].i64 * a[4].i64);
    } else {
      for (std::uint32_t i = 0; i < launch->argc; ++i) {
        if (a[i].kind == accel::ArgKind::kI64)
          *flops = std::max(*flops, static_cast<double>(a[i].i64));
      }
      *bytes = 8.0 * *flops;
    }
  } else if (const auto* h2d = std::get_if<accel::CopyH2D>(&op)) {
    *bytes = static_cast<double>(h2d->bytes);
  } else if (const auto* d2h = std::get_if<accel::CopyD2H>(&op)) {
    *bytes = static_cast<double>(d2h->bytes);
  } else if (const auto* d2d = std::get_if<accel::CopyD2D>(&op)) {
    *bytes = 2.0 * static_cast<double>(d2d->bytes);
  } else if (const auto* memset = std::get_if<accel::Memset>(&op)) {
    *bytes = static_cast<double>(memset->bytes);
  }
}

bool is_bookkeeping(const accel::Op& op) {
  return std::holds_alternative<accel::RecordEvent>(op) ||
         std::holds_alternative<accel::WaitEvent>(op) || std::holds_alternative<accel::Marker>(op);
}

}  // namespace

VgpuScheduler::VgpuScheduler(accel::Backend& backend, GpuSchedPolicies& policies,
                             SchedulerOptions options)
    : backend_(backend),
      policies_(&policies),
      options_(options),
      host_policy_(options.host_policy) {}

VgpuScheduler::~VgpuScheduler() {
  std::vector<std::uint64_t> ids;
  {
    std::lock_guard lock(mutex_);
    for (auto& [id, stream] : streams_) ids.push_back(id);
  }
  for (std::uint64_t id : ids) destroy_stream(accel::QueueId{id});
}

void VgpuScheduler::set_policies(GpuSchedPolicies& policies) { policies_.store(&policies); }

void VgpuScheduler::set_host_policy(HostSchedPolicy policy) {
  host_policy_.store(policy);
  pump();
}

double VgpuScheduler::aged_share(VmState& state, std::int64_t now) const {
  if (state.share_at != 0 && now > state.share_at && state.share_ns > 0) {
    const double halvings =
        static_cast<double>(now - state.share_at) /
        static_cast<double>(std::max<std::int64_t>(options_.share_half_life_ns, 1));
    state.share_ns *= std::exp2(-halvings);
  }
  state.share_at = now;
  return state.share_ns;
}

malv_gpu_sched_observation VgpuScheduler::decision_view(const Stream& stream,
                                                        const VmConfig& config, std::int64_t now) {
  const Item& head = stream.pending.front();
  malv_gpu_sched_observation o = head.observation;
  if (head.prepared.started()) {
    const double answer = policies_.load()->prepared_output(*stream.vm, head.prepared);
    if (std::isnan(answer)) {
      ++stats_.prepared_missing;
    } else {
      o.model_output = static_cast<float>(answer);
      o.model_output_ready = 1;
      ++stats_.prepared_ready;
    }
  }
  o.vm_weight = config.weight;
  o.priority_class =
      config.priority == PriorityClass::kLatency ? MALV_PRIORITY_LATENCY : MALV_PRIORITY_BATCH;
  o.waited_ns = now - o.enqueue_time_ns;
  o.vm_busy_ns = static_cast<std::int64_t>(stream.vm->counters().busy_ns.load());
  o.queue_busy_ns = stream.busy_ns;
  return o;
}

VgpuScheduler::HostKey VgpuScheduler::host_key(HostSchedPolicy policy, Vm& vm,
                                               const VmConfig& config, std::int64_t oldest_ns,
                                               std::int64_t now) {
  const double weight = config.weight > 0 ? config.weight : 1.0;
  switch (policy) {
    case HostSchedPolicy::kFifo: return {0, static_cast<double>(oldest_ns)};
    case HostSchedPolicy::kFairShare:
      return {0, aged_share(vm_states_[vm.id().value()], now) / weight};
    case HostSchedPolicy::kPriority:
      if (config.priority == PriorityClass::kLatency) {
        return {0, static_cast<double>(oldest_ns)};
      }
      return {1, aged_share(vm_states_[vm.id().value()], now) / weight};
  }
  return {0, 0};
}

SchedulerStats VgpuScheduler::stats() const {
  std::lock_guard lock(mutex_);
  return stats_;
}

Result<accel::QueueId> VgpuScheduler::create_stream(std::shared_ptr<Vm> vm) {
  MALV_ASSIGN_OR_RETURN(accel::QueueId queue, backend_.create_queue(accel::QueuePriority::kNormal));
  Result<accel::QueueId> high_queue = backend_.create_queue(accel::QueuePriority::kHigh);
  if (!high_queue.ok()) {
    backend_.destroy_queue(queue);
    return std::move(high_queue).error();
  }
  auto stream = std::make_unique<Stream>();
  stream->scheduler = this;
  const std::uint64_t vm_id = vm->id().value();
  stream->vm = std::move(vm);
  stream->queue = queue;
  stream->high_queue = high_queue.value();
  std::lock_guard lock(mutex_);
  ++vm_states_[vm_id].streams;
  streams_.emplace(queue.value(), std::move(stream));
  return queue;
}

void VgpuScheduler::destroy_stream(accel::QueueId queue) {
  accel::QueueId high_queue;
  {
    std::unique_lock lock(mutex_);
    auto it = streams_.find(queue.value());
    if (it == streams_.end()) return;
    Stream* stream = it->second.get();
    stream->destroying = true;
    idle_.wait(lock,
               [&] { return stream->pending.empty() && !stream->running && !stream->aborting; });
    high_queue = stream->high_queue;
    const std::uint64_t vm_id = stream->vm->id().value();
    streams_.erase(it);
    auto state = vm_states_.find(vm_id);
    if (state != vm_states_.end() && --state->second.streams == 0) vm_states_.erase(state);
  }
  backend_.destroy_queue(queue);
  backend_.destroy_queue(high_queue);
}

void VgpuScheduler::cancel_stream(accel::QueueId queue) {
  std::vector<Item> aborted;
  Stream* stream = nullptr;
  {
    std::lock_guard lock(mutex_);
    auto it = streams_.find(queue.value());
    if (it == streams_.end()) return;
    stream = it->second.get();
    stream->cancelled = true;
    // With a batch on the device, its end aborts the rest (on_item_done):
    // completions stay in stream order.
    if (stream->running) return;
    aborted = take_cancelled(*stream);
  }
  if (aborted.empty()) return;
  abort_items(aborted);
  {
    // aborting kept the stream alive until now.
    std::lock_guard lock(mutex_);
    stream->aborting = false;
  }
  idle_.notify_all();
}

std::vector<VgpuScheduler::Item> VgpuScheduler::take_cancelled(Stream& stream) {
  std::vector<Item> items;
  items.reserve(stream.pending.size());
  while (!stream.pending.empty()) {
    Item& item = stream.pending.front();
    // A record that never runs must not hold up the waits counting on it.
    if (const auto* record = std::get_if<accel::RecordEvent>(&item.op)) {
      auto event = events_.find(record->event.value());
      if (event != events_.end()) ++event->second.dispatched;
    }
    items.push_back(std::move(item));
    stream.pending.pop_front();
  }
  stream.vm->counters().queue_depth.fetch_sub(items.size(), std::memory_order_relaxed);
  auto state = vm_states_.find(stream.vm->id().value());
  if (state != vm_states_.end()) state->second.pending -= items.size();
  stats_.cancelled_ops += items.size();
  stream.aborting = !items.empty();
  return items;
}

void VgpuScheduler::abort_items(std::vector<Item>& items) {
  for (Item& item : items) {
    if (item.done.fn != nullptr)
      item.done.fn(item.done.context, item.done.cookie, ErrorCode::kAborted);
  }
  items.clear();
}

bool VgpuScheduler::wait_idle(std::chrono::nanoseconds timeout) {
  std::unique_lock lock(mutex_);
  return idle_.wait_for(lock, timeout, [this] {
    for (const auto& [id, stream] : streams_) {
      if (!stream->pending.empty() || stream->running || stream->aborting) return false;
    }
    return true;
  });
}

malv_gpu_sched_observation VgpuScheduler::observe(std::uint64_t vm_id, accel::QueueId queue,
                                                  const accel::Op& op, std::int64_t now) {
  malv_gpu_sched_observation o{};
  o.vm_id = vm_id;
  o.queue_id = queue.value();
  o.enqueue_time_ns = now;
  estimate(op, &o.est_flops, &o.est_bytes, &o.kernel_id);
  if (const auto* call = std::get_if<accel::HostCall>(&op)) {
    // A host call's expected run time, in the flops the device would
    // need for it: batches and shares then weigh it like a kernel.
    o.est_flops = static_cast<double>(call->est_ns) * 1e-9 * options_.device_flops_per_s;
  }
  return o;
}

void VgpuScheduler::enqueue(accel::QueueId queue, accel::Op op, accel::Completion done) {
  enqueue_many(queue, std::span(&op, 1), done);
}

void VgpuScheduler::enqueue_many(accel::QueueId queue, std::span<accel::Op> ops,
                                 accel::Completion done) {
  if (ops.empty()) return;
  const std::int64_t now = mono_now_ns();
  bool dispatch_now = false;
  bool abort_now = false;
  // What the items look like to the policies, and (outside the lock) what
  // the VM's policy starts for them as they are queued.
  thread_local std::vector<malv_gpu_sched_observation> observations;
  thread_local std::vector<PreparedItem> prepared;
  observations.clear();
  prepared.clear();
  GpuSchedPolicies* policies = policies_.load();
  if (policies->prepares()) {
    std::shared_ptr<Vm> vm;
    {
      std::lock_guard lock(mutex_);
      auto it = streams_.find(queue.value());
      if (it != streams_.end() && !it->second->cancelled) vm = it->second->vm;
    }
    if (vm != nullptr) {
      // As the decision will show them (decision_view), less what only the
      // decision knows (waited_ns, busy times).
      const VmConfig config = vm->config();
      for (const accel::Op& op : ops) {
        malv_gpu_sched_observation o = observe(vm->id().value(), queue, op, now);
        o.vm_weight = config.weight;
        o.priority_class = config.priority == PriorityClass::kLatency ? MALV_PRIORITY_LATENCY
                                                                      : MALV_PRIORITY_BATCH;
        observations.push_back(o);
      }
      prepared.resize(ops.size());
      policies->prepare(*vm, observations, prepared);
    }
  }
  {
    std::lock_guard lock(mutex_);
    auto it = streams_.find(queue.value());
    if (it != streams_.end() && it->second->cancelled && !it->second->running) {
      abort_now = true;  // nothing of it runs any more
    } else if (it != streams_.end()) {
      Stream& stream = *it->second;
      VmState& state = vm_states_[stream.vm->id().value()];
      if (state.idle_since != 0) {
        const std::int64_t gap = now - state.idle_since;
        if (gap > 0 && gap <= options_.guest_gap_limit_ns) {
          stream.vm->counters().accel_starved_ns.fetch_add(static_cast<std::uint64_t>(gap),
                                                           std::memory_order_relaxed);
        }
        state.idle_since = 0;
      }
      if (state.pending == 0) state.waiting_since = now;
      state.pending += ops.size();
      for (std::size_t i = 0; i < ops.size(); ++i) {
        std::uint64_t wait_target = 0;
        if (const auto* record = std::get_if<accel::RecordEvent>(&ops[i])) {
          ++events_[record->event.value()].enqueued;
        } else if (const auto* wait = std::get_if<accel::WaitEvent>(&ops[i])) {
          auto event = events_.find(wait->event.value());
          if (event != events_.end()) wait_target = event->second.enqueued;
        }
        Item item;
        item.enqueue_ns = now;
        item.observation = i < observations.size()
                               ? observations[i]
                               : observe(stream.vm->id().value(), stream.queue, ops[i], now);
        if (i < prepared.size()) item.prepared = std::move(prepared[i]);
        item.op = std::move(ops[i]);
        item.done = {done.fn, done.context, done.cookie + i};
        item.wait_target = wait_target;
        stream.pending.push_back(std::move(item));
      }
      stream.vm->counters().queue_depth.fetch_add(ops.size(), std::memory_order_relaxed);
      stream.vm->counters().commands.fetch_add(ops.size(), std::memory_order_relaxed);
      // Dispatch now if the head could go: a latency-class VM's work may
      // take a latency slot while batch work holds every device slot.
      dispatch_now = !stream.running && !stream.cancelled &&
                     (busy_slots_ < options_.device_slots || may_use_latency_lane(stream) ||
                      is_bookkeeping(stream.pending.front().op));
      done.fn = nullptr;
    }
  }
  if (done.fn != nullptr) {
    const ErrorCode status = abort_now ? ErrorCode::kAborted : ErrorCode::kNotFound;
    for (std::size_t i = 0; i < ops.size(); ++i) done.fn(done.context, done.cookie + i, status);
    return;
  }
  if (dispatch_now) pump();
}

void VgpuScheduler::forget_event(accel::EventId event) {
  {
    std::lock_guard lock(mutex_);
    events_.erase(event.value());
  }
  pump();
}

bool VgpuScheduler::head_waits_for_record(const Stream& stream) const {
  const Item& head = stream.pending.front();
  if (head.wait_target == 0) return false;
  const auto& wait = std::get<accel::WaitEvent>(head.op);
  auto event = events_.find(wait.event.value());
  return event != events_.end() && event->second.dispatched < head.wait_target;
}

VgpuScheduler::Slot VgpuScheduler::free_slot_for(const Stream& stream, bool urgent) const {
  if (busy_slots_ < options_.device_slots) return Slot::kDevice;
  if (urgent && may_use_latency_lane(stream)) return Slot::kLatency;
  return Slot::kNone;
}

bool VgpuScheduler::may_use_latency_lane(const Stream& stream) const {
  return stream.vm->priority_class() == PriorityClass::kLatency &&
         busy_latency_slots_ < options_.latency_slots;
}

void VgpuScheduler::pump() {
  // Answers prepared at enqueue that are still pending run now, here,
  // before the lock: the decisions below read them.
  policies_.load()->run_prepared();
  std::vector<malv_gpu_sched_observation> observations;
  std::vector<double> scores;
  std::vector<std::uint64_t> batch_records;  // events the batch records
  for (;;) {
    batch_records.clear();
    Stream* chosen = nullptr;
    bool chosen_urgent = false;
    accel::QueueId batch_queue;
    {
      std::lock_guard lock(mutex_);
      // Candidates: the head of every stream that is not on the device.
      std::unordered_map<Vm*, std::vector<Stream*>> by_vm;
      for (auto& [id, stream] : streams_) {
        if (stream->running || stream->cancelled || stream->pending.empty() ||
            stream->memory_blocked || head_waits_for_record(*stream)) {
          continue;
        }
        if (!is_bookkeeping(stream->pending.front().op) && busy_slots_ >= options_.device_slots &&
            !may_use_latency_lane(*stream)) {
          continue;
        }
        by_vm[stream->vm.get()].push_back(stream.get());
      }
      if (by_vm.empty()) return;
      const std::int64_t now = mono_now_ns();
      // The starvation bound: the VM that has waited longest past it is
      // served, by its own policy's best candidate, whatever the scores say.
      Vm* starving = nullptr;
      std::int64_t starving_since = now - options_.starvation_bound_ns;
      for (auto& [vm, candidates] : by_vm) {
        auto state = vm_states_.find(vm->id().value());
        if (state != vm_states_.end() && state->second.waiting_since < starving_since) {
          starving = vm;
          starving_since = state->second.waiting_since;
        }
      }
      // Level one: each VM's policy names its best candidate that can go
      // (a latency-class VM's work is urgent under the host level
      // `priority`). Level two: the host level picks the VM.
      const HostSchedPolicy host_policy = host_policy_.load();
      Stream* starving_choice = nullptr;
      bool starving_urgent = false;
      // The chosen head as its policy saw it: the feedback's observation.
      malv_gpu_sched_observation chosen_view{};
      malv_gpu_sched_observation starving_view{};
      HostKey best_key;
      for (auto& [vm, candidates] : by_vm) {
        observations.clear();
        const VmConfig config = vm->config();
        const bool urgent =
            host_policy == HostSchedPolicy::kPriority && config.priority == PriorityClass::kLatency;
        for (Stream* s : candidates) observations.push_back(decision_view(*s, config, now));
        scores.assign(observations.size(), 0.0);
        policies_.load()->score(*vm, observations, scores);
        vm->counters().decisions.fetch_add(1, std::memory_order_relaxed);
        Stream* vm_choice = nullptr;
        std::size_t vm_choice_index = 0;
        double vm_best = std::numeric_limits<double>::infinity();
        std::int64_t oldest_ns = std::numeric_limits<std::int64_t>::max();
        for (std::size_t i = 0; i < candidates.size(); ++i) {
          const bool can_go = is_bookkeeping(candidates[i]->pending.front().op) ||
                              free_slot_for(*candidates[i], urgent) != Slot::kNone;
          // NaN never wins (the policy layer replaces bad scores already).
          if (!can_go) continue;
          oldest_ns = std::min(oldest_ns, observations[i].enqueue_time_ns);
          if (vm_choice == nullptr || scores[i] < vm_best) {
            vm_best = scores[i];
            vm_choice = candidates[i];
            vm_choice_index = i;
          }
        }
        if (vm_choice == nullptr) continue;
        if (vm == starving) {
          starving_choice = vm_choice;
          starving_urgent = urgent;
          starving_view = observations[vm_choice_index];
        }
        const HostKey key = host_key(host_policy, *vm, config, oldest_ns, now);
        if (chosen == nullptr || key < best_key) {
          best_key = key;
          chosen = vm_choice;
          chosen_urgent = urgent;
          chosen_view = observations[vm_choice_index];
        }
      }
      if (starving_choice != nullptr && starving_choice != chosen &&
          starving_choice->vm.get() != chosen->vm.get()) {
        chosen = starving_choice;
        chosen_urgent = starving_urgent;
        chosen_view = starving_view;
        ++stats_.starvation_overrides;
      }
      if (chosen == nullptr) return;  // no candidate has a slot it may take
      ++stats_.decisions;
      last_decision_ns_.store(now);

      // A batch from the chosen stream, up to a WaitEvent, a count or a quantum.
      Stream& s = *chosen;
      s.batch_ops.clear();
      s.batch_done.clear();
      s.batch_meta.clear();
      const bool managed = s.vm->memory().active();
      s.unpins_seen = unpins_;
      // The policy's feedback gets the head as it was seen at this decision.
      s.batch_head = chosen_view;
      double cost_ns = 0;
      bool only_bookkeeping = true;
      // Without a free slot the batch holds bookkeeping only (it needs none).
      const Slot slot = free_slot_for(s, chosen_urgent);
      while (!s.pending.empty() && s.batch_ops.size() < options_.max_batch_ops) {
        Item& item = s.pending.front();
        const bool wait = std::holds_alternative<accel::WaitEvent>(item.op);
        if (wait && !s.batch_ops.empty()) break;  // a wait starts its own batch
        if (slot == Slot::kNone && !is_bookkeeping(item.op)) break;
        only_bookkeeping = only_bookkeeping && is_bookkeeping(item.op);
        if (const auto* record = std::get_if<accel::RecordEvent>(&item.op)) {
          batch_records.push_back(record->event.value());
        }
        cost_ns += 1e9 * (item.observation.est_flops / options_.device_flops_per_s +
                          item.observation.est_bytes / options_.device_bytes_per_s);
        if (managed) s.batch_meta.push_back({item.enqueue_ns, item.observation, item.wait_target});
        s.batch_ops.push_back(std::move(item.op));
        s.batch_done.push_back(item.done);
        s.pending.pop_front();
        if (wait || cost_ns > options_.batch_quantum_ns) break;
      }
      s.running = true;
      s.slot = only_bookkeeping ? Slot::kNone : slot;
      if (s.slot == Slot::kDevice) ++busy_slots_;
      if (s.slot == Slot::kLatency) ++busy_latency_slots_;
      batch_queue = chosen_urgent && s.vm->priority_class() == PriorityClass::kLatency
                        ? s.high_queue
                        : s.queue;
      s.remaining.store(s.batch_ops.size(), std::memory_order_release);
      s.dispatch_ns = now;
      s.vm->counters().queue_depth.fetch_sub(s.batch_ops.size(), std::memory_order_relaxed);
      VmState& state = vm_states_[s.vm->id().value()];
      state.pending -= s.batch_ops.size();
      state.waiting_since = now;
      ++stats_.batches;
      stats_.ops += s.batch_ops.size();
    }
    // Outside the lock: the VM's managed buffers are made resident and the
    // ops given their device addresses (copies may be made here). An op
    // whose buffers cannot be placed runs as a marker, completing with the
    // placement's error.
    if (!place_memory(*chosen, batch_records)) continue;  // nothing of it can run yet
    // Outside the lock: a backend may complete inline. Once the batch is
    // enqueued its last completion may end it (and a destroy_stream free
    // the stream), so nothing of `chosen` is read after that call.
    backend_.enqueue_many(batch_queue, chosen->batch_ops,
                          accel::Completion{&VgpuScheduler::item_callback, chosen, 0});
    // Only now may a wait on these records go to the backend: counted any
    // earlier, another pump could hand the wait over first, and the backend
    // would pass it against an older record (or none).
    if (!batch_records.empty()) {
      std::lock_guard lock(mutex_);
      for (std::uint64_t id : batch_records) {
        auto event = events_.find(id);
        if (event != events_.end()) ++event->second.dispatched;
      }
    }
  }
}

bool VgpuScheduler::place_memory(Stream& stream, std::vector<std::uint64_t>& batch_records) {
  stream.batch_status.clear();
  stream.batch_pins.clear();
  Vm& vm = *stream.vm;
  if (stream.batch_meta.empty()) return true;  // the VM has no managed memory
  const std::size_t n = stream.batch_ops.size();
  stream.batch_status.assign(n, ErrorCode::kOk);
  const std::size_t placed =
      vm.memory().place(stream.batch_ops, stream.batch_status, stream.batch_pins,
                        [this, &vm] { return queued_uses(vm); });
  for (std::size_t i = 0; i < placed; ++i) {
    if (stream.batch_status[i] != ErrorCode::kOk) stream.batch_ops[i] = accel::Marker{};
  }
  if (placed == n) return true;
  // The rest waits for room: back to the front of the stream, as they were.
  std::unique_lock lock(mutex_);
  for (std::size_t k = n; k-- > placed;) {
    Item item;
    item.op = std::move(stream.batch_ops[k]);
    item.done = stream.batch_done[k];
    item.enqueue_ns = stream.batch_meta[k].enqueue_ns;
    item.observation = stream.batch_meta[k].observation;
    item.wait_target = stream.batch_meta[k].wait_target;
    stream.pending.push_front(std::move(item));
  }
  const std::size_t back = n - placed;
  stream.batch_ops.resize(placed);
  stream.batch_done.resize(placed);
  stream.batch_status.resize(placed);
  vm.counters().queue_depth.fetch_add(back, std::memory_order_relaxed);
  vm_states_[vm.id().value()].pending += back;
  stats_.ops -= back;
  // Records that went back are not dispatched.
  batch_records.clear();
  for (const accel::Op& op : stream.batch_ops) {
    if (const auto* record = std::get_if<accel::RecordEvent>(&op)) {
      batch_records.push_back(record->event.value());
    }
  }
  stream.remaining.store(placed, std::memory_order_release);
  if (placed > 0) return true;
  // Nothing of the batch can run before another batch ends and unpins
  // (unless one already has since the batch was built: then it retries).
  stream.memory_blocked = unpins_ == stream.unpins_seen;
  stream.running = false;
  if (stream.slot == Slot::kDevice) --busy_slots_;
  if (stream.slot == Slot::kLatency) --busy_latency_slots_;
  stream.slot = Slot::kNone;
  --stats_.batches;
  // Cancelled while its batch was being placed: what went back is aborted
  // now, as the batch's end would have done.
  if (stream.cancelled) {
    std::vector<Item> aborted = take_cancelled(stream);
    lock.unlock();
    abort_items(aborted);
    lock.lock();
    stream.aborting = false;
  }
  idle_.notify_all();
  return false;
}

NextUses VgpuScheduler::queued_uses(const Vm& vm) const {
  NextUses uses;
  std::lock_guard lock(mutex_);
  for (const auto& [id, stream] : streams_) {
    if (stream->vm.get() != &vm) continue;
    double est_ns = 0;
    for (std::size_t i = 0; i < stream->pending.size(); ++i) {
      const Item& item = stream->pending[i];
      accel::Op op = item.op;  // a copy: the walk below takes non-const pointers
      MemoryManager::for_each_pointer(op, [&](accel::DevicePtr ptr, bool) {
        if (!MemoryManager::is_virtual(ptr)) return;
        const std::uint64_t buffer = MemoryManager::buffer_id(ptr);
        auto [it, inserted] =
            uses.try_emplace(buffer, NextUse{i, static_cast<std::int64_t>(est_ns)});
        if (!inserted && it->second.ops > i) it->second = {i, static_cast<std::int64_t>(est_ns)};
      });
      est_ns += 1e9 * (item.observation.est_flops / options_.device_flops_per_s +
                       item.observation.est_bytes / options_.device_bytes_per_s);
    }
  }
  return uses;
}

bool VgpuScheduler::vm_has_running_stream(const Vm& vm) const {
  for (const auto& [id, stream] : streams_) {
    if (stream->running && stream->vm.get() == &vm) return true;
  }
  return false;
}

void VgpuScheduler::item_callback(void* context, std::uint64_t cookie, ErrorCode status) {
  auto* stream = static_cast<Stream*>(context);
  stream->scheduler->on_item_done(stream, cookie, status);
}

void VgpuScheduler::on_item_done(Stream* stream, std::size_t index, ErrorCode status) {
  // The batch vectors are stable until its last op completes (below).
  const accel::Completion done = stream->batch_done[index];
  if (!stream->batch_status.empty() && stream->batch_status[index] != ErrorCode::kOk) {
    status = stream->batch_status[index];  // never ran: its buffers could not be placed
  }
  if (status != ErrorCode::kOk)
    stream->vm->counters().errors.fetch_add(1, std::memory_order_relaxed);
  if (done.fn != nullptr) done.fn(done.context, done.cookie, status);

  malv_gpu_sched_outcome outcome{};
  std::shared_ptr<Vm> vm;
  std::vector<Item> aborted;
  std::vector<std::uint64_t> pins;
  // Only the batch's last completion takes the lock (ops of one stream
  // complete in order, on the backend's threads).
  if (stream->remaining.fetch_sub(1, std::memory_order_acq_rel) != 1) return;
  {
    std::lock_guard lock(mutex_);
    const std::int64_t run_ns = mono_now_ns() - stream->dispatch_ns;
    if (stream->slot != Slot::kNone) {
      --(stream->slot == Slot::kDevice ? busy_slots_ : busy_latency_slots_);
      stream->vm->counters().busy_ns.fetch_add(static_cast<std::uint64_t>(run_ns),
                                               std::memory_order_relaxed);
      stream->busy_ns += run_ns;
      if (auto state = vm_states_.find(stream->vm->id().value()); state != vm_states_.end()) {
        aged_share(state->second, mono_now_ns());
        state->second.share_ns += static_cast<double>(run_ns);
      }
    }
    stream->running = false;
    // A VM whose batch just ended was being served until now.
    if (auto state = vm_states_.find(stream->vm->id().value()); state != vm_states_.end()) {
      state->second.waiting_since = mono_now_ns();
      // Nothing of the VM left on the device or queued: from now the device
      // waits for the guest.
      if (state->second.pending == 0 && !vm_has_running_stream(*stream->vm)) {
        state->second.idle_since = state->second.waiting_since;
      }
    }
    outcome.item = stream->batch_head;
    outcome.run_ns = run_ns;
    vm = stream->vm;
    pins.swap(stream->batch_pins);
    stream->batch_ops.clear();
    stream->batch_done.clear();
    stream->slot = Slot::kNone;
    if (stream->cancelled) aborted = take_cancelled(*stream);
  }
  // Outside the scheduler's lock: place() takes the memory manager's lock
  // first and then (for the queued future) this one.
  if (!pins.empty()) {
    vm->memory().unpin(pins);
    std::lock_guard lock(mutex_);
    ++unpins_;
    for (auto& [id, other] : streams_) other->memory_blocked = false;
  }
  if (!aborted.empty()) {
    abort_items(aborted);
    std::lock_guard lock(mutex_);
    stream->aborting = false;
  }
  idle_.notify_all();
  policies_.load()->feedback(*vm, outcome);
  pump();
}

}  // namespace malv::vgpu
