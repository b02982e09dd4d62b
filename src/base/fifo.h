// Fifo<T>: a first-in first-out queue in one contiguous vector.
//
// For the per-command queues on the hot path (the vGPU scheduler's streams,
// a session's ops in flight). std::deque allocates a node per 512 bytes in
// libstdc++, which for the scheduler's ~400-byte items is one malloc/free
// per command; Fifo pops by advancing an index and compacts only once the
// dead prefix is at least half the storage, so a queue that stays busy
// allocates nothing after it has grown to its working size.
//
//   Fifo<Item> q;
//   q.push_back(std::move(item));
//   Item& head = q.front();
//   q.pop_front();
#pragma once

#include <cstddef>
#include <utility>
#include <vector>

namespace malv {

template <typename T>
class Fifo {
 public:
  bool empty() const { return head_ == items_.size(); }
  std::size_t size() const { return items_.size() - head_; }

  void push_back(T&& value) { items_.push_back(std::move(value)); }
  void push_back(const T& value) { items_.push_back(value); }
  // Puts an element back at the front (the vGPU scheduler returns ops a
  // batch could not take). Cheap when the front was popped before.
  void push_front(T&& value) {
    if (head_ > 0) {
      items_[--head_] = std::move(value);
    } else {
      items_.insert(items_.begin(), std::move(value));
    }
  }

  T& front() { return items_[head_]; }
  // The i-th element from the front (0: front()).
  const T& operator[](std::size_t i) const { return items_[head_ + i]; }
  const T& front() const { return items_[head_]; }

  void pop_front() {
    items_[head_] = T();  // release what the element holds now, not at compaction
    if (++head_ == items_.size()) {
      items_.clear();
      head_ = 0;
    } else if (head_ >= 64 && head_ * 2 >= items_.size()) {
      items_.erase(items_.begin(), items_.begin() + static_cast<std::ptrdiff_t>(head_));
      head_ = 0;
    }
  }

  void clear() {
    items_.clear();
    head_ = 0;
  }

 private:
  std::vector<T> items_;
  std::size_t head_ = 0;
};

}  // namespace malv
