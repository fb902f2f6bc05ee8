// runtime/internal/mpsc_inbox.h
//
// MpscInbox: an intrusive, lock-free multi-producer single-consumer queue
// (Vyukov's design). Each worker owns one for the messages other threads
// send it. T must have a member `std::atomic<T*> inbox_next`.
//
//   push()   any thread, wait-free.
//   pop()    the owning worker only. May return nullptr while a push is
//            half-done; the pushing thread then signals the worker anyway,
//            so the message is seen on the next drain.
#pragma once

#include <atomic>

namespace weft::internal {

template <class T>
class MpscInbox {
 public:
  MpscInbox() : head_(&stub_), tail_(&stub_) { stub_.inbox_next.store(nullptr, std::memory_order_relaxed); }
  MpscInbox(const MpscInbox&) = delete;
  MpscInbox& operator=(const MpscInbox&) = delete;

  void push(T* x) {
    pending_.fetch_add(1, std::memory_order_seq_cst);
    push_node(x);
  }

  T* pop() {
    T* x = pop_node();
    if (x != nullptr) pending_.fetch_sub(1, std::memory_order_relaxed);
    return x;
  }

  // empty() is true when every pushed message has been popped. Any thread;
  // a seq_cst snapshot, so an idle worker that announced it sleeps and then
  // sees empty() cannot miss a push that will not signal it.
  bool empty() const { return pending_.load(std::memory_order_seq_cst) == 0; }

 private:
  void push_node(T* x) {
    x->inbox_next.store(nullptr, std::memory_order_relaxed);
    T* prev = head_.exchange(x, std::memory_order_acq_rel);
    prev->inbox_next.store(x, std::memory_order_release);
  }

  T* pop_node() {
    T* tail = tail_;
    T* next = tail->inbox_next.load(std::memory_order_acquire);
    if (tail == &stub_) {
      if (next == nullptr) return nullptr;
      tail_ = next;
      tail = next;
      next = next->inbox_next.load(std::memory_order_acquire);
    }
    if (next != nullptr) {
      tail_ = next;
      return tail;
    }
    if (tail != head_.load(std::memory_order_acquire)) return nullptr;  // push in progress
    push_node(&stub_);
    next = tail->inbox_next.load(std::memory_order_acquire);
    if (next != nullptr) {
      tail_ = next;
      return tail;
    }
    return nullptr;
  }

  std::atomic<T*> head_;
  T* tail_;  // consumer only
  T stub_;
  std::atomic<long> pending_{0};
};

}  // namespace weft::internal
