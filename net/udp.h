// net/udp.h
//
// weft::net::UdpSocket: datagrams on fibers. recv_from() parks the fiber
// until a datagram arrives; send_to() parks only while the send buffer is
// full.
//
//   auto sock = weft::net::UdpSocket::bind(weft::net::SocketAddress::loopback_v4(0));
//   char buf[1500];
//   auto got = sock->recv_from(buf);              // StatusOr<Datagram>
//   sock->send_to({buf, got->size}, got->from);
//
// A datagram larger than the buffer is truncated: the rest of it is
// discarded. recv_from() says so in Datagram::truncated; recv() returns
// just the bytes stored, as recv(2) does, so a caller that must know sizes
// its buffer for the largest datagram or uses recv_from(). Statuses as in
// net/tcp.h; a connected socket's recv() may return kUnavailable
// (ECONNREFUSED) after an ICMP port-unreachable.
#pragma once

#include <cstddef>
#include <memory>
#include <span>
#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "net/address.h"
#include "net/common.h"

namespace weft::internal {
class SocketCore;
struct SocketAccess;  // net/select.h
}  // namespace weft::internal

namespace weft::net {

struct Datagram {
  size_t size = 0;         // bytes stored in the buffer
  SocketAddress from;      // sender
  bool truncated = false;  // the datagram did not fit the buffer
};

struct UdpOptions {
  bool reuse_address = false;
  bool reuse_port = false;
  bool v6_only = false;
};

class UdpSocket {
 public:
  UdpSocket();
  ~UdpSocket();
  UdpSocket(UdpSocket&&) noexcept;
  UdpSocket& operator=(UdpSocket&&) noexcept;

  // UdpSocket::bind()
  //
  // A socket bound to `addr` (port 0: any free port). Must run on a fiber.
  static absl::StatusOr<UdpSocket> bind(const SocketAddress& addr, UdpOptions opts = {});

  // send_to() sends one datagram; suspends only while the buffer is full.
  absl::StatusOr<size_t> send_to(std::string_view data, const SocketAddress& to);
  template <ByteSpan S>
  absl::StatusOr<size_t> send_to(const S& data, const SocketAddress& to) {
    std::span<const char> s(data);
    return send_to(std::string_view(s.data(), s.size()), to);
  }
  // recv_from() parks until a datagram arrives. Suspends.
  absl::StatusOr<Datagram> recv_from(std::span<char> buf);

  // connect() fixes the peer: send()/recv() then talk to it only.
  absl::Status connect(const SocketAddress& peer);
  absl::StatusOr<size_t> send(std::string_view data);
  template <ByteSpan S>
  absl::StatusOr<size_t> send(const S& data) {
    std::span<const char> s(data);
    return send(std::string_view(s.data(), s.size()));
  }
  absl::StatusOr<size_t> recv(std::span<char> buf);

  // Timeouts and deadlines, as TcpStream's.
  void set_read_timeout(absl::Duration timeout);
  void set_write_timeout(absl::Duration timeout);
  absl::Status set_read_deadline(absl::Time deadline);
  absl::Status set_write_deadline(absl::Time deadline);

  absl::StatusOr<SocketAddress> local_address() const;
  absl::Status close();
  bool is_open() const;
  absl::Status migrate_to(int worker);
  int owner_worker() const;
  int native_handle() const;

 private:
  friend struct internal::SocketAccess;
  explicit UdpSocket(std::unique_ptr<internal::SocketCore> core);
  std::unique_ptr<internal::SocketCore> core_;
  int64_t read_timeout_ns_ = -1;
  int64_t write_timeout_ns_ = -1;
};

}  // namespace weft::net
