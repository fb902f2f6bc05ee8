// lifecycle/timeout.h
//
// weft::with_timeout() / with_deadline(): run a function under a deadline.
//
//   absl::StatusOr<Reply> r = weft::with_timeout(absl::Seconds(2), [&] {
//     return client.get("/slow");           // its waits end at the deadline
//   });
//   if (absl::IsDeadlineExceeded(r.status())) ...
//
// fn runs on the calling fiber under a child of its current token that the
// deadline cancels (on the worker's timer wheel): from the deadline on,
// every wait inside fn (and in the scopes fn opens) returns kCancelled, so
// fn winds down and returns. The work is finished when with_timeout()
// returns, never left running: there is no helper fiber, and fibers fn
// starts in a TaskScope are joined by it.
//
// The result (TimeoutResult<R> for fn returning R):
//   R = absl::Status or absl::StatusOr<U>: fn's result if it is OK (the
//       work completed, even if the deadline passed meanwhile); otherwise
//       kDeadlineExceeded if the deadline (or an enclosing one) fired
//       before fn returned, else fn's result as is (e.g. kCancelled when
//       the caller itself was cancelled).
//   R = void or a plain value: absl::Status or absl::StatusOr<R>, holding
//       fn's result unless the deadline fired before fn returned, which
//       gives kDeadlineExceeded (fn could not say whether it finished).
// Exceptions from fn propagate. Must be called on a fiber.
#pragma once

#include <type_traits>
#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "lifecycle/scope.h"
#include "runtime/cancel.h"
#include "runtime/internal/cancel.h"
#include "runtime/internal/park.h"
#include "runtime/platform/check.h"
#include "runtime/platform/monotonic.h"

namespace weft {

namespace internal {
template <class R>
struct TimeoutResultOf {
  using type = absl::StatusOr<R>;
};
template <>
struct TimeoutResultOf<void> {
  using type = absl::Status;
};
template <>
struct TimeoutResultOf<absl::Status> {
  using type = absl::Status;
};
template <class U>
struct TimeoutResultOf<absl::StatusOr<U>> {
  using type = absl::StatusOr<U>;
};

// DeadlineScope: the calling fiber runs under a child token with a
// deadline until the scope ends (cancel.cc, "A fiber's tokens" step 3).
class DeadlineScope {
 public:
  explicit DeadlineScope(int64_t deadline_nanos) : self_(current_fiber()) {
    WEFT_CHECK(self_ != nullptr, "weft::with_timeout()/with_deadline() must be called on a fiber");
    CancelState* parent = fiber_current_token(self_);
    child_ = CancelState::create(parent);
    if (deadline_nanos <= monotonic_now()) {
      child_->cancel(CancelCause::kDeadline);
    } else {
      child_->arm_deadline(deadline_nanos);
    }
    push_fiber_token(self_, child_);
  }
  ~DeadlineScope() { pop_fiber_token(self_); }
  DeadlineScope(const DeadlineScope&) = delete;
  DeadlineScope& operator=(const DeadlineScope&) = delete;
  bool expired() const { return child_->cause() == CancelCause::kDeadline; }

 private:
  Fiber* self_;
  CancelState* child_;  // the fiber's reference, dropped by pop_fiber_token()
};

inline absl::Status deadline_exceeded() {
  return absl::DeadlineExceededError("with_timeout: the deadline passed before the work finished");
}
}  // namespace internal

template <class R>
using TimeoutResult = typename internal::TimeoutResultOf<R>::type;

template <class Fn>
TimeoutResult<std::invoke_result_t<Fn&>> with_deadline(absl::Time deadline, Fn&& fn) {
  using R = std::invoke_result_t<Fn&>;
  internal::DeadlineScope scope(internal::to_monotonic(deadline));
  if constexpr (std::is_void_v<R>) {
    fn();
    if (scope.expired()) return internal::deadline_exceeded();
    return absl::OkStatus();
  } else if constexpr (internal::kIsStatusLike<R>) {
    R r = fn();
    if (!internal::status_of(r).ok() && scope.expired()) return internal::deadline_exceeded();
    return r;
  } else {
    R r = fn();
    if (scope.expired()) return internal::deadline_exceeded();
    return absl::StatusOr<R>(std::move(r));
  }
}

template <class Fn>
TimeoutResult<std::invoke_result_t<Fn&>> with_timeout(absl::Duration d, Fn&& fn) {
  return with_deadline(absl::Now() + d, std::forward<Fn>(fn));
}

}  // namespace weft
