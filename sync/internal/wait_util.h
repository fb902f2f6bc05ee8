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

// wait_until_notified() returns true once ready() (evaluated under `lock`)
// holds or a notification arrives, false at the deadline (monotonic nanos,
// <0: none). Suspends.
template <class Ready>
bool wait_until_notified(SpinLock& lock, WaitList& list, int64_t deadline_nanos, Ready ready) {
  Waiter w;
  lock.lock();
  if (ready()) {
    lock.unlock();
    return true;
  }
  if (deadline_nanos >= 0 && deadline_nanos <= monotonic_now()) {
    lock.unlock();
    return false;
  }
  list.push_back(&w);
  lock.unlock();
  return settle_wait(w, list, lock, w.wait(deadline_nanos));
}

}  // namespace weft::internal
