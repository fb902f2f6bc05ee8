// sync/mutex.h
//
// weft::Mutex: a mutual-exclusion lock whose waiters park their fiber, not
// the worker thread. Usable from fibers and from plain threads (a thread
// waiter blocks on a futex). Ownership is handed to the longest waiter on
// unlock (FIFO), so no waiter starves.
//
// Memory ordering: everything a holder did before unlock() is visible to
// the next holder after its lock() returns.
#pragma once

#include <cstdint>

#include "absl/base/thread_annotations.h"
#include "runtime/internal/park.h"
#include "runtime/internal/spin_lock.h"

namespace weft {

class ABSL_LOCKABLE Mutex {
 public:
  Mutex() = default;
  Mutex(const Mutex&) = delete;
  Mutex& operator=(const Mutex&) = delete;
  ~Mutex();

  // Mutex::lock()
  //
  // Acquires the mutex. Suspends the fiber (or blocks the thread) while
  // another holds it. Not recursive: locking a mutex you hold aborts.
  void lock() ABSL_EXCLUSIVE_LOCK_FUNCTION();

  // Mutex::try_lock()
  //
  // Acquires the mutex if it is free; never waits.
  bool try_lock() ABSL_EXCLUSIVE_TRYLOCK_FUNCTION(true);

  // Mutex::unlock()
  //
  // Releases the mutex, handing it to the first waiter. Must be called by
  // the fiber (or thread) that holds it; anything else aborts.
  void unlock() ABSL_UNLOCK_FUNCTION();

 private:
  internal::SpinLock lock_;
  uint64_t owner_ ABSL_GUARDED_BY(lock_) = 0;  // 0: free
  internal::WaitList waiters_ ABSL_GUARDED_BY(lock_);
};

namespace internal {
// caller_id() names the calling fiber, or the calling thread off a fiber,
// for ownership checks. Never 0.
uint64_t caller_id();
}  // namespace internal

}  // namespace weft
