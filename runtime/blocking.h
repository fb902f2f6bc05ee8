// runtime/blocking.h
//
// weft::run_blocking(): runs a call that blocks its thread (getaddrinfo, a
// file read, a library without a non-blocking API) on a small pool of
// plain threads, and parks the calling fiber until it returns. No worker
// thread blocks.
//
//   auto rc = weft::run_blocking([&] { return ::getaddrinfo(...); });
//
// The pool is shared by every runtime in the process. It starts threads on
// demand up to kMaxBlockingThreads; calls beyond that queue. Exceptions
// thrown by fn are rethrown in the caller.
#pragma once

#include <exception>
#include <functional>
#include <optional>
#include <type_traits>
#include <utility>

#include "runtime/internal/park.h"

namespace weft {

inline constexpr int kMaxBlockingThreads = 8;

namespace internal {

struct BlockingJob {
  std::function<void()> fn;
  Completion done;
  BlockingJob* next = nullptr;
};

// submit_blocking() queues job on the pool; job->done is set when it ran.
void submit_blocking(BlockingJob* job);
// blocking_threads() is the number of pool threads started so far.
int blocking_threads();

}  // namespace internal

// weft::run_blocking()
//
// Runs fn on the blocking pool and returns its result. Suspends the fiber
// (blocks the thread off a fiber) until fn returns.
template <class Fn>
std::invoke_result_t<Fn&> run_blocking(Fn&& fn) {
  using T = std::invoke_result_t<Fn&>;
  internal::BlockingJob job;
  std::exception_ptr error;
  if constexpr (std::is_void_v<T>) {
    job.fn = [&] {
      try {
        fn();
      } catch (...) {
        error = std::current_exception();
      }
    };
    internal::submit_blocking(&job);
    (void)job.done.wait();
    if (error) std::rethrow_exception(error);
  } else {
    std::optional<T> out;
    job.fn = [&] {
      try {
        out.emplace(fn());
      } catch (...) {
        error = std::current_exception();
      }
    };
    internal::submit_blocking(&job);
    (void)job.done.wait();
    if (error) std::rethrow_exception(error);
    return std::move(*out);
  }
}

}  // namespace weft
