// runtime/internal/park.h
//
// The one waiting primitive under all of sync/ (and net/, and join): a fiber
// parks, a waker claims it and schedules it. Waiter and WaitList put that
// under a primitive's own lock; Completion is a one-shot result; WakeSet
// collects the fibers a waker claimed under a lock, to schedule after it.
//
// This is NOT a general-purpose synchronization API, and must not be used
// by applications: use sync/. It is the //runtime:park target, which sync/
// depends on instead of the whole runtime.
//
// Threads: every function works on a fiber; Waiter, WaitList, Completion
// and WakeSet also work on plain threads, which block on a futex.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <vector>

#include "absl/status/status.h"
#include "runtime/internal/cancel.h"
#include "runtime/internal/io_messages.h"
#include "runtime/internal/spin_lock.h"
#include "runtime/platform/monotonic.h"

namespace weft::internal {

struct Fiber;

// Thrown from a suspension point of a fiber that the runtime cancels at
// shutdown, to unwind its stack. Deliberately not a std::exception: code
// that catches it must rethrow it.
struct FiberUnwind {};

// current_fiber() is the running fiber, or null off a fiber. Never inlined,
// so a fiber that migrated reads the new thread's value.
Fiber* current_fiber();

// --- The park/claim protocol (numbered steps in park.cc) ---

// prepare_park() starts a park of the running fiber (step 1) and returns
// its sequence. Wakers that know the sequence may claim it from now on.
uint64_t prepare_park(Fiber* self);
// Whether a park ends early when the fiber is cancelled (its token, its
// JoinHandle's abort(), or Runtime::shutdown(deadline)).
enum class Cancellable : bool { kNo = false, kYes = true };

// park() suspends the fiber until a waker claims `seq` or `deadline_nanos`
// (monotonic; <0: none) passes, or, for a cancellable park, the fiber is
// cancelled (at once if it already is). Suspends. Never throws.
void park(Fiber* self, uint64_t seq, int64_t deadline_nanos, Cancellable c = Cancellable::kNo);
// publish_parked() is step 2, run by the worker once the parking fiber's
// context is saved: true if the fiber is now kParked, false if a waker
// claimed it in between, in which case the caller must schedule it.
bool publish_parked(Fiber* f, uint64_t seq);
// try_claim() claims a park (step 3). Returns true if the caller must
// schedule(f) (the fiber's context is saved); false if the claim failed or
// the parking fiber schedules itself.
bool try_claim(Fiber* f, uint64_t seq);
// schedule() makes a claimed fiber runnable: on the current worker's LIFO
// slot when called on a worker of its runtime, else through the injection
// queue.
void schedule(Fiber* f);
// unwind_if_cancelled() throws FiberUnwind if the runtime cancels the
// running fiber (shutdown) and it is not unwinding yet.
void unwind_if_cancelled(Fiber* self);
// unwind_pending() is whether the runtime is unwinding f and it has not
// started yet (unwind_if_cancelled() would throw).
bool unwind_pending(const Fiber* f);

// request_cancel() marks f cancelled (sticky) and claims its cancellable
// park, if it is in one. Returns the fiber for the caller to schedule(),
// or null. f must stay alive for the call (its join state's lock or its
// registry shard's lock keeps it).
[[nodiscard]] Fiber* request_cancel(Fiber* f);
// fiber_cancelled() is whether f is cancelled: its sticky flag, or its
// innermost token. Read by the fiber itself.
bool fiber_cancelled(const Fiber* f);
// fiber_top_token() is f's innermost token, or null. Fiber-only.
const CancelState* fiber_top_token(const Fiber* f);
// current_fiber_cancelled() is fiber_cancelled(current_fiber()), false off
// a fiber.
bool current_fiber_cancelled();

// Returned by Waiter::wait() and settle_wait().
enum class WakeReason {
  kNotified,   // a waker completed the operation
  kTimeout,    // the deadline passed
  kCancelled,  // the fiber was cancelled (a cancellable wait)
  kShutdown,   // the runtime is unwinding the fiber (settle_wait throws)
};

// wake_status() turns a wait's end into the status every weft wait
// returns: OK, kDeadlineExceeded "<what> timed out", kCancelled "<what>
// cancelled".
absl::Status wake_status(WakeReason r, const char* what);

// SelectGroup: the waiters of one select() (sync/select.h), one per case,
// sharing one fiber and one park. The first case to win the group (a CAS
// on `winner`) completes; a waker that loses skips that waiter as if it
// were not there. Fibers only.
// SelectArm: what arming one select case on a source found, decided under
// the source's lock (a waiter's linked() must not be read after it: a
// waker may pop the waiter as soon as the lock is dropped).
enum class SelectArm {
  kDone,    // ready, and this case won the select
  kQueued,  // not ready: the waiter is on the source's list
  kLost,    // ready, but another case had already won
};

struct SelectGroup {
  explicit SelectGroup(Fiber* f);
  SelectGroup(const SelectGroup&) = delete;
  SelectGroup& operator=(const SelectGroup&) = delete;
  // try_win() decides the group for case `idx`; true if idx won (now or
  // before).
  bool try_win(int idx) {
    int expect = -1;
    return winner.compare_exchange_strong(expect, idx, std::memory_order_acq_rel) || expect == idx;
  }
  Fiber* const fiber;
  uint64_t seq;
  std::atomic<int> winner{-1};
};

// Waiter: one waiting fiber or thread in a wait list of a sync primitive.
// Lives on the waiter's stack. Protocol:
//
//   Waiter w;                       // binds to this fiber or thread
//   lock(); list.push_back(&w); unlock();
//   settle_wait(w, list, lock, w.wait(deadline));   // suspends
//
//   waker: WakeSet wake; lock(); wake.add(list.pop_front()); unlock();
//          wake.schedule_all();
//
// Nothing may suspend between constructing a Waiter and calling wait().
// A Waiter is cancellable unless constructed with Cancellable::kNo; only
// fiber waiters are (a plain thread has no token).
class Waiter {
 public:
  explicit Waiter(Cancellable c = Cancellable::kYes);
  // A select case's waiter: shares g's fiber and park; never wait() on it.
  Waiter(SelectGroup* g, int case_index);
  Waiter(const Waiter&) = delete;
  Waiter& operator=(const Waiter&) = delete;

