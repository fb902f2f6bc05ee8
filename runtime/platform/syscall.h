// runtime/platform/syscall.h
//
// The one place where errno becomes an absl::Status, and the EINTR retry
// helper every raw system call in weft goes through.
#pragma once

#include <cerrno>
#include <string_view>

#include "absl/status/status.h"

namespace weft::internal {

// ErrnoStatus()
//
// Returns a status for `err` (an errno value) whose message names the
// operation and the errno text, e.g. "accept4: Too many open files".
absl::Status ErrnoStatus(int err, std::string_view op);

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
