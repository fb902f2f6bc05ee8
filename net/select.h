// net/select.h
//
// Socket cases for weft::select() (lifecycle/select.h): wait until a
// socket can be read or written, together with channels, timers, tokens
// and the rest.
//
//   auto r = weft::select(net::readable(conn), weft::recv(outbox),
//                         weft::after(absl::Seconds(30)));
//   if (!r.ok()) return r.status();           // this fiber was cancelled
//   if (r->index() == 0) {
//     if (!std::get<0>(*r).ok()) return std::get<0>(*r);  // closed, deadline
//     auto n = conn.read(buf);                // does not wait
//   }
//
// readable(s): a read (or accept, or recv) on s would not wait now: bytes,
// a datagram or a connection are there, or end of stream, an error or a
// hang-up will be reported at once. writable(s): a write would not wait.
// Either yields absl::Status: OK, kFailedPrecondition if s is closed (or
// closed while the select waits), kDeadlineExceeded if s's read (write)
// deadline has passed (set_read_deadline and friends).
//
// Readiness is the level, asked of poll(2), never a stale edge: after
// readable(s) wins, a read on s does not wait unless another fiber reads
// s first. A case that did not win reads or writes nothing. close() on s
// from another fiber ends the select with the closed status and waits for
// it. s must outlive the select() call. The protocol is "Select
// readiness" in net/internal/socket_core.cc.
//
// Works on TcpStream, TcpListener, UdpSocket, UnixStream, UnixListener
// and UnixDatagram.
#pragma once

#include <string>
#include <utility>

#include "absl/status/status.h"
#include "lifecycle/select.h"
#include "net/internal/socket_core.h"
#include "net/tcp.h"
#include "net/udp.h"
#include "net/unix.h"
#include "runtime/internal/park.h"
#include "runtime/platform/check.h"

namespace weft::internal {

// SocketAccess: the SocketCore under each socket type, for the cases below.
struct SocketAccess {
  static SocketCore* core(const net::TcpStream& s) { return s.core_.get(); }
  static SocketCore* core(const net::TcpListener& s) { return s.core_.get(); }
  static SocketCore* core(const net::UdpSocket& s) { return s.core_.get(); }
  static SocketCore* core(const net::UnixStream& s) { return core(static_cast<const net::TcpStream&>(s)); }
  static SocketCore* core(const net::UnixListener& s) { return core(static_cast<const net::TcpListener&>(s)); }
  static SocketCore* core(const net::UnixDatagram& s) { return core(static_cast<const net::UdpSocket&>(s)); }
};

}  // namespace weft::internal

namespace weft::net {

namespace select_case {

// Ready: one direction of one socket. Holds the socket from the poll step
// to the end of the select (see SocketCore::select_hold).
class Ready {
 public:
  using Result = absl::Status;
  Ready(internal::SocketCore* core, internal::Dir d) : core_(core), dir_(d) {}
  Ready(Ready&& o) noexcept : core_(o.core_), dir_(o.dir_), held_(std::exchange(o.held_, false)) {}
  Ready& operator=(Ready&&) = delete;
  ~Ready() {
    if (held_) core_->select_release();
  }

  bool poll(Result* out) {
    if (!held_) {
      if (core_ == nullptr || !core_->select_hold()) {
        *out = absl::FailedPreconditionError(std::string("net::") + what() + ": socket is closed");
        return true;
      }
      held_ = true;
    }
    return core_->select_poll(dir_, out);
  }
  weft::select_case::Arm arm(internal::Waiter& w, Result* out) {
    // select() polls every case before it arms any (and poll() may
    // suspend, which an armed select must not).
    WEFT_CHECK(held_, "net::select_case::Ready armed before it was polled");
    switch (core_->select_arm(dir_, w)) {
      case internal::SocketCore::SelectArm::kDone:
        *out = core_->select_result(dir_, what());
        return weft::select_case::kDone;
      case internal::SocketCore::SelectArm::kQueued:
        return weft::select_case::kQueued;
      case internal::SocketCore::SelectArm::kLost:
        break;
    }
    return weft::select_case::kLost;
  }
  void disarm(internal::Waiter& w) { core_->select_disarm(dir_, w); }
  Result take(internal::Waiter&) { return core_->select_result(dir_, what()); }
  int64_t deadline() const { return -1; }

 private:
  const char* what() const { return dir_ == internal::Dir::kRead ? "readable" : "writable"; }
  internal::SocketCore* core_;
  internal::Dir dir_;
  bool held_ = false;
};

}  // namespace select_case

// readable(s), writable(s): see the file comment.
template <class S>
select_case::Ready readable(const S& s) {
  return {internal::SocketAccess::core(s), internal::Dir::kRead};
}
template <class S>
select_case::Ready writable(const S& s) {
  return {internal::SocketAccess::core(s), internal::Dir::kWrite};
}

}  // namespace weft::net
