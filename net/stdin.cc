#include "net/stdin.h"

#include <fcntl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <mutex>
#include <utility>

#include "net/internal/socket_core.h"
#include "runtime/blocking.h"
#include "runtime/platform/syscall.h"
#include "runtime/runtime.h"

namespace weft::net {

using internal::Dir;
using internal::errno_status;
using internal::SocketCore;

namespace {

// Flags to restore at exit, per descriptor 0..2 (the common case); -1: none.
std::mutex g_restore_mu;
int g_restore_flags[3] = {-1, -1, -1};

void restore_at_exit() {
  std::lock_guard<std::mutex> g(g_restore_mu);
  for (int fd = 0; fd < 3; ++fd) {
    if (g_restore_flags[fd] >= 0) ::fcntl(fd, F_SETFL, g_restore_flags[fd]);
  }
}

void remember_for_exit(int fd, int flags) {
  static std::once_flag once;
  std::call_once(once, [] { std::atexit(restore_at_exit); });
  if (fd < 0 || fd > 2) return;
  std::lock_guard<std::mutex> g(g_restore_mu);
  g_restore_flags[fd] = flags;
}

void forget_for_exit(int fd) {
  if (fd < 0 || fd > 2) return;
  std::lock_guard<std::mutex> g(g_restore_mu);
  g_restore_flags[fd] = -1;
}

}  // namespace

StdinStream::StdinStream() = default;

StdinStream::StdinStream(StdinStream&& o) noexcept
    : fd_(std::exchange(o.fd_, -1)),
      saved_flags_(std::exchange(o.saved_flags_, -1)),
      short_read_drains_(o.short_read_drains_),
      core_(std::move(o.core_)) {}

StdinStream& StdinStream::operator=(StdinStream&& o) noexcept {
  if (this != &o) {
    (void)close();
    fd_ = std::exchange(o.fd_, -1);
    saved_flags_ = std::exchange(o.saved_flags_, -1);
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
  if (::isatty(fd) == 1) {
    const std::string path = "/proc/self/fd/" + std::to_string(fd);
    dup = ::open(path.c_str(), O_RDONLY | O_NOCTTY | O_NONBLOCK | O_CLOEXEC);
  }
  if (dup < 0) dup = ::fcntl(fd, F_DUPFD_CLOEXEC, 3);
  if (dup < 0) return errno_status(errno, what + ": fcntl(F_DUPFD_CLOEXEC)");
  if ((::fcntl(dup, F_GETFL) & O_NONBLOCK) == 0) {
    if (::fcntl(fd, F_SETFL, flags | O_NONBLOCK) < 0) {
      int e = errno;
      ::close(dup);
      return errno_status(e, what + ": fcntl(O_NONBLOCK)");
    }
    out.saved_flags_ = flags;
    remember_for_exit(fd, flags);
  }
  auto core = SocketCore::open(sched, dup, -1, internal::kReadInterest, "StdinStream");
  if (!core.ok()) {
    // epoll refuses the descriptor (EPERM: a character device such as
    // /dev/null): read it on the blocking pool instead.
    if (out.saved_flags_ >= 0) {
      ::fcntl(fd, F_SETFL, out.saved_flags_);
      forget_for_exit(fd);
      out.saved_flags_ = -1;
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
  if (fd_ >= 0 && saved_flags_ >= 0) {
    ::fcntl(fd_, F_SETFL, saved_flags_);
    forget_for_exit(fd_);
  }
  saved_flags_ = -1;
  fd_ = -1;
  return s;
}

absl::StatusOr<StdinStream> stdin_stream() { return StdinStream::open(0); }

}  // namespace weft::net
