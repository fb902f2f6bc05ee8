// future/future.h
//
// weft::Promise<T> / weft::Future<T>: a result pushed to callbacks, for
// code that cannot block on it (a plain thread, a callback-based library)
// and for code that can (get() parks a fiber or blocks a thread).
//
//   weft::Promise<int> p(*rt);                       // callbacks run on rt's fibers
//   weft::Future<int> f = p.get_future();
//   std::move(f)
//       .then([](int v) { return v * 2; })            // a value, a StatusOr, or a Future
//       .on_success([](const int& v) { log(v); })
//       .on_failure([](const weft::Failure& e) { log(e.status()); });
//   p.set_value(21);                                  // from any thread
//
// Results. A future completes with a value (none for Future<void>) or
// fails with a weft::Failure: an error status or an exception, each
// carried unchanged down the chain (future/failure.h). get() returns the
// value or the status and rethrows the exception.
//
// Chains. Every call that consumes a future's result (then, on_success,
// on_failure, get) takes the future by rvalue or ends it: a future has one
// consumer, so its value is moved down the chain, never copied or shared.
//   then(fn)        fn(value) -> U | absl::Status | absl::StatusOr<U> |
//                   Future<U>; gives Future<U> (Future<void> for void or
//                   absl::Status). A Future is flattened. A failed
//                   future skips fn and passes its failure on; an
//                   exception thrown by fn fails the next future.
//   on_success(fn)  fn(const value&) on success; gives a Future<T> with the
//                   same result (fn throwing fails it with the exception).
//   on_failure(fn)  fn(const Failure&) or fn(const absl::Status&) on
//                   failure; gives a Future<T> with the same result.
//
// Where callbacks run: on a fiber of the promise's runtime (the Runtime&
// given to Promise, or the runtime of the fiber that made it), never on the
// thread or fiber that calls set_value() or registers the callback. A
// completion spawns one runner fiber, on the completing worker when that
// is a worker of the same runtime, through the injection queue otherwise;
// the runner also runs every continuation that its callbacks' results
// trigger on the same runtime, so a chain of then() costs one spawn.
// Callbacks may therefore block (recv on a channel, sleep, get() another
// future): they park their runner fiber only. A callback registered after
// completion runs promptly, the same way. docs/future.md says why.
//
// Rules:
//   - A future dropped with callbacks pending does not cancel them: they
//     run, and the dropped future's result is destroyed.
//   - A promise destroyed without a result fails its future with
//     kAborted, "weft::Promise destroyed without a result (broken
//     promise)"; its callbacks run with that failure. (kCancelled from a
//     wait always means the waiting fiber was cancelled.)
//   - Setting a promise twice is a programming error and aborts with a
//     message that names it.
//   - The runtime must outlive its pending promises. Once it has stopped,
//     callbacks are dropped without running and their futures fail with
//     kAborted (broken promises too).
//   - Cancellation: get(), get_for(), get_until() and the wait() family
//     observe the cancellation of the fiber that waits (its token,
//     JoinHandle::abort(), Runtime::shutdown(grace)): they return
//     kCancelled, leave the future untouched (still valid, its result
//     still to come) and cancel nothing else; a result already there is
//     returned even to a cancelled fiber. Under a CancellationShield they
//     wait on. A plain thread is never cancelled.
//
// Threads: Promise and Future objects are handles, used by one thread at a
// time (move them between threads freely); the state they share is
// thread-safe, so the promise may be set on one thread while callbacks
// are registered on another.
#pragma once

#include <exception>
#include <functional>
#include <type_traits>
#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "future/failure.h"
#include "future/internal/state.h"
#include "runtime/platform/check.h"
#include "runtime/platform/monotonic.h"

