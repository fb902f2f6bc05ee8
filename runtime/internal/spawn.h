// runtime/internal/spawn.h
//
// What runtime.h's templates need to start a fiber and wait for it, and
// nothing more: the task and join-state types, and opaque calls into the
// scheduler. Keeps epoll, the run queue and the fiber context out of every
// file that includes runtime.h. NOT for users.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <exception>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "runtime/internal/park.h"
#include "runtime/internal/spin_lock.h"

namespace weft::internal {

class Scheduler;

// The body of a fiber, constructed in its control block. run() executes the
// user's function and publishes the result; cancel() publishes that the
// fiber was cancelled before it ran. The destructor destroys the function.
class TaskBase {
 public:
  virtual ~TaskBase() = default;
  virtual void run() = 0;
  virtual void cancel() = 0;
  // fail() publishes that the fiber could not start (no stack).
  virtual void fail(const absl::Status& why) = 0;
};

// free_fiber_block() frees a fiber's control block: into the calling
// worker's block cache, which sends it back to the worker that allocated it
// (block_cache.h), or with ::operator delete off a worker or for tag 0.
void free_fiber_block(void* block, uint32_t tag);

// JoinState: the result slot shared by a fiber and its JoinHandle. It
// lives in the fiber's control block (after the Fiber, before the task) and
// frees the block when both references are gone: the handle's, and the
// fiber's, dropped once it has exited.
class JoinStateBase {
 public:
  explicit JoinStateBase(void* block) : block_(block) {}
  virtual ~JoinStateBase() = default;
  void release() {
    if (refs_.fetch_sub(1, std::memory_order_acq_rel) == 1) {
      // The last reference: an exception still here was never taken by a
      // join (the handle was dropped or detached after the fiber had
      // completed, so complete() stored it for a joiner).
      if (error_ != nullptr) die_unobserved(error_, fiber_id_);
      void* block = block_;
      const uint32_t tag = block_tag_;
      this->~JoinStateBase();
      free_fiber_block(block, tag);
    }
  }
  // set_block_tag() records how the block was allocated (Fiber::block_tag),
  // so that the last release frees it the same way. Before the fiber starts.
  void set_block_tag(uint32_t tag) { block_tag_ = tag; }
  // complete() publishes the outcome and wakes the joiner. Called once, by
  // the fiber (or the runtime when it cancels a fiber that never ran).
  void complete(std::exception_ptr error, bool cancelled, uint64_t fiber_id);
  // wait() suspends (or blocks the thread) until complete() (kNotified),
  // the deadline (monotonic nanos, <0: none; kTimeout) or the joiner's
  // cancellation (kCancelled). Called by the one joiner. Suspends.
  WakeReason wait(int64_t deadline_nanos);
  // take_outcome() rethrows the fiber's exception, if any; returns true if
  // the fiber was cancelled before it produced a result. After wait()
  // returned kNotified; once.
  bool take_outcome();
  bool done() const { return done_.load(std::memory_order_acquire); }
  // select_arm() (lifecycle/select.h): kDone if the fiber has completed
  // and w won its select, kLost if it has completed and another case won,
  // else queues w (kQueued). select_disarm() takes w off.
  SelectArm select_arm(Waiter& w);
  void select_disarm(Waiter& w);
  // abort() cancels the fiber (its waits return kCancelled; if it has not
  // started, it never runs). No effect once it has completed. Any thread.
  void abort();

 private:
  // die_unobserved() reports an exception that no join can see any more
  // and ends the process (fiber_id 0: a fiber that never started).
  [[noreturn]] static void die_unobserved(const std::exception_ptr& error, uint64_t fiber_id);

  void* const block_;
  std::atomic<int> refs_{2};  // the handle and the fiber
  uint32_t block_tag_ = 0;
  std::atomic<bool> done_{false};
  SpinLock lock_;
  WaitList waiters_;
  std::exception_ptr error_;
  uint64_t fiber_id_ = 0;  // set with error_, for die_unobserved()
  bool cancelled_ = false;
};

// new_fiber() allocates a registered, not yet runnable fiber with `extra`
// bytes for its join state and task at *extra_mem (Scheduler::new_fiber).
absl::StatusOr<Fiber*> new_fiber(Scheduler* s, size_t stack_size, size_t extra, void** extra_mem);
// start_new_fiber() binds the join state, the task, the spawn site (file
// must be a static string) and the token (may be null), then submits the
// fiber: to
// `target_worker` (a kSpawn message), or, for -1, to the calling worker or
// the injection queue.
void start_new_fiber(Scheduler* s, Fiber* f, JoinStateBase* join, TaskBase* task, int target_worker,
                     const char* file, int line, CancelState* token);
// current_fiber_id() is the running fiber's id (0 off a fiber).
uint64_t current_fiber_id();
// on_worker_thread() is true on any runtime's worker thread or fiber.
bool on_worker_thread();
// current_scheduler_or_die() is the calling worker's scheduler; aborts
// with a message naming `what` off a worker.
Scheduler* current_scheduler_or_die(const char* what);
// scheduler_workers() is the number of workers of `s`.
int scheduler_workers(const Scheduler* s);

}  // namespace weft::internal
