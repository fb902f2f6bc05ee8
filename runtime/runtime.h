// runtime/runtime.h
//
// weft's public runtime API: a Runtime of worker threads that run stackful
// fibers, spawn() and JoinHandle, and this_fiber (yield, sleep, ids).
//
//   auto rt = weft::Runtime::create({.workers = 4});
//   int v = (*rt)->block_on([] {
//     auto h = weft::spawn([] { return 6 * 7; });
//     return h.join();
//   });
//
// Fibers are scheduled by work stealing: a fiber may resume on a different
// worker thread after any call that suspends. Functions that can suspend
// say so. Thread-locals of your own are therefore per-thread, not
// per-fiber: do not keep their addresses across a suspension.
//
// Cancellation (runtime/cancel.h, docs/cancellation.md): every fiber has a
// current token; once it is cancelled, the fiber's waits return kCancelled.
// JoinHandle::abort() cancels one fiber; a fiber cancelled before it
// started never runs.
//
// Shutdown: Runtime::shutdown(grace) cancels every fiber and lets them
// finish for up to `grace`; then, like shutdown() and the destructor, it
// unwinds every fiber that has not finished: a fiber that never ran is
// dropped; a suspended one is resumed once more and its stack unwound (the
// suspension point throws an internal exception that is not a
// std::exception: `catch (...)` must rethrow). join() on a fiber that was
// cancelled without producing a result throws weft::FiberCancelled.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <functional>
#include <memory>
#include <new>
#include <optional>
#include <source_location>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "runtime/cancel.h"
#include "runtime/internal/park.h"
#include "runtime/options.h"
#include "runtime/internal/spawn.h"
#include "runtime/platform/check.h"

namespace weft {

// Thrown by JoinHandle::join() when the fiber was cancelled without
// producing a result: aborted (or its token cancelled) before it started,
// or unwound by runtime shutdown.
class FiberCancelled : public std::runtime_error {
 public:
  FiberCancelled() : std::runtime_error("weft: fiber was cancelled before it produced a result") {}
};


// Thrown by JoinHandle::join() when the fiber could not start because no
// stack could be mapped (ENOMEM: memory or vm.max_map_count exhausted).
class SpawnError : public std::runtime_error {
 public:
  explicit SpawnError(const std::string& what) : std::runtime_error("weft: " + what) {}
};

struct SpawnOptions {
  // Usable stack size; 0 means the runtime's default.
  size_t stack_size = 0;
  // The fiber's cancellation token: this_fiber::cancellation() is a child
  // of it. None: only abort() and Runtime::shutdown(grace) cancel it.
  std::optional<CancellationToken> token = std::nullopt;
};

namespace internal {
template <class T>
struct JoinResultOf {
  using type = absl::StatusOr<T>;
};
template <>
struct JoinResultOf<void> {
  using type = absl::Status;
};
template <>
struct JoinResultOf<absl::Status> {
  using type = absl::Status;
};
template <class U>
struct JoinResultOf<absl::StatusOr<U>> {
  using type = absl::StatusOr<U>;
};
}  // namespace internal

// What JoinHandle::try_join() returns: absl::Status for a fiber returning
// void or absl::Status, absl::StatusOr<U> for one returning
// absl::StatusOr<U>, absl::StatusOr<T> otherwise. A fiber's own status is
// returned as is (flattened), so a fiber that returned kCancelled and a
// join that was cancelled both read kCancelled.
template <class T>
using JoinResult = typename internal::JoinResultOf<T>::type;

namespace internal {

template <class T>
class JoinState : public JoinStateBase {
 public:
  using JoinStateBase::JoinStateBase;
  std::optional<T> value;
};
template <>
class JoinState<void> : public JoinStateBase {
 public:
  using JoinStateBase::JoinStateBase;
};

template <class Fn, class T>
class Task final : public TaskBase {
 public:
  Task(Fn&& fn, JoinState<T>* state) : fn_(std::move(fn)), state_(state) {}
  void run() override {
    std::exception_ptr error;
    bool cancelled = false;
    try {
      if constexpr (std::is_void_v<T>) {
        std::invoke(*fn_);
      } else {
        state_->value.emplace(std::invoke(*fn_));
      }
    } catch (const FiberUnwind&) {
      cancelled = true;
    } catch (...) {
      error = std::current_exception();
    }
    fn_.reset();  // captures die on the fiber, before the joiner wakes
    // Moved: the joiner alone must drop the exception (its reference count is
    // invisible to TSan, so a late release here would race with the reader).
    state_->complete(std::move(error), cancelled, current_fiber_id());
  }
  void cancel() override {
    fn_.reset();
    state_->complete(nullptr, true, 0);
  }
  void fail(const absl::Status& why) override {
    fn_.reset();
    // Made in its own statement: the exception is a copy that shares its
    // message with the temporary SpawnError, and a temporary in the call's
    // full expression would die only after complete() woke the joiner, so
    // it could drop the message's last reference after the joiner read it.
    // That reference count lives in libstdc++, where TSan cannot see it.
    std::exception_ptr error = std::make_exception_ptr(SpawnError(std::string(why.message())));
    state_->complete(std::move(error), false, 0);
  }

