// future/internal/state.h
//
// The shared state behind a weft::Promise and its weft::Future, the
// continuation that consumes it, and the runner fibers that run user
// callbacks. NOT for users: include future/future.h.
//
// Ownership. A state is reference counted. Its producer (the Promise, or
// the continuation whose result it is) holds a reference until it has
// completed the state, so a pending state lives at least as long as its
// producer; its Future holds one until it is consumed (get(), or then(),
// on_success(), on_failure(), which hand the result to a continuation); a
// continuation that has been dispatched holds one until it is deleted.
// The state owns its installed continuation while pending, without a
// reference back (no cycle): completing takes it out and dispatches it.
#pragma once

#include <atomic>
#include <cstdint>
#include <exception>
#include <mutex>
#include <optional>
#include <type_traits>
#include <utility>
#include <variant>

#include "absl/status/status.h"
#include "future/failure.h"
#include "runtime/internal/park.h"
#include "runtime/internal/spin_lock.h"
#include "runtime/platform/check.h"

namespace weft {
class Runtime;
}  // namespace weft

namespace weft::internal {

class Scheduler;
class FutureStateBase;
class Runner;

// Executor: the runtime whose fibers run a state's user callbacks. One of
// the two is set: `runtime` for Promise(Runtime&), `scheduler` for a
// promise made on a fiber or worker (the current runtime, which has no
// public handle there).
struct Executor {
  Runtime* runtime = nullptr;
  Scheduler* scheduler = nullptr;
};

// current_executor_or_die() is the calling fiber's or worker's runtime;
// aborts naming `what` off a runtime.
Executor current_executor_or_die(const char* what);

// The kAborted status of a producer destroyed without a result.
absl::Status broken_promise_status(const char* what);

// Continuation: the one consumer of a completed state's result. User
// callbacks (then, on_success, on_failure) run on a runner fiber of the
// state's runtime; forwarders (flattening, when_all, when_any), which only
// move a result along and never block, run inline (`inline_ok`) on
// whatever completed the state, a plain thread included.
class Continuation {
 public:
  explicit Continuation(bool inline_ok) : inline_ok_(inline_ok) {}
  Continuation(const Continuation&) = delete;
  Continuation& operator=(const Continuation&) = delete;
  // Destroying a continuation that did not run breaks the state it was to
  // produce (its Producer member does that).
  virtual ~Continuation() = default;
  // run() consumes src's result; src is complete. `runner` is the runner
  // fiber running it (null for an inline one outside any runner): results
  // it produces for the same runtime queue their continuations there
  // instead of spawning a fiber. May suspend (user callbacks).
  virtual void run(FutureStateBase* src, Runner* runner) = 0;
  bool inline_ok() const { return inline_ok_; }

 private:
  friend class FutureStateBase;
  friend class Runner;
  friend void discard(Continuation* c);
  const bool inline_ok_;
  Continuation* next_ = nullptr;     // in a Runner's queue
  FutureStateBase* src_ = nullptr;   // a reference, from dispatch to discard()
};

// discard() deletes a dispatched continuation (run or not) and drops its
// reference to its source state.
void discard(Continuation* c);

// Runner: the loop of a fiber that runs continuations of one runtime, in
// the order they were queued. A continuation whose result completes
// another state of the same runtime queues that state's continuation here
// rather than spawning a fiber, so a chain of then() runs on one fiber
// without recursion. Lives on the runner fiber's stack.
class Runner {
 public:
  Runner(Executor exec, Scheduler* self) : exec_(exec), self_(self) {}
  Runner(const Runner&) = delete;
  Runner& operator=(const Runner&) = delete;
  // Continuations still queued (the fiber is being unwound by shutdown)
  // are discarded: their results break with kAborted.
  ~Runner();

  // accepts() is true when continuations of `e` may run on this fiber.
  bool accepts(const Executor& e) const {
    return (e.scheduler != nullptr && e.scheduler == self_) ||
           (e.runtime != nullptr && e.runtime == exec_.runtime);
  }
  void push(Continuation* c);
  // drain() runs queued continuations until none is left, yielding every
  // kYieldEvery so a long chain does not hold its worker. Suspends.
  void drain();

  // start() spawns a runner fiber on `exec` for c (dispatched). Works from
  // any thread. If the runtime has stopped, the fiber is cancelled at once
  // and c discarded without running.
  static void start(Executor exec, Continuation* c);

 private:
  static constexpr int kYieldEvery = 64;
  Continuation* pop();
  Executor exec_;
  Scheduler* self_;
  Continuation* head_ = nullptr;
  Continuation* tail_ = nullptr;
};

// FutureStateBase: completion, the continuation slot and the waiters; the
// value lives in FutureState<T>. Thread-safe: completed once by its
// producer from any thread, consumed once from any thread.
class FutureStateBase {
 public:
  FutureStateBase(Executor exec, int refs) : refs_(refs), exec_(exec) {}
  FutureStateBase(const FutureStateBase&) = delete;
  FutureStateBase& operator=(const FutureStateBase&) = delete;

