// future/internal/state.cc
//
// # Completing a state and running its continuation
//   1. The producer completes the state under its lock: it stores the
//      result, sets done_, takes the installed continuation (if any) and
//      claims the waiters (get()/wait() callers), then drops the lock and
//      schedules the waiters.
//   2. A consumer installs its continuation under the same lock. If done_
//      is already set it dispatches the continuation itself (step 3);
//      otherwise the producer will, in step 1. Exactly one of the two sees
//      the continuation, so it runs exactly once.
//   3. Dispatch gives the continuation a reference to the state and:
//      a. runs it inline if it is a forwarder (inline_ok);
//      b. queues it on the current runner fiber if the completion happens
//         inside a continuation running there and the state belongs to the
//         same runtime;
//      c. otherwise spawns a runner fiber on the state's runtime (through
//         the injection queue from a plain thread, on the calling worker
//         from one of its fibers). User callbacks therefore never run on
//         the thread or fiber that called set_value().
//   4. The runner runs its queue in order, deleting each continuation
//      after it ran (discard()). A continuation deleted without running
//      (the runtime stopped, so the runner fiber was cancelled) breaks its
//      own result with kAborted, which repeats from step 1 downstream.
#include "future/internal/state.h"

#include <string>

#include "runtime/runtime.h"

namespace weft::internal {

Executor current_executor_or_die(const char* what) {
  WEFT_CHECK(on_worker_thread(),
             "%s called outside a weft runtime: pass the Runtime whose fibers run its callbacks", what);
  return Executor{nullptr, current_scheduler_or_die(what)};
}

absl::Status broken_promise_status(const char* what) {
  return absl::AbortedError(std::string(what) + " (broken promise)");
}

void discard(Continuation* c) {
  FutureStateBase* src = c->src_;
  delete c;
  if (src != nullptr) src->unref();
}

// --- Runner ---

Runner::~Runner() {
  while (Continuation* c = pop()) discard(c);
}

void Runner::push(Continuation* c) {
  c->next_ = nullptr;
  if (tail_ == nullptr) {
    head_ = tail_ = c;
  } else {
    tail_->next_ = c;
    tail_ = c;
  }
}

Continuation* Runner::pop() {
  Continuation* c = head_;
  if (c != nullptr) {
    head_ = c->next_;
    if (head_ == nullptr) tail_ = nullptr;
  }
  return c;
}

void Runner::drain() {
  int ran = 0;
  while (Continuation* c = pop()) {
    struct Discard {
      Continuation* c;
      ~Discard() { discard(c); }
    } d{c};
    c->run(c->src_, this);
    if (++ran % kYieldEvery == 0) this_fiber::yield();
  }
}

namespace {

// The body of a runner fiber. Owns the first continuation until the fiber
// runs; destroyed unrun (a cancelled fiber), it discards it.
class RunnerTask {
 public:
  RunnerTask(Executor exec, Continuation* c) : exec_(exec), c_(c) {}
  RunnerTask(RunnerTask&& o) noexcept : exec_(o.exec_), c_(std::exchange(o.c_, nullptr)) {}
  RunnerTask& operator=(RunnerTask&&) = delete;
  ~RunnerTask() {
    if (c_ != nullptr) discard(c_);
  }
  void operator()() {
    Runner r(exec_, current_scheduler_or_die("a future callback runner"));
    r.push(std::exchange(c_, nullptr));
    r.drain();
  }

 private:
  Executor exec_;
  Continuation* c_;
};

}  // namespace

void Runner::start(Executor exec, Continuation* c) {
  RunnerTask task(exec, c);
  if (exec.scheduler != nullptr) {
    auto st = start_fiber(exec.scheduler, SpawnOptions{}, std::source_location::current(), -1, std::move(task));
    WEFT_CHECK(st.ok(), "spawning a future callback fiber failed: %s", std::string(st.status().message()).c_str());
    JoinHandle<void>(*st).detach();
  } else {
    WEFT_CHECK(exec.runtime != nullptr, "a future without a runtime has a callback to run");
    exec.runtime->spawn(std::move(task)).detach();
  }
}

// --- FutureStateBase ---

void FutureStateBase::fail(const char* what, Failure f, Runner* runner) {
  // Moved, not copied: the reference counts of an exception_ptr and of an
  // absl::Status live in uninstrumented libraries, so a copy dropped here
  // after the consumer took the result would be a free that ThreadSanitizer
  // cannot order after the consumer's reads. The consumer alone ends them.
  complete(what, runner, [&] {
    if (f.is_exception()) {
      exception_ = std::move(f.exception_);
    } else {
      WEFT_CHECK(!f.status_.ok(), "%s with an OK status: a failure needs an error", what);
      status_ = std::move(f.status_);
    }
  });
}

void FutureStateBase::set_continuation(Continuation* c, Runner* runner) {
  bool now;
  {
    std::lock_guard<SpinLock> g(lock_);
    WEFT_CHECK(cont_ == nullptr, "a future has two consumers");
    now = done_.load(std::memory_order_relaxed);
    if (!now) cont_ = c;
  }
  if (now) {
    dispatch(c, runner);  // the caller's reference goes to c
  } else {
    unref();  // the producer keeps the state alive until it completes it
  }
}

void FutureStateBase::dispatch(Continuation* c, Runner* runner) {
  c->src_ = this;
  if (c->inline_ok()) {
    struct Discard {
      Continuation* c;
      ~Discard() { discard(c); }
    } d{c};
    c->run(this, runner);
  } else if (runner != nullptr && runner->accepts(exec_)) {
    runner->push(c);
  } else {
    Runner::start(exec_, c);
  }
}

WakeReason FutureStateBase::wait_until(int64_t deadline) {
  for (;;) {
    Waiter w;
    {
      std::lock_guard<SpinLock> g(lock_);
      if (done_.load(std::memory_order_relaxed)) return WakeReason::kNotified;
      if (deadline == -2 || (deadline >= 0 && deadline <= monotonic_now())) return WakeReason::kTimeout;
      waiters_.push_back(&w);
    }
    // Notified (complete) or timed out: look again. Cancelled: stop (a
    // cancelled fiber's next park would end at once, so looping would
    // spin). Unwound by the runtime: settle_wait() throws FiberUnwind.
    if (settle_wait(w, waiters_, lock_, w.wait(deadline)) == WakeReason::kCancelled) {
      return WakeReason::kCancelled;
    }
  }
}

}  // namespace weft::internal
