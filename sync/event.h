// sync/event.h
//
// weft::Event: a manual-reset event. set() releases every current and
// future waiter until reset(). Memory ordering: everything done before
// set() is visible after a wait() that returns because of it.
//
// Statuses of the waits: OK (set), kDeadlineExceeded (wait_for/until timed
// out), kCancelled (the waiting fiber was cancelled first).
#pragma once

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "runtime/internal/park.h"
#include "runtime/internal/spin_lock.h"

namespace weft {

class Event {
 public:
  Event() = default;
  Event(const Event&) = delete;
  Event& operator=(const Event&) = delete;
  ~Event();

  void set();
  void reset();
  bool is_set() const;
  // wait() suspends until the event is set.
  absl::Status wait();
  // wait_for()/wait_until() give up at the deadline.
  absl::Status wait_until(absl::Time deadline);
  absl::Status wait_for(absl::Duration d) { return wait_until(absl::Now() + d); }

  // select() (lifecycle/select.h): kDone if set and w won its select,
  // kLost if set and another case won, else queues w (kQueued).
  // select_disarm() takes w off.
  internal::SelectArm select_arm(internal::Waiter& w);
  void select_disarm(internal::Waiter& w);

 private:
  absl::Status wait_impl(int64_t deadline_nanos);
  mutable internal::SpinLock lock_;
  bool set_ ABSL_GUARDED_BY(lock_) = false;
  internal::WaitList waiters_ ABSL_GUARDED_BY(lock_);
};

}  // namespace weft
