// runtime/internal/inject_queue.h
//
// InjectQueue: the runtime's global FIFO of runnable items, fed by threads
// outside the runtime and by workers whose local queue overflowed, drained
// by every worker (every kGlobalQueueInterval ticks, and when idle). Any
// thread may call any method; len() is a lock-free snapshot so idle checks
// do not take the lock.
//
// The items are kept as pointers in arrays of kNodeItems, not linked through
// the items: pushing and popping copies pointers and never touches an item.
// With a linked list, taking a batch walked it under the lock, one cache
// miss per item (the items were written by another core, often long ago),
// while every other worker and the overflowing spawner waited for the lock
// (docs/benchmarks.md, "spawn").
#pragma once

#include <algorithm>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <mutex>

#include "absl/base/thread_annotations.h"

namespace weft::internal {

template <class T>
class InjectQueue {
 public:
  static constexpr size_t kNodeItems = 126;  // a node is 1 KiB

  InjectQueue() = default;
  ~InjectQueue() {
    free_list(head_);
    free_list(spare_);
  }
  InjectQueue(const InjectQueue&) = delete;
  InjectQueue& operator=(const InjectQueue&) = delete;

  void push(T* x) { push_batch(&x, 1); }

  // push_batch() appends items[0..n) in order.
  void push_batch(T* const* items, size_t n) {
    if (n == 0) return;
    std::lock_guard<std::mutex> g(mu_);
    size_t done = 0;
    while (done < n) {
      if (tail_ == nullptr || tail_->end == kNodeItems) append_node();
      size_t c = std::min(n - done, kNodeItems - tail_->end);
      std::copy(items + done, items + done + c, tail_->items + tail_->end);
      tail_->end += static_cast<uint32_t>(c);
      done += c;
    }
    len_.store(len_.load(std::memory_order_relaxed) + n, std::memory_order_seq_cst);
  }

  // pop_batch() removes up to max of the oldest items into out[] and
  // returns how many.
  size_t pop_batch(T** out, size_t max) {
    if (max == 0 || len_.load(std::memory_order_seq_cst) == 0) return 0;
    std::lock_guard<std::mutex> g(mu_);
    size_t k = 0;
    while (k < max && head_ != nullptr) {
      Node* h = head_;
      size_t c = std::min(max - k, static_cast<size_t>(h->end - h->begin));
      std::copy(h->items + h->begin, h->items + h->begin + c, out + k);
      h->begin += static_cast<uint32_t>(c);
      k += c;
      if (h->begin == h->end) {
        head_ = h->next;
        if (head_ == nullptr) tail_ = nullptr;
        recycle(h);
      }
    }
    len_.store(len_.load(std::memory_order_relaxed) - k, std::memory_order_seq_cst);
    return k;
  }

  size_t len() const { return len_.load(std::memory_order_seq_cst); }

 private:
  struct Node {
    Node* next = nullptr;
    uint32_t begin = 0, end = 0;
    T* items[kNodeItems];
  };
  static constexpr int kMaxSpare = 16;

  void append_node() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    Node* n = spare_;
    if (n != nullptr) {
      spare_ = n->next;
      --spares_;
      n->next = nullptr;
      n->begin = n->end = 0;
    } else {
      n = new Node;
    }
    if (tail_ != nullptr) {
      tail_->next = n;
    } else {
      head_ = n;
    }
    tail_ = n;
  }
  void recycle(Node* n) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (spares_ == kMaxSpare) {
      delete n;
      return;
    }
    n->next = spare_;
    spare_ = n;
    ++spares_;
  }
  static void free_list(Node* n) {
    while (n != nullptr) {
      Node* next = n->next;
      delete n;
      n = next;
    }
  }

  std::mutex mu_;
  Node* head_ ABSL_GUARDED_BY(mu_) = nullptr;
  Node* tail_ ABSL_GUARDED_BY(mu_) = nullptr;
  Node* spare_ ABSL_GUARDED_BY(mu_) = nullptr;
  int spares_ ABSL_GUARDED_BY(mu_) = 0;
  std::atomic<size_t> len_{0};
};

}  // namespace weft::internal
