#include "sync/event.h"

#include <mutex>
#include <vector>

#include "runtime/platform/check.h"
#include "sync/internal/wait_util.h"

namespace weft {

Event::~Event() { WEFT_CHECK(waiters_.empty(), "Event destroyed while fibers wait on it"); }

void Event::set() {
  internal::WakeSet wake;
  std::lock_guard<internal::SpinLock> g(lock_);
  set_ = true;
  wake.add_all(waiters_);
}

void Event::reset() {
  std::lock_guard<internal::SpinLock> g(lock_);
  set_ = false;
}

bool Event::is_set() const {
  std::lock_guard<internal::SpinLock> g(lock_);
  return set_;
}

internal::SelectArm Event::select_arm(internal::Waiter& w) {
  std::lock_guard<internal::SpinLock> g(lock_);
  if (set_) return w.try_win() ? internal::SelectArm::kDone : internal::SelectArm::kLost;
  waiters_.push_back(&w);
  return internal::SelectArm::kQueued;
}

void Event::select_disarm(internal::Waiter& w) {
  std::lock_guard<internal::SpinLock> g(lock_);
  waiters_.remove(&w);
}

absl::Status Event::wait() { return wait_impl(-1); }
absl::Status Event::wait_until(absl::Time deadline) { return wait_impl(internal::to_monotonic(deadline)); }

absl::Status Event::wait_impl(int64_t deadline_nanos) {
  return internal::wait_until_notified(lock_, waiters_, deadline_nanos, "Event::wait",
                                       [&]() ABSL_NO_THREAD_SAFETY_ANALYSIS { return set_; });
}

}  // namespace weft
