// runtime/internal/run_queue.h
//
// RunQueue: a worker's bounded local queue of runnable items, the ring used
// by Go's scheduler and tokio. The owning worker pushes at the tail and pops
// at the head; other workers steal half of it at once from the head.
//
//   push(), pop(), push_overflow()  owner thread only.
//   steal_into()                    any thread; the destination must be the
//                                   caller's own (empty) queue.
//   size()                          any thread; a snapshot.
//
// T is intrusive-free: the queue stores T*. Capacity is a template
// parameter so tests can reach the edge cases with tiny queues.
#pragma once

#include <atomic>
#include <cstdint>

namespace weft::internal {

template <class T, uint32_t kCapacity = 256>
class RunQueue {
  static_assert((kCapacity & (kCapacity - 1)) == 0, "capacity must be a power of two");
  static_assert(kCapacity >= 2, "capacity must be at least 2");

 public:
  static constexpr uint32_t capacity() { return kCapacity; }

  // push() appends x. Returns false, leaving the queue unchanged, if full.
  // Owner only. May run in parallel with steal_into().
  bool push(T* x) {
    uint32_t h = head_.load(std::memory_order_acquire);
    uint32_t t = tail_.load(std::memory_order_relaxed);
    if (t - h >= kCapacity) return false;
    buf_[t & kMask].store(x, std::memory_order_relaxed);
    tail_.store(t + 1, std::memory_order_release);
    return true;
  }

  // take_half() removes the older half of a full queue and passes each item
  // to fn(T*) in order (the caller moves them to the global queue). Returns
  // the number moved, 0 if the queue is no longer full (thieves made room).
  // Owner only.
  template <class Fn>
  uint32_t take_half(Fn&& fn) {
    for (;;) {
      uint32_t h = head_.load(std::memory_order_acquire);
      uint32_t t = tail_.load(std::memory_order_relaxed);
      uint32_t n = (t - h) / 2;
      if (t - h < kCapacity) return 0;
      T* batch[kCapacity / 2];
      for (uint32_t i = 0; i < n; ++i) batch[i] = buf_[(h + i) & kMask].load(std::memory_order_relaxed);
      if (head_.compare_exchange_strong(h, h + n, std::memory_order_acq_rel)) {
        for (uint32_t i = 0; i < n; ++i) fn(batch[i]);
        return n;
      }
    }
  }

  // pop() removes the oldest item, or returns nullptr. Owner only.
  T* pop() {
    uint32_t h = head_.load(std::memory_order_acquire);
    for (;;) {
      uint32_t t = tail_.load(std::memory_order_relaxed);
      if (t == h) return nullptr;
      T* x = buf_[h & kMask].load(std::memory_order_relaxed);
      if (head_.compare_exchange_weak(h, h + 1, std::memory_order_acq_rel, std::memory_order_acquire)) {
        return x;
      }
    }
  }

  // steal_into() moves half (rounded up) of this queue into `dst`, the
  // calling worker's own queue, which must be empty. Returns one stolen
  // item for the caller to run and leaves the rest in dst, or returns
  // nullptr if nothing was stolen. *stolen receives the number taken.
  T* steal_into(RunQueue& dst, uint32_t* stolen) {
    uint32_t dt = dst.tail_.load(std::memory_order_relaxed);
    uint32_t n;
    for (;;) {
      uint32_t h = head_.load(std::memory_order_acquire);
      uint32_t t = tail_.load(std::memory_order_acquire);
      n = t - h;
      n = n - n / 2;
      if (n == 0) {
        *stolen = 0;
        return nullptr;
      }
      if (n > kCapacity / 2) continue;  // torn read of head and tail; retry
      for (uint32_t i = 0; i < n; ++i) {
        T* x = buf_[(h + i) & kMask].load(std::memory_order_relaxed);
        dst.buf_[(dt + i) & kMask].store(x, std::memory_order_relaxed);
      }
      if (head_.compare_exchange_strong(h, h + n, std::memory_order_acq_rel)) break;
    }
    *stolen = n;
    T* x = dst.buf_[(dt + n - 1) & kMask].load(std::memory_order_relaxed);
    if (n > 1) dst.tail_.store(dt + n - 1, std::memory_order_release);
    return x;
  }

  // peek(k) is the item the k+1-th pop() from now would return, or
  // nullptr; thieves may take it meanwhile, so it is a hint (for a
  // prefetch). Owner only.
  T* peek(uint32_t k) const {
    uint32_t h = head_.load(std::memory_order_relaxed);
    uint32_t t = tail_.load(std::memory_order_relaxed);
    return t - h > k ? buf_[(h + k) & kMask].load(std::memory_order_relaxed) : nullptr;
  }

  uint32_t size() const {
    uint32_t h = head_.load(std::memory_order_acquire);
    uint32_t t = tail_.load(std::memory_order_acquire);
    uint32_t n = t - h;
    return n > kCapacity ? 0 : n;  // torn read
  }
  bool empty() const { return size() == 0; }

 private:
  static constexpr uint32_t kMask = kCapacity - 1;
  alignas(64) std::atomic<uint32_t> head_{0};  // CAS by owner and thieves
  alignas(64) std::atomic<uint32_t> tail_{0};  // stored by owner only
  alignas(64) std::atomic<T*> buf_[kCapacity] = {};
};

}  // namespace weft::internal
