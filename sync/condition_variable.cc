#include "sync/condition_variable.h"

#include <vector>

#include "runtime/platform/check.h"

namespace weft {

ConditionVariable::~ConditionVariable() {
  WEFT_CHECK(waiters_.empty(), "ConditionVariable destroyed while fibers wait on it");
}

absl::Status ConditionVariable::wait(std::unique_lock<Mutex>& lock) { return wait_impl(lock, -1); }

absl::Status ConditionVariable::wait_until(std::unique_lock<Mutex>& lock, absl::Time deadline) {
  return wait_impl(lock, internal::to_monotonic(deadline));
}

absl::Status ConditionVariable::wait_impl(std::unique_lock<Mutex>& lock, int64_t deadline_nanos) {
  WEFT_CHECK(lock.owns_lock(), "ConditionVariable::wait() with a lock that does not hold its mutex");
  internal::Waiter w;
  lock_.lock();
  waiters_.push_back(&w);
  lock_.unlock();
  lock.unlock();  // never suspends
  internal::WakeReason r = w.wait(deadline_nanos);
  bool notified = w.notified();
  if (notified) {
    w.finish_notified(lock_);
  } else {
    {
      std::lock_guard<internal::SpinLock> g(lock_);
      notified = w.notified();
      if (!notified) waiters_.remove(&w);
    }
    if (notified) w.await_signal();
  }
  lock.lock();
  if (r == internal::WakeReason::kShutdown && !notified) {
    internal::unwind_if_cancelled(internal::current_fiber());
  }
  if (notified) return absl::OkStatus();
  return internal::wake_status(r == internal::WakeReason::kNotified ? internal::WakeReason::kTimeout : r,
                               "ConditionVariable::wait");
}

void ConditionVariable::notify_one() {
  internal::WakeSet wake;
  std::lock_guard<internal::SpinLock> g(lock_);
  wake.add(waiters_.pop_front());
}

void ConditionVariable::notify_all() {
  internal::WakeSet wake;
  std::lock_guard<internal::SpinLock> g(lock_);
  wake.add_all(waiters_);
}

}  // namespace weft
