#include "net/udp.h"

#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <string>

#include "net/internal/socket_core.h"
#include "runtime/platform/direct_syscall.h"
#include "runtime/runtime.h"

namespace weft::net {

using internal::Dir;
using internal::errno_status;
using internal::last_errno;
using internal::SocketCore;

namespace {

absl::Status not_open(const char* what) {
  return absl::FailedPreconditionError(std::string("UdpSocket::") + what + ": socket is not open");
}

int64_t to_timeout_ns(absl::Duration d) {
  if (d == absl::InfiniteDuration()) return -1;
  if (d < absl::ZeroDuration()) return 0;
  return absl::ToInt64Nanoseconds(d);
}

}  // namespace

UdpSocket::UdpSocket() = default;
UdpSocket::~UdpSocket() = default;
UdpSocket::UdpSocket(UdpSocket&&) noexcept = default;
UdpSocket& UdpSocket::operator=(UdpSocket&& o) noexcept {
  if (this != &o) {
    core_ = std::move(o.core_);
    read_timeout_ns_ = o.read_timeout_ns_;
    write_timeout_ns_ = o.write_timeout_ns_;
  }
  return *this;
}
UdpSocket::UdpSocket(std::unique_ptr<SocketCore> core) : core_(std::move(core)) {}

absl::StatusOr<UdpSocket> UdpSocket::bind(const SocketAddress& addr, UdpOptions opts) {
  internal::Scheduler* sched = internal::current_scheduler_or_die("weft::net::UdpSocket::bind");
  if (!addr.valid()) return absl::InvalidArgumentError("UdpSocket::bind: invalid address");
  const std::string what = "UdpSocket::bind(" + addr.to_string() + ")";
  int fd = ::socket(addr.family(), SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
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
  auto core = SocketCore::open(sched, fd, -1, internal::kReadInterest, "UdpSocket");
  if (!core.ok()) return core.status();
  return UdpSocket(std::move(*core));
}

absl::StatusOr<size_t> UdpSocket::send_to(std::string_view data, const SocketAddress& to) {
  if (!core_) return not_open("send_to");
  if (!to.valid()) return absl::InvalidArgumentError("UdpSocket::send_to: invalid address");
  const int fd = core_->fd();
  return core_->io(Dir::kWrite, "send_to", write_timeout_ns_, [&] {
    return internal::sys::sendto(fd, data.data(), data.size(), MSG_NOSIGNAL, to.sockaddr_ptr(),
                                 to.sockaddr_len());
  });
}

absl::StatusOr<Datagram> UdpSocket::recv_from(std::span<char> buf) {
  if (!core_) return not_open("recv_from");
  const int fd = core_->fd();
  sockaddr_storage ss{};
  socklen_t len = 0;
  int flags = 0;
  auto n = core_->io(Dir::kRead, "recv_from", read_timeout_ns_, [&]() -> ssize_t {
    iovec iov{buf.data(), buf.size()};
    msghdr msg{};
    msg.msg_name = &ss;
    msg.msg_namelen = sizeof(ss);
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    ssize_t r = internal::sys::recvmsg(fd, &msg, 0);
    len = msg.msg_namelen;
    flags = msg.msg_flags;
    return r;
  });
  if (!n.ok()) return n.status();
  Datagram d;
  d.size = *n;
  d.from = SocketAddress::from_sockaddr(reinterpret_cast<sockaddr*>(&ss), len);
  d.truncated = (flags & MSG_TRUNC) != 0;
  return d;
}

absl::Status UdpSocket::connect(const SocketAddress& peer) {
  SocketCore::Use use(core_.get());
  if (!use.ok()) return not_open("connect");
  if (!peer.valid()) return absl::InvalidArgumentError("UdpSocket::connect: invalid address");
  if (::connect(core_->fd(), peer.sockaddr_ptr(), peer.sockaddr_len()) != 0) {
    return errno_status(last_errno(), "UdpSocket::connect(" + peer.to_string() + ")");
  }
  return absl::OkStatus();
}

absl::StatusOr<size_t> UdpSocket::send(std::string_view data) {
  if (!core_) return not_open("send");
  const int fd = core_->fd();
  return core_->io(Dir::kWrite, "send", write_timeout_ns_,
                   [&] { return internal::sys::send(fd, data.data(), data.size(), MSG_NOSIGNAL); });
}

absl::StatusOr<size_t> UdpSocket::recv(std::span<char> buf) {
  if (!core_) return not_open("recv");
  const int fd = core_->fd();
  return core_->io(Dir::kRead, "recv", read_timeout_ns_,
                   [&] { return internal::sys::recv(fd, buf.data(), buf.size(), 0); });
}

void UdpSocket::set_read_timeout(absl::Duration t) { read_timeout_ns_ = to_timeout_ns(t); }
void UdpSocket::set_write_timeout(absl::Duration t) { write_timeout_ns_ = to_timeout_ns(t); }
absl::Status UdpSocket::set_read_deadline(absl::Time d) {
  if (!core_) return not_open("set_read_deadline");
  return core_->set_deadline(Dir::kRead, d);
}
absl::Status UdpSocket::set_write_deadline(absl::Time d) {
  if (!core_) return not_open("set_write_deadline");
  return core_->set_deadline(Dir::kWrite, d);
}

absl::StatusOr<SocketAddress> UdpSocket::local_address() const {
  SocketCore::Use use(core_.get());
  if (!use.ok()) return not_open("local_address");
  sockaddr_storage ss{};
  socklen_t len = sizeof(ss);
  if (::getsockname(core_->fd(), reinterpret_cast<sockaddr*>(&ss), &len) != 0) {
    return errno_status(last_errno(), "UdpSocket::local_address");
  }
  return SocketAddress::from_sockaddr(reinterpret_cast<sockaddr*>(&ss), len);
}

absl::Status UdpSocket::close() { return core_ ? core_->close() : absl::OkStatus(); }
bool UdpSocket::is_open() const { return core_ && !core_->closed(); }
absl::Status UdpSocket::migrate_to(int worker) {
  if (!core_) return not_open("migrate_to");
  return core_->migrate_to(worker);
}
int UdpSocket::owner_worker() const { return is_open() ? core_->owner() : -1; }
int UdpSocket::native_handle() const { return core_ ? core_->fd() : -1; }

}  // namespace weft::net
