#include "runtime/runtime.h"

#include <cstdio>
#include <typeinfo>
#include <utility>

namespace weft {

namespace internal {

void JoinStateBase::complete(std::exception_ptr error, bool cancelled, uint64_t fiber_id) {
  if (error && refs_.load(std::memory_order_acquire) == 1) {
    // Nobody holds the handle: the exception can never be observed.
    const char* what = "unknown exception";
    try {
      std::rethrow_exception(error);
    } catch (const std::exception& e) {
      what = e.what();
      Fatal(__FILE__, __LINE__, "exception escaped detached fiber %llu: %s",
            static_cast<unsigned long long>(fiber_id), what);
    } catch (...) {
      Fatal(__FILE__, __LINE__, "exception escaped detached fiber %llu: %s",
            static_cast<unsigned long long>(fiber_id), what);
    }
  }
  Fiber* wake[4];
  size_t n = 0;
  std::vector<Fiber*> more;
  {
    std::lock_guard<SpinLock> g(lock_);
    error_ = std::move(error);
    cancelled_ = cancelled;
    done_.store(true, std::memory_order_release);
    while (Waiter* w = waiters_.pop_front()) {
      if (Fiber* f = w->notify_locked()) {
        if (n < 4) {
          wake[n++] = f;
        } else {
          more.push_back(f);
        }
      }
    }
  }
  for (size_t i = 0; i < n; ++i) schedule(wake[i]);
  for (Fiber* f : more) schedule(f);
}

void release_join_state(JoinStateBase* s) { s->release(); }

void cancel_join_state(JoinStateBase* s, uint64_t fiber_id) { s->complete(nullptr, true, fiber_id); }

void JoinStateBase::wait_and_rethrow() {
  for (;;) {
    lock_.lock();
    if (done_.load(std::memory_order_relaxed)) break;
    Waiter w;
    waiters_.push_back(&w);
    lock_.unlock();
    settle_wait(w, waiters_, lock_, w.wait());
  }
  lock_.unlock();
  if (cancelled_) throw FiberCancelled();
  // The one joiner takes the exception: the join state may be freed by the
  // fiber's worker while the caller still handles it, and the exception's
  // reference count lives in the uninstrumented C++ runtime, so TSan would
  // not see that free ordered after the caller's reads.
  if (error_) std::rethrow_exception(std::exchange(error_, nullptr));
}

Scheduler* current_scheduler_or_die(const char* what) {
  Worker* w = current_worker();
  WEFT_CHECK(w != nullptr, "%s called outside a weft runtime (not on a fiber or worker thread)", what);
  return w->scheduler();
}

namespace {
Fiber* fiber_or_die(const char* what) {
  Fiber* f = current_fiber();
  WEFT_CHECK(f != nullptr, "%s called outside a fiber", what);
  return f;
}
}  // namespace

}  // namespace internal

absl::StatusOr<std::unique_ptr<Runtime>> Runtime::create(RuntimeOptions options) {
  auto s = internal::Scheduler::create(options);
  if (!s.ok()) return s.status();
  return std::unique_ptr<Runtime>(new Runtime(std::move(*s)));
}

Runtime::~Runtime() { shutdown(); }

void Runtime::shutdown() { sched_->stop(); }

RuntimeStats Runtime::stats() const {
  RuntimeStats out;
  sched_->fill_stats(&out);
  return out;
}

namespace this_fiber {

void yield() {
  internal::Fiber* self = internal::fiber_or_die("weft::this_fiber::yield()");
  internal::Worker::suspend(internal::Worker::SwitchAction::kYield);
  internal::unwind_if_cancelled(self);
}

void sleep_until(absl::Time deadline) {
  internal::Fiber* self = internal::fiber_or_die("weft::this_fiber::sleep_until()");
  int64_t d = internal::to_monotonic(deadline);
  uint64_t seq = internal::prepare_park(self);
  internal::park(self, seq, d);
  internal::unwind_if_cancelled(self);
}

void sleep_for(absl::Duration d) {
  internal::Fiber* self = internal::fiber_or_die("weft::this_fiber::sleep_for()");
  if (d <= absl::ZeroDuration()) {
    yield();
    return;
  }
  int64_t deadline = d == absl::InfiniteDuration()
                         ? -1
                         : internal::monotonic_now() + absl::ToInt64Nanoseconds(d);
  uint64_t seq = internal::prepare_park(self);
  internal::park(self, seq, deadline);
  internal::unwind_if_cancelled(self);
}

uint64_t id() {
  internal::Fiber* f = internal::current_fiber();
  return f != nullptr ? f->id : 0;
}

int worker_id() {
  internal::Worker* w = internal::current_worker();
  return w != nullptr ? w->id() : -1;
}

bool on_fiber() { return internal::current_fiber() != nullptr; }

}  // namespace this_fiber

}  // namespace weft
