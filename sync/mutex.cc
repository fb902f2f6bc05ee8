#include "sync/mutex.h"

#include <sys/syscall.h>
#include <unistd.h>

#include <mutex>

#include "runtime/internal/spawn.h"
#include "runtime/platform/check.h"

namespace weft {

namespace internal {
uint64_t caller_id() {
  if (uint64_t id = current_fiber_id()) return id;
  static thread_local uint64_t tid = (uint64_t{1} << 63) | static_cast<uint64_t>(::syscall(SYS_gettid));
  return tid;
}
}  // namespace internal

Mutex::~Mutex() {
  WEFT_CHECK(waiters_.empty(), "Mutex destroyed while fibers wait for it");
}

bool Mutex::try_lock() {
  std::lock_guard<internal::SpinLock> g(lock_);
  if (owner_ != 0) return false;
  owner_ = internal::caller_id();
  return true;
}

void Mutex::lock() {
  const uint64_t me = internal::caller_id();
  lock_.lock();
  if (owner_ == 0) {
    owner_ = me;
    lock_.unlock();
    return;
  }
  WEFT_CHECK(owner_ != me, "Mutex::lock() by the fiber or thread that already holds it");
  internal::Waiter w(internal::Cancellable::kNo);  // lock() ignores cancellation
  w.payload = reinterpret_cast<void*>(me);
  waiters_.push_back(&w);
  lock_.unlock();
  internal::WakeReason r = w.wait();
  bool owned = w.notified();  // unlock() handed us the mutex
  if (owned) {
    w.finish_notified(lock_);
  } else {
    // Woken before the hand-off was published, or cancelled: decide under
    // the lock.
    {
      std::lock_guard<internal::SpinLock> g(lock_);
      owned = w.notified();
      if (!owned) waiters_.remove(&w);
    }
    if (owned) w.await_signal();
  }
  if (r == internal::WakeReason::kShutdown) {
    if (owned) unlock();  // pass it on before unwinding
    internal::unwind_if_cancelled(internal::current_fiber());
  }
  WEFT_CHECK(owned, "Mutex::lock() woke without the mutex");
}

void Mutex::unlock() {
  internal::WakeSet wake;
  {
    std::lock_guard<internal::SpinLock> g(lock_);
    WEFT_CHECK(owner_ == internal::caller_id(),
               "Mutex::unlock() by a fiber or thread that does not hold the mutex");
    internal::Waiter* w = waiters_.pop_front();
    if (w == nullptr) {
      owner_ = 0;
    } else {
      owner_ = reinterpret_cast<uint64_t>(w->payload);
      wake.add(w);
    }
  }
}

}  // namespace weft
