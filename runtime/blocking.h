// runtime/blocking.h
//
// The blocking pool: plain threads that run calls which block their thread
// (a file read, getaddrinfo, a library without a non-blocking API) while
// the calling fiber parks. No worker thread blocks.
//
//   auto rc = weft::run_blocking([&] { return ::getaddrinfo(...); });   // waits
//   auto h = weft::spawn_blocking([path] { return read_everything(path); });
//   ...                                                                 // other work
//   std::string data = h.join();                                        // parks
//
// Which pool. Each Runtime owns a pool: RuntimeOptions::blocking sets its
// limits, Runtime::configure_blocking() changes them, and
// Runtime::stats().blocking reads its counters. A call goes to:
//   - on a fiber (or worker thread): its runtime's pool;
//   - on a pool thread (a call made inside a blocking call): that thread's
//     own pool, so nested calls stay in their runtime;
//   - on any other thread (no runtime): a process-wide fallback pool with
//     the default limits, created on first use and never destroyed (its
//     threads are detached). Its limits cannot be changed.
//
// Lanes. A pool has two lanes, each with its own queue, its own threads
// and its own thread limit, so a flood of calls in one cannot starve the
// other:
//   BlockingLane::kDefault   files, processes, user calls (default 64 threads)
//   BlockingLane::kResolve   name resolution, net::resolve() (default 8)
// Each lane starts a thread when a call arrives and no thread of the lane is
// idle, up to its limit; calls beyond that queue (FIFO). A thread that has
// been idle for `keep_alive` (default 10 s) exits. runtime/options.h says
// why the default is 64 threads and not tokio's 512.
//
// Runtime teardown (shutdown() or the destructor) first unwinds the
// runtime's fibers (below), then shuts its pool down: the threads finish
// the running calls and run every call still queued (a detached
// spawn_blocking() call runs to completion), then exit, and teardown waits
// for them. So a call that never returns blocks runtime teardown forever,
// whether a fiber waits for it or not: give such calls a timeout of their
// own. Shutting a runtime down from one of its own pool threads aborts.
//
// # The rule for fn and its captures (shutdown safety)
//
// run_blocking(fn) may capture the calling fiber's locals by reference: the
// caller's frame outlives every run of fn, always. If the runtime shuts down
// while the fiber waits (its stack is unwound by weft::FiberCancelled
// cancellation):
//   - fn still queued: it is dropped and never runs;
//   - fn running: the unwinding fiber blocks the thread that runs the
//     shutdown until fn returns, then unwinds. Shutdown therefore takes as
//     long as the longest running call; a call that never returns blocks
//     shutdown forever (give such calls a timeout of their own).
// The same holds when the waiter is a plain thread.
//
// spawn_blocking(fn) stores fn (moved) and its result in a heap block, so
// fn must own everything it uses (capture by value): the handle may be
// detached or destroyed, and the caller gone, while fn runs. A destroyed
// handle never waits; the result is dropped when fn returns.
//
// Exceptions thrown by fn are rethrown by run_blocking()/join().
#pragma once

#include <exception>
#include <functional>
#include <optional>
#include <type_traits>
#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "runtime/cancel.h"
#include "runtime/internal/blocking_call.h"
#include "runtime/options.h"
#include "runtime/platform/check.h"

namespace weft {

namespace internal {

template <class T>
struct is_status_or : std::false_type {};
template <class T>
struct is_status_or<absl::StatusOr<T>> : std::true_type {};

// BlockingCallResult<T>: a call's result slot, which handles know.
template <class T>
class BlockingCallResult : public BlockingCall {
 public:
  // take() returns the result or rethrows fn's exception. After done().
  // The exception leaves the call: the waiter's side alone ends its life,
  // whichever side drops the call last (ThreadSanitizer cannot see the
  // uninstrumented reference count of std::exception_ptr).
  T take() {
    if (error_) std::rethrow_exception(std::exchange(error_, nullptr));
    if constexpr (!std::is_void_v<T>) return std::move(*result_);
  }

 protected:
  std::conditional_t<std::is_void_v<T>, char, std::optional<T>> result_;
};

template <class Fn, class T>
class BlockingCallImpl final : public BlockingCallResult<T> {
 public:
  template <class F>
  explicit BlockingCallImpl(F&& f) : fn_(std::in_place, std::forward<F>(f)) {}

  void invoke() override {
    try {
      if constexpr (std::is_void_v<T>) {
        std::invoke(*fn_);
      } else {
        this->result_.emplace(std::invoke(*fn_));
      }
    } catch (...) {
      this->error_ = std::current_exception();
    }
    // The captures die here, on the pool thread, before finish() wakes the
    // waiter, as a fiber's do (runtime.h, Task::run): not at the last
    // reference, which may come after the waiter has used a result that
    // shares what a capture owns (a status's message, counted where TSan
    // cannot see it), and would hold the captures as long as a handle.
    // (run_blocking() lends fn by reference: its caller owns it.)
    fn_.reset();
  }

