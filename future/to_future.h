// future/to_future.h
//
// to_future(): a JoinHandle<T> as a Future<T>, so a fiber's result can be
// pushed to callbacks or combined with when_all()/when_any().
//
//   weft::Future<int> f = weft::to_future(weft::spawn([] { return 6 * 7; }));
//
// The fiber's value becomes the future's value; an exception it throws
// (FiberCancelled if the runtime cancelled it, SpawnError if it could not
// start) fails the future with that exception.
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

template <class T>
auto join_into(JoinHandle<T> h, Promise<T> p) {
  return [h = std::move(h), p = std::move(p)]() mutable {
    try {
      if constexpr (std::is_void_v<T>) {
        h.join();
        p.set_value();
      } else {
        p.set_value(h.join());
      }
    } catch (const FiberUnwind&) {
      throw;  // the runtime is stopping: p breaks (kAborted) as it is destroyed
    } catch (...) {
      p.set_exception(std::current_exception());
    }
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
