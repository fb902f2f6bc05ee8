// runtime/internal/blocking_call.h
//
// BlockingCall: one call on a blocking pool, the non-template part that
// runtime/blocking.h's templates build on. NOT for users: the public API
// is runtime/blocking.h. The pools themselves are in blocking_pool.h.
#pragma once

#include <atomic>
#include <condition_variable>
#include <exception>
#include <mutex>

#include "runtime/internal/park.h"
#include "runtime/options.h"

namespace weft::internal {

// BlockingCall: one call on the pool, shared by the pool and its waiter
// (or handle) through a reference count. States:
//   kQueued     in a lane's queue; the pool holds a reference
//   kRunning    a pool thread runs fn
//   kDone       fn returned (result or exception stored), done is set
//   kDropped    the waiter gave up while it was queued; fn never runs
class BlockingCall {
 public:
  enum State : int { kQueued, kRunning, kDone, kDropped };

  virtual ~BlockingCall() = default;
  // invoke() runs fn and stores its result or exception. Pool thread.
  virtual void invoke() = 0;

  void ref() { refs_.fetch_add(1, std::memory_order_relaxed); }
  void unref() {
    if (refs_.fetch_sub(1, std::memory_order_acq_rel) == 1) delete this;
  }

  // A pool thread (or the submitter, inline) runs a call as start(),
  // invoke(), finish().
  // start() claims a queued call for running (kQueued -> kRunning); false
  // if its waiter dropped it.
  bool start();
  // finish() publishes kDone and wakes the waiter. After invoke().
  void finish();
  // wait() waits until kDone: parks a fiber, blocks a plain thread, and
  // returns true. If the waiting fiber is cancelled first, a queued call
  // is dropped (it never runs) and wait() returns false; a running call is
  // waited for (it may use the caller's frame) unless `abandon_running`
  // (the call owns its data): then wait() returns false at once. If the
  // runtime unwinds the waiting fiber, it drops a queued call or waits
  // (blocking the thread) for a running one, then rethrows the unwind.
  // Suspends.
  bool wait(bool abandon_running);
  // try_drop() drops the call if it is still queued. Returns true if so.
  bool try_drop();
  bool done() const { return state_.load(std::memory_order_acquire) == kDone; }

  BlockingCall* next = nullptr;  // a lane's queue link, under the lane lock

 protected:
  std::exception_ptr error_;

 private:
  void wait_thread();

  std::atomic<int> refs_{1};
  std::atomic<int> state_{kQueued};
  Completion completion_;          // fiber waiters
  std::mutex mu_;                  // thread waiters
  std::condition_variable cv_;
  bool finished_ = false;          // guarded by mu_
};

// submit_blocking() queues call on `lane` of the caller's pool (see
// current_blocking_pool() in blocking_pool.h), taking one more reference
// for the pool. If no pool thread can be started for it (thread creation
// failed and the lane has none), runs it inline on the calling thread.
void submit_blocking(BlockingCall* call, BlockingLane lane);

}  // namespace weft::internal