 private:
  using Stored = std::conditional_t<std::is_reference_v<Fn>, std::reference_wrapper<std::remove_reference_t<Fn>>, Fn>;
  std::optional<Stored> fn_;
};

}  // namespace internal

// weft::run_blocking()
//
// Runs fn on the blocking pool (lane kDefault, or `lane`) and returns its
// result; rethrows its exception. Suspends: parks the fiber (blocks a plain
// thread) until fn returns. fn may use the caller's locals; see "The rule
// for fn" above for what shutdown does.
//
// Cancellation of the waiting fiber: a call that has not started is
// dropped and run_blocking() returns kCancelled (fn returning absl::Status
// or absl::StatusOr) or throws WaitCancelled (any other result). A call
// that has started runs to completion and its result is returned, because
// fn may use the caller's frame. To give up on a running call, use
// spawn_blocking() (fn owns its data) and try_join().
template <class Fn>
std::invoke_result_t<Fn&> run_blocking(BlockingLane lane, Fn&& fn) {
  using T = std::invoke_result_t<Fn&>;
  // The call holds a reference to fn: the caller's frame outlives the call.
  auto* call = new internal::BlockingCallImpl<Fn&, T>(fn);
  internal::submit_blocking(call, lane);
  struct Unref {
    internal::BlockingCall* c;
    ~Unref() { c->unref(); }
  } unref{call};
  if (!call->wait(false)) {
    if constexpr (std::is_same_v<T, absl::Status> || internal::is_status_or<T>::value) {
      return absl::CancelledError("run_blocking: the waiting fiber was cancelled before the call started");
    } else {
      throw WaitCancelled("weft: run_blocking cancelled before the call started");
    }
  }
  return call->take();
}

template <class Fn>
std::invoke_result_t<Fn&> run_blocking(Fn&& fn) {
  return run_blocking(BlockingLane::kDefault, std::forward<Fn>(fn));
}

// BlockingHandle<T>
//
// The result of a spawn_blocking() call. Movable, not copyable. Destroying
// or detaching it never waits: fn runs on, and its result is dropped.
template <class T>
class BlockingHandle {
 public:
  BlockingHandle() = default;
  BlockingHandle(BlockingHandle&& o) noexcept : call_(std::exchange(o.call_, nullptr)) {}
  BlockingHandle& operator=(BlockingHandle&& o) noexcept {
    if (this != &o) {
      reset();
      call_ = std::exchange(o.call_, nullptr);
    }
    return *this;
  }
  ~BlockingHandle() { reset(); }

  // BlockingHandle::join()
  //
  // Waits until fn returns and returns its result, or rethrows its
  // exception. Suspends. Aborts on an empty handle (joined, detached or
  // default-constructed). If the runtime unwinds the joining fiber, the
  // call keeps running (fn owns its data) and the handle lets go of it.
  //
  // If the joining fiber is cancelled, join() throws WaitCancelled at once
  // and the handle lets go of the call (a queued call is dropped; a running
  // one finishes on its thread and its result is dropped).
  T join() {
    WEFT_CHECK(call_ != nullptr, "weft: BlockingHandle::join() on an empty handle "
                                 "(already joined or detached)");
    auto* c = std::exchange(call_, nullptr);
    struct Unref {
      internal::BlockingCallResult<T>* c;
      ~Unref() { c->unref(); }
    } unref{c};
    if (!c->wait(true)) throw WaitCancelled("weft: BlockingHandle::join() cancelled");
    return c->take();
  }

  // BlockingHandle::try_join() is join() with kCancelled instead of
  // WaitCancelled (for a T that is absl::Status or absl::StatusOr, the
  // status is returned as is).
  std::conditional_t<std::is_same_v<T, absl::Status> || internal::is_status_or<T>::value, T,
                     std::conditional_t<std::is_void_v<T>, absl::Status, absl::StatusOr<T>>>
  try_join() {
    WEFT_CHECK(call_ != nullptr, "weft: BlockingHandle::try_join() on an empty handle "
                                 "(already joined or detached)");
    auto* c = std::exchange(call_, nullptr);
    struct Unref {
      internal::BlockingCallResult<T>* c;
      ~Unref() { c->unref(); }
    } unref{c};
    if (!c->wait(true)) return absl::CancelledError("BlockingHandle::try_join: the waiting fiber was cancelled");
    if constexpr (std::is_void_v<T>) {
      c->take();
      return absl::OkStatus();
    } else {
      return c->take();
    }
  }

  // BlockingHandle::is_finished() is true once fn has returned.
  bool is_finished() const { return call_ != nullptr && call_->done(); }

  // BlockingHandle::detach() lets the call run on with nobody to join it.
  void detach() { reset(); }

  bool joinable() const { return call_ != nullptr; }

 private:
  template <class Fn>
  friend BlockingHandle<std::invoke_result_t<std::decay_t<Fn>&>> spawn_blocking(BlockingLane, Fn&&);

  explicit BlockingHandle(internal::BlockingCallResult<T>* c) : call_(c) {}
  void reset() {
    if (call_ != nullptr) std::exchange(call_, nullptr)->unref();
  }

  internal::BlockingCallResult<T>* call_ = nullptr;
};

// weft::spawn_blocking()
//
// Starts fn (moved into the pool; it must own its data) on the blocking
// pool and returns a handle to join it. fn is destroyed on the pool thread
// as soon as it returns, before the handle can see the result. Never
// suspends. Callable from fibers and plain threads.
template <class Fn>
BlockingHandle<std::invoke_result_t<std::decay_t<Fn>&>> spawn_blocking(BlockingLane lane, Fn&& fn) {
  using F = std::decay_t<Fn>;
  using T = std::invoke_result_t<F&>;
  auto* call = new internal::BlockingCallImpl<F, T>(std::forward<Fn>(fn));
  internal::submit_blocking(call, lane);
  return BlockingHandle<T>(call);
}

template <class Fn>
BlockingHandle<std::invoke_result_t<std::decay_t<Fn>&>> spawn_blocking(Fn&& fn) {
  return spawn_blocking(BlockingLane::kDefault, std::forward<Fn>(fn));
}

}  // namespace weft
