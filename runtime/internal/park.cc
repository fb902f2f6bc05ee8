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
//   Timers fire under their wheel's lock and the fiber's end disarms under
//   the same lock, so a timer callback never touches a fiber that has ended.
//
// # Timed parks (one timer entry per fiber, left linked between parks)
//   A park with a deadline makes the fiber's TimerEntry claim it. Arming
//   and disarming on every park cost two wheel operations, two lock
//   round trips and a clock-derived tick each time, for a timeout that
//   almost never fires (a keep-alive connection's idle timeout, a read
//   timeout). So the entry outlives the park:
//   1. park(deadline) with tick `due` (Worker::arm_timer): under the lock
//      of the wheel that holds the entry, if it is still linked and fires
//      at or before `due`, set timer_seq = seq and timer_due = due and
//      leave it. Otherwise take it off (it would fire late) and file it at
//      `due` on this worker's wheel.
//   2. The entry fires (fire_timers, under the wheel's lock): if its
//      fiber's timer_due is after the tick being processed, a later park
//      reused it; file it again at timer_due. Nothing is claimed.
//   3. Otherwise it claims park timer_seq (try_claim). If that park has
//      ended, the sequence is stale, the claim fails, and the entry is
//      just gone: the next timed park files it anew.
//   4. A park that ends before its deadline leaves the entry linked.
//   5. At the fiber's end (fiber_entry) disarm_timer() takes it off under
//      the wheel's lock, before the fiber's memory is released.
//   Never early: a claim happens only at a processed tick >= timer_due,
//   the park's own deadline rounded up. Never lost: step 1 sets timer_seq
//   only on an entry it found linked under the lock, or links itself, so
//   the entry reaches step 2 or 3 by `due`. A keep-alive connection thus
//   pays one wheel insertion per idle-timeout period, not an insert and an
//   unlink per request.
//
// # Waiter (a park in a primitive's wait list)
//   1. The waiter pushes itself under the primitive's lock and waits.
//   2. A waker pops it under the lock and calls notify_locked(): it claims
//      the park first and only then publishes notified_, because a waiter
//      that sees notified_ may return and end its frame at once.
//   3. A waiter woken by its deadline, its cancellation or shutdown finds
//      notified_ false, takes the lock, and re-checks: still false means it
//      removes itself (settle_wait); true means the waker won and completed
//      the operation, which the waiter must honour. So a cancellation that
//      races with a completion never loses the completion.
//   4. A waiter that finds notified_ true returns without the lock, and its
//      caller may then destroy the primitive (an Event or WaitGroup in the
//      caller's frame), so the waker must be done with the primitive's lock
//      and lists by then (finish_notified). A thread waiter waits for the
//      waker's signal, sent after the unlock. A fiber whose park the
//      waker's claim won (waker_schedules_, stored before notified_) is
//      scheduled only after the unlock, so it cannot be running before. Any
//      other notified fiber can: a timer, a cancellation or its own worker
//      (a claim that met kParking) put it back on a queue, and it may see
//      notified_ while the waker is still popping the next waiter. It takes
//      and drops the lock once before it returns.
//
// # Cancellable parks (a fiber's cancellation reaching its wait)
//   A fiber is cancelled when its sticky cancel_requested flag is set
//   (abort, shutdown), its runtime is draining (draining_, which reaches
//   the fibers a drain's registry walk cannot: shutdown.cc, draining step
//   2), or its innermost token is cancelled.
//   1. The parking fiber registers (Scheduler::register_running), stores
//      its sequence in cancel_park (seq_cst), then loads the flag, the
//      drain flag and the token (seq_cst). Any set: it claims its own park
//      (kParking -> kNotified) and does not suspend.
//   2. A canceller stores the flag or the token's cause (seq_cst), then
//      loads cancel_park (seq_cst: request_cancel, or the fiber's
//      FiberCancelNode firing) and, if non-zero, claims that sequence with
//      try_claim, scheduling the fiber if it was kParked. By the store-load
//      order, either the fiber sees the cancellation (step 1) or the
//      canceller sees the sequence: a cancellation is never missed.
//   3. A stale sequence (the fiber moved on) fails try_claim's check; an
//      uncancellable park never publishes its sequence. After the park the
//      fiber clears cancel_park.
#include "runtime/internal/park.h"

#include <time.h>

#include <string>
#include <utility>

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

