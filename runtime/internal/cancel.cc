// CancelState: the protocol is numbered in cancel.h.
#include "runtime/internal/cancel.h"

#include <sched.h>

#include <mutex>
#include <utility>

#include "runtime/internal/fiber.h"
#include "runtime/internal/park.h"
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
//   1. Spawned with a token (a scope's, or SpawnOptions::token), the fiber
//      holds a reference to it and links its cancel_node there.
//   2. this_fiber::cancellation(), a scope or with_timeout() on the fiber
//      first makes its own token: a child of the spawn token. The node
//      moves to it; own_token is published under cancel_lock, then the
//      sticky flag is checked, so an abort() either finds own_token (and
//      cancels it) or set the flag before (and the fiber cancels it).
//   3. with_timeout() pushes a child of the innermost token and moves the
//      node to it; popping moves it back. The node always sits in the
//      innermost token, which every outer token's cancellation reaches.
//   4. At exit the node is unlinked (remove() waits for a firing) and the
//      references dropped.

namespace {
void move_node(Fiber* f, CancelState* from, CancelState* to) {
  if (from != nullptr) from->remove(&f->cancel_node);
  // A cancelled `to` refuses the node: fiber_cancelled() reads it anyway.
  (void)to->add(&f->cancel_node);
}
}  // namespace

void bind_fiber_token(Fiber* f, CancelState* token) {
  token->ref();
  f->token = token;  // step 1
  f->cancel_node.fiber = f;
  (void)token->add(&f->cancel_node);
}

CancelState* fiber_current_token(Fiber* self) {
  if (self->cancel_top != nullptr) return self->cancel_top;
  CancelState* own = CancelState::create(self->token);  // step 2
  self->cancel_node.fiber = self;
  move_node(self, self->token, own);
  self->cancel_top = own;
  {
    std::lock_guard<SpinLock> g(self->cancel_lock);
    self->own_token = own;
  }
  if (self->cancel_requested.load(std::memory_order_seq_cst)) own->cancel(CancelCause::kCancelled);
  return own;
}

void push_fiber_token(Fiber* self, CancelState* child) {
  CancelState* top = self->cancel_top;  // step 3
  WEFT_CHECK(top != nullptr, "push_fiber_token() before fiber_current_token()");
  move_node(self, top, child);
  self->cancel_top = child;
}

void pop_fiber_token(Fiber* self) {
  CancelState* child = self->cancel_top;
  CancelState* parent = child->parent();
  WEFT_CHECK(child != self->own_token && parent != nullptr, "pop_fiber_token() without a push");
  move_node(self, child, parent);
  self->cancel_top = parent;
  child->unref();
}

void release_fiber_tokens(Fiber* f) {
  // No token bound and none made (own_token is set only with cancel_top):
  // nothing is linked or referenced, and no abort() can find an own_token,
  // so the lock is not needed. The common exit of a plain spawned fiber.
  if (f->token == nullptr && f->cancel_top == nullptr) return;
  CancelState* own;  // step 4
  {
    std::lock_guard<SpinLock> g(f->cancel_lock);
    own = std::exchange(f->own_token, nullptr);
  }
  CancelState* linked = f->cancel_top != nullptr ? f->cancel_top : f->token;
  if (linked != nullptr) linked->remove(&f->cancel_node);
  // Pushed children left by an unwinding fiber: unwind the stack of tokens.
  while (f->cancel_top != nullptr && f->cancel_top != own) {
    CancelState* child = f->cancel_top;
    f->cancel_top = child->parent();
    child->unref();
  }
  f->cancel_top = nullptr;
  if (own != nullptr) own->unref();
  if (f->token != nullptr) std::exchange(f->token, nullptr)->unref();
}

}  // namespace weft::internal
