// future/failure.h
//
// weft::Failure: why a weft::Future failed. A future fails in one of two
// ways, and Failure carries either, unchanged, down a chain of callbacks:
//
//   - an error status: Promise::set_error(absl::Status), a then() callback
//     that returned a non-OK absl::Status or absl::StatusOr, a broken
//     promise (kAborted);
//   - an exception: Promise::set_exception(), or an exception thrown by a
//     then(), on_success() or on_failure() callback.
//
// Future::get() returns the status of the first kind and rethrows the
// exception of the second (as JoinHandle::join() does); on_failure()
// callbacks receive the Failure, or its status() if they take an
// absl::Status.
#pragma once

#include <exception>
#include <string>
#include <utility>

#include "absl/status/status.h"

namespace weft {

namespace internal {
class FutureStateBase;
}  // namespace internal

class Failure {
 public:
  // A failure with a non-OK status (an OK status is a programming error
  // the caller checks; see Promise::set_error()).
  explicit Failure(absl::Status status) : status_(std::move(status)) {}
  // A failure with an exception (non-null).
  explicit Failure(std::exception_ptr exception) : exception_(std::move(exception)) {}

  // Failure::is_exception()
  //
  // True when the future failed with an exception.
  bool is_exception() const { return exception_ != nullptr; }

  // Failure::exception()
  //
  // The exception, or null for a status failure.
  const std::exception_ptr& exception() const { return exception_; }

  // Failure::status()
  //
  // The status; for an exception, kUnknown with the exception's what()
  // ("exception: <what>"), so code that only speaks absl::Status can still
  // log or forward it.
  absl::Status status() const {
    if (!exception_) return status_;
    try {
      std::rethrow_exception(exception_);
    } catch (const std::exception& e) {
      return absl::UnknownError(std::string("exception: ") + e.what());
    } catch (...) {
      return absl::UnknownError("exception: not a std::exception");
    }
  }

  // Failure::rethrow_if_exception()
  //
  // Rethrows the exception, if this failure is one.
  void rethrow_if_exception() const {
    if (exception_) std::rethrow_exception(exception_);
  }

 private:
  // A state stores a failure by moving its parts in: the one who reads it
  // then alone ends their life (future/internal/state.h).
  friend class internal::FutureStateBase;

  absl::Status status_;
  std::exception_ptr exception_;
};

}  // namespace weft
