// lifecycle/scope.h
//
// Structured concurrency: fibers that cannot outlive the code that started
// them.
//
//   absl::Status st = weft::scoped([&](weft::TaskScope& scope) {
//     auto a = scope.spawn([&] { return fetch(x); });    // absl::StatusOr<Row>
//     auto b = scope.spawn([&] { return fetch(y); });
//   });   // waits for both; the first failure cancels the other
//
// TaskScope owns a cancellation token, a child of the creating fiber's
// current token (this_fiber::cancellation()), so cancelling the fiber that
// owns the scope cancels everything under it, and scopes nest. Each fiber
// spawned in the scope runs with that token.
//
// Failure: a child fails when it throws, or when it returns a non-OK
// absl::Status or absl::StatusOr. The first failure cancels the scope's
// token (the siblings' waits return kCancelled) and is what join()
// reports: its status, or its exception, rethrown. Failures after the
// first (typically the siblings' kCancelled) are not reported.
//
// Leaving a scope waits for all of its fibers. join() waits too, and may
// be called more than once. If the fiber that joins is cancelled while it
// waits, it cancels the scope and keeps waiting (no child outlives its
// scope). join() reports the first failure; else kCancelled if the scope
// was cancelled (cancel(), its parent token, or the joiner's
// cancellation); else OK.
//
// The destructor joins; a failure that nobody observed (no join() after
// it, and no exception leaving the scope's block) is a programming error
// and aborts with its message. Prefer weft::scoped(), which joins for you.
#pragma once

#include <atomic>
#include <exception>
#include <memory>
#include <mutex>
#include <optional>
#include <source_location>
#include <type_traits>
#include <tuple>
#include <utility>
#include <variant>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "runtime/cancel.h"
#include "runtime/platform/check.h"
#include "runtime/runtime.h"
#include "sync/mutex.h"
#include "sync/wait_group.h"

namespace weft {

namespace internal {
template <class T>
struct IsStatusOrResult : std::false_type {};
template <class T>
struct IsStatusOrResult<absl::StatusOr<T>> : std::true_type {};
template <class T>
inline constexpr bool kIsStatusLike = std::is_same_v<T, absl::Status> || IsStatusOrResult<T>::value;

// status_of() is the status a result carries (OK for plain values).
template <class T>
absl::Status status_of(const T& v) {
  if constexpr (std::is_same_v<T, absl::Status>) {
    return v;
  } else if constexpr (IsStatusOrResult<T>::value) {
    return v.status();
  } else {
    return absl::OkStatus();
  }
}
}  // namespace internal

// ScopeHandle<R>: the result slot of one fiber of a TaskScope. Read it
// after the scope has been joined.
template <class R>
class ScopeHandle {
 public:
  // has_value() is whether the fiber returned (did not throw and was not
  // cancelled before it started).
  bool has_value() const { return slot_->value.has_value(); }
  // value() is what the fiber returned. Calling it before the scope was
  // joined, or when has_value() is false, is a programming error.
  R& value() const {
    WEFT_CHECK(slot_->done.load(std::memory_order_acquire),
               "ScopeHandle::value() before the fiber finished (join the scope first)");
    WEFT_CHECK(slot_->value.has_value(),
               "ScopeHandle::value() of a fiber that produced no value (it threw or was cancelled "
               "before it started)");
    return *slot_->value;
  }

 private:
  friend class TaskScope;
  struct Slot {
    std::optional<R> value;
    std::atomic<bool> done{false};
  };
  explicit ScopeHandle(std::shared_ptr<Slot> s) : slot_(std::move(s)) {}
  std::shared_ptr<Slot> slot_;
};

template <>
class ScopeHandle<void> {
 public:
  bool has_value() const { return slot_->returned.load(std::memory_order_acquire); }

 private:
  friend class TaskScope;
  struct Slot {
    std::atomic<bool> returned{false};
    std::atomic<bool> done{false};
  };
  explicit ScopeHandle(std::shared_ptr<Slot> s) : slot_(std::move(s)) {}
  std::shared_ptr<Slot> slot_;
};

class TaskScope {
 public:
  // A scope under the calling fiber's current token (off a fiber: under a
  // token of its own).
  TaskScope() : TaskScope(this_fiber::cancellation()) {}
  // A scope under `parent`.
  explicit TaskScope(const CancellationToken& parent) : token_(parent.child()) {}
  TaskScope(const TaskScope&) = delete;
  TaskScope& operator=(const TaskScope&) = delete;
  ~TaskScope() noexcept(false);

