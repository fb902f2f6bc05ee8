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
// park() suspends the fiber until a waker claims `seq` or `deadline_nanos`
// (monotonic; <0: none) passes. Suspends. Never throws.
void park(Fiber* self, uint64_t seq, int64_t deadline_nanos);
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

// Returned by Waiter::wait().
enum class WakeReason { kNotified, kTimeout, kCancelled };

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
class Waiter {
 public:
  Waiter();
  Waiter(const Waiter&) = delete;
  Waiter& operator=(const Waiter&) = delete;

  // wait() blocks until notify_locked() or the deadline (monotonic nanos,
  // <0: none). kCancelled: the runtime is cancelling this fiber; clean up,
  // then call unwind_if_cancelled(). Suspends.
  WakeReason wait(int64_t deadline_nanos = -1);

  // notify_locked() claims the waiter; call under the lock of the list it
  // is on. Returns a fiber for the caller to schedule() after unlocking.
  [[nodiscard]] Fiber* notify_locked();

  bool notified() const { return notified_.load(std::memory_order_acquire); }
  bool on_fiber() const { return fiber_ != nullptr; }

  Waiter* prev = nullptr;
  Waiter* next = nullptr;
  void* payload = nullptr;  // primitive-specific, e.g. a channel slot
  uint32_t signal = 0;      // primitive-specific outcome, set by the waker

 private:
  Fiber* fiber_;
  uint64_t seq_ = 0;
  std::atomic<uint32_t> futex_{0};  // thread waiters: 1 once notified
  std::atomic<bool> notified_{false};
};

// WaitList: an intrusive FIFO of Waiters, guarded by the owner's lock.
class WaitList {
 public:
  bool empty() const { return head_ == nullptr; }
  Waiter* front() const { return head_; }
  void push_back(Waiter* w);
  Waiter* pop_front();
  void remove(Waiter* w);

 private:
  Waiter* head_ = nullptr;
  Waiter* tail_ = nullptr;
};

// settle_wait() finishes a wait that Waiter::wait() ended with `r`. Returns
// true if the waiter was notified (the waker completed its operation).
// Otherwise it removes the waiter from `list` under `lock` and returns
// false, or throws FiberUnwind if the runtime is cancelling the fiber.
bool settle_wait(Waiter& w, WaitList& list, SpinLock& lock, WakeReason r);

// WakeSet: the fibers a waker claimed under a lock, scheduled after the
// lock is dropped (scheduling under it would make a woken fiber spin on
// it). Eight fit inline; more spill to the heap.
class WakeSet {
 public:
  WakeSet() = default;
  WakeSet(const WakeSet&) = delete;
  WakeSet& operator=(const WakeSet&) = delete;
  // schedule_all() runs on destruction if it was not called.
  ~WakeSet() { schedule_all(); }

  // add() claims w (call under the lock of its list); null is ignored.
  void add(Waiter* w) {
    if (w != nullptr) add_fiber(w->notify_locked());
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
      more_.push_back(f);
    }
  }
  // schedule_all() schedules the recorded fibers, in claim order. Call
  // without the lock.
  void schedule_all();

 private:
  static constexpr size_t kInline = 8;
  Fiber* inline_[kInline];
  size_t n_ = 0;
  std::vector<Fiber*> more_;
};

// Completion: a one-shot result that a worker hands back to the fiber or
// thread that sent it a message.
struct Completion {
  void set(absl::Status s, IoToken token = kNoIoToken);
  // wait() suspends (or blocks the thread) until set(); kCancelled if the
  // runtime cancels the waiting fiber first.
  absl::Status wait();
  SpinLock lock;
  bool done = false;
  absl::Status status;
  IoToken token = kNoIoToken;
  WaitList waiters;
};

}  // namespace weft::internal