namespace weft {

template <class T>
class Future;
template <class T>
class Promise;

namespace internal {

template <class T>
struct IsFuture : std::false_type {};
template <class T>
struct IsFuture<Future<T>> : std::true_type {};
template <class T>
struct IsStatusOr : std::false_type {};
template <class T>
struct IsStatusOr<absl::StatusOr<T>> : std::true_type {};

// What then(fn) produces: the value type U of Future<U>.
template <class R>
struct ThenValue {
  using type = R;
};
template <>
struct ThenValue<absl::Status> {
  using type = void;
};
template <class U>
struct ThenValue<absl::StatusOr<U>> {
  using type = U;
};
template <class U>
struct ThenValue<Future<U>> {
  using type = U;
};

// The result of fn called with a Future<T>'s value (no argument for void).
template <class T, class Fn>
struct CallResult {
  using type = std::invoke_result_t<Fn&, T&&>;
};
template <class Fn>
struct CallResult<void, Fn> {
  using type = std::invoke_result_t<Fn&>;
};

// FutureAccess: the state behind a Future, for this package's combinators.
struct FutureAccess {
  template <class T>
  static FutureState<T>* release(Future<T>& f) {
    WEFT_CHECK(f.s_ != nullptr, "an invalid Future (moved from, or already consumed) used");
    return std::exchange(f.s_, nullptr);
  }
  template <class T>
  static Future<T> make(FutureState<T>* s) {
    return Future<T>(s);
  }
};

// new_linked() makes the state of a continuation's result: one reference
// for its Future, one for the Producer.
template <class U>
std::pair<Future<U>, Producer<U>> new_linked(const Executor& exec, const char* broken_what) {
  auto* s = new FutureState<U>(exec, 2);
  return {FutureAccess::make(s), Producer<U>(s, broken_what)};
}

inline constexpr const char* kCallbackDropped = "future callback dropped: its runtime stopped";

// Handing a result on. Once a state is complete, its consumer may read the
// result on another thread at once and end its life there. Whatever shares
// a reference count with it (an exception_ptr, an absl::Status, a value's
// innards) must therefore be moved into the state, never copied and then
// dropped here: those counts live in uninstrumented libraries, so such a
// late drop is a free ThreadSanitizer cannot order after the consumer's
// reads. Likewise an exception caught from a callback is taken as an
// exception_ptr and handed on only after the catch block has ended (which
// releases the runtime's own reference to it).

// Forward<U>: moves a result into another state (flattening a Future
// returned by then()'s function). Runs inline.
template <class U>
class Forward final : public Continuation {
 public:
  explicit Forward(Producer<U> out) : Continuation(true), out_(std::move(out)) {}
  void run(FutureStateBase* base, Runner* runner) override {
    auto* src = static_cast<FutureState<U>*>(base);
    if (src->failed()) {
      out_.fail("Future::then()", src->take_failure(), runner);
    } else {
      out_.set_value("Future::then()", runner, std::move(src->value()));
    }
  }

 private:
  Producer<U> out_;
};

// deliver() completes `out` with what a then() function returned.
template <class U, class R>
void deliver(Producer<U>& out, R&& r, Runner* runner) {
  using D = std::decay_t<R>;
  constexpr const char* kWhat = "Future::then()";
  if constexpr (std::is_same_v<D, absl::Status>) {
    if (r.ok()) {
      out.set_value(kWhat, runner, std::monostate{});
    } else {
      out.fail(kWhat, Failure(std::forward<R>(r)), runner);
    }
  } else if constexpr (IsStatusOr<D>::value) {
    if (r.ok()) {
      out.set_value(kWhat, runner, std::move(*r));
    } else {
      out.fail(kWhat, Failure(std::move(r).status()), runner);
    }
  } else if constexpr (IsFuture<D>::value) {
    if (!r.valid()) {
      out.fail(kWhat, Failure(absl::FailedPreconditionError("then() callback returned an invalid Future")),
               runner);
      return;
    }
    FutureState<U>* inner = FutureAccess::release(r);
    inner->set_continuation(new Forward<U>(std::move(out)), runner);
  } else {
    out.set_value(kWhat, runner, Stored<U>(std::forward<R>(r)));
  }
}

// Then: then(fn)'s continuation.
template <class T, class Fn, class U>
class Then final : public Continuation {
 public:
  Then(Fn fn, Producer<U> out) : Continuation(false), fn_(std::move(fn)), out_(std::move(out)) {}
  void run(FutureStateBase* base, Runner* runner) override {
    auto* src = static_cast<FutureState<T>*>(base);
    if (src->failed()) {
      out_.fail("Future::then()", src->take_failure(), runner);
      return;
    }
    using R = typename CallResult<T, Fn>::type;
    std::exception_ptr thrown;
    try {
      if constexpr (std::is_void_v<R>) {
        call(src);
        out_.set_value("Future::then()", runner, std::monostate{});
      } else {
        deliver(out_, call(src), runner);
      }
    } catch (const FiberUnwind&) {
      throw;  // the runtime is unwinding this fiber; out_ breaks as it is destroyed
    } catch (...) {
      thrown = std::current_exception();
    }
    if (thrown && out_.valid() && !out_.state()->done()) {
      out_.fail("Future::then()", Failure(std::move(thrown)), runner);
    }
  }

