#include "net/stdin.h"

#include <fcntl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <map>
#include <mutex>
#include <utility>

#include "absl/base/thread_annotations.h"
#include "net/internal/socket_core.h"
#include "runtime/blocking.h"
#include "runtime/platform/syscall.h"
#include "runtime/runtime.h"

namespace weft::net {

using internal::Dir;
using internal::errno_status;
using internal::SocketCore;

namespace {

// The descriptors whose open file a StdinStream made O_NONBLOCK: the flags
// to put back and how many streams on the descriptor rely on it. The last
// of them to close puts the flags back, and exit() does for fds 0..2.
struct Nonblock {
  int flags;
  int users;
};
std::mutex g_nonblock_mu;
std::map<int, Nonblock> g_nonblock ABSL_GUARDED_BY(g_nonblock_mu);

void restore_at_exit() {
  std::lock_guard<std::mutex> g(g_nonblock_mu);
  for (const auto& [fd, nb] : g_nonblock) {
    if (fd >= 0 && fd <= 2) ::fcntl(fd, F_SETFL, nb.flags);
  }
}

// acquire_nonblock() makes fd's open file O_NONBLOCK for one more stream.
// `flags` are its flags now. Returns whether the stream must call
// release_nonblock() (false: the file was already O_NONBLOCK of its own).
absl::StatusOr<bool> acquire_nonblock(int fd, int flags, const std::string& what) {
  static std::once_flag once;
  std::call_once(once, [] { std::atexit(restore_at_exit); });
  std::lock_guard<std::mutex> g(g_nonblock_mu);
  if (auto it = g_nonblock.find(fd); it != g_nonblock.end()) {
    ++it->second.users;
    return true;
  }
  if ((flags & O_NONBLOCK) != 0) return false;
  if (::fcntl(fd, F_SETFL, flags | O_NONBLOCK) < 0) {
    return errno_status(errno, what + ": fcntl(O_NONBLOCK)");
  }
  g_nonblock[fd] = Nonblock{flags, 1};
  return true;
}

void release_nonblock(int fd) {
  std::lock_guard<std::mutex> g(g_nonblock_mu);
  auto it = g_nonblock.find(fd);
  if (it == g_nonblock.end() || --it->second.users > 0) return;
  ::fcntl(fd, F_SETFL, it->second.flags);
  g_nonblock.erase(it);
}

}  // namespace

StdinStream::StdinStream() = default;

StdinStream::StdinStream(StdinStream&& o) noexcept
    : fd_(std::exchange(o.fd_, -1)),
      nonblock_ref_(std::exchange(o.nonblock_ref_, false)),
      short_read_drains_(o.short_read_drains_),
      core_(std::move(o.core_)) {}

StdinStream& StdinStream::operator=(StdinStream&& o) noexcept {
  if (this != &o) {
    (void)close();
    fd_ = std::exchange(o.fd_, -1);
    nonblock_ref_ = std::exchange(o.nonblock_ref_, false);
    short_read_drains_ = o.short_read_drains_;
    core_ = std::move(o.core_);
  }
  return *this;
}

StdinStream::~StdinStream() { (void)close(); }

absl::StatusOr<StdinStream> StdinStream::open(int fd) {
  internal::Scheduler* sched = internal::current_scheduler_or_die("weft::net::StdinStream::open");
  const std::string what = "StdinStream::open(fd " + std::to_string(fd) + ")";
  int flags = ::fcntl(fd, F_GETFL);
  if (flags < 0) {
    int e = errno;
    absl::Status s = errno_status(e, what + ": fcntl");
    return absl::FailedPreconditionError(s.message());
  }
  struct stat st;
  if (::fstat(fd, &st) < 0) return errno_status(errno, what + ": fstat");
  StdinStream out;
  out.fd_ = fd;
  if (S_ISREG(st.st_mode) || S_ISDIR(st.st_mode) || S_ISBLK(st.st_mode)) return out;  // pool
  // Poller. A terminal is opened again, as an open file of our own that is
  // O_NONBLOCK: the one we were given is usually stdout and stderr too, and
  // O_NONBLOCK there would make their writes fail with EAGAIN while the
  // terminal holds output back. Anything else (or a terminal we may not
  // open) gets a dup, which shares the open file and its O_NONBLOCK.
  int dup = -1;
  bool reopened = false;
  if (::isatty(fd) == 1) {
    const std::string path = "/proc/self/fd/" + std::to_string(fd);
    dup = ::open(path.c_str(), O_RDONLY | O_NOCTTY | O_NONBLOCK | O_CLOEXEC);
    reopened = dup >= 0;
  }
  if (dup < 0) dup = ::fcntl(fd, F_DUPFD_CLOEXEC, 3);
  if (dup < 0) return errno_status(errno, what + ": fcntl(F_DUPFD_CLOEXEC)");
  if (!reopened) {
    auto acquired = acquire_nonblock(fd, flags, what);
    if (!acquired.ok()) {
      ::close(dup);
      return acquired.status();
    }
    out.nonblock_ref_ = *acquired;
  }
  auto core = SocketCore::open(sched, dup, -1, internal::kReadInterest, "StdinStream");
  if (!core.ok()) {
    // epoll refuses the descriptor (EPERM: a character device such as
    // /dev/null): read it on the blocking pool instead.
    if (out.nonblock_ref_) {
      release_nonblock(fd);
      out.nonblock_ref_ = false;
    }
    if (internal::errno_of(core.status()) == EPERM ||
        core.status().code() == absl::StatusCode::kPermissionDenied) {
      return out;
    }
    return core.status();
  }
  out.core_ = std::move(*core);
  // A terminal returns one line per read: a short read leaves the rest.
  int type = 0;
  socklen_t len = sizeof type;
  out.short_read_drains_ = S_ISFIFO(st.st_mode) ||
                           (S_ISSOCK(st.st_mode) &&
                            ::getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len) == 0 &&
                            type == SOCK_STREAM);
  return out;
}

absl::StatusOr<size_t> StdinStream::read(std::span<char> buf) {
  if (fd_ < 0) return absl::FailedPreconditionError("StdinStream::read: not open");
  if (buf.empty()) return size_t{0};
  if (core_) {
    const int fd = core_->fd();
    return core_->io(
        Dir::kRead, "read", -1, [&] { return ::read(fd, buf.data(), buf.size()); },
        short_read_drains_ ? buf.size() : 0);
  }
  const int fd = fd_;
  return run_blocking([&]() -> absl::StatusOr<size_t> {
    ssize_t n = internal::retry_on_eintr([&] { return ::read(fd, buf.data(), buf.size()); });
    if (n < 0) return errno_status(errno, "StdinStream::read");
    return static_cast<size_t>(n);
  });
}

absl::Status StdinStream::close() {
  absl::Status s;
  if (core_) {
    s = core_->close();
    core_.reset();
  }
  if (fd_ >= 0 && nonblock_ref_) release_nonblock(fd_);
  nonblock_ref_ = false;
  fd_ = -1;
  return s;
}

absl::StatusOr<StdinStream> stdin_stream() { return StdinStream::open(0); }

}  // namespace weft::net
