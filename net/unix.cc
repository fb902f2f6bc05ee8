#include "net/unix.h"

#include <fcntl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <utility>

#include "runtime/blocking.h"
#include "runtime/platform/syscall.h"
#include "runtime/runtime.h"

namespace weft::net {

using internal::errno_of;
using internal::errno_status;

namespace {

// FileId: the device and inode of a socket file, to remove only our own.
struct FileId {
  dev_t dev = 0;
  ino_t ino = 0;
};

// file_id() is called right after a bind made the file: it must run (the
// file is removed later only if its identity is known), so a cancellation
// of the caller does not drop it from the pool's queue.
FileId file_id(const std::string& path) {
  this_fiber::CancellationShield shield;
  struct stat st;
  if (run_blocking([&] { return ::lstat(path.c_str(), &st); }) != 0) return {};
  return {st.st_dev, st.st_ino};
}

// unlink_if_ours() removes path if it is still the socket file `id`.
void unlink_if_ours(const std::string& path, FileId id) {
  struct stat st;
  if (::lstat(path.c_str(), &st) == 0 && S_ISSOCK(st.st_mode) && st.st_dev == id.dev &&
      st.st_ino == id.ino) {
    ::unlink(path.c_str());
  }
}

// is_stale() is true if `path` is a socket file that refuses connections
// of `type` (nobody listens on it, or nobody has it bound). Blocking (pool).
bool is_stale(const std::string& path, int type) {
  struct stat st;
  if (::lstat(path.c_str(), &st) != 0 || !S_ISSOCK(st.st_mode)) return false;
  int fd = ::socket(AF_UNIX, type | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return false;
  auto addr = SocketAddress::unix_path(path);
  int rc = ::connect(fd, addr->sockaddr_ptr(), addr->sockaddr_len());
  int err = errno;
  ::close(fd);
  // EAGAIN: a live listener whose backlog is full.
  return rc != 0 && err == ECONNREFUSED;
}

// remove_if_stale() removes path if is_stale() (on the pool): true if it
// did. kCancelled if the caller is cancelled before the call runs.
absl::StatusOr<bool> remove_if_stale(const std::string& path, int type) {
  return run_blocking([&]() -> absl::StatusOr<bool> {
    return is_stale(path, type) && ::unlink(path.c_str()) == 0;
  });
}

}  // namespace

// ===========================================================================
// UnixStream
// ===========================================================================

absl::StatusOr<UnixStream> UnixStream::connect(const SocketAddress& addr, absl::Duration timeout) {
  if (!addr.is_unix() || addr.is_unix_unnamed()) {
    return absl::InvalidArgumentError("UnixStream::connect: not a UNIX socket address: " +
                                      addr.to_string());
  }
  auto s = TcpStream::connect(addr, timeout);
  if (!s.ok()) return s.status();
  return UnixStream(std::move(*s));
}

absl::StatusOr<UnixStream> UnixStream::connect(std::string_view path, absl::Duration timeout) {
  auto addr = SocketAddress::unix_path(path);
  if (!addr.ok()) return addr.status();
  return connect(*addr, timeout);
}

absl::StatusOr<PeerCredentials> UnixStream::peer_credentials() const {
  if (!is_open()) return absl::FailedPreconditionError("UnixStream::peer_credentials: not open");
  ucred cred{};
  socklen_t len = sizeof cred;
  if (::getsockopt(native_handle(), SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0) {
    return errno_status(errno, "UnixStream::peer_credentials: getsockopt(SO_PEERCRED)");
  }
  return PeerCredentials{cred.pid, cred.uid, cred.gid};
}

// ===========================================================================
// UnixListener
// ===========================================================================

UnixListener::UnixListener(TcpListener l, std::string path, dev_t dev, ino_t ino,
                           bool unlink_on_close)
    : TcpListener(std::move(l)),
      path_(unlink_on_close ? std::move(path) : std::string()),
      dev_(dev),
      ino_(ino) {}

UnixListener::UnixListener(UnixListener&& o) noexcept
    : TcpListener(std::move(static_cast<TcpListener&>(o))),
      path_(std::exchange(o.path_, std::string())),
      dev_(o.dev_),
      ino_(o.ino_) {}

UnixListener& UnixListener::operator=(UnixListener&& o) noexcept {
  if (this != &o) {
    unlink_file();
    static_cast<TcpListener&>(*this) = std::move(static_cast<TcpListener&>(o));
    path_ = std::exchange(o.path_, std::string());
    dev_ = o.dev_;
    ino_ = o.ino_;
  }
  return *this;
}

UnixListener::~UnixListener() { unlink_file(); }

void UnixListener::unlink_file() {
  if (path_.empty()) return;
  std::string path = std::exchange(path_, std::string());
  // Only if the path still names our socket (not a newer server's).
  struct stat st;
  if (::lstat(path.c_str(), &st) == 0 && S_ISSOCK(st.st_mode) && st.st_dev == dev_ &&
      st.st_ino == ino_) {
    ::unlink(path.c_str());
  }
}

absl::StatusOr<UnixListener> UnixListener::bind(const SocketAddress& addr,
                                                UnixListenOptions opts) {
  if (!addr.is_unix() || addr.is_unix_unnamed()) {
    return absl::InvalidArgumentError("UnixListener::bind: not a UNIX socket address: " +
                                      addr.to_string());
  }
  ListenOptions lo;
  lo.backlog = opts.backlog;
  lo.placement = opts.placement;
  lo.reuse_address = false;  // meaningless for UNIX sockets
  auto l = TcpListener::bind(addr, lo);
  const bool has_file = !addr.is_unix_abstract();
  const std::string path = addr.unix_path();
  if (!l.ok() && has_file && opts.remove_stale && errno_of(l.status()) == EADDRINUSE) {
    auto removed = remove_if_stale(path, SOCK_STREAM);
    if (!removed.ok()) return removed.status();
    if (*removed) l = TcpListener::bind(addr, lo);
  }
  if (!l.ok()) return l.status();
  FileId id = has_file ? file_id(path) : FileId{};
  return UnixListener(std::move(*l), has_file ? path : std::string(), id.dev, id.ino,
                      opts.unlink_on_close);
}

absl::StatusOr<UnixListener> UnixListener::bind(std::string_view path, UnixListenOptions opts) {
  auto addr = SocketAddress::unix_path(path);
  if (!addr.ok()) return addr.status();
  return bind(*addr, opts);
}

absl::StatusOr<UnixAccepted> UnixListener::accept() {
  return accept_for(absl::InfiniteDuration());
}

absl::StatusOr<UnixAccepted> UnixListener::accept_for(absl::Duration timeout) {
  auto a = TcpListener::accept_for(timeout);
  if (!a.ok()) return a.status();
  return UnixAccepted{UnixStream(std::move(a->stream)), a->peer};
}

absl::Status UnixListener::close() {
  absl::Status s = TcpListener::close();
  unlink_file();
  return s;
}

}  // namespace weft::net

// ===========================================================================
// UnixDatagram
// ===========================================================================

namespace weft::net {

UnixDatagram::UnixDatagram(UdpSocket s, std::string path, dev_t dev, ino_t ino)
    : UdpSocket(std::move(s)), path_(std::move(path)), dev_(dev), ino_(ino) {}

UnixDatagram::UnixDatagram(UnixDatagram&& o) noexcept
    : UdpSocket(std::move(static_cast<UdpSocket&>(o))),
      path_(std::exchange(o.path_, std::string())),
      dev_(o.dev_),
      ino_(o.ino_) {}

UnixDatagram& UnixDatagram::operator=(UnixDatagram&& o) noexcept {
  if (this != &o) {
    unlink_file();
    static_cast<UdpSocket&>(*this) = std::move(static_cast<UdpSocket&>(o));
    path_ = std::exchange(o.path_, std::string());
    dev_ = o.dev_;
    ino_ = o.ino_;
  }
  return *this;
}

UnixDatagram::~UnixDatagram() { unlink_file(); }

void UnixDatagram::unlink_file() {
  if (path_.empty()) return;
  unlink_if_ours(std::exchange(path_, std::string()), {dev_, ino_});
}

absl::StatusOr<UnixDatagram> UnixDatagram::bind(const SocketAddress& addr,
                                                UnixDatagramOptions opts) {
  if (!addr.is_unix()) {
    return absl::InvalidArgumentError("UnixDatagram::bind: not a UNIX socket address: " +
                                      addr.to_string());
  }
  auto s = UdpSocket::bind(addr);
  const bool has_file = !addr.is_unix_abstract() && !addr.is_unix_unnamed();
  const std::string path = has_file ? addr.unix_path() : std::string();
  if (!s.ok() && has_file && opts.remove_stale && errno_of(s.status()) == EADDRINUSE) {
    auto removed = remove_if_stale(path, SOCK_DGRAM);
    if (!removed.ok()) return removed.status();
    if (*removed) s = UdpSocket::bind(addr);
  }
  if (!s.ok()) return s.status();
  FileId id = has_file ? file_id(path) : FileId{};
  return UnixDatagram(std::move(*s), has_file && opts.unlink_on_close ? path : std::string(),
                      id.dev, id.ino);
}

absl::StatusOr<UnixDatagram> UnixDatagram::bind(std::string_view path, UnixDatagramOptions opts) {
  auto addr = SocketAddress::unix_path(path);
  if (!addr.ok()) return addr.status();
  return bind(*addr, opts);
}

absl::StatusOr<UnixDatagram> UnixDatagram::autobind() {
  // An address of only the family: the kernel binds an abstract name.
  sa_family_t family = AF_UNIX;
  SocketAddress unnamed =
      SocketAddress::from_sockaddr(reinterpret_cast<const sockaddr*>(&family), sizeof family);
  return bind(unnamed);
}

absl::Status UnixDatagram::close() {
  absl::Status s = UdpSocket::close();
  unlink_file();
  return s;
}

}  // namespace weft::net
