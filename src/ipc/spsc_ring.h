// Single-producer, single-consumer rings in shared memory: the submission
// ring (SQ) and completion ring (CQ) of a MaLV-OS channel.
//
// Who produces, who consumes
//   A channel has two rings in one memfd. The guest produces wire::Command
//   records into the submission ring and the host consumes them; the host
//   produces wire::Completion records into the completion ring and the guest
//   consumes them. Each ring has exactly one producer and one consumer, so no
//   ring operation takes a lock or a compare-and-swap.
//
// Indices and wrap-around
//   A ring of `capacity` slots (a power of two) has two free-running 32-bit
//   indices in its RingHeader: `tail`, the number of records ever published
//   (written only by the producer), and `head`, the number of records ever
//   consumed (written only by the consumer). Record number i lives in slot
//   i & (capacity - 1). Records in flight = tail - head, computed in unsigned
//   32-bit arithmetic, so the indices themselves may wrap past 2^32 freely.
//   The ring is empty when tail == head and full when tail - head == capacity.
//
// When the ring is full
//   The producer's try_push() returns false and writes nothing (a push is all
//   or nothing). The producer must wait and retry; nothing is overwritten.
//   The guest simply retries after the host has read on (consumer_position()
//   tells it how far). The host never blocks on the completion ring: before
//   it consumes a command from the submission ring it reserves a completion
//   slot for it (the dispatcher in microlake/ does this reservation), so
//   when the command finishes there is always room for its completion. A
//   guest that stops draining its completion ring therefore only stops its
//   own submissions from being consumed; it cannot stall a host thread.
//
// When the ring is empty
//   available() returns 0. The consumer spins briefly (a hot producer is
//   usually a few hundred nanoseconds away), then announces that it is about
//   to sleep (consumer_waiting = 1) and sleeps on the doorbell, a futex on
//   `wake_seq`. After publishing, the producer calls notify_consumer(), which
//   makes a futex syscall only if consumer_waiting is set; a busy consumer
//   costs the producer no syscall at all. See RingConsumer::wait() for why no
//   wake-up can be lost.
//
// Memory ordering
//   Producer: write the record slots, then store-release `tail`.
//   Consumer: load-acquire `tail`, then read the slots, then store-release
//   `head`. Producer: load-acquire `head` before reusing any slot, so the
//   consumer's reads of a slot happen before the producer overwrites it.
//   For the doorbell handshake the tail store and load and the
//   consumer_waiting store and load are seq_cst (Dekker style, see
//   RingConsumer::wait()); seq_cst operations rather than fences, because
//   ThreadSanitizer does not model fences.
//
// Trust
//   The two sides are different processes, and the host never trusts the
//   guest (nor the guest the host). Each side keeps its own index and the
//   capacity in private memory and only ever *reads* the peer's index from
//   the shared header; the shared copy of its own index is written, and read
//   only once, at construction, from a header the host has just
//   initialised (initialize_ring_header). A peer index that claims more
//   than `capacity` records in flight, or that moves backwards, is reported
//   as corruption (ErrorCode::kDataLoss) instead of being used, so a hostile
//   peer can make a ring fail but never make us read or write outside it. Record contents
//   are copied out of the ring before use (read() returns a copy) and must
//   still be validated by the caller (proto/ decodes and checks them).
//
// Example (one process; in MaLV-OS the two ends live in different ones):
//
//   RingHeader header;                     // normally inside the memfd
//   std::array<wire::Command, 64> slots;
//   RingProducer<wire::Command> sq(&header, slots.data(), 64);
//   RingConsumer<wire::Command> host(&header, slots.data(), 64);
//   MALV_ASSIGN_OR_RETURN(bool pushed, sq.try_push(std::span(&cmd, 1)));
//   if (pushed) sq.notify_consumer();
//   if (host.wait(std::chrono::microseconds(20), std::chrono::milliseconds(5))) {
//     MALV_ASSIGN_OR_RETURN(std::uint32_t n, host.available());
//     for (std::uint32_t i = 0; i < n; ++i) handle(host.read(i));
//     host.pop(n);
//   }
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <span>
#include <type_traits>

#include "malv/result.h"

