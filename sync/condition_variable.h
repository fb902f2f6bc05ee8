// sync/condition_variable.h
//
// weft::ConditionVariable: waits for a condition guarded by a weft::Mutex.
// Waiting parks the fiber (or blocks a plain thread). Spurious wakeups do
// not happen, but a woken waiter must still re-check its condition, since
// another fiber may get the mutex first; the predicate overloads do that.
#pragma once

#include <mutex>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "runtime/internal/park.h"
#include "runtime/internal/spin_lock.h"
#include "sync/mutex.h"

namespace weft {

class ConditionVariable {
 public:
  ConditionVariable() = default;
  ConditionVariable(const ConditionVariable&) = delete;
  ConditionVariable& operator=(const ConditionVariable&) = delete;
  // Destroying a condition variable that fibers or threads wait on aborts.
  ~ConditionVariable();

  // ConditionVariable::wait()
  //
  // Atomically releases `lock` and waits for a notification, then
  // re-acquires `lock` (always, whatever the status). Suspends. `lock`
  // must hold the mutex. OK when notified; kCancelled if the waiting fiber
  // is cancelled first. The predicate form waits until pred() holds: OK,
  // or kCancelled with pred() still false.
  absl::Status wait(std::unique_lock<Mutex>& lock);
  template <class Pred>
  absl::Status wait(std::unique_lock<Mutex>& lock, Pred pred) {
    while (!pred()) {
      absl::Status s = wait(lock);
      if (!s.ok()) return pred() ? absl::OkStatus() : s;
    }
    return absl::OkStatus();
  }

  // ConditionVariable::wait_for() / wait_until()
  //
  // As wait(), but also gives up at the deadline with kDeadlineExceeded;
  // the predicate forms return OK as soon as pred() holds, even at the
  // deadline.
  absl::Status wait_until(std::unique_lock<Mutex>& lock, absl::Time deadline);
  absl::Status wait_for(std::unique_lock<Mutex>& lock, absl::Duration d) {
    return wait_until(lock, absl::Now() + d);
  }
  template <class Pred>
  absl::Status wait_until(std::unique_lock<Mutex>& lock, absl::Time deadline, Pred pred) {
    while (!pred()) {
      absl::Status s = wait_until(lock, deadline);
      if (!s.ok()) return pred() ? absl::OkStatus() : s;
    }
    return absl::OkStatus();
  }
  template <class Pred>
  absl::Status wait_for(std::unique_lock<Mutex>& lock, absl::Duration d, Pred pred) {
    return wait_until(lock, absl::Now() + d, std::move(pred));
  }

  // notify_one() wakes the longest waiter; notify_all() wakes every waiter.
  // Any thread or fiber; holding the mutex is not required.
  void notify_one();
  void notify_all();

 private:
  absl::Status wait_impl(std::unique_lock<Mutex>& lock, int64_t deadline_nanos);
  internal::SpinLock lock_;
  internal::WaitList waiters_ ABSL_GUARDED_BY(lock_);
};

}  // namespace weft