 private:
  decltype(auto) call(FutureState<T>* src) {
    if constexpr (std::is_void_v<T>) {
      return std::invoke(fn_);
    } else {
      return std::invoke(fn_, std::move(src->value()));
    }
  }
  Fn fn_;
  Producer<U> out_;
};

// OnSuccess / OnFailure: observe the result, then pass it on unchanged
// (or fail with what the observer threw).
template <class T, class Fn>
class OnSuccess final : public Continuation {
 public:
  OnSuccess(Fn fn, Producer<T> out) : Continuation(false), fn_(std::move(fn)), out_(std::move(out)) {}
  void run(FutureStateBase* base, Runner* runner) override {
    constexpr const char* kWhat = "Future::on_success()";
    auto* src = static_cast<FutureState<T>*>(base);
    if (src->failed()) {
      out_.fail(kWhat, src->take_failure(), runner);
      return;
    }
    std::exception_ptr thrown;
    try {
      if constexpr (std::is_void_v<T>) {
        std::invoke(fn_);
      } else {
        std::invoke(fn_, std::as_const(src->value()));
      }
    } catch (const FiberUnwind&) {
      throw;
    } catch (...) {
      thrown = std::current_exception();
    }
    if (thrown) {
      out_.fail(kWhat, Failure(std::move(thrown)), runner);
    } else {
      out_.set_value(kWhat, runner, std::move(src->value()));
    }
  }

 private:
  Fn fn_;
  Producer<T> out_;
};

template <class T, class Fn>
class OnFailure final : public Continuation {
 public:
  OnFailure(Fn fn, Producer<T> out) : Continuation(false), fn_(std::move(fn)), out_(std::move(out)) {}
  void run(FutureStateBase* base, Runner* runner) override {
    constexpr const char* kWhat = "Future::on_failure()";
    auto* src = static_cast<FutureState<T>*>(base);
    if (!src->failed()) {
      out_.set_value(kWhat, runner, std::move(src->value()));
      return;
    }
    Failure f = src->take_failure();
    std::exception_ptr thrown;
    try {
      if constexpr (std::is_invocable_v<Fn&, const Failure&>) {
        std::invoke(fn_, std::as_const(f));
      } else {
        std::invoke(fn_, f.status());
      }
    } catch (const FiberUnwind&) {
      throw;
    } catch (...) {
      thrown = std::current_exception();
    }
    if (thrown) {
      // fn may have rethrown f's own exception: drop f here, first.
      { Failure dropped = std::move(f); }
      out_.fail(kWhat, Failure(std::move(thrown)), runner);
    } else {
      out_.fail(kWhat, std::move(f), runner);
    }
  }

 private:
  Fn fn_;
  Producer<T> out_;
};

template <class T>
constexpr void check_future_type() {
  static_assert(!std::is_reference_v<T>, "weft::Future<T&> is not supported: use a pointer or a value");
  static_assert(!std::is_same_v<std::decay_t<T>, absl::Status> && !IsStatusOr<std::decay_t<T>>::value,
                "weft::Future<absl::Status/StatusOr<U>>: use Future<void>/Future<U>; the error travels in "
                "the future");
  static_assert(!IsFuture<std::decay_t<T>>::value, "weft::Future<Future<U>>: use Future<U>");
}

}  // namespace internal

// Future<T>: the consumer end of a Promise<T>. Move-only; one consumer.
template <class T>
class Future {
  static_assert((internal::check_future_type<T>(), true));

 public:
  using value_type = T;
  // What get() returns: absl::StatusOr<T>, or absl::Status for void.
  using Result = std::conditional_t<std::is_void_v<T>, absl::Status, absl::StatusOr<internal::Stored<T>>>;

  // An invalid future (valid() is false).
  Future() = default;
  Future(Future&& o) noexcept : s_(std::exchange(o.s_, nullptr)) {}
  Future& operator=(Future&& o) noexcept {
    if (this != &o) {
      reset();
      s_ = std::exchange(o.s_, nullptr);
    }
    return *this;
  }
  // Dropping a future never cancels anything: its callbacks still run and
  // its result is destroyed once the promise sets it.
  ~Future() { reset(); }

  // Future::valid()
  //
  // False once the future was moved from or consumed (get() returned a
  // result, or then/on_success/on_failure took it).
  bool valid() const { return s_ != nullptr; }

  // Future::ready()
  //
  // True once the result is there. Never waits.
  bool ready() const { return state("Future::ready()")->done(); }