  // TaskScope::spawn()
  //
  // Starts fn on a new fiber under the scope's token and returns the slot
  // its result lands in. fn may return void, a value, absl::Status or
  // absl::StatusOr. Spawning into a scope that has been joined and
  // finished is allowed (join again to wait for it).
  template <class Fn>
  ScopeHandle<internal::SpawnResult<Fn>> spawn(Fn&& fn, std::source_location loc = std::source_location::current()) {
    using R = internal::SpawnResult<Fn>;
    using Slot = typename ScopeHandle<R>::Slot;
    auto slot = std::make_shared<Slot>();
    running_.add(1);
    SpawnOptions opts;
    opts.token = token_;
    // The guard is a capture, so it also fires when the fiber is cancelled
    // before it starts (the runtime then destroys fn without running it).
    // It holds the fiber's one reference to the slot (the body uses `s`),
    // which it drops before the scope can learn that the child finished
    // (ExitGuard).
    Slot* s = slot.get();
    auto body = [this, s, guard = ExitGuard(this, slot, &slot->done), f = std::forward<Fn>(fn)]() mutable {
      try {
        if constexpr (std::is_void_v<R>) {
          f();
          s->returned.store(true, std::memory_order_release);
        } else {
          s->value.emplace(f());
          absl::Status st = internal::status_of(*s->value);
          if (!st.ok()) fail(std::move(st), nullptr);
        }
      } catch (const internal::FiberUnwind&) {
        throw;
      } catch (...) {
        fail(absl::OkStatus(), std::current_exception());
      }
    };
    weft::spawn(opts, std::move(body), loc).detach();  // ExitGuard accounts for it
    return ScopeHandle<R>(std::move(slot));
  }

  // TaskScope::join()
  //
  // Waits for every fiber spawned so far. Returns OK, or the first
  // failure's status; rethrows the first failure's exception. Suspends.
  absl::Status join();

  // cancel() cancels every fiber of the scope (their waits return
  // kCancelled). join() still waits for them; it reports kCancelled unless
  // a child failed first.
  void cancel() { token_.cancel(); }
  const CancellationToken& token() const { return token_; }
  // running() is the number of fibers of the scope not yet finished.
  int64_t running() const { return running_.count(); }

 private:
  // ExitGuard: marks a child finished when its function object dies.
  // The child's reference to its slot goes first: the slot's value may
  // share what it owns with what join() returns (a status's message, whose
  // reference count lives in abseil, where TSan cannot see it), and a
  // release after running_.done() could come after the joiner has used
  // and dropped its copy, leaving the free here unordered with its reads.
  class ExitGuard {
   public:
    ExitGuard(TaskScope* scope, std::shared_ptr<void> slot, std::atomic<bool>* done)
        : scope_(scope), slot_(std::move(slot)), done_(done) {}
    ExitGuard(ExitGuard&& o) noexcept
        : scope_(std::exchange(o.scope_, nullptr)), slot_(std::move(o.slot_)), done_(o.done_) {}
    ExitGuard& operator=(ExitGuard&&) = delete;
    ~ExitGuard() {
      if (scope_ == nullptr) return;
      done_->store(true, std::memory_order_release);
      slot_.reset();  // done_ may be gone from here on
      scope_->running_.done();  // last: the scope may end right after
    }

   private:
    TaskScope* scope_;
    std::shared_ptr<void> slot_;
    std::atomic<bool>* done_;
  };

  void fail(absl::Status st, std::exception_ptr e);