namespace {
// cancel_seen() is fiber_cancelled() without the shield, inline for park()'s
// step 1, which runs on every cancellable park.
inline bool cancel_seen(const Fiber* f) {
  if (f->cancel_requested.load(std::memory_order_seq_cst)) return true;
  // A drain cancels every fiber: those it found in the registry through
  // cancel_requested, the others (not registered yet) through this flag.
  if (f->sched->draining()) return true;
  const FiberCancelExt* x = f->cancel_ext;  // null: no token
  if (x == nullptr) return false;
  const CancelState* t = x->top != nullptr ? x->top : x->token;
  return t != nullptr && t->cancelled_for_park();
}
}  // namespace

void park(Fiber* self, uint64_t seq, int64_t deadline_nanos, Cancellable c) {
  Worker* w = current_worker();
  // Registered before the cancellation check below: a drain either finds
  // the fiber in the registry or is seen by that check (shutdown.cc,
  // draining step 2).
  self->sched->register_running(w, self);
  if (self->unwind_requested && !self->unwinding) {
    // Shutdown step 4 runs a fiber that was runnable when the shutdown
    // came; if it reaches a new wait before its first suspension point
    // throws, nobody would ever claim this park (step 3 is over). Claim it
    // here and return: the caller sees unwind_pending() and unwinds.
    uint64_t expect = (seq << 2) | kParking;
    self->wake_word.compare_exchange_strong(expect, (seq << 2) | kNotified, std::memory_order_acq_rel);
    return;
  }
  if (self->cancel_shield > 0) c = Cancellable::kNo;
  if (c == Cancellable::kYes) {
    self->cancel_park.store(seq, std::memory_order_seq_cst);  // cancellable step 1
    if (cancel_seen(self)) {
      uint64_t expect = (seq << 2) | kParking;
      // Won or lost to a waker, the fiber is claimed and keeps running.
      self->wake_word.compare_exchange_strong(expect, (seq << 2) | kNotified, std::memory_order_acq_rel);
      self->cancel_park.store(0, std::memory_order_relaxed);
      return;
    }
  }
  if (deadline_nanos >= 0) w->arm_timer(self, seq, deadline_nanos);
  w->count_park();
  Worker::suspend_from(w, Worker::SwitchAction::kPark);  // step 2 runs in after_switch
  // The timer stays linked if it has not fired (timed parks step 4).
  if (c == Cancellable::kYes) self->cancel_park.store(0, std::memory_order_relaxed);  // cancellable step 3
}

namespace {
Fiber* claim_cancellable_park(Fiber* f) {
  uint64_t seq = f->cancel_park.load(std::memory_order_seq_cst);  // cancellable step 2
  if (seq != 0 && try_claim(f, seq)) return f;
  return nullptr;
}
}  // namespace

Fiber* request_cancel(Fiber* f) {
  f->cancel_requested.store(true, std::memory_order_seq_cst);
  return claim_cancellable_park(f);
}

void FiberCancelNode::on_cancel(CancelCause) noexcept {
  if (Fiber* f = claim_cancellable_park(fiber)) schedule(f);
}

const CancelState* fiber_top_token(const Fiber* f) {
  const FiberCancelExt* x = f->cancel_ext;
  if (x == nullptr) return nullptr;
  return x->top != nullptr ? x->top : x->token;
}

bool fiber_cancelled(const Fiber* f) { return f->cancel_shield <= 0 && cancel_seen(f); }

bool current_fiber_cancelled() {
  Fiber* f = current_fiber();
  return f != nullptr && fiber_cancelled(f);
}

