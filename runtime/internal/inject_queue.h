// runtime/internal/inject_queue.h
//
// InjectQueue: the runtime's global FIFO of runnable items, fed by threads
// outside the runtime and by workers whose local queue overflowed, drained
// by every worker (every kGlobalQueueInterval ticks, and when idle).
// Intrusive through T::next. Any thread may call any method; len() is a
// lock-free snapshot so idle checks do not take the lock.
#pragma once

#include <atomic>
#include <cstddef>
#include <mutex>

#include "absl/base/thread_annotations.h"

namespace weft::internal {

template <class T>
class InjectQueue {
 public:
  void push(T* x) { push_batch(x, x, 1); }

  // push_batch() appends the chain first..last (linked through next).
  void push_batch(T* first, T* last, size_t n) {
    last->next = nullptr;
    std::lock_guard<std::mutex> g(mu_);
    if (tail_ != nullptr) {
      tail_->next = first;
    } else {
      head_ = first;
    }
    tail_ = last;
    len_.store(len_.load(std::memory_order_relaxed) + n, std::memory_order_seq_cst);
  }

  // pop_batch() removes up to max items and returns them as a chain
  // (linked through next, null-terminated); *n receives the count.
  T* pop_batch(size_t max, size_t* n) {
    *n = 0;
    if (len_.load(std::memory_order_seq_cst) == 0) return nullptr;
    std::lock_guard<std::mutex> g(mu_);
    T* first = head_;
    T* last = nullptr;
    size_t k = 0;
    while (head_ != nullptr && k < max) {
      last = head_;
      head_ = head_->next;
      ++k;
    }
    if (last != nullptr) last->next = nullptr;
    if (head_ == nullptr) tail_ = nullptr;
    len_.store(len_.load(std::memory_order_relaxed) - k, std::memory_order_seq_cst);
    *n = k;
    return k == 0 ? nullptr : first;
  }

  size_t len() const { return len_.load(std::memory_order_seq_cst); }

 private:
  std::mutex mu_;
  T* head_ ABSL_GUARDED_BY(mu_) = nullptr;
  T* tail_ ABSL_GUARDED_BY(mu_) = nullptr;
  std::atomic<size_t> len_{0};
};

}  // namespace weft::internal