  void ref() { refs_.fetch_add(1, std::memory_order_relaxed); }
  void unref() {
    if (refs_.fetch_sub(1, std::memory_order_acq_rel) == 1) delete this;
  }

  const Executor& executor() const { return exec_; }
  bool done() const { return done_.load(std::memory_order_acquire); }

  // complete() stores a result (`store` runs under the lock, once) and
  // dispatches the continuation, if one is installed, and wakes waiters.
  // A second completion is a programming error; the abort names `what`.
  template <class Store>
  void complete(const char* what, Runner* runner, Store&& store) {
    Continuation* c;
    {
      WakeSet wake;  // destroyed after the lock: schedules the woken waiters
      std::lock_guard<SpinLock> g(lock_);
      WEFT_CHECK(!done_.load(std::memory_order_relaxed),
                 "%s: the promise already has a result (a promise is set once)", what);
      store();
      done_.store(true, std::memory_order_release);
      c = std::exchange(cont_, nullptr);
      wake.add_all(waiters_);
    }
    if (c != nullptr) {
      ref();  // for the continuation
      dispatch(c, runner);
    }
  }
  void fail(const char* what, Failure f, Runner* runner);

  // set_continuation() installs the one consumer of the result and gives
  // up the caller's reference (the Future's). If the state is complete, c
  // is dispatched at once: on a new runner fiber, or inline if inline_ok.
  void set_continuation(Continuation* c, Runner* runner);

  // wait_until() waits for completion until `deadline` (monotonic nanos;
  // -1 none, -2 do not wait): kNotified once complete, kTimeout at the
  // deadline, kCancelled if the waiting fiber is cancelled first (a result
  // already there wins: kNotified). Suspends on a fiber, blocks a thread;
  // throws FiberUnwind if the runtime unwinds the fiber.
  WakeReason wait_until(int64_t deadline);

  // After completion, read by the one consumer:
  bool failed() const { return !status_.ok() || exception_ != nullptr; }
  Failure take_failure() {
    if (exception_) return Failure(std::exchange(exception_, nullptr));
    return Failure(std::exchange(status_, absl::OkStatus()));
  }

 protected:
  virtual ~FutureStateBase() = default;

 private:
  void dispatch(Continuation* c, Runner* runner);

  std::atomic<int32_t> refs_;
  std::atomic<bool> done_{false};  // written under lock_
  SpinLock lock_;
  Continuation* cont_ = nullptr;  // guarded by lock_
  WaitList waiters_;              // guarded by lock_
  const Executor exec_;
  // The failure, written before done_ (by complete()), read after it.
  absl::Status status_;
  std::exception_ptr exception_;
};

// The stored form of a Future<T>'s value: void is std::monostate.
template <class T>
using Stored = std::conditional_t<std::is_void_v<T>, std::monostate, T>;

template <class T>
class FutureState final : public FutureStateBase {
 public:
  using FutureStateBase::FutureStateBase;
  Stored<T>& value() { return *value_; }
  void set_value(const char* what, Runner* runner, Stored<T>&& v) {
    complete(what, runner, [&] { value_.emplace(std::move(v)); });
  }

 private:
  std::optional<Stored<T>> value_;
};

// Producer<T>: the right to complete a state, held by a Promise or by the
// continuation that computes it. Destroyed before completing, it completes
// the state with kAborted (a broken promise); `broken_what` says which.
template <class T>
class Producer {
 public:
  Producer() = default;
  Producer(FutureState<T>* s, const char* broken_what) : s_(s), broken_what_(broken_what) {}
  Producer(Producer&& o) noexcept
      : s_(std::exchange(o.s_, nullptr)), broken_what_(o.broken_what_) {}
  Producer& operator=(Producer&& o) noexcept {
    if (this != &o) {
      reset();
      s_ = std::exchange(o.s_, nullptr);
      broken_what_ = o.broken_what_;
    }
    return *this;
  }
  ~Producer() { reset(); }

  bool valid() const { return s_ != nullptr; }
  FutureState<T>* state() const { return s_; }
  void set_value(const char* what, Runner* runner, Stored<T>&& v) { s_->set_value(what, runner, std::move(v)); }
  void fail(const char* what, Failure f, Runner* runner) { s_->fail(what, std::move(f), runner); }

 private:
  void reset() {
    if (s_ == nullptr) return;
    FutureState<T>* s = std::exchange(s_, nullptr);
    if (!s->done()) s->fail(broken_what_, Failure(broken_promise_status(broken_what_)), nullptr);
    s->unref();
  }
  FutureState<T>* s_ = nullptr;
  const char* broken_what_ = "";
};

}  // namespace weft::internal
