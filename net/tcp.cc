#include "net/tcp.h"

#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <string>
#include <vector>

#include "net/internal/socket_core.h"
#include "net/resolve.h"
#include "runtime/platform/direct_syscall.h"
#include "runtime/runtime.h"

namespace weft::net {

using internal::Dir;
using internal::errno_status;
using internal::last_errno;
using internal::SocketCore;

namespace {

absl::Status not_open(const char* kind, const char* what) {
  return absl::FailedPreconditionError(std::string(kind) + "::" + what + ": socket is not open");
}

int64_t to_timeout_ns(absl::Duration d) {
  if (d == absl::InfiniteDuration()) return -1;
  if (d < absl::ZeroDuration()) return 0;
  return absl::ToInt64Nanoseconds(d);
}

absl::Status setsockopt_int(int fd, int level, int opt, int v, const char* what) {
  if (::setsockopt(fd, level, opt, &v, sizeof(v)) != 0) return errno_status(last_errno(), what);
  return absl::OkStatus();
}

absl::StatusOr<SocketAddress> sock_name(int fd, bool peer, const char* what) {
  sockaddr_storage ss{};
  socklen_t len = sizeof(ss);
  int r = peer ? ::getpeername(fd, reinterpret_cast<sockaddr*>(&ss), &len)
               : ::getsockname(fd, reinterpret_cast<sockaddr*>(&ss), &len);
  if (r != 0) return errno_status(last_errno(), what);
  return SocketAddress::from_sockaddr(reinterpret_cast<sockaddr*>(&ss), len);
}

internal::Scheduler* scheduler_or_die(const char* what) {
  return internal::current_scheduler_or_die(what);
}

}  // namespace

// ===========================================================================
// TcpStream
// ===========================================================================

TcpStream::TcpStream() = default;
TcpStream::~TcpStream() = default;
TcpStream::TcpStream(TcpStream&&) noexcept = default;
TcpStream& TcpStream::operator=(TcpStream&& o) noexcept {
  if (this != &o) {
    core_ = std::move(o.core_);  // the old core closes in its destructor
    read_timeout_ns_ = o.read_timeout_ns_;
    write_timeout_ns_ = o.write_timeout_ns_;
  }
  return *this;
}
TcpStream::TcpStream(std::unique_ptr<SocketCore> core) : core_(std::move(core)) {}

absl::StatusOr<TcpStream> TcpStream::connect(const SocketAddress& addr, absl::Duration timeout) {
  internal::Scheduler* sched = scheduler_or_die("weft::net::TcpStream::connect");
  if (!addr.valid()) return absl::InvalidArgumentError("TcpStream::connect: invalid address");
  int64_t deadline = internal::deadline_after(timeout);
  int fd = ::socket(addr.family(), SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return errno_status(last_errno(), "TcpStream::connect: socket");
  auto core = SocketCore::open(sched, fd, -1, internal::kDuplexInterest, "TcpStream");
  if (!core.ok()) return core.status();
  const std::string what = "TcpStream::connect(" + addr.to_string() + ")";
  int r = internal::retry_on_eintr([&] { return ::connect(fd, addr.sockaddr_ptr(), addr.sockaddr_len()); });
  // A UNIX listener whose backlog is full refuses a non-blocking connect
  // with EAGAIN and gives no readiness event for room in it, so the
  // connect is retried on the same socket after a sleep, 1 ms doubling to
  // 64 ms, until it gets in, the deadline passes or the fiber is
  // cancelled: what a blocking connect(2) would do, without the thread.
  for (absl::Duration pause = absl::Milliseconds(1); r != 0 && last_errno() == EAGAIN && addr.is_unix();
       pause = std::min(pause * 2, absl::Milliseconds(64))) {
    if (deadline >= 0) {
      int64_t left = deadline - internal::monotonic_now();
      if (left <= 0) return absl::DeadlineExceededError(what + ": timed out (the listener's backlog stayed full)");
      pause = std::min(pause, absl::Nanoseconds(left));
    }
    if (absl::Status st = this_fiber::sleep_for(pause); !st.ok()) {
      return absl::Status(st.code(), what + ": " + std::string(st.message()));
    }
    r = internal::retry_on_eintr([&] { return ::connect(fd, addr.sockaddr_ptr(), addr.sockaddr_len()); });
  }
  if (r != 0) {
    int err = last_errno();
    if (err != EINPROGRESS) return errno_status(err, what);
    for (;;) {
      absl::Status st = (*core)->wait(Dir::kWrite, deadline, "connect");
      if (!st.ok()) {
        if (st.code() == absl::StatusCode::kDeadlineExceeded) {
          return absl::DeadlineExceededError(what + ": timed out");
        }
        return st;
      }
      int soerr = 0;
      socklen_t len = sizeof(soerr);
      if (::getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &len) != 0) {
        return errno_status(last_errno(), what + ": getsockopt(SO_ERROR)");
      }
      if (soerr != 0) return errno_status(soerr, what);
      sockaddr_storage ss;
      socklen_t sl = sizeof(ss);
      if (::getpeername(fd, reinterpret_cast<sockaddr*>(&ss), &sl) == 0) break;  // connected
      // Woken early (a spurious edge): still in progress.
    }
  }
  return TcpStream(std::move(*core));
}

absl::StatusOr<TcpStream> TcpStream::connect(std::string_view host, uint16_t port, absl::Duration timeout) {
  int64_t deadline = internal::deadline_after(timeout);
  auto addrs = resolve(host, port);
  if (!addrs.ok()) return addrs.status();
  absl::Status last = absl::NotFoundError("TcpStream::connect: no address for " + std::string(host));
  for (const SocketAddress& a : *addrs) {
    absl::Duration left = absl::InfiniteDuration();
    if (deadline >= 0) {
      int64_t ns = deadline - internal::monotonic_now();
      if (ns <= 0) return absl::DeadlineExceededError("TcpStream::connect(" + std::string(host) + "): timed out");
      left = absl::Nanoseconds(ns);
    }
    auto s = connect(a, left);
    if (s.ok()) return s;
    last = s.status();
  }
  return last;
}

absl::StatusOr<size_t> TcpStream::read(std::span<char> buf) {
  if (!core_) return not_open("TcpStream", "read");
  if (buf.empty()) return size_t{0};
  const int fd = core_->fd();
  return core_->io(
      Dir::kRead, "read", read_timeout_ns_,
      [&] { return internal::sys::recv(fd, buf.data(), buf.size(), 0); }, buf.size());
}

absl::Status TcpStream::read_exact(std::span<char> buf) {
  size_t got = 0;
  while (got < buf.size()) {
    auto n = read(buf.subspan(got));
    if (!n.ok()) return n.status();
    if (*n == 0) {
      return absl::OutOfRangeError("TcpStream::read_exact: end of stream after " + std::to_string(got) +
                                   " of " + std::to_string(buf.size()) + " bytes");
    }
    got += *n;
  }
  return absl::OkStatus();
}

absl::StatusOr<size_t> TcpStream::write(std::string_view data) {
  if (!core_) return not_open("TcpStream", "write");
  if (data.empty()) return size_t{0};
  const int fd = core_->fd();
  return core_->io(Dir::kWrite, "write", write_timeout_ns_,
                   [&] { return internal::sys::send(fd, data.data(), data.size(), MSG_NOSIGNAL); });
}

absl::Status TcpStream::write_all(std::string_view data) {
  while (!data.empty()) {
    auto n = write(data);
    if (!n.ok()) return n.status();
    data.remove_prefix(*n);
  }
  return absl::OkStatus();
}

absl::StatusOr<size_t> TcpStream::writev(std::span<const iovec> bufs) {
  if (!core_) return not_open("TcpStream", "writev");
  size_t total = 0;
  for (const iovec& v : bufs) total += v.iov_len;
  if (total == 0) return size_t{0};
  const int fd = core_->fd();
  size_t count = std::min<size_t>(bufs.size(), IOV_MAX);
  return core_->io(Dir::kWrite, "writev", write_timeout_ns_, [&] {
    msghdr msg{};
    msg.msg_iov = const_cast<iovec*>(bufs.data());
    msg.msg_iovlen = count;
    return internal::sys::sendmsg(fd, &msg, MSG_NOSIGNAL);
  });
}

absl::Status TcpStream::writev_all(std::span<const iovec> bufs) {
  std::vector<iovec> rest(bufs.begin(), bufs.end());
  size_t first = 0;
  while (first < rest.size()) {
    if (rest[first].iov_len == 0) {
      ++first;
      continue;
    }
    auto n = writev(std::span<const iovec>(rest).subspan(first));
    if (!n.ok()) return n.status();
    size_t left = *n;
    while (left > 0) {
      iovec& v = rest[first];
      size_t take = std::min(left, v.iov_len);
      v.iov_base = static_cast<char*>(v.iov_base) + take;
      v.iov_len -= take;
      left -= take;
      if (v.iov_len == 0) ++first;
    }
  }
  return absl::OkStatus();
}

absl::Status TcpStream::shutdown(Shutdown how) {
  SocketCore::Use use(core_.get());
  if (!use.ok()) return not_open("TcpStream", "shutdown");
  int h = how == Shutdown::kRead ? SHUT_RD : how == Shutdown::kWrite ? SHUT_WR : SHUT_RDWR;
  if (::shutdown(core_->fd(), h) != 0) return errno_status(last_errno(), "TcpStream::shutdown");
  if (how != Shutdown::kWrite) core_->forget_drained();
  return absl::OkStatus();
}

absl::Status TcpStream::close() { return core_ ? core_->close() : absl::OkStatus(); }
bool TcpStream::is_open() const { return core_ && !core_->closed(); }

absl::Status TcpStream::set_nodelay(bool on) {
  SocketCore::Use use(core_.get());
  if (!use.ok()) return not_open("TcpStream", "set_nodelay");
  return setsockopt_int(core_->fd(), IPPROTO_TCP, TCP_NODELAY, on ? 1 : 0, "TcpStream::set_nodelay");
}

absl::Status TcpStream::set_keepalive(bool on, absl::Duration idle, absl::Duration interval, int count) {
  SocketCore::Use use(core_.get());
  if (!use.ok()) return not_open("TcpStream", "set_keepalive");
  const int fd = core_->fd();
  absl::Status st = setsockopt_int(fd, SOL_SOCKET, SO_KEEPALIVE, on ? 1 : 0, "TcpStream::set_keepalive");
  if (!st.ok() || !on) return st;
  auto secs = [](absl::Duration d) { return static_cast<int>(std::max<int64_t>(1, absl::ToInt64Seconds(d))); };
  if (idle > absl::ZeroDuration()) {
    st = setsockopt_int(fd, IPPROTO_TCP, TCP_KEEPIDLE, secs(idle), "TcpStream::set_keepalive(TCP_KEEPIDLE)");
    if (!st.ok()) return st;
  }
  if (interval > absl::ZeroDuration()) {
    st = setsockopt_int(fd, IPPROTO_TCP, TCP_KEEPINTVL, secs(interval),
                        "TcpStream::set_keepalive(TCP_KEEPINTVL)");
    if (!st.ok()) return st;
  }
  if (count > 0) {
    st = setsockopt_int(fd, IPPROTO_TCP, TCP_KEEPCNT, count, "TcpStream::set_keepalive(TCP_KEEPCNT)");
  }
  return st;
}

absl::StatusOr<SocketAddress> TcpStream::local_address() const {
  SocketCore::Use use(core_.get());
  if (!use.ok()) return not_open("TcpStream", "local_address");
  return sock_name(core_->fd(), false, "TcpStream::local_address");
}

absl::StatusOr<SocketAddress> TcpStream::peer_address() const {
  SocketCore::Use use(core_.get());
  if (!use.ok()) return not_open("TcpStream", "peer_address");
  return sock_name(core_->fd(), true, "TcpStream::peer_address");
}

absl::Status TcpStream::set_read_deadline(absl::Time d) {
  if (!core_) return not_open("TcpStream", "set_read_deadline");
  return core_->set_deadline(Dir::kRead, d);
}
absl::Status TcpStream::set_write_deadline(absl::Time d) {
  if (!core_) return not_open("TcpStream", "set_write_deadline");
  return core_->set_deadline(Dir::kWrite, d);
}
void TcpStream::set_read_timeout(absl::Duration t) { read_timeout_ns_ = to_timeout_ns(t); }
void TcpStream::set_write_timeout(absl::Duration t) { write_timeout_ns_ = to_timeout_ns(t); }

absl::Status TcpStream::migrate_to(int worker) {
  if (!core_) return not_open("TcpStream", "migrate_to");
  return core_->migrate_to(worker);
}
int TcpStream::owner_worker() const { return is_open() ? core_->owner() : -1; }
uint64_t TcpStream::migrations() const { return core_ ? core_->migrations() : 0; }
int TcpStream::native_handle() const { return core_ ? core_->fd() : -1; }

// ===========================================================================
// TcpListener
// ===========================================================================

struct TcpListener::Counters {
  std::atomic<uint32_t> next_rr{0};
  std::atomic<int64_t> backoff_ns{0};  // while accept() runs out of resources
  std::atomic<uint64_t> accepted{0};
  std::atomic<uint64_t> resource_errors{0};
  internal::SpinLock lock;
  absl::Status last_resource_error;
};

TcpListener::TcpListener() = default;
TcpListener::~TcpListener() = default;
TcpListener::TcpListener(TcpListener&&) noexcept = default;
TcpListener& TcpListener::operator=(TcpListener&&) noexcept = default;
TcpListener::TcpListener(std::unique_ptr<SocketCore> core, AcceptPlacement p)
    : core_(std::move(core)), placement_(p), counters_(std::make_unique<Counters>()) {}

absl::StatusOr<TcpListener> TcpListener::bind(const SocketAddress& addr, ListenOptions opts) {
  internal::Scheduler* sched = scheduler_or_die("weft::net::TcpListener::bind");
  if (!addr.valid()) return absl::InvalidArgumentError("TcpListener::bind: invalid address");
  if (opts.backlog < 1) return absl::InvalidArgumentError("TcpListener::bind: backlog must be >= 1");
  const std::string what = "TcpListener::bind(" + addr.to_string() + ")";
  int fd = ::socket(addr.family(), SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return errno_status(last_errno(), what + ": socket");
  auto fail = [&](const std::string& op) {
    absl::Status st = errno_status(last_errno(), what + ": " + op);
    ::close(fd);
    return st;
  };
  int one = 1;
  if (opts.reuse_address && ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) != 0) {
    return fail("SO_REUSEADDR");
  }
  if (opts.reuse_port && ::setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) != 0) {
    return fail("SO_REUSEPORT");
  }
  if (addr.is_v6()) {
    int v = opts.v6_only ? 1 : 0;
    if (::setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &v, sizeof(v)) != 0) return fail("IPV6_V6ONLY");
  }
  if (::bind(fd, addr.sockaddr_ptr(), addr.sockaddr_len()) != 0) return fail("bind");
  // A UNIX path socket now has a file. If listen or registration fails,
  // remove it, so that the caller's next bind of the path does not meet
  // EADDRINUSE (only if it is still the file this bind made).
  struct stat bound {};
  const bool has_file = addr.is_unix() && !addr.is_unix_abstract() && !addr.is_unix_unnamed() &&
                        ::lstat(addr.unix_path().c_str(), &bound) == 0;
  auto remove_file = [&] {
    struct stat now {};
    if (has_file && ::lstat(addr.unix_path().c_str(), &now) == 0 && S_ISSOCK(now.st_mode) &&
        now.st_dev == bound.st_dev && now.st_ino == bound.st_ino) {
      ::unlink(addr.unix_path().c_str());
    }
  };
  if (::listen(fd, opts.backlog) != 0) {
    absl::Status st = fail("listen");
    remove_file();
    return st;
  }
  auto core = SocketCore::open(sched, fd, -1, internal::kReadInterest, "TcpListener");
  if (!core.ok()) {
    remove_file();
    return core.status();
  }
  return TcpListener(std::move(*core), opts.placement);
}

