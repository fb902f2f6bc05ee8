// CancelState: the protocol is numbered in cancel.h.
#include "runtime/internal/cancel.h"

#include <sched.h>

#include <mutex>
#include <utility>

#include "runtime/internal/fiber.h"
#include "runtime/internal/park.h"
#include "runtime/internal/scheduler.h"
#include "runtime/internal/worker.h"
#include "runtime/platform/check.h"

namespace weft::internal {

namespace {
thread_local char tls_context_tag;

// relax() lets the context that fires a node finish (step 3's wait).
void relax() {
  if (current_fiber() != nullptr) {
    Worker::suspend(Worker::SwitchAction::kYield);
  } else {
    sched_yield();
  }
}
}  // namespace

const void* cancel_context() {
  Fiber* f = current_fiber();
  return f != nullptr ? static_cast<const void*>(f) : static_cast<const void*>(&tls_context_tag);
}

CancelState* CancelState::create(CancelState* parent) { return new CancelState(parent); }

CancelState::CancelState(CancelState* parent) : parent_(parent) {
  if (parent_ == nullptr) return;
  parent_->ref();
  link_.child = this;
  if (!parent_->add(&link_)) cause_.store(static_cast<uint8_t>(parent_->cause()), std::memory_order_release);
}

CancelState::~CancelState() {
  if (timer_worker_.load(std::memory_order_acquire) != nullptr) Worker::disarm_cancel_timer(this);  // step 5
  if (parent_ != nullptr) {
    parent_->remove(&link_);  // step 4
    parent_->unref();
  }
  WEFT_CHECK(head_ == nullptr, "CancelState destroyed with registrations linked");
}

void CancelState::unref() {
  if (refs_.fetch_sub(1, std::memory_order_acq_rel) == 1) delete this;
}

bool CancelState::try_ref_from_timer() {
  int n = refs_.load(std::memory_order_relaxed);
  while (n > 0) {
    if (refs_.compare_exchange_weak(n, n + 1, std::memory_order_acq_rel, std::memory_order_relaxed)) return true;
  }
  return false;
}

void CancelState::cancel(CancelCause cause) {
  const void* me = cancel_context();
  lock_.lock();
  if (cause_.load(std::memory_order_relaxed) != 0) {  // step 1
    lock_.unlock();
    return;
  }
  cause_.store(static_cast<uint8_t>(cause), std::memory_order_seq_cst);  // park.cc cancellable step 2
  while (CancelNode* n = head_) {  // step 2
    head_ = n->next_;
    if (head_ != nullptr) {
      head_->prev_ = nullptr;
    } else {
      tail_ = nullptr;
    }
    n->prev_ = n->next_ = nullptr;
    n->linked_ = false;
    firing_ = n;
    firing_ctx_ = me;
    lock_.unlock();
    n->on_cancel(cause);  // n may be gone after this (it may remove itself)
    lock_.lock();
    firing_ = nullptr;
    firing_ctx_ = nullptr;
  }
  lock_.unlock();
}

bool CancelState::add(CancelNode* n) {
  std::lock_guard<SpinLock> g(lock_);
  WEFT_CHECK(!n->linked_, "CancelNode registered twice");
  if (cause_.load(std::memory_order_relaxed) != 0) return false;
  n->prev_ = tail_;
  n->next_ = nullptr;
  if (tail_ != nullptr) {
    tail_->next_ = n;
  } else {
    head_ = n;
  }
  tail_ = n;
  n->linked_ = true;
  return true;
}

void CancelState::remove(CancelNode* n) {
  const void* me = cancel_context();
  for (;;) {
    {
      std::lock_guard<SpinLock> g(lock_);
      if (n->linked_) {
        if (n->prev_ != nullptr) {
          n->prev_->next_ = n->next_;
        } else {
          head_ = n->next_;
        }
        if (n->next_ != nullptr) {
          n->next_->prev_ = n->prev_;
        } else {
          tail_ = n->prev_;
        }
        n->prev_ = n->next_ = nullptr;
        n->linked_ = false;
        return;
      }
      if (firing_ != n || firing_ctx_ == me) return;  // step 3
    }
    relax();
  }
}

void CancelState::arm_deadline(int64_t deadline_nanos) {
  Worker* w = current_worker();
  WEFT_CHECK(w != nullptr,
             "a CancellationToken with a deadline must be created on a fiber or worker thread "
             "(it runs on that worker's timer wheel)");
  WEFT_CHECK(deadline_nanos_ < 0, "CancelState::arm_deadline() called twice");
  deadline_nanos_ = deadline_nanos;
  w->arm_cancel_timer(this, deadline_nanos);
}

// --- a fiber's tokens ---------------------------------------------------------
//
// # A fiber's tokens
//   A fiber's tokens live in a FiberCancelExt (fiber.h), allocated when it
//   first has one, so that a fiber without a token carries only a null
//   pointer. Other threads (abort(), drain()) find it through
//   Fiber::cancel_ext under the fiber's cancel_lock. It is written, always
//   under that lock, only by the fiber itself, by its spawner before it
//   starts, or by whoever frees a fiber that can no longer run (an
//   unstarted fiber discarded, one left blocked at shutdown); so the
//   fiber, and a releaser, read it without the lock.
//   1. Spawned with a token (a scope's, or SpawnOptions::token), the fiber
//      gets its block: a reference to the token and the node linked there.
//      The block is published under cancel_lock (drain() may already walk
//      the fiber).
//   2. this_fiber::cancellation(), a scope or with_timeout() on the fiber
//      first makes its own token: a child of the spawn token (if any),
//      with the block allocated now if step 1 did not. The node moves to
//      it; own_token (and the block) are published under cancel_lock, then
//      the sticky flag is checked, so an abort() either finds own_token
//      (and cancels it) or set the flag before (and the fiber cancels it).
//   3. with_timeout() pushes a child of the innermost token and moves the
//      node to it; popping moves it back. The node always sits in the
//      innermost token, which every outer token's cancellation reaches.
//   4. At exit the block is unpublished under cancel_lock, so abort() and
//      drain() no longer find it; then the node is unlinked (remove()
//      waits for a firing), the references dropped and the block freed.

namespace {
void move_node(FiberCancelExt* x, CancelState* from, CancelState* to) {
  if (from != nullptr) from->remove(&x->node);
  // A cancelled `to` refuses the node: fiber_cancelled() reads it anyway.
  (void)to->add(&x->node);
}
}  // namespace

void bind_fiber_token(Fiber* f, CancelState* token) {
  auto* x = new FiberCancelExt;  // step 1 (allocated first: a throw leaks no reference)
  token->ref();
  x->token = token;
  x->node.fiber = f;
  (void)token->add(&x->node);
  std::lock_guard<SpinLock> g(f->cancel_lock);
  f->cancel_ext = x;
}

CancelState* fiber_current_token(Fiber* self) {
  FiberCancelExt* x = self->cancel_ext;
  if (x != nullptr && x->top != nullptr) return x->top;
  if (x == nullptr) {  // step 2
    x = new FiberCancelExt;
    x->node.fiber = self;
  }
  CancelState* own = CancelState::create(x->token);
  move_node(x, x->token, own);
  x->top = own;
  {
    std::lock_guard<SpinLock> g(self->cancel_lock);
    x->own_token = own;
    self->cancel_ext = x;
  }
  // Registered now, if not yet, so that a drain finds this token; after
  // publishing it: a drain that walks the shard after this sees it, and
  // one that walked before has set draining_ already.
  self->sched->register_running(current_worker(), self);
  if (self->cancel_requested.load(std::memory_order_seq_cst) || self->sched->draining()) {
    own->cancel(CancelCause::kCancelled);
  }
  return own;
}

void push_fiber_token(Fiber* self, CancelState* child) {
  FiberCancelExt* x = self->cancel_ext;  // step 3
  WEFT_CHECK(x != nullptr && x->top != nullptr, "push_fiber_token() before fiber_current_token()");
  move_node(x, x->top, child);
  x->top = child;
}

void pop_fiber_token(Fiber* self) {
  FiberCancelExt* x = self->cancel_ext;
  WEFT_CHECK(x != nullptr && x->top != nullptr, "pop_fiber_token() without a push");
  CancelState* child = x->top;
  CancelState* parent = child->parent();
  WEFT_CHECK(child != x->own_token && parent != nullptr, "pop_fiber_token() without a push");
  move_node(x, child, parent);
  x->top = parent;
  child->unref();
}

void release_fiber_tokens(Fiber* f) {
  // No block: no token bound and none made, nothing linked or referenced,
  // and nothing for abort() or drain() to find. The common exit of a plain
  // spawned fiber.
  FiberCancelExt* x = f->cancel_ext;
  if (x == nullptr) return;
  {
    std::lock_guard<SpinLock> g(f->cancel_lock);  // step 4
    f->cancel_ext = nullptr;
  }
  CancelState* own = x->own_token;
  CancelState* linked = x->top != nullptr ? x->top : x->token;
  linked->remove(&x->node);
  // Pushed children left by an unwinding fiber: unwind the stack of tokens.
  while (x->top != nullptr && x->top != own) {
    CancelState* child = x->top;
    x->top = child->parent();
    child->unref();
  }
  if (own != nullptr) own->unref();
  if (x->token != nullptr) x->token->unref();
  delete x;
}

}  // namespace weft::internal