  // wait() blocks until notify_locked(), the deadline (monotonic nanos,
  // <0: none) or the fiber's cancellation. kShutdown: the runtime is
  // unwinding this fiber; clean up, then call unwind_if_cancelled().
  // Suspends.
  WakeReason wait(int64_t deadline_nanos = -1);

  // notify_locked() claims the waiter; call under the lock of the list it
  // is on. The wake-up itself comes after the lock is dropped: a fiber to
  // schedule(), or a thread's word to signal_thread(). Use WakeSet, which
  // does both.
  struct Claim {
    Fiber* fiber = nullptr;
    std::atomic<uint32_t>* word = nullptr;
  };
  [[nodiscard]] Claim notify_locked();
  // signal_thread() wakes a thread waiter claimed by notify_locked().
  static void signal_thread(std::atomic<uint32_t>* word);
  // await_signal(): a notified thread waiter blocks until its waker has
  // signalled it (and so is done with the primitive's lock); no-op on a
  // fiber.
  void await_signal();
  // finish_notified(): call when a waiter that saw notified() is about to
  // return without having taken `lock` since (Waiter step 4). Afterwards
  // the waker is done with the primitive, and the caller may destroy it.
  void finish_notified(SpinLock& lock) {
    if (fiber_ == nullptr) {
      await_signal();
    } else if (!waker_schedules_) {
      lock.lock();  // the waker still holds it, or has dropped it for good
      lock.unlock();
    }
  }

  bool notified() const { return notified_.load(std::memory_order_acquire); }
  bool on_fiber() const { return fiber_ != nullptr; }
  // try_win() is true for a plain waiter; for a select case, it decides
  // the select for this case (false: another case won; skip this waiter).
  // Call under the lock of the waiter's list, before completing anything.
  bool try_win() { return group_ == nullptr || group_->try_win(case_); }
  bool linked() const { return linked_; }
  SelectGroup* group() const { return group_; }
  int case_index() const { return case_; }

  Waiter* prev = nullptr;
  Waiter* next = nullptr;
  void* payload = nullptr;  // primitive-specific, e.g. a channel slot
  uint32_t signal = 0;      // primitive-specific outcome, set by the waker

