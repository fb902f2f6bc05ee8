// What runtime.h's templates call: fiber creation and submission, and the
// join state that a fiber and its JoinHandle share.
#include "runtime/internal/spawn.h"

#include <cstdio>
#include <mutex>
#include <typeinfo>
#include <utility>

#include "runtime/internal/fiber.h"
#include "runtime/internal/scheduler.h"
#include "runtime/internal/worker.h"
#include "runtime/platform/check.h"

namespace weft {
namespace internal {

void JoinStateBase::die_unobserved(const std::exception_ptr& error, uint64_t fiber_id) {
  const char* what = "unknown exception";
  try {
    std::rethrow_exception(error);
  } catch (const std::exception& e) {
    what = e.what();  // error keeps the exception alive
  } catch (...) {
  }
  // A fiber that never started (no stack could be mapped: Task::fail) has
  // no id yet.
  if (fiber_id == 0) fatal(__FILE__, __LINE__, "a detached fiber could not start: %s", what);
  fatal(__FILE__, __LINE__, "exception escaped detached fiber %llu: %s", static_cast<unsigned long long>(fiber_id),
        what);
}

void JoinStateBase::complete(std::exception_ptr error, bool cancelled, uint64_t fiber_id) {
  // Nobody holds the handle (detached or dropped; the acquire orders the
  // handle's last use before this): nobody waits or can start to, so
  // there is nothing to lock or wake. An exception can never be observed.
  // If the handle is dropped later, without a join, the last release()
  // finds the exception stored below and reports it the same way.
  const bool detached = refs_.load(std::memory_order_acquire) == 1;
  if (error && detached) die_unobserved(error, fiber_id);
  if (detached) {
    cancelled_ = cancelled;
    done_.store(true, std::memory_order_release);
    return;
  }
  WakeSet wake;
  std::lock_guard<SpinLock> g(lock_);
  error_ = std::move(error);
  fiber_id_ = fiber_id;
  cancelled_ = cancelled;
  done_.store(true, std::memory_order_release);
  wake.add_all(waiters_);
}

void release_join_state(JoinStateBase* s) { s->release(); }

void free_fiber_block(void* block, uint32_t tag) {
  const uint32_t cls = tag & 0xffu;
  // The calling worker may belong to another runtime than the block's
  // origin: its cache then keeps the block, which is still a valid block
  // of its class (block_cache.h).
  Worker* w = cls != 0 ? current_worker() : nullptr;
  if (w == nullptr) {
    ::operator delete(block);
    return;
  }
  w->blocks().free(block, cls, static_cast<int>(tag >> 8));
}

void cancel_join_state(JoinStateBase* s, uint64_t fiber_id) { s->complete(nullptr, true, fiber_id); }

WakeReason JoinStateBase::wait(int64_t deadline_nanos) {
  for (;;) {
    lock_.lock();
    if (done_.load(std::memory_order_relaxed)) break;
    if (deadline_nanos >= 0 && deadline_nanos <= monotonic_now()) {
      lock_.unlock();
      return WakeReason::kTimeout;
    }
    Waiter w;
    waiters_.push_back(&w);
    lock_.unlock();
    WakeReason r = settle_wait(w, waiters_, lock_, w.wait(deadline_nanos));
    if (r != WakeReason::kNotified) return r;
  }
  lock_.unlock();
  return WakeReason::kNotified;
}

SelectArm JoinStateBase::select_arm(Waiter& w) {
  std::lock_guard<SpinLock> g(lock_);
  if (done_.load(std::memory_order_relaxed)) return w.try_win() ? SelectArm::kDone : SelectArm::kLost;
  waiters_.push_back(&w);
  return SelectArm::kQueued;
}

void JoinStateBase::select_disarm(Waiter& w) {
  std::lock_guard<SpinLock> g(lock_);
  waiters_.remove(&w);
}

void JoinStateBase::abort() {
  Fiber* claimed = nullptr;
  CancelState* own = nullptr;
  {
    // Under lock_ and not done, the fiber has not completed, so its control
    // block (block_ is its Fiber) is alive. Its tokens' block is read under
    // cancel_lock, which the fiber's exit takes to unpublish it (cancel.cc
    // "A fiber's tokens" step 4).
    std::lock_guard<SpinLock> g(lock_);
    if (done_.load(std::memory_order_relaxed)) return;
    auto* f = static_cast<Fiber*>(block_);
    claimed = request_cancel(f);
    std::lock_guard<SpinLock> cg(f->cancel_lock);
    if (f->cancel_ext != nullptr) own = f->cancel_ext->own_token;
    if (own != nullptr) own->ref();
  }
  // Cancel the token before the claimed fiber can run again: a fiber whose
  // wait returned kCancelled must find this_fiber::cancellation() cancelled.
  if (own != nullptr) {
    own->cancel(CancelCause::kCancelled);
    own->unref();
  }
  if (claimed != nullptr) schedule(claimed);
}

bool JoinStateBase::take_outcome() {
  // The one joiner takes the exception: the join state may be freed by the
  // fiber's worker while the caller still handles it, and the exception's
  // reference count lives in the uninstrumented C++ runtime, so TSan would
  // not see that free ordered after the caller's reads. Taken even when
  // the outcome is a cancellation, so that release() finds none left.
  std::exception_ptr error = std::exchange(error_, nullptr);
  if (cancelled_) return true;
  if (error) std::rethrow_exception(std::move(error));
  return false;
}

Scheduler* current_scheduler_or_die(const char* what) {
  Worker* w = current_worker();
  WEFT_CHECK(w != nullptr, "%s called outside a weft runtime (not on a fiber or worker thread)", what);
  return w->scheduler();
}

absl::StatusOr<Fiber*> new_fiber(Scheduler* s, size_t stack_size, size_t extra, void** extra_mem) {
  return s->new_fiber(stack_size, extra, extra_mem);
}

void start_new_fiber(Scheduler* s, Fiber* f, JoinStateBase* join, TaskBase* task, int target_worker,
                     const char* file, int line, CancelState* token) {
  if (token != nullptr) bind_fiber_token(f, token);
  join->set_block_tag(f->block_tag);
  f->join = join;
  f->task = task;
  f->spawn_file = file;
  f->spawn_line = line;
  if (target_worker >= 0) {
    s->submit_to(f, target_worker);
  } else {
    s->submit(f);
  }
}

uint64_t current_fiber_id() {
  Fiber* f = current_fiber();
  return f != nullptr ? f->id : 0;
}

bool on_worker_thread() { return current_worker() != nullptr; }

int scheduler_workers(const Scheduler* s) { return s->num_workers(); }


}  // namespace internal

}  // namespace weft
