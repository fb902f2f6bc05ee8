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

void WaitGroup::wait() { wait_impl(-1); }
bool WaitGroup::wait_for(absl::Duration d) { return wait_impl(internal::to_monotonic(absl::Now() + d)); }

bool WaitGroup::wait_impl(int64_t deadline_nanos) {
  return internal::wait_until_notified(lock_, waiters_, deadline_nanos, [&]() ABSL_NO_THREAD_SAFETY_ANALYSIS {
    return count_ == 0;
  });
}

int64_t WaitGroup::count() const {
  std::lock_guard<internal::SpinLock> g(lock_);
  return count_;
}

}  // namespace weft