  CancellationToken token_;
  WaitGroup running_;
  Mutex mu_;
  bool failed_ = false;        // under mu_
  bool observed_ = true;       // under mu_: the failure was reported by join()
  absl::Status first_status_;  // under mu_
  std::exception_ptr first_exception_;
};

// weft::scoped()
//
// Runs body(scope) on the calling fiber with a new TaskScope and joins it:
// returns body's failure or the scope's first failure (OK otherwise);
// rethrows an exception from body (after joining) or from a child. A
// failure body returns comes first: it is returned even if a child threw.
template <class Body>
absl::Status scoped(Body&& body) {
  TaskScope scope;
  try {
    if constexpr (std::is_void_v<std::invoke_result_t<Body&, TaskScope&>>) {
      body(scope);
    } else {
      absl::Status st = internal::status_of(body(scope));
      if (!st.ok()) {
        scope.cancel();
        // body's own failure comes first, over a child's status or
        // exception (join() rethrows the latter: not out of here).
        try {
          (void)scope.join();
        } catch (...) {
        }
        return st;
      }
    }
  } catch (...) {
    scope.cancel();
    throw;  // the destructor joins
  }
  return scope.join();
}

// weft::race()
//
// Runs every fn on its own fiber and returns the result of the first to
// complete (or rethrows its exception); the others are cancelled, and
// race() returns only after all of them have finished. The fns must
// return the same type R (not void). If the calling fiber is cancelled
// first, race() cancels them all and returns kCancelled (R a status type)
// or throws WaitCancelled.
template <class Fn, class... Fns>
internal::SpawnResult<Fn> race(Fn&& first, Fns&&... rest) {
  using R = internal::SpawnResult<Fn>;
  static_assert(!std::is_void_v<R>, "weft::race() needs fns that return a value");
  static_assert((std::is_same_v<R, internal::SpawnResult<Fns>> && ...),
                "weft::race(): every fn must return the same type");
  CancellationToken token = this_fiber::cancellation().child();
  std::optional<R> winner;
  std::exception_ptr error;
  std::atomic<bool> decided{false};
  WaitGroup running(static_cast<int64_t>(1 + sizeof...(Fns)));
  auto start = [&](auto&& fn) {
    SpawnOptions opts;
    opts.token = token;
    struct Done {
      WaitGroup* wg;
      explicit Done(WaitGroup* w) : wg(w) {}
      Done(Done&& o) noexcept : wg(std::exchange(o.wg, nullptr)) {}
      ~Done() {
        if (wg != nullptr) wg->done();
      }
    };
    // The guard is a capture: it fires even if the fiber never runs.
    weft::spawn(opts, [&, done = Done(&running), fn = std::forward<decltype(fn)>(fn)]() mutable {
      try {
        R r = fn();
        if (!decided.exchange(true)) {
          winner.emplace(std::move(r));
          token.cancel();
        }
      } catch (const internal::FiberUnwind&) {
        throw;
      } catch (...) {
        if (!decided.exchange(true)) {
          error = std::current_exception();
          token.cancel();
        }
      }
    }).detach();
  };
  start(std::forward<Fn>(first));
  (start(std::forward<Fns>(rest)), ...);
  if (!running.wait().ok()) {
    token.cancel();
    this_fiber::CancellationShield shield;
    (void)running.wait();
  }
  if (error) std::rethrow_exception(error);
  if (winner.has_value()) return std::move(*winner);
  if constexpr (internal::kIsStatusLike<R>) {
    return absl::CancelledError("race: cancelled before any fn completed");
  } else {
    throw WaitCancelled("weft: race() cancelled before any fn completed");
  }
}

namespace internal {
// The value all() collects from a fn returning R.
template <class R>
struct AllValue {
  using type = R;
  static type take(R& r) { return std::move(r); }
};
template <>
struct AllValue<void> {
  using type = std::monostate;
};
template <>
struct AllValue<absl::Status> {
  using type = std::monostate;
  static type take(absl::Status&) { return {}; }
};
template <class U>
struct AllValue<absl::StatusOr<U>> {
  using type = U;
  static type take(absl::StatusOr<U>& r) { return std::move(*r); }
};
template <class R>
typename AllValue<R>::type all_take(const ScopeHandle<R>& h) {
  if constexpr (std::is_void_v<R>) {
    return {};
  } else {
    return AllValue<R>::take(h.value());
  }
}
template <class R>
using AllValueOf = typename AllValue<R>::type;
}  // namespace internal

// weft::all()
//
// Runs every fn on its own fiber in a TaskScope and returns all their
// values, in argument order (void: std::monostate; absl::Status:
// std::monostate; absl::StatusOr<U>: U), or the first failure (a non-OK
// status is returned, an exception rethrown) after cancelling and joining
// the rest.
template <class... Fns>
absl::StatusOr<std::tuple<internal::AllValueOf<internal::SpawnResult<Fns>>...>> all(Fns&&... fns) {
  TaskScope scope;
  auto handles = std::make_tuple(scope.spawn(std::forward<Fns>(fns))...);
  absl::Status st = scope.join();
  if (!st.ok()) return st;
  return std::apply([](auto&... h) { return std::make_tuple(internal::all_take(h)...); }, handles);
}

}  // namespace weft