 private:
  std::optional<Fn> fn_;
  JoinState<T>* state_;
};

struct RuntimeAccess;  // runtime_access.h (tests)

template <class Fn>
using SpawnResult = std::invoke_result_t<std::decay_t<Fn>&>;

template <class Fn>
absl::StatusOr<JoinState<SpawnResult<Fn>>*> start_fiber(Scheduler* sched, const SpawnOptions& opts,
                                                        const std::source_location& loc, int target_worker,
                                                        Fn&& fn) {
  const size_t stack_size = opts.stack_size;
  CancelState* token = opts.token ? opts.token->state() : nullptr;
  using T = SpawnResult<Fn>;
  using TaskT = Task<std::decay_t<Fn>, T>;
  using StateT = JoinState<T>;
  static_assert(alignof(StateT) <= 16 && alignof(TaskT) <= 16,
                "over-aligned fiber function objects are not supported");
  constexpr size_t kStateSize = (sizeof(StateT) + 15) & ~size_t{15};
  void* mem = nullptr;
  auto fiber = new_fiber(sched, stack_size, kStateSize + sizeof(TaskT), &mem);
  if (!fiber.ok()) return fiber.status();
  Fiber* f = *fiber;
  auto* state = new (mem) StateT(f);
  auto* task = new (static_cast<char*>(mem) + kStateSize) TaskT(std::decay_t<Fn>(std::forward<Fn>(fn)), state);
  start_new_fiber(sched, f, state, task, target_worker, loc.file_name(), static_cast<int>(loc.line()),
                  token);
  return state;
}

}  // namespace internal

// JoinHandle<T>: the right to wait for a fiber's result. Move-only.
// Destroying a handle that was neither joined nor detached detaches it.
template <class T>
class JoinHandle {
 public:
  JoinHandle() = default;
  explicit JoinHandle(internal::JoinState<T>* s) : state_(s) {}
  JoinHandle(JoinHandle&& o) noexcept : state_(std::exchange(o.state_, nullptr)) {}
  JoinHandle& operator=(JoinHandle&& o) noexcept {
    if (this != &o) {
      reset();
      state_ = std::exchange(o.state_, nullptr);
    }
    return *this;
  }
  ~JoinHandle() { reset(); }

  // JoinHandle::join()
  //
  // Waits for the fiber and returns its value, or rethrows its exception;
  // throws FiberCancelled if it was cancelled before producing a result,
  // and WaitCancelled if the caller is cancelled while it waits (then the
  // handle stays joinable). Suspends when called on a fiber; blocks the
  // thread otherwise. Joining twice, or joining a detached or empty
  // handle, is a programming error and aborts.
  T join() {
    WEFT_CHECK(state_ != nullptr,
               "JoinHandle::join() on an empty handle (already joined, detached or moved from)");
    if (state_->wait(-1) != internal::WakeReason::kNotified) throw WaitCancelled();
    return take();
  }

  // JoinHandle::try_join() / join_for() / join_until()
  //
  // As join(), with statuses instead of the cancellation exceptions:
  //   kCancelled          the caller was cancelled while it waited
  //   kDeadlineExceeded   join_for()/join_until() timed out
  //   kAborted            the fiber was cancelled before producing a result
  // After kCancelled or kDeadlineExceeded the handle stays joinable. An
  // exception thrown by the fiber is rethrown.
  JoinResult<T> try_join() { return join_impl(-1); }
  JoinResult<T> join_until(absl::Time deadline) { return join_impl(internal::to_monotonic(deadline)); }
  JoinResult<T> join_for(absl::Duration d) { return join_until(absl::Now() + d); }

  // JoinHandle::abort()
  //
  // Cancels the fiber: its waits return kCancelled from now on (it decides
  // how to finish), and if it has not started it never runs. No effect on
  // a finished fiber. Any thread; the handle stays joinable.
  void abort() {
    WEFT_CHECK(state_ != nullptr, "JoinHandle::abort() on an empty handle");
    state_->abort();
  }

