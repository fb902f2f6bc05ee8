// Parking: how a fiber waits without a lock held across its switch, and how
// a waker hands it back to a worker.
//
// # The park/claim protocol (lost-wakeup free)
//   1. The fiber bumps park_seq and stores wake_word = seq|kParking
//      (prepare_park), then makes itself findable: a Waiter in a wait list,
//      a timer (park() arms it), a socket's waiter slot.
//   2. It switches out with SwitchAction::kPark. The context that lands
//      saves its registers and then runs publish_parked(): a CAS
//      seq|kParking -> seq|kParked. If the CAS fails, a waker claimed the
//      park in between (step 3), and the worker queues the fiber itself.
//   3. A waker holding seq CASes the word to seq|kNotified (try_claim).
//      Seeing kParked it must schedule() the fiber; seeing kParking it
//      leaves that to step 2. A stale seq, or kNotified, means somebody
//      else won: do nothing.
//   Timers fire under their wheel's lock and disarm takes the same lock, so
//   a timer callback never touches a fiber that already returned.
//
// # Waiter (a park in a primitive's wait list)
//   1. The waiter pushes itself under the primitive's lock and waits.
//   2. A waker pops it under the lock and calls notify_locked(): it claims
//      the park first and only then publishes notified_, because a waiter
//      that sees notified_ may return and end its frame at once.
//   3. A waiter woken by its deadline (or by shutdown) finds notified_
//      false, takes the lock, and re-checks: still false means it removes
//      itself (settle_wait); true means the waker won and completed the
//      operation, which the waiter must honour.
#include "runtime/internal/park.h"

#include <time.h>

#include "runtime/internal/fiber.h"
#include "runtime/internal/scheduler.h"
#include "runtime/internal/worker.h"
#include "runtime/platform/futex.h"

namespace weft::internal {

uint64_t prepare_park(Fiber* self) {
  uint64_t seq = ++self->park_seq;  // step 1
  self->wake_word.store((seq << 2) | kParking, std::memory_order_release);
  return seq;
}

void park(Fiber* self, uint64_t seq, int64_t deadline_nanos) {
  Worker* w = current_worker();
  if (deadline_nanos >= 0) w->arm_timer(self, seq, deadline_nanos);
  w->count_park();
  Worker::suspend(Worker::SwitchAction::kPark);  // step 2 runs in after_switch
  if (self->timer_worker != nullptr) Worker::disarm_timer(self);
}

bool publish_parked(Fiber* f, uint64_t seq) {
  uint64_t expect = (seq << 2) | kParking;  // step 2
  return f->wake_word.compare_exchange_strong(expect, (seq << 2) | kParked, std::memory_order_acq_rel);
}

bool try_claim(Fiber* f, uint64_t seq) {
  const uint64_t seq_bits = seq << 2;  // step 3
  uint64_t w = f->wake_word.load(std::memory_order_acquire);
  for (;;) {
    if ((w & ~uint64_t{3}) != seq_bits) return false;
    uint64_t st = w & 3;
    if (st != kParking && st != kParked) return false;
    if (f->wake_word.compare_exchange_weak(w, seq_bits | kNotified, std::memory_order_acq_rel,
                                           std::memory_order_acquire)) {
      return st == kParked;
    }
  }
}

void schedule(Fiber* f) {
  Worker* w = current_worker();
  if (w != nullptr && w->scheduler() == f->sched) {
    w->wake_here(f);
  } else {
    f->sched->inject(f);
  }
}

void unwind_if_cancelled(Fiber* self) {
  if (self->unwind_requested && !self->unwinding) {
    self->unwinding = true;
    throw FiberUnwind{};
  }
}

// --- Waiter ---------------------------------------------------------------

Waiter::Waiter() : fiber_(current_fiber()) {
  if (fiber_ != nullptr) seq_ = prepare_park(fiber_);
}

WakeReason Waiter::wait(int64_t deadline_nanos) {
  if (fiber_ != nullptr) {
    park(fiber_, seq_, deadline_nanos);
    if (notified()) return WakeReason::kNotified;
    if (fiber_->unwind_requested && !fiber_->unwinding) return WakeReason::kCancelled;
    return WakeReason::kTimeout;
  }
  for (;;) {
    if (futex_.load(std::memory_order_acquire) == 1) return WakeReason::kNotified;
    timespec ts;
    timespec* tsp = nullptr;
    if (deadline_nanos >= 0) {
      int64_t left = deadline_nanos - monotonic_now();
      if (left <= 0) return WakeReason::kTimeout;
      ts.tv_sec = left / 1000000000LL;
      ts.tv_nsec = left % 1000000000LL;
      tsp = &ts;
    }
    futex_wait(&futex_, 0, tsp);
  }
}

Fiber* Waiter::notify_locked() {
  // Waiter step 2: claim before publishing notified_: a waiter that sees
  // notified() may return without the lock and end its frame, so *this
  // must not be read after the store.
  if (Fiber* f = fiber_) {
    bool mine = try_claim(f, seq_);
    notified_.store(true, std::memory_order_release);
    return mine ? f : nullptr;
  }
  std::atomic<uint32_t>* word = &futex_;
  notified_.store(true, std::memory_order_release);
  word->store(1, std::memory_order_release);
  // The thread may already have seen the store and returned; a wake on its
  // dead frame's address is at worst a spurious wake for a futex user that
  // re-checks its condition, as every futex user must.
  futex_wake(word);
  return nullptr;
}

bool settle_wait(Waiter& w, WaitList& list, SpinLock& lock, WakeReason r) {
  if (w.notified()) return true;
  {
    std::lock_guard<SpinLock> g(lock);  // Waiter step 3
    if (w.notified()) return true;      // the waker won the race with the timer
    list.remove(&w);
  }
  if (r == WakeReason::kCancelled) unwind_if_cancelled(current_fiber());
  return false;
}

// --- WaitList ---------------------------------------------------------------

void WaitList::push_back(Waiter* w) {
  w->next = nullptr;
  w->prev = tail_;
  if (tail_ != nullptr) {
    tail_->next = w;
  } else {
    head_ = w;
  }
  tail_ = w;
}

Waiter* WaitList::pop_front() {
  Waiter* w = head_;
  if (w != nullptr) remove(w);
  return w;
}

void WaitList::remove(Waiter* w) {
  if (w->prev != nullptr) {
    w->prev->next = w->next;
  } else {
    head_ = w->next;
  }
  if (w->next != nullptr) {
    w->next->prev = w->prev;
  } else {
    tail_ = w->prev;
  }
  w->prev = w->next = nullptr;
}

// --- WakeSet, Completion ----------------------------------------------------

void WakeSet::schedule_all() {
  size_t n = n_;
  n_ = 0;
  for (size_t i = 0; i < n; ++i) schedule(inline_[i]);
  if (!more_.empty()) {
    std::vector<Fiber*> more = std::move(more_);
    more_.clear();
    for (Fiber* f : more) schedule(f);
  }
}

void Completion::set(absl::Status s, IoToken t) {
  WakeSet wake;
  std::lock_guard<SpinLock> g(lock);
  done = true;
  status = std::move(s);
  token = t;
  wake.add_all(waiters);
}

absl::Status Completion::wait() {
  lock.lock();
  if (done) {
    lock.unlock();
    return status;
  }
  Waiter w;
  waiters.push_back(&w);
  lock.unlock();
  settle_wait(w, waiters, lock, w.wait());
  std::lock_guard<SpinLock> g(lock);
  return done ? status : absl::CancelledError("runtime shut down");
}

}  // namespace weft::internal
