// runtime/internal/worker_stack.h
//
// on_worker_stack(f): runs f() to completion on a stack that belongs to
// the worker running the calling fiber, and returns what f returns.
//
// Why: every fiber has its own stack, so with a thousand connections the
// stack lines a request touches are cold by the time the same fiber comes
// round again. A short computation with a large frame (Beast's header
// parser keeps a 4 KiB buffer in its frame and touches the lines below it)
// pays misses there on every call. Run on the worker's stack, which every
// fiber of that worker shares, it touches lines that the previous call,
// for some other fiber, has just warmed. Go's runtime has the same device
// for its own code (systemstack).
//
// Rules:
//   - f must not suspend: no I/O, lock, sleep, yield, channel or join.
//     Suspending there aborts with a message (Worker::suspend_from checks).
//   - f returns a value (moved out) or void; an exception from f is
//     rethrown to the caller.
//   - Off a fiber (a plain thread, or a worker's own loop) and inside f,
//     f runs where the caller is.
//   - The stack has the runtime's default fiber stack size, with a guard
//     page below it; an overflow is reported as such.
// Costs two context switches (tens of nanoseconds); worth it only where the
// frame's misses cost more. NOT a general-purpose API: for the runtime and
// net/.
#pragma once

#include <optional>
#include <type_traits>
#include <utility>

#include "runtime/internal/worker.h"

namespace weft::internal {

template <class F>
std::invoke_result_t<F&> on_worker_stack(F&& f) {
  using R = std::invoke_result_t<F&>;
  static_assert(!std::is_reference_v<R>, "on_worker_stack: f must return a value (or void), not a reference");
  if constexpr (std::is_void_v<R>) {
    auto call = [&f] { f(); };
    Worker::run_on_worker_stack([](void* p) { (*static_cast<decltype(call)*>(p))(); }, &call);
  } else {
    std::optional<R> result;  // R need not be default-constructible
    auto call = [&f, &result] { result.emplace(f()); };
    Worker::run_on_worker_stack([](void* p) { (*static_cast<decltype(call)*>(p))(); }, &call);
    return std::move(*result);
  }
}

}  // namespace weft::internal
