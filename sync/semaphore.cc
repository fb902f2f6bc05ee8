#include "sync/semaphore.h"

#include <mutex>
#include <vector>

#include "runtime/platform/check.h"

namespace weft {

Semaphore::Semaphore(int64_t initial) : permits_(initial) {
  WEFT_CHECK(initial >= 0, "Semaphore created with %lld permits", static_cast<long long>(initial));
}

Semaphore::~Semaphore() { WEFT_CHECK(waiters_.empty(), "Semaphore destroyed while fibers wait on it"); }

bool Semaphore::try_acquire() {
  std::lock_guard<internal::SpinLock> g(lock_);
  if (permits_ == 0) return false;
  --permits_;
  return true;
}

absl::Status Semaphore::acquire() { return acquire_impl(-1); }

absl::Status Semaphore::acquire_until(absl::Time deadline) {
  return acquire_impl(internal::to_monotonic(deadline));
}

absl::Status Semaphore::acquire_impl(int64_t deadline_nanos) {
  internal::Waiter w;
  lock_.lock();
  if (permits_ > 0 && waiters_.empty()) {
    --permits_;
    lock_.unlock();
    return absl::OkStatus();
  }
  if (deadline_nanos >= 0 && deadline_nanos <= internal::monotonic_now()) {
    lock_.unlock();
    return absl::DeadlineExceededError("Semaphore::acquire timed out");
  }
  waiters_.push_back(&w);
  lock_.unlock();
  // Notified: release() handed us a permit, even if a timeout or a
  // cancellation raced with it.
  return internal::wake_status(internal::settle_wait(w, waiters_, lock_, w.wait(deadline_nanos)),
                               "Semaphore::acquire");
}

void Semaphore::release(int64_t n) {
  WEFT_CHECK(n >= 1, "Semaphore::release(%lld)", static_cast<long long>(n));
  internal::WakeSet wake;
  std::lock_guard<internal::SpinLock> g(lock_);
  while (n > 0 && !waiters_.empty()) {
    wake.add(waiters_.pop_front());
    --n;
  }
  permits_ += n;
}

int64_t Semaphore::available() const {
  std::lock_guard<internal::SpinLock> g(lock_);
  return permits_;
}

}  // namespace weft