 private:
  friend class WaitList;
  // Ordered to fill one 64-byte line (a Waiter is made on every wait).
  int case_ = 0;
  Fiber* fiber_;
  uint64_t seq_ = 0;
  SelectGroup* group_ = nullptr;
  std::atomic<uint32_t> futex_{0};  // thread waiters: 1 once notified
  Cancellable cancellable_;
  bool linked_ = false;  // in a WaitList (under its owner's lock)
  // Set by notify_locked() before notified_: whether the waker's claim won
  // the park, so that the waker schedules the fiber, after its unlock.
  bool waker_schedules_ = false;
  std::atomic<bool> notified_{false};
};

// WaitList: an intrusive FIFO of Waiters, guarded by the owner's lock.
class WaitList {
 public:
  bool empty() const { return head_ == nullptr; }
  Waiter* front() const { return head_; }
  void push_back(Waiter* w);
  Waiter* pop_front() {
    Waiter* w = head_;
    if (w != nullptr) remove(w);
    return w;
  }
  // pop_winnable() pops waiters until one that try_win() accepts (a
  // select case that lost is dropped from the list); null if none.
  Waiter* pop_winnable() {
    while (Waiter* w = pop_front()) {
      if (w->try_win()) return w;
    }
    return nullptr;
  }
  // remove() unlinks w; no-op if w is not linked (a waker popped it).
  // w must not be linked in another list. Inline: every hand-over pops.
  void remove(Waiter* w) {
    if (!w->linked_) return;
    w->linked_ = false;
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

 private:
  Waiter* head_ = nullptr;
  Waiter* tail_ = nullptr;
};

// settle_wait() finishes a wait that Waiter::wait() ended with `r`. Returns
// kNotified if the waiter was notified (the waker completed its operation,
// even if a timeout or cancellation raced with it: the operation's result
// is honoured, never lost). Otherwise it removes the waiter from `list`
// under `lock` and returns kTimeout or kCancelled, or throws FiberUnwind if
// the runtime is unwinding the fiber.
WakeReason settle_wait_slow(Waiter& w, WaitList& list, SpinLock& lock, WakeReason r);
inline WakeReason settle_wait(Waiter& w, WaitList& list, SpinLock& lock, WakeReason r) {
  // The common end of a wait: a fiber waiter that was notified (nothing to
  // remove, no thread signal to await) and scheduled by its waker.
  if (w.on_fiber() && w.notified()) {
    w.finish_notified(lock);
    return WakeReason::kNotified;
  }
  return settle_wait_slow(w, list, lock, r);
}

// WakeSet: the fibers a waker claimed under a lock, scheduled after the
// lock is dropped (scheduling under it would make a woken fiber spin on
// it). Eight fit inline; more, and thread waiters, go to a heap spill made
// on first use, so that the common set (empty, or a fiber or two) costs two
// stores to make and one test to destroy.
class WakeSet {
 public:
  WakeSet() = default;
  WakeSet(const WakeSet&) = delete;
  WakeSet& operator=(const WakeSet&) = delete;
  // schedule_all() runs on destruction if it was not called.
  ~WakeSet() {
    if (n_ != 0 || spill_ != nullptr) schedule_all();
  }

  // add() claims w (call under the lock of its list); null is ignored.
  void add(Waiter* w) {
    if (w == nullptr) return;
    Waiter::Claim c = w->notify_locked();
    if (c.fiber != nullptr) add_fiber(c.fiber);
    if (c.word != nullptr) add_thread(c.word);
  }
  // add_all() claims every waiter of `list` (under its lock).
  void add_all(WaitList& list) {
    while (Waiter* w = list.pop_front()) add(w);
  }
  // add_fiber() records a fiber already claimed (null is ignored).
  void add_fiber(Fiber* f) {
    if (f == nullptr) return;
    if (n_ < kInline) {
      inline_[n_++] = f;
    } else {
      add_spilled(f);
    }
  }
  // schedule_all() schedules the recorded fibers, in claim order, then
  // signals the thread waiters. Call without the lock.
  void schedule_all() {
    size_t n = n_;
    n_ = 0;
    for (size_t i = 0; i < n; ++i) schedule(inline_[i]);
    if (spill_ != nullptr) schedule_spilled();
  }

 private:
  struct Spill {
    std::vector<Fiber*> fibers;
    std::vector<std::atomic<uint32_t>*> threads;  // thread waiters to signal
  };
  // The rare cases, out of line.
  void add_spilled(Fiber* f);
  void add_thread(std::atomic<uint32_t>* word);
  void schedule_spilled();

  static constexpr size_t kInline = 8;
  size_t n_ = 0;
  Spill* spill_ = nullptr;
  Fiber* inline_[kInline];
};

// WakeOne: WakeSet for a waker that claims at most one waiter (a channel's
// hand-over), scheduled when it goes out of scope, after the lock. Two
// pointers and no loop: the common send and receive pay no more than a
// raw Fiber* did.
class WakeOne {
 public:
  WakeOne() = default;
  WakeOne(const WakeOne&) = delete;
  WakeOne& operator=(const WakeOne&) = delete;
  ~WakeOne() {
    if (claim_.fiber != nullptr) schedule(claim_.fiber);
    if (claim_.word != nullptr) Waiter::signal_thread(claim_.word);
  }
  // set() claims w (under the lock of its list); at most once.
  void set(Waiter* w) { claim_ = w->notify_locked(); }

 private:
  Waiter::Claim claim_;
};

// Completion: a one-shot result that a worker hands back to the fiber or
// thread that sent it a message.
struct Completion {
  void set(absl::Status s, IoToken token = kNoIoToken);
  // wait() suspends (or blocks the thread) until set(); kCancelled if the
  // runtime unwinds the waiting fiber first, or, with Cancellable::kYes,
  // if the fiber is cancelled first (then the setter may still run: the
  // Completion must outlive it).
  absl::Status wait(Cancellable c = Cancellable::kNo);
  SpinLock lock;
  bool done = false;
  absl::Status status;
  IoToken token = kNoIoToken;
  WaitList waiters;
};

}  // namespace weft::internal