  // JoinHandle::detach()
  //
  // Lets the fiber run on unobserved. An exception escaping a detached
  // fiber is reported and terminates the process.
  void detach() {
    WEFT_CHECK(state_ != nullptr, "JoinHandle::detach() on an empty handle");
    reset();
  }

  bool joinable() const { return state_ != nullptr; }
  // For lifecycle/select.h.
  internal::JoinStateBase* internal_state() const { return state_; }
  // is_finished() is true once the fiber has completed (or was cancelled).
  bool is_finished() const { return state_ != nullptr && state_->done(); }

 private:
  void reset() {
    if (state_ != nullptr) std::exchange(state_, nullptr)->release();
  }
  // take() consumes a completed handle.
  T take() {
    internal::JoinState<T>* s = std::exchange(state_, nullptr);
    struct Release {
      internal::JoinState<T>* s;
      ~Release() { s->release(); }
    } release{s};
    if (s->take_outcome()) throw FiberCancelled();
    if constexpr (!std::is_void_v<T>) return std::move(*s->value);
  }
  JoinResult<T> join_impl(int64_t deadline_nanos) {
    WEFT_CHECK(state_ != nullptr,
               "JoinHandle::try_join() on an empty handle (already joined, detached or moved from)");
    internal::WakeReason r = state_->wait(deadline_nanos);
    if (r != internal::WakeReason::kNotified) return internal::wake_status(r, "join");
    try {
      if constexpr (std::is_void_v<T>) {
        take();
        return absl::OkStatus();
      } else if constexpr (std::is_same_v<JoinResult<T>, T>) {
        return take();  // a status type: flattened
      } else {
        return JoinResult<T>(absl::in_place, take());
      }
    } catch (const FiberCancelled&) {
      return absl::AbortedError("join: the fiber was cancelled before it produced a result");
    }
  }
  internal::JoinState<T>* state_ = nullptr;
};

// Runtime: N worker threads, each with its run queue, poller and timer
// wheel. Thread-safe. Destroying it shuts it down.
class Runtime {
 public:
  // Runtime::create()
  //
  // Starts the workers. Fails on invalid options or when the kernel
  // refuses an epoll instance, an eventfd or a thread.
  static absl::StatusOr<std::unique_ptr<Runtime>> create(RuntimeOptions options = {});
  ~Runtime();
  Runtime(const Runtime&) = delete;
  Runtime& operator=(const Runtime&) = delete;

  int num_workers() const;

  // Runtime::spawn()
  //
  // Starts fn on a new fiber from any thread; from outside the runtime it
  // goes through the injection queue. The fiber's stack is mapped when it
  // first runs; if that fails (ENOMEM), join() throws SpawnError. A
  // function object too large for the stack aborts here; try_spawn()
  // returns that as a status instead.
  template <class Fn>
  JoinHandle<internal::SpawnResult<Fn>> spawn(Fn&& fn, SpawnOptions opts = {},
                                              std::source_location loc = std::source_location::current()) {
    auto r = try_spawn(std::forward<Fn>(fn), opts, loc);
    WEFT_CHECK(r.ok(), "spawn failed: %s", std::string(r.status().message()).c_str());
    return std::move(*r);
  }
  template <class Fn>
  absl::StatusOr<JoinHandle<internal::SpawnResult<Fn>>> try_spawn(
      Fn&& fn, SpawnOptions opts = {}, std::source_location loc = std::source_location::current()) {
    auto s = internal::start_fiber(sched_.get(), opts, loc, -1, std::forward<Fn>(fn));
    if (!s.ok()) return s.status();
    return JoinHandle<internal::SpawnResult<Fn>>(*s);
  }
  // spawn_on() starts fn on worker `worker` (a kSpawn message); it may be
  // stolen by another worker afterwards.
  template <class Fn>
  JoinHandle<internal::SpawnResult<Fn>> spawn_on(int worker, Fn&& fn, SpawnOptions opts = {},
                                                 std::source_location loc = std::source_location::current()) {
    WEFT_CHECK(worker >= 0 && worker < num_workers(), "spawn_on: no worker %d (runtime has %d)",
               worker, num_workers());
    auto s = internal::start_fiber(sched_.get(), opts, loc, worker, std::forward<Fn>(fn));
    WEFT_CHECK(s.ok(), "spawn failed: %s", std::string(s.status().message()).c_str());
    return JoinHandle<internal::SpawnResult<Fn>>(*s);
  }