namespace malv::ipc {

// Lives in shared memory. Each field on its own 64-byte cache line, so the
// producer's and consumer's writes do not bounce one line between cores.
struct RingHeader {
  alignas(64) std::atomic<std::uint32_t> head;  // consumer index (written by consumer)
  alignas(64) std::atomic<std::uint32_t> tail;  // producer index (written by producer)
  alignas(
      64) std::atomic<std::uint32_t> consumer_waiting;  // 1 while consumer sleeps or is about to
  // Written by the consumer with consumer_waiting (same line, same writer):
  // 0 = wake me for any record; otherwise only for a record whose key (the
  // producer says what that is) equals it, or when the ring is half full.
  std::atomic<std::uint64_t> wake_key;
  alignas(64) std::atomic<std::uint32_t> wake_seq;  // futex word, bumped by notify
};
static_assert(std::atomic<std::uint32_t>::is_always_lock_free &&
                  std::atomic<std::uint64_t>::is_always_lock_free,
              "ring indices must be lock-free to work across processes");
static_assert(std::is_standard_layout_v<RingHeader>);
static_assert(sizeof(RingHeader) == 256);

// Resets a header to an empty ring whose indices start at start_index (the
// host does this once, before the peer maps the ring; tests use a start
// index near UINT32_MAX to exercise the index wrap).
void initialize_ring_header(RingHeader* header, std::uint32_t start_index = 0);

// Rings the doorbell unconditionally: a consumer asleep in wait() returns
// (false if there are still no records). For a thread other than the
// producer that needs to end a wait, e.g. to stop a dispatcher.
void wake_ring_consumer(RingHeader* header);

// The index half of a producer, independent of the record type.
class RingProducerIndex {
 public:
  RingProducerIndex() = default;
  // Takes the starting indices from the header (set by initialize_ring_header).
  RingProducerIndex(RingHeader* header, std::uint32_t capacity);

  std::uint32_t capacity() const { return capacity_; }
  Result<std::uint32_t> free_slots();
  // Publishes n records already written at tail .. tail+n-1 (n <= free_slots).
  void publish(std::uint32_t n);
  void notify_consumer();
  void notify_consumer_of(std::uint64_t key);
  bool notify_remote_consumer();
  std::uint32_t published() const { return tail_; }
  std::uint32_t consumer_position();
  std::uint32_t slot(std::uint32_t i) const { return (tail_ + i) & (capacity_ - 1); }

 private:
  Result<std::uint32_t> refresh_head();

  RingHeader* header_ = nullptr;
  std::uint32_t capacity_ = 0;
  std::uint32_t tail_ = 0;       // private: the truth about what we published
  std::uint32_t head_seen_ = 0;  // last validated peer head
};

// The index half of a consumer, independent of the record type.
class RingConsumerIndex {
 public:
  RingConsumerIndex() = default;
  RingConsumerIndex(RingHeader* header, std::uint32_t capacity);

  std::uint32_t capacity() const { return capacity_; }
  Result<std::uint32_t> available();
  void pop(std::uint32_t n);
  bool wait(std::chrono::nanoseconds spin, std::chrono::nanoseconds timeout, std::uint64_t wake_key,
            bool yielding = false);
  std::uint32_t slot(std::uint32_t i) const;
  std::uint32_t consumed() const { return head_; }

 private:
  // True when records are available, or when the peer's tail is corrupt (so
  // that the caller goes on to available() and sees the error).
  bool ready();

  RingHeader* header_ = nullptr;
  std::uint32_t capacity_ = 0;
  std::uint32_t head_ = 0;       // private: the truth about what we consumed
  std::uint32_t tail_seen_ = 0;  // last validated peer tail
};

// The producing end of a ring. Default-constructed only to be assigned.
template <typename Record>
class RingProducer {
  static_assert(std::is_trivially_copyable_v<Record>, "ring records are copied as bytes");

 public:
  RingProducer() = default;
  // capacity: a power of two (a bug otherwise: aborts). Slots must hold
  // `capacity` records.
  RingProducer(RingHeader* header, Record* slots, std::uint32_t capacity)
      : index_(header, capacity), slots_(slots) {}

