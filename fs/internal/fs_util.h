// fs/internal/fs_util.h
//
// What fs.cc and file.cc share: the error format, path checks and a write
// loop. Internal to weft::fs.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "absl/functional/function_ref.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "runtime/platform/syscall.h"

namespace weft::fs::internal {

// fs_error() is errno_status(err) with the message
// `fs::CALL("PATH"): SYSCALL: strerror`.
absl::Status fs_error(int err, std::string_view call, std::string_view path,
                     std::string_view syscall);
// fs_error2() names two paths: `fs::CALL("FROM", "TO"): SYSCALL: strerror`.
absl::Status fs_error2(int err, std::string_view call, std::string_view from,
                      std::string_view to, std::string_view syscall);

// cancelled_error() is kCancelled `fs::CALL("PATH"): the waiting fiber was
// cancelled` (a call on a worker's io_uring that the fiber gave up on).
absl::Status cancelled_error(std::string_view call, std::string_view path);

// path_string() copies a path for the kernel; kInvalidArgument if it is
// empty or holds a NUL byte.
absl::StatusOr<std::string> path_string(std::string_view call, std::string_view path);

// kRingOpenClose: whether File::open and File::close may go to the
// worker's io_uring. Not under ThreadSanitizer: it follows descriptors
// through the libc calls it intercepts, and an open or close that the
// kernel does for the ring is invisible to it, so a descriptor number the
// ring closed and libc then reused reads as a race (the soak's TSan run
// reported one). Under TSan, open and close go to the pool; stat and small
// reads and writes still use the ring.
#ifdef WEFT_TSAN
inline constexpr bool kRingOpenClose = false;
#else
inline constexpr bool kRingOpenClose = true;
#endif

// write_all_with() calls write(p, n) until all of data is written,
// counting into *done. write returns what write(2) does; EINTR is retried.
// A write that takes no bytes of a non-empty rest is kResourceExhausted
// (write(2) may return 0 when a device takes no more and it has no errno
// for that); looping on it would never end. SYSCALL names the call in
// errors.
absl::Status write_all_with(std::string_view data, uint64_t* done, std::string_view call,
                            std::string_view path, std::string_view syscall,
                            absl::FunctionRef<ssize_t(const char*, size_t)> write);

// write_all_fd() writes all of data to fd with write(2), as above. Blocking.
absl::Status write_all_fd(int fd, std::string_view data, uint64_t* done, std::string_view call,
                      std::string_view path);

// zero_write_error() is the status for a write(2) or pwrite(2) that
// returned 0 with bytes still to write.
absl::Status zero_write_error(std::string_view call, std::string_view path,
                              std::string_view syscall, uint64_t done, uint64_t total);

}  // namespace weft::fs::internal
