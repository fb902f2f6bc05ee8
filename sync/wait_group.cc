#include "sync/wait_group.h"

#include <mutex>
#include <vector>

#include "runtime/platform/check.h"
#include "sync/internal/wait_util.h"

namespace weft {

WaitGroup::WaitGroup(int64_t initial) : count_(initial) {
  WEFT_CHECK(initial >= 0, "WaitGroup created with a negative count");
}

WaitGroup::~WaitGroup() { WEFT_CHECK(waiters_.empty(), "WaitGroup destroyed while fibers wait on it"); }

void WaitGroup::add(int64_t n) {
  internal::WakeSet wake;
  std::lock_guard<internal::SpinLock> g(lock_);
  count_ += n;
  WEFT_CHECK(count_ >= 0, "WaitGroup count went negative (done() called more often than add())");
  if (count_ == 0) wake.add_all(waiters_);
}

absl::Status WaitGroup::wait() { return wait_impl(-1); }
absl::Status WaitGroup::wait_until(absl::Time deadline) { return wait_impl(internal::to_monotonic(deadline)); }

absl::Status WaitGroup::wait_impl(int64_t deadline_nanos) {
  return internal::wait_until_notified(lock_, waiters_, deadline_nanos, "WaitGroup::wait",
                                       [&]() ABSL_NO_THREAD_SAFETY_ANALYSIS {
    return count_ == 0;
  });
}

int64_t WaitGroup::count() const {
  std::lock_guard<internal::SpinLock> g(lock_);
  return count_;
}

}  // namespace weft
