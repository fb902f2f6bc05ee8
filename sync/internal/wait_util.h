// sync/internal/wait_util.h
//
// The wait loop shared by the primitives whose waiters are all released at
// once (WaitGroup, Event; the waker uses WakeSet::add_all): wait until
// `ready()` holds, a notification, or the deadline. NOT for users.
#pragma once

#include <mutex>
#include <vector>

#include "runtime/internal/park.h"
#include "runtime/internal/spin_lock.h"

namespace weft::internal {

// wait_until_notified() returns OK once ready() (evaluated under `lock`)
// holds or a notification arrives, kDeadlineExceeded at the deadline
// (monotonic nanos, <0: none), kCancelled if the fiber is cancelled first.
// `what` names the call in the status. Suspends.
template <class Ready>
absl::Status wait_until_notified(SpinLock& lock, WaitList& list, int64_t deadline_nanos, const char* what,
                                 Ready ready) {
  Waiter w;
  lock.lock();
  if (ready()) {
    lock.unlock();
    return absl::OkStatus();
  }
  if (deadline_nanos >= 0 && deadline_nanos <= monotonic_now()) {
    lock.unlock();
    return wake_status(WakeReason::kTimeout, what);
  }
  list.push_back(&w);
  lock.unlock();
  return wake_status(settle_wait(w, list, lock, w.wait(deadline_nanos)), what);
}

}  // namespace weft::internal