  // Runtime::block_on()
  //
  // Runs fn on a fiber and blocks the calling thread until it returns;
  // returns its value or rethrows its exception. Calling it on a worker of
  // any runtime is a programming error (it would block a worker) and
  // aborts.
  template <class Fn>
  internal::SpawnResult<Fn> block_on(Fn&& fn, std::source_location loc = std::source_location::current()) {
    WEFT_CHECK(!internal::on_worker_thread(),
               "Runtime::block_on() called on a worker thread; use spawn() and join() on fibers");
    return spawn(std::forward<Fn>(fn), SpawnOptions{}, loc).join();
  }

  // Runtime::shutdown()
  //
  // Stops the workers and cancels every unfinished fiber (see the file
  // comment); afterwards no fiber or stack of this runtime remains.
  // Idempotent. Must not be called from one of this runtime's fibers.
  void shutdown();

  // Runtime::shutdown(grace)
  //
  // A graceful shutdown: stops taking spawns from other threads (they are
  // cancelled at once), cancels every fiber (their waits return
  // kCancelled; fibers they spawn start cancelled), waits up to `grace` for
  // all of them to finish (absl::InfiniteDuration(): for as long as they
  // take), then does shutdown(). Returns what was left.
  ShutdownReport shutdown(absl::Duration grace);

  RuntimeStats stats() const;

  // Runtime::configure_blocking()
  //
  // Changes the limits of the runtime's blocking pool (runtime/blocking.h;
  // the initial ones are RuntimeOptions::blocking). Any thread, any time;
  // a lower limit lets running threads finish their call and exit, a
  // shorter keep_alive applies from each thread's next wait.
  // kInvalidArgument (naming the field) for limits out of range; the
  // limits are then unchanged.
  absl::Status configure_blocking(const BlockingPoolOptions& options);

 private:
  friend struct internal::RuntimeAccess;
  explicit Runtime(std::unique_ptr<internal::Scheduler> s);
  std::unique_ptr<internal::Scheduler> sched_;
};

// weft::spawn()
//
// Starts fn on a new fiber of the current runtime, queued on the current
// worker (others may steal it). Must be called on a fiber or worker
// thread; from other threads use Runtime::spawn().
template <class Fn>
JoinHandle<internal::SpawnResult<Fn>> spawn(Fn&& fn, SpawnOptions opts = {},
                                            std::source_location loc = std::source_location::current()) {
  internal::Scheduler* s = internal::current_scheduler_or_die("weft::spawn");
  auto st = internal::start_fiber(s, opts, loc, -1, std::forward<Fn>(fn));
  WEFT_CHECK(st.ok(), "spawn failed: %s", std::string(st.status().message()).c_str());
  return JoinHandle<internal::SpawnResult<Fn>>(*st);
}

template <class Fn>
JoinHandle<internal::SpawnResult<Fn>> spawn(SpawnOptions opts, Fn&& fn,
                                            std::source_location loc = std::source_location::current()) {
  return spawn(std::forward<Fn>(fn), opts, loc);
}

namespace this_fiber {

// yield() lets other runnable fibers run; the caller is queued at the back
// of its worker's queue. Suspends. Must be called on a fiber.
void yield();
// sleep_for()/sleep_until() suspend the fiber for at least the duration
// (1 ms timer resolution). kCancelled if the fiber is cancelled first (or
// already was). Must be called on a fiber.
absl::Status sleep_for(absl::Duration d);
absl::Status sleep_until(absl::Time deadline);
// cancellation() is the fiber's current token (see runtime/cancel.h); off
// a fiber, a new token that nothing else cancels.
CancellationToken cancellation();
// cancelled() is whether the current fiber is cancelled (false off a fiber
// or under a CancellationShield).
bool cancelled();

// CancellationShield: while one lives on a fiber, its waits ignore
// cancellation, for cleanup that must finish (a final flush, waiting for
// what depends on this frame). Nests. Keep shielded sections short and
// bounded: a shielded fiber cannot be stopped except by shutdown's unwind.
class CancellationShield {
 public:
  CancellationShield();
  ~CancellationShield();
  CancellationShield(const CancellationShield&) = delete;
  CancellationShield& operator=(const CancellationShield&) = delete;

 private:
  internal::Fiber* fiber_;
};
// id() is the running fiber's id (unique within the process), 0 off a fiber.
uint64_t id();
// worker_id() is the index of the worker running the caller, -1 off a
// worker. It can change after any call that suspends.
int worker_id();
// on_fiber() is true when called on a weft fiber.
bool on_fiber();

}  // namespace this_fiber

}  // namespace weft
