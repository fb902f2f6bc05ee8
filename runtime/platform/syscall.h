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

// errno_status()
//
// Returns a status for `err` (an errno value) whose message names the
// operation and the errno text, e.g. "accept4: Too many open files".
absl::Status errno_status(int err, std::string_view op);

// errno_of()
//
// The errno value a status from errno_status() carries (as a payload), or
// nullopt for any other status.
std::optional<int> errno_of(const absl::Status& s);

// last_errno()
//
// errno of the calling thread, read through a call the compiler cannot
// inline or fold. errno is a thread-local behind a `const` function
// (__errno_location), so in a loop that suspends a fiber between system
// calls the compiler may reuse the address from the previous thread. Code
// on fibers reads errno only through this, right after the failing call.
int last_errno();

// retry_on_eintr()
//
// Calls `fn` until it does not fail with EINTR and returns its result.
template <class Fn>
auto retry_on_eintr(Fn&& fn) {
  for (;;) {
    auto r = fn();
    if (!(r == -1 && errno == EINTR)) return r;
  }
}

}  // namespace weft::internal