  // Future::wait() / wait_for() / wait_until()
  //
  // Wait for the result without consuming it: OK once it is there,
  // kDeadlineExceeded when the timed forms give up, kCancelled if the
  // waiting fiber is cancelled first (see the file comment). Suspend on a
  // fiber, block a thread.
  absl::Status wait() const {
    return internal::wake_status(state("Future::wait()")->wait_until(-1), "Future::wait()");
  }
  absl::Status wait_for(absl::Duration d) const { return wait_until(absl::Now() + d); }
  absl::Status wait_until(absl::Time deadline) const {
    return internal::wake_status(state("Future::wait_until()")->wait_until(internal::to_monotonic(deadline)),
                                 "Future::wait_until()");
  }

  // Future::get()
  //
  // Waits for the result and returns it: the value (OK for void) or the
  // error status; rethrows the exception of a future that failed with one.
  // Consumes the future (valid() becomes false). If the waiting fiber is
  // cancelled first, returns kCancelled and leaves the future valid, to be
  // waited for again (a future whose own result is kCancelled is consumed:
  // tell them apart with valid()). Suspends on a fiber, blocks a thread.
  Result get() { return get_impl(-1); }

  // Future::get_for() / get_until()
  //
  // As get(), but gives up at the deadline with kDeadlineExceeded, leaving
  // the future valid so it can be waited for again.
  Result get_for(absl::Duration d) { return get_until(absl::Now() + d); }
  Result get_until(absl::Time deadline) { return get_impl(internal::to_monotonic(deadline)); }

  // Future::then()
  //
  // Returns the future of fn(value), run on a fiber of this future's
  // runtime once the value is there (see the file comment). fn takes the
  // value (by value, const& or &&; nothing for Future<void>) and returns
  // U, void, absl::Status, absl::StatusOr<U> or Future<U>.
  template <class Fn>
  auto then(Fn&& fn) && {
    using R = typename internal::CallResult<T, std::decay_t<Fn>>::type;
    using U = typename internal::ThenValue<std::decay_t<R>>::type;
    auto* src = internal::FutureAccess::release(*this);
    auto [out, producer] = internal::new_linked<U>(src->executor(), internal::kCallbackDropped);
    src->set_continuation(new internal::Then<T, std::decay_t<Fn>, U>(std::forward<Fn>(fn), std::move(producer)),
                          nullptr);
    return std::move(out);
  }

  // Future::on_success()
  //
  // Runs fn(const T&) (fn() for void) on a fiber of the runtime if the
  // future succeeds; returns a future with the same result.
  template <class Fn>
  Future<T> on_success(Fn&& fn) && {
    auto* src = internal::FutureAccess::release(*this);
    auto [out, producer] = internal::new_linked<T>(src->executor(), internal::kCallbackDropped);
    src->set_continuation(new internal::OnSuccess<T, std::decay_t<Fn>>(std::forward<Fn>(fn), std::move(producer)),
                          nullptr);
    return std::move(out);
  }

  // Future::on_failure()
  //
  // Runs fn(const Failure&) or fn(const absl::Status&) on a fiber of the
  // runtime if the future fails; returns a future with the same result.
  template <class Fn>
  Future<T> on_failure(Fn&& fn) && {
    static_assert(std::is_invocable_v<std::decay_t<Fn>&, const Failure&> ||
                      std::is_invocable_v<std::decay_t<Fn>&, const absl::Status&>,
                  "on_failure(fn): fn takes const weft::Failure& or const absl::Status&");
    auto* src = internal::FutureAccess::release(*this);
    auto [out, producer] = internal::new_linked<T>(src->executor(), internal::kCallbackDropped);
    src->set_continuation(new internal::OnFailure<T, std::decay_t<Fn>>(std::forward<Fn>(fn), std::move(producer)),
                          nullptr);
    return std::move(out);
  }

 private:
  friend struct internal::FutureAccess;
  template <class>
  friend class Promise;
  explicit Future(internal::FutureState<T>* s) : s_(s) {}

