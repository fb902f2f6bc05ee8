// runtime/platform/syscall.h
//
// The one place where errno becomes an absl::Status, and the EINTR retry
// helper every raw system call in weft goes through.
#pragma once

#include <cerrno>
#include <optional>
#include <string_view>

#include "absl/status/status.h"

namespace weft::internal {

// ErrnoStatus()
//
// Returns a status for `err` (an errno value) whose message names the
// operation and the errno text, e.g. "accept4: Too many open files".
absl::Status ErrnoStatus(int err, std::string_view op);

// ErrnoOf()
//
// The errno value a status from ErrnoStatus() carries (as a payload), or
// nullopt for any other status.
std::optional<int> ErrnoOf(const absl::Status& s);

// LastErrno()
//
// errno of the calling thread, read through a call the compiler cannot
// inline or fold. errno is a thread-local behind a `const` function
// (__errno_location), so in a loop that suspends a fiber between system
// calls the compiler may reuse the address from the previous thread. Code
// on fibers reads errno only through this, right after the failing call.
int LastErrno();

// RetryOnEintr()
//
// Calls `fn` until it does not fail with EINTR and returns its result.
template <class Fn>
auto RetryOnEintr(Fn&& fn) {
  for (;;) {
    auto r = fn();
    if (!(r == -1 && errno == EINTR)) return r;
  }
}

}  // namespace weft::internal
