// runtime/internal/cancel.h
//
// CancelState: the shared state behind weft::CancellationToken, and
// CancelNode, what registers on it (a fiber, a child state, a user
// callback, a select case). NOT for users: see runtime/cancel.h.
//
// # Cancelling (the protocol; steps referenced in cancel.cc)
//   1. cancel() sets the cause under the state's lock; the first call wins,
//      later calls return at once.
//   2. It then fires the registered nodes one at a time: under the lock it
//      unlinks the first node and marks it firing (firing_ = node, and who
//      fires it), drops the lock and calls node->on_cancel(), then clears
//      firing_ under the lock. Nodes registered after step 1 fire at once
//      on the registering context (add() returns false).
//   3. remove() unlinks a node that has not fired. If the node is firing on
//      another context, remove() waits until it has finished, so its owner
//      may free it as soon as remove() returns. On the firing context
//      itself (a callback that unregisters itself) it returns at once.
//   4. A child state links a node into its parent when created and removes
//      it when destroyed; the parent's firing of that node cancels the
//      child with the parent's cause.
//   5. A deadline is a timer on the arming worker's wheel whose owner is
//      the state (tagged). The worker claims a reference under its timer
//      lock (only if the count is not already zero), then cancels the state
//      with kDeadline outside the lock. The destructor disarms the timer
//      under that lock once the count is zero, so a fired timer never
//      touches a freed state.
#pragma once

#include <atomic>
#include <cstdint>

#include "runtime/internal/spin_lock.h"
#include "timer/timer_wheel.h"

namespace weft::internal {

class CancelState;
class Worker;

// Why a state was cancelled.
enum class CancelCause : uint8_t {
  kNone = 0,
  kCancelled = 1,  // cancel() by a user, a scope, abort(), or shutdown
  kDeadline = 2,   // its deadline (or an ancestor's) passed
};

class CancelNode {
 public:
  CancelNode() = default;
  CancelNode(const CancelNode&) = delete;
  CancelNode& operator=(const CancelNode&) = delete;

  // on_cancel() runs once, without the state's lock, on the context that
  // cancels (or that registers on a cancelled state, if its caller fires
  // it). It must not throw.
  virtual void on_cancel(CancelCause cause) noexcept = 0;

 protected:
  ~CancelNode() = default;

 private:
  friend class CancelState;
  CancelNode* prev_ = nullptr;
  CancelNode* next_ = nullptr;
  bool linked_ = false;
};

class CancelState {
 public:
  // create() returns a state with one reference, a child of `parent` (which
  // may be null). A child of a cancelled parent is born cancelled.
  static CancelState* create(CancelState* parent);
  CancelState(const CancelState&) = delete;
  CancelState& operator=(const CancelState&) = delete;

  void ref() { refs_.fetch_add(1, std::memory_order_relaxed); }
  void unref();

  bool cancelled() const { return cause_.load(std::memory_order_acquire) != 0; }
  // cancelled_for_park() is cancelled() with the seq_cst load of the
  // cancellable-park protocol (park.cc).
  bool cancelled_for_park() const { return cause_.load(std::memory_order_seq_cst) != 0; }
  CancelCause cause() const { return static_cast<CancelCause>(cause_.load(std::memory_order_acquire)); }

  // cancel() cancels the state and everything registered on it, on the
  // calling context (steps 1-2). Idempotent.
  void cancel(CancelCause cause = CancelCause::kCancelled);

  // add() links n (step 2's late registration: false, and n not linked, if
  // the state is already cancelled; the caller then acts as if n fired).
  bool add(CancelNode* n);
  // remove() unlinks n if it is linked; step 3.
  void remove(CancelNode* n);

  // arm_deadline() cancels the state with kDeadline at `deadline_nanos`
  // (monotonic) on the calling worker's timer wheel (step 5). At most once
  // per state; the caller must be on a worker thread.
  void arm_deadline(int64_t deadline_nanos);
  // parent() is the state this one is a child of, or null.
  CancelState* parent() const { return parent_; }
  // deadline_nanos() is the armed deadline, or -1.
  int64_t deadline_nanos() const { return deadline_nanos_; }

  // Called by the worker that fires the deadline timer (step 5): claims a
  // reference if the state is still alive. Under the worker's timer lock.
  bool try_ref_from_timer();

 private:
  explicit CancelState(CancelState* parent);
  ~CancelState();

  struct ParentLink final : CancelNode {
    CancelState* child = nullptr;
    void on_cancel(CancelCause cause) noexcept override { child->cancel(cause); }
  };

  std::atomic<int> refs_{1};
  std::atomic<uint8_t> cause_{0};
  SpinLock lock_;
  CancelNode* head_ = nullptr;         // under lock_
  CancelNode* tail_ = nullptr;         // under lock_
  CancelNode* firing_ = nullptr;       // under lock_
  const void* firing_ctx_ = nullptr;   // under lock_
  CancelState* const parent_;
  ParentLink link_;  // in parent_, while this state lives
  // Deadline (step 5). timer_ and timer_worker_ change under the timer
  // lock of the worker that timer_worker_ names.
  friend class Worker;
  TimerEntry timer_;
  std::atomic<Worker*> timer_worker_{nullptr};
  int64_t deadline_nanos_ = -1;
};

struct Fiber;

// --- A fiber's tokens (cancel.cc) ---
// bind_fiber_token() gives a fiber that has not started the token it was
// spawned with (allocates its FiberCancelExt, takes a reference, links the
// node).
void bind_fiber_token(Fiber* f, CancelState* token);
// fiber_current_token() is the running fiber's innermost token (its own
// token, made on first use, or a with_timeout() child of it), borrowed.
CancelState* fiber_current_token(Fiber* self);
// push_fiber_token() makes `child` (a child of fiber_current_token(), with
// a reference for the fiber) the innermost token; pop_fiber_token() undoes
// the last push and drops that reference.
void push_fiber_token(Fiber* self, CancelState* child);
void pop_fiber_token(Fiber* self);
// release_fiber_tokens() unlinks and drops f's tokens and frees their
// block; when it exits or is discarded.
void release_fiber_tokens(Fiber* f);

// cancel_context() identifies the calling context for step 3: the running
// fiber, or the thread.
const void* cancel_context();

}  // namespace weft::internal