absl::Status wake_status(WakeReason r, const char* what) {
  switch (r) {
    case WakeReason::kNotified:
      return absl::OkStatus();
    case WakeReason::kTimeout:
      return absl::DeadlineExceededError(std::string(what) + " timed out");
    case WakeReason::kCancelled:
    case WakeReason::kShutdown:
      break;
  }
  return absl::CancelledError(std::string(what) + " cancelled");
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

bool unwind_pending(const Fiber* f) { return f->unwind_requested && !f->unwinding; }

// --- Waiter ---------------------------------------------------------------

Waiter::Waiter(Cancellable c) : fiber_(current_fiber()), cancellable_(c) {
  if (fiber_ != nullptr) seq_ = prepare_park(fiber_);
}

WakeReason Waiter::wait(int64_t deadline_nanos) {
  if (fiber_ != nullptr) {
    park(fiber_, seq_, deadline_nanos, cancellable_);
    if (notified()) return WakeReason::kNotified;
    if (fiber_->unwind_requested && !fiber_->unwinding) return WakeReason::kShutdown;
    if (cancellable_ == Cancellable::kYes && fiber_cancelled(fiber_)) return WakeReason::kCancelled;
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

SelectGroup::SelectGroup(Fiber* f) : fiber(f), seq(prepare_park(f)) {}

Waiter::Waiter(SelectGroup* g, int case_index)
    : case_(case_index), fiber_(g->fiber), seq_(g->seq), group_(g), cancellable_(Cancellable::kYes) {}

Waiter::Claim Waiter::notify_locked() {
  if (!try_win()) return {};  // a select case that lost: not woken
  // Waiter step 2: claim before publishing notified_: a fiber waiter that
  // sees notified() may return without the lock and end its frame, so
  // *this must not be read after the store. A thread waiter that sees it
  // waits for signal_thread() (await_signal), which comes after the
  // waker has dropped the lock: so a thread that returns may destroy the
  // primitive at once.
  if (Fiber* f = fiber_) {
    bool mine = try_claim(f, seq_);
    waker_schedules_ = mine;  // step 4
    notified_.store(true, std::memory_order_release);
    return {mine ? f : nullptr, nullptr};
  }
  std::atomic<uint32_t>* word = &futex_;
  notified_.store(true, std::memory_order_release);
  return {nullptr, word};
}

void Waiter::signal_thread(std::atomic<uint32_t>* word) {
  word->store(1, std::memory_order_release);
  // The thread may already have seen the store and returned; a wake on its
  // dead frame's address is at worst a spurious wake for a futex user that
  // re-checks its condition, as every futex user must.
  futex_wake(word);
}

void Waiter::await_signal() {
  if (fiber_ != nullptr) return;
  while (futex_.load(std::memory_order_acquire) != 1) futex_wait(&futex_, 0, nullptr);
}

WakeReason settle_wait_slow(Waiter& w, WaitList& list, SpinLock& lock, WakeReason r) {
  if (w.notified()) {
    w.finish_notified(lock);
    return WakeReason::kNotified;
  }
  bool notified;
  {
    std::lock_guard<SpinLock> g(lock);  // Waiter step 3
    notified = w.notified();            // true: the waker won the race
    if (!notified) list.remove(&w);
  }
  if (notified) {
    w.await_signal();
    return WakeReason::kNotified;
  }
  if (r == WakeReason::kShutdown) unwind_if_cancelled(current_fiber());
  return r == WakeReason::kNotified ? WakeReason::kTimeout : r;
}

// --- WaitList ---------------------------------------------------------------

void WaitList::push_back(Waiter* w) {
  w->linked_ = true;
  w->next = nullptr;
  w->prev = tail_;
  if (tail_ != nullptr) {
    tail_->next = w;
  } else {
    head_ = w;
  }
  tail_ = w;
}

// --- WakeSet, Completion ----------------------------------------------------

void WakeSet::add_spilled(Fiber* f) {
  if (spill_ == nullptr) spill_ = new Spill;
  spill_->fibers.push_back(f);
}

void WakeSet::add_thread(std::atomic<uint32_t>* word) {
  if (spill_ == nullptr) spill_ = new Spill;
  spill_->threads.push_back(word);
}

void WakeSet::schedule_spilled() {
  Spill* s = std::exchange(spill_, nullptr);
  for (Fiber* f : s->fibers) schedule(f);
  for (std::atomic<uint32_t>* word : s->threads) Waiter::signal_thread(word);
  delete s;
}

void Completion::set(absl::Status s, IoToken t) {
  WakeSet wake;
  std::lock_guard<SpinLock> g(lock);
  done = true;
  status = std::move(s);
  token = t;
  wake.add_all(waiters);
}

absl::Status Completion::wait(Cancellable c) {
  lock.lock();
  if (done) {
    lock.unlock();
    return status;
  }
  Waiter w(c);
  waiters.push_back(&w);
  lock.unlock();
  WakeReason r = settle_wait(w, waiters, lock, w.wait());
  std::lock_guard<SpinLock> g(lock);
  if (done) return status;
  return r == WakeReason::kCancelled ? absl::CancelledError("wait cancelled")
                                     : absl::CancelledError("runtime shut down");
}

}  // namespace weft::internal
