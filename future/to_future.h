// future/to_future.h
//
// to_future(): a JoinHandle<T> as a Future<T>, so a fiber's result can be
// pushed to callbacks or combined with when_all()/when_any().
//
//   weft::Future<int> f = weft::to_future(weft::spawn([] { return 6 * 7; }));
//
// The fiber's value becomes the future's value; an exception it throws
// (FiberCancelled if the runtime cancelled it, SpawnError if it could not
// start) fails the future with that exception. Cancelling the joining
// fiber (Runtime::shutdown(grace) does) does not fail the future: it still
// waits for the fiber's outcome.
//
// Cost: JoinHandle has no completion hook, so to_future() spawns a small
// fiber that joins the handle and sets the promise: one spawn and one
// parked fiber (its stack) per converted handle until the fiber finishes.
#pragma once

#include <exception>
#include <type_traits>
#include <utility>

#include "future/future.h"
#include "runtime/runtime.h"

namespace weft {

namespace internal {

// join_into() is the joining fiber's body. Its join is shielded from
// cancellation: the future is the joined fiber's outcome, not the joiner's,
// so a cancelled joiner (Runtime::shutdown(grace) cancels every fiber)
// waits on rather than failing the future with WaitCancelled while the
// joined fiber may still finish (shutdown cancels that one too, and its
// unwind ends this wait with FiberUnwind). An exception is handed on only
// after the catch block has ended, moved into the state (future/future.h,
// "Handing a result on").
template <class T>
auto join_into(JoinHandle<T> h, Promise<T> p) {
  return [h = std::move(h), p = std::move(p)]() mutable {
    std::exception_ptr thrown;
    try {
      this_fiber::CancellationShield shield;
      if constexpr (std::is_void_v<T>) {
        h.join();
        p.set_value();
      } else {
        p.set_value(h.join());
      }
    } catch (const FiberUnwind&) {
      throw;  // the runtime is stopping: p breaks (kAborted) as it is destroyed
    } catch (...) {
      thrown = std::current_exception();
    }
    if (thrown) p.set_exception(std::move(thrown));
  };
}

}  // namespace internal

// to_future(JoinHandle<T>&&)
//
// On a fiber or worker: the future of the handle's fiber, whose callbacks
// run on the current runtime. Aborts off a runtime; use the Runtime& form.
template <class T>
Future<T> to_future(JoinHandle<T>&& handle) {
  WEFT_CHECK(handle.joinable(), "weft::to_future() of an empty JoinHandle");
  Promise<T> p;
  Future<T> f = p.get_future();
  spawn(internal::join_into(std::move(handle), std::move(p))).detach();
  return f;
}

// to_future(Runtime&, JoinHandle<T>&&)
//
// From any thread: the joining fiber and the future's callbacks run on
// `runtime`.
template <class T>
Future<T> to_future(Runtime& runtime, JoinHandle<T>&& handle) {
  WEFT_CHECK(handle.joinable(), "weft::to_future() of an empty JoinHandle");
  Promise<T> p(runtime);
  Future<T> f = p.get_future();
  runtime.spawn(internal::join_into(std::move(handle), std::move(p))).detach();
  return f;
}

}  // namespace weft