int TcpListener::pick_owner() {
  internal::Scheduler* sched = core_->scheduler();
  const int n = sched->num_workers();
  switch (placement_) {
    case AcceptPlacement::kRoundRobin:
      return static_cast<int>(counters_->next_rr.fetch_add(1, std::memory_order_relaxed) % static_cast<uint32_t>(n));
    case AcceptPlacement::kLeastLoaded: {
      int best = 0;
      size_t best_load = ~size_t{0};
      for (int i = 0; i < n; ++i) {
        internal::Worker* w = sched->worker(i);
        size_t load = w->registered_sockets() + w->queue_depth();
        if (load < best_load) {
          best = i;
          best_load = load;
        }
      }
      return best;
    }
    case AcceptPlacement::kSameWorker:
    default: {
      internal::Worker* w = internal::current_worker();
      return (w != nullptr && w->scheduler() == sched) ? w->id() : 0;
    }
  }
}

absl::StatusOr<Accepted> TcpListener::accept() { return accept_for(absl::InfiniteDuration()); }

absl::StatusOr<Accepted> TcpListener::accept_for(absl::Duration timeout) {
  if (!core_) return not_open("TcpListener", "accept");
  int64_t deadline = internal::deadline_after(timeout);
  if (int64_t backoff = counters_->backoff_ns.load(std::memory_order_relaxed); backoff > 0) {
    // The previous accept() ran out of descriptors or memory: give the
    // process time to release some before trying again.
    int64_t wake = internal::monotonic_now() + backoff;
    if (deadline >= 0 && deadline < wake) wake = deadline;
    (void)this_fiber::sleep_for(absl::Nanoseconds(wake - internal::monotonic_now()));
  }
  const int lfd = core_->fd();
  sockaddr_storage ss{};
  socklen_t len = 0;
  int64_t left = deadline < 0 ? -1 : std::max<int64_t>(0, deadline - internal::monotonic_now());
  auto fd = core_->io(Dir::kRead, "accept", left, [&]() -> ssize_t {
    len = sizeof(ss);
    return ::accept4(lfd, reinterpret_cast<sockaddr*>(&ss), &len, SOCK_NONBLOCK | SOCK_CLOEXEC);
  });
  if (!fd.ok()) {
    std::optional<int> err = internal::errno_of(fd.status());
    if (err && (*err == EMFILE || *err == ENFILE || *err == ENOBUFS || *err == ENOMEM)) {
      int64_t b = counters_->backoff_ns.load(std::memory_order_relaxed);
      counters_->backoff_ns.store(b == 0 ? 5'000'000 : std::min<int64_t>(b * 2, 1'000'000'000),
                                  std::memory_order_relaxed);
      counters_->resource_errors.fetch_add(1, std::memory_order_relaxed);
      std::lock_guard<internal::SpinLock> g(counters_->lock);
      counters_->last_resource_error = fd.status();
    }
    return fd.status();
  }
  counters_->backoff_ns.store(0, std::memory_order_relaxed);
  int cfd = static_cast<int>(*fd);
  SocketAddress peer = SocketAddress::from_sockaddr(reinterpret_cast<sockaddr*>(&ss), len);
  auto core = SocketCore::open(core_->scheduler(), cfd, pick_owner(), internal::kReadInterest, "TcpStream");
  if (!core.ok()) return core.status();
  counters_->accepted.fetch_add(1, std::memory_order_relaxed);
  return Accepted{TcpStream(std::move(*core)), peer};
}

absl::StatusOr<SocketAddress> TcpListener::local_address() const {
  SocketCore::Use use(core_.get());
  if (!use.ok()) return not_open("TcpListener", "local_address");
  return sock_name(core_->fd(), false, "TcpListener::local_address");
}

ListenerStats TcpListener::stats() const {
  ListenerStats s;
  if (!counters_) return s;
  s.accepted = counters_->accepted.load(std::memory_order_relaxed);
  s.resource_errors = counters_->resource_errors.load(std::memory_order_relaxed);
  std::lock_guard<internal::SpinLock> g(counters_->lock);
  s.last_resource_error = counters_->last_resource_error;
  return s;
}

absl::Status TcpListener::close() { return core_ ? core_->close() : absl::OkStatus(); }
bool TcpListener::is_open() const { return core_ && !core_->closed(); }
absl::Status TcpListener::migrate_to(int worker) {
  if (!core_) return not_open("TcpListener", "migrate_to");
  return core_->migrate_to(worker);
}
int TcpListener::owner_worker() const { return is_open() ? core_->owner() : -1; }
int TcpListener::native_handle() const { return core_ ? core_->fd() : -1; }

}  // namespace weft::net
