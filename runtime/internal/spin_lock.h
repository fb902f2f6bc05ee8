// runtime/internal/spin_lock.h
//
// SpinLock: a test-and-test-and-set lock for short critical sections that
// never suspend (wait lists, timer wheels). Yields the thread after a few
// hundred spins so a preempted holder can finish. NOT for user code: fibers
// that need to wait for a long time use weft::Mutex.
#pragma once

#include <sched.h>

#include <atomic>

#include "absl/base/thread_annotations.h"

namespace weft::internal {

class ABSL_LOCKABLE SpinLock {
 public:
  void lock() ABSL_EXCLUSIVE_LOCK_FUNCTION() {
    for (;;) {
      if (!locked_.exchange(true, std::memory_order_acquire)) return;
      int spins = 0;
      while (locked_.load(std::memory_order_relaxed)) {
        if (++spins < 256) {
          __builtin_ia32_pause();
        } else {
          sched_yield();
          spins = 0;
        }
      }
    }
  }
  bool try_lock() ABSL_EXCLUSIVE_TRYLOCK_FUNCTION(true) {
    return !locked_.load(std::memory_order_relaxed) &&
           !locked_.exchange(true, std::memory_order_acquire);
  }
  void unlock() ABSL_UNLOCK_FUNCTION() { locked_.store(false, std::memory_order_release); }

 private:
  std::atomic<bool> locked_{false};
};

}  // namespace weft::internal