  std::uint32_t capacity() const { return index_.capacity(); }

  // Free slots, validated against the peer's head (kDataLoss if corrupt).
  Result<std::uint32_t> free_slots() { return index_.free_slots(); }

  // Pushes all records, or none: false when there is not enough room.
  // More records than the capacity can never fit: kInvalidArgument.
  Result<bool> try_push(std::span<const Record> records) {
    if (records.size() > capacity()) {
      return Error(ErrorCode::kInvalidArgument, "push larger than the ring's capacity");
    }
    MALV_ASSIGN_OR_RETURN(std::uint32_t free, index_.free_slots());
    const auto n = static_cast<std::uint32_t>(records.size());
    if (n > free) return false;
    for (std::uint32_t i = 0; i < n; ++i) slots_[index_.slot(i)] = records[i];
    index_.publish(n);
    return true;
  }

  // Rings the doorbell, but only if the consumer is (about to be) asleep;
  // otherwise this is one fence and one load, no syscall.
  void notify_consumer() { index_.notify_consumer(); }
  // As notify_consumer(), for records carrying `key`: a consumer asleep for
  // a different key (RingConsumer::wait's wake_key) is left asleep, unless
  // the ring is at least half full.
  void notify_consumer_of(std::uint64_t key) { index_.notify_consumer_of(key); }
  // For a consumer under another kernel (a VM's guest producing for its
  // host), which no futex wake reaches: when the consumer is (about to be)
  // asleep, bumps the doorbell word and returns true, and the caller then
  // signals the consumer its own way (an ivshmem doorbell, which the host
  // turns into a futex wake). No system call here.
  bool notify_remote_consumer() { return index_.notify_remote_consumer(); }

  // Our private tail: records ever published.
  std::uint32_t published() const { return index_.published(); }

  // The peer's head as last read and validated: how far the consumer has
  // read. On a corrupt head this stays at the last valid value.
  std::uint32_t consumer_position() { return index_.consumer_position(); }

 private:
  RingProducerIndex index_;
  Record* slots_ = nullptr;
};

// The consuming end of a ring. Default-constructed only to be assigned.
template <typename Record>
class RingConsumer {
  static_assert(std::is_trivially_copyable_v<Record>, "ring records are copied as bytes");

 public:
  RingConsumer() = default;
  RingConsumer(RingHeader* header, const Record* slots, std::uint32_t capacity)
      : index_(header, capacity), slots_(slots) {}

  std::uint32_t capacity() const { return index_.capacity(); }

  // Records ready to read, validated against the peer's tail (kDataLoss if
  // the tail claims more than capacity in flight or moved backwards).
  Result<std::uint32_t> available() { return index_.available(); }

  // A copy of record i (0 = oldest unconsumed); i < the last available().
  // The copy is what the caller validates: the peer cannot change it later.
  Record read(std::uint32_t i) const { return slots_[index_.slot(i)]; }

  // Consumes the n oldest records (n <= the last available()), handing
  // their slots back to the producer.
  void pop(std::uint32_t n) { index_.pop(n); }

  // Adaptive wait: spin up to `spin`, then sleep on the doorbell until it
  // is rung (notify_consumer() or wake_ring_consumer()) or `timeout` passes;
  // `timeout` counts from the call, spinning included. True when records
  // are available (or the peer's index is corrupt, which the next
  // available() reports); false on timeout or on a doorbell with no records
  // behind it, so callers loop and check their own stop conditions.
  // `wake_key` (0: any record) asks a producer that uses notify_consumer_of
  // to wake this wait only for the record the caller is waiting for; other
  // records still end the spin and are there when it wakes.
  // A yielding spin offers the core to any other thread ready to run on it
  // between polls (a worker that shares the core with this one).
  bool wait(std::chrono::nanoseconds spin, std::chrono::nanoseconds timeout,
            std::uint64_t wake_key = 0, bool yielding = false) {
    return index_.wait(spin, timeout, wake_key, yielding);
  }

  // Our private head: records ever consumed.
  std::uint32_t consumed() const { return index_.consumed(); }

 private:
  RingConsumerIndex index_;
  const Record* slots_ = nullptr;
};

}  // namespace malv::ipc