  internal::FutureState<T>* state(const char* what) const {
    WEFT_CHECK(s_ != nullptr, "%s on an invalid Future (moved from, or already consumed)", what);
    return s_;
  }
  Result get_impl(int64_t deadline) {
    switch (state("Future::get()")->wait_until(deadline)) {
      case internal::WakeReason::kNotified:
        break;
      case internal::WakeReason::kTimeout:
        return absl::DeadlineExceededError("Future::get_for(): no result before the deadline");
      default:
        return absl::CancelledError("Future::get(): the waiting fiber was cancelled");
    }
    struct Unref {
      internal::FutureState<T>* s;
      ~Unref() { s->unref(); }
    } unref{std::exchange(s_, nullptr)};
    if (unref.s->failed()) {
      Failure f = unref.s->take_failure();
      f.rethrow_if_exception();
      return f.status();
    }
    if constexpr (std::is_void_v<T>) {
      return absl::OkStatus();
    } else {
      return std::move(unref.s->value());
    }
  }
  void reset() {
    if (s_ != nullptr) std::exchange(s_, nullptr)->unref();
  }

  internal::FutureState<T>* s_ = nullptr;
};

// Promise<T>: the producer end. Move-only. Set it once, from any thread.
template <class T>
class Promise {
  static_assert((internal::check_future_type<T>(), true));

 public:
  // Promise()
  //
  // A promise whose callbacks run on the calling fiber's (or worker's)
  // runtime. Off a runtime this aborts: use Promise(Runtime&).
  Promise() : Promise(internal::current_executor_or_die("weft::Promise()")) {}
  // Promise(Runtime&)
  //
  // A promise whose callbacks run on fibers of `runtime`, which must
  // outlive it (or be stopped first; then the callbacks are dropped).
  explicit Promise(Runtime& runtime) : Promise(internal::Executor{&runtime, nullptr}) {}

  Promise(Promise&&) noexcept = default;
  Promise& operator=(Promise&&) noexcept = default;
  // Destroying a promise without a result fails its future with
  // kAborted (a broken promise).
  ~Promise() = default;

  // Promise::get_future()
  //
  // The future of this promise; only once (a second call aborts).
  Future<T> get_future() {
    WEFT_CHECK(out_.valid(), "Promise::get_future() on a moved-from promise");
    WEFT_CHECK(future_.valid(), "Promise::get_future() called twice");
    return std::move(future_);
  }

  // Promise::set_value()
  //
  // Completes the future with a value. Callbacks run later, on fibers of
  // the runtime. Setting a promise twice (any set_*) aborts.
  template <class U = T>
    requires(!std::is_void_v<U>)
  void set_value(U&& v) {
    producer("Promise::set_value()").set_value("Promise::set_value()", nullptr, internal::Stored<T>(std::forward<U>(v)));
  }
  void set_value()
    requires std::is_void_v<T>
  {
    producer("Promise::set_value()").set_value("Promise::set_value()", nullptr, std::monostate{});
  }

  // Promise::set_error()
  //
  // Fails the future with a status, which must not be OK.
  void set_error(absl::Status status) {
    WEFT_CHECK(!status.ok(), "Promise::set_error() with an OK status: use set_value()");
    producer("Promise::set_error()").fail("Promise::set_error()", Failure(std::move(status)), nullptr);
  }

  // Promise::set_exception()
  //
  // Fails the future with an exception (non-null).
  void set_exception(std::exception_ptr e) {
    WEFT_CHECK(e != nullptr, "Promise::set_exception() with a null exception_ptr");
    producer("Promise::set_exception()").fail("Promise::set_exception()", Failure(std::move(e)), nullptr);
  }

  // Promise::set_result()
  //
  // set_value() or set_error() from a StatusOr (a Status for void).
  void set_result(typename Future<T>::Result r) {
    if constexpr (std::is_void_v<T>) {
      if (r.ok()) {
        set_value();
      } else {
        set_error(std::move(r));
      }
    } else {
      if (r.ok()) {
        set_value(std::move(*r));
      } else {
        // Moved out: a copy would leave r holding the status's reference
        // until after the consumer woke (TSan cannot see abseil's count).
        set_error(std::move(r).status());
      }
    }
  }

  // Promise::set_failure()
  //
  // Fails the future with a Failure taken from another future.
  void set_failure(Failure f) { producer("Promise::set_failure()").fail("Promise::set_failure()", std::move(f), nullptr); }

 private:
  explicit Promise(internal::Executor exec) {
    auto [f, p] = internal::new_linked<T>(exec, "weft::Promise destroyed without a result");
    future_ = std::move(f);
    out_ = std::move(p);
  }
  internal::Producer<T>& producer(const char* what) {
    WEFT_CHECK(out_.valid(), "%s on a moved-from promise", what);
    return out_;
  }

  Future<T> future_;
  internal::Producer<T> out_;
};

}  // namespace weft
