#include "ipc/spsc_ring.h"

#include <fmt/format.h>
#include <sched.h>

#include <new>

#include "base/clock.h"
#include "base/cpu_relax.h"
#include "ipc/futex.h"

namespace malv::ipc {

namespace {

bool is_power_of_two(std::uint32_t v) { return v != 0 && (v & (v - 1)) == 0; }

// Capacities come from our own validated ChannelLayout, never from the peer;
// a bad one is a bug in the caller.
void check_construction(const RingHeader* header, std::uint32_t capacity) {
  if (header == nullptr || !is_power_of_two(capacity)) std::abort();
}

// Deadline::after(nanoseconds::max()) would overflow the clock; treat
// anything beyond a year as "no limit".
Deadline deadline_after(std::chrono::nanoseconds timeout) {
  if (timeout > std::chrono::hours(24 * 365)) return Deadline::never();
  return Deadline::after(timeout);
}

}  // namespace

void initialize_ring_header(RingHeader* header, std::uint32_t start_index) {
  // Placement-new starts the atomics' lifetime in freshly mapped memory.
  auto* h = new (header) RingHeader{};
  h->head.store(start_index, std::memory_order_relaxed);
  h->tail.store(start_index, std::memory_order_relaxed);
  h->consumer_waiting.store(0, std::memory_order_relaxed);
  h->wake_key.store(0, std::memory_order_relaxed);
  h->wake_seq.store(0, std::memory_order_relaxed);
  // The peer maps the ring only after receiving the fd over a socket; the
  // sendmsg/recvmsg pair orders these stores before its first access.
}

void wake_ring_consumer(RingHeader* header) {
  header->wake_seq.fetch_add(1, std::memory_order_release);
  futex_wake(&header->wake_seq, 1);
}

// ---------------------------------------------------------------- producer

RingProducerIndex::RingProducerIndex(RingHeader* header, std::uint32_t capacity)
    : header_(header), capacity_(capacity) {
  check_construction(header, capacity);
  tail_ = header->tail.load(std::memory_order_acquire);
  std::uint32_t head = header->head.load(std::memory_order_acquire);
  // An inconsistent start is reported by the first free_slots().
  head_seen_ = (tail_ - head <= capacity_) ? head : tail_;
}

Result<std::uint32_t> RingProducerIndex::refresh_head() {
  // Acquire: the consumer's reads of the slots before `head` happen before
  // we overwrite them.
  const std::uint32_t head = header_->head.load(std::memory_order_acquire);
  const std::uint32_t in_flight = tail_ - head;
  if (in_flight > capacity_) {
    return Error(ErrorCode::kDataLoss,
                 fmt::format("ring consumer head {} claims {} records in flight, capacity {} "
                             "(published {})",
                             head, in_flight, capacity_, tail_));
  }
  // The head may only move forward, from where we last saw it up to our tail.
  if (head - head_seen_ > tail_ - head_seen_) {
    return Error(ErrorCode::kDataLoss,
                 fmt::format("ring consumer head moved backwards from {} to {}", head_seen_, head));
  }
  head_seen_ = head;
  return capacity_ - in_flight;
}

Result<std::uint32_t> RingProducerIndex::free_slots() { return refresh_head(); }

void RingProducerIndex::publish(std::uint32_t n) {
  if (n > capacity_ - (tail_ - head_seen_)) std::abort();  // caller bug: not validated room
  tail_ += n;
  // At least release: the slot writes become visible before the new tail.
  // seq_cst because the doorbell handshake also needs this store ordered
  // before notify_consumer()'s load of consumer_waiting (see
  // RingConsumerIndex::wait()). We use seq_cst operations rather than
  // fences because ThreadSanitizer (MALV_SANITIZE=thread) does not model
  // fences; on x86 this store is one xchg, on ARM an stlr.
  header_->tail.store(tail_, std::memory_order_seq_cst);
}

void RingProducerIndex::notify_consumer() {
  // seq_cst, paired with the seq_cst tail store in publish() and the
  // consumer's seq_cst store/load in wait(): either we see
  // consumer_waiting == 1, or the consumer's re-check sees our new tail.
  if (header_->consumer_waiting.load(std::memory_order_seq_cst) == 0) return;
  // A hostile consumer can leave consumer_waiting set; that only costs us a
  // futex syscall per notify, never correctness.
  wake_ring_consumer(header_);
}

bool RingProducerIndex::notify_remote_consumer() {
  // The same handshake as notify_consumer(); the bump makes a consumer that
  // is between its re-check and its futex wait return at once.
  if (header_->consumer_waiting.load(std::memory_order_seq_cst) == 0) return false;
  header_->wake_seq.fetch_add(1, std::memory_order_release);
  return true;
}

void RingProducerIndex::notify_consumer_of(std::uint64_t key) {
  if (header_->consumer_waiting.load(std::memory_order_seq_cst) == 0) return;
  // Seeing consumer_waiting == 1 we also see the key stored before it. A
  // hostile consumer can only delay its own wake-ups; a half-full ring wakes
  // it regardless, so an honest one drains before the ring can fill (the
  // host reserves completion room before it takes a command, so a full ring
  // would stall the guest's own submissions). tail_ - head_seen_ is at
  // least the true fill: head_seen_ only lags.
  const std::uint64_t wanted = header_->wake_key.load(std::memory_order_seq_cst);
  if (wanted != 0 && wanted != key && 2 * (tail_ - head_seen_) < capacity_) return;
  wake_ring_consumer(header_);
}

std::uint32_t RingProducerIndex::consumer_position() {
  (void)refresh_head();  // on corruption keep the last valid position
  return head_seen_;
}

// ---------------------------------------------------------------- consumer

RingConsumerIndex::RingConsumerIndex(RingHeader* header, std::uint32_t capacity)
    : header_(header), capacity_(capacity) {
  check_construction(header, capacity);
  head_ = header->head.load(std::memory_order_acquire);
  tail_seen_ = head_;  // the peer's tail is validated by the first available()
}

Result<std::uint32_t> RingConsumerIndex::available() {
  // At least acquire: the producer's slot writes before `tail` are visible
  // to us. seq_cst for the doorbell handshake in wait(); a seq_cst load
  // costs the same as an acquire load on x86 and ARM.
  const std::uint32_t tail = header_->tail.load(std::memory_order_seq_cst);
  const std::uint32_t in_flight = tail - head_;
  if (in_flight > capacity_) {
    return Error(ErrorCode::kDataLoss,
                 fmt::format("ring producer tail {} claims {} records in flight, capacity {} "
                             "(consumed {})",
                             tail, in_flight, capacity_, head_));
  }
  if (in_flight < tail_seen_ - head_) {
    return Error(ErrorCode::kDataLoss,
                 fmt::format("ring producer tail moved backwards from {} to {}", tail_seen_, tail));
  }
  tail_seen_ = tail;
  return in_flight;
}

std::uint32_t RingConsumerIndex::slot(std::uint32_t i) const {
  if (i >= tail_seen_ - head_) std::abort();  // caller bug: read past available()
  return (head_ + i) & (capacity_ - 1);
}

void RingConsumerIndex::pop(std::uint32_t n) {
  if (n > tail_seen_ - head_) std::abort();  // caller bug: pop past available()
  head_ += n;
  // Release: our reads of the popped slots happen before the producer,
  // which load-acquires head, reuses them.
  header_->head.store(head_, std::memory_order_release);
}

bool RingConsumerIndex::ready() {
  auto n = available();
  return !n.ok() || *n > 0;
}

bool RingConsumerIndex::wait(std::chrono::nanoseconds spin, std::chrono::nanoseconds timeout,
                             std::uint64_t wake_key, bool yielding) {
  if (ready()) return true;
  // Both limits count from the start of the call: `timeout` bounds the
  // whole wait, spinning included.
  const Deadline deadline = deadline_after(timeout);
  const Deadline spin_end = deadline_after(std::min(spin, timeout));
  while (!spin_end.expired()) {
    if (yielding) {
      sched_yield();
    } else {
      for (int i = 0; i < 32; ++i) cpu_relax();
    }
    if (ready()) return true;
  }

  // Sleeping without missing a wake-up. The race is: we see an empty ring,
  // the producer publishes and checks consumer_waiting (still 0, so no
  // wake), then we go to sleep on a ring that is no longer empty. It is
  // closed in two steps:
  //  1. We store consumer_waiting = 1, then re-check the tail. The
  //     producer stores the tail, then loads consumer_waiting. All four are
  //     seq_cst, so they fall in one total order and at least one side sees
  //     the other's store (the Dekker pattern): either our re-check sees the
  //     record, or the producer sees consumer_waiting == 1 and bumps
  //     wake_seq and wakes us.
  //  2. We read wake_seq *before* the re-check and pass that value to
  //     FUTEX_WAIT, which sleeps only if wake_seq still has it. A bump that
  //     lands between our re-check and the syscall makes FUTEX_WAIT return
  //     at once (EAGAIN) instead of sleeping through it; a bump after we are
  //     asleep comes with FUTEX_WAKE.
  // The key first: a producer that sees consumer_waiting == 1 sees it too.
  header_->wake_key.store(wake_key, std::memory_order_seq_cst);
  header_->consumer_waiting.store(1, std::memory_order_seq_cst);
  bool got = false;
  for (;;) {
    const std::uint32_t seq = header_->wake_seq.load(std::memory_order_acquire);
    if (ready()) {
      got = true;
      break;
    }
    const auto left = deadline.remaining();
    if (left <= std::chrono::nanoseconds::zero()) break;
    futex_wait(&header_->wake_seq, seq, left);
    // Return once the doorbell has been rung since we read `seq`, even with
    // no records behind it, so that a stop request (wake_ring_consumer) ends
    // the wait at once. A signal, or a late FUTEX_WAKE from a ring we had
    // already seen (wake_seq still == seq), just sleeps again.
    if (header_->wake_seq.load(std::memory_order_acquire) != seq) {
      got = ready();
      break;
    }
  }
  header_->consumer_waiting.store(0, std::memory_order_relaxed);
  return got;
}

}  // namespace malv::ipc
