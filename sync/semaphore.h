// sync/semaphore.h
//
// weft::Semaphore: a counting semaphore. acquire() parks the fiber (or
// blocks a plain thread) until a permit is free; release() hands permits to
// waiters in FIFO order, so a waiter is never overtaken by later arrivals.
#pragma once

#include <cstdint>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "runtime/internal/park.h"
#include "runtime/internal/spin_lock.h"

namespace weft {

class Semaphore {
 public:
  explicit Semaphore(int64_t initial = 0);
  Semaphore(const Semaphore&) = delete;
  Semaphore& operator=(const Semaphore&) = delete;
  ~Semaphore();

  // acquire() takes one permit. Suspends while none is free. OK, or
  // kCancelled if the waiting fiber is cancelled first (no permit taken;
  // a permit released to it at the same moment is kept: OK).
  absl::Status acquire();
  // try_acquire() takes a permit if one is free; never waits.
  bool try_acquire();
  // acquire_for()/acquire_until() also give up at the deadline with
  // kDeadlineExceeded.
  absl::Status acquire_until(absl::Time deadline);
  absl::Status acquire_for(absl::Duration d) { return acquire_until(absl::Now() + d); }
  // release() returns n permits (n >= 1).
  void release(int64_t n = 1);
  // available() is a snapshot of the free permits.
  int64_t available() const;

 private:
  absl::Status acquire_impl(int64_t deadline_nanos);
  mutable internal::SpinLock lock_;
  int64_t permits_ ABSL_GUARDED_BY(lock_);
  internal::WaitList waiters_ ABSL_GUARDED_BY(lock_);
};

}  // namespace weft
