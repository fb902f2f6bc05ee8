// net/address.h
//
// weft::net::SocketAddress: an IPv4 or IPv6 address and port, or a UNIX
// domain socket address (a path, or a Linux abstract name), the value every
// bind, connect, accept and datagram call takes or returns.
//
//   auto a = weft::net::SocketAddress::parse("127.0.0.1:8080");   // StatusOr
//   auto b = weft::net::SocketAddress::parse("[::1]:0");
//   auto c = weft::net::SocketAddress::from_ip("0.0.0.0", 80);
//   auto u = weft::net::SocketAddress::unix_path("/run/app.sock");
//   auto v = weft::net::SocketAddress::parse("unix:@app");        // abstract
//   std::string s = a->to_string();                                // "127.0.0.1:8080"
//
// Host names are not looked up here; weft::net::resolve() does that
// without blocking a worker.
#pragma once

#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/un.h>

#include <cstdint>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace weft::net {

class SocketAddress {
 public:
  // An unspecified address (family AF_UNSPEC); valid() is false.
  SocketAddress() = default;

  // SocketAddress::parse()
  //
  // Parses "A.B.C.D:PORT" or "[IPV6]:PORT" (a scope such as "%lo" is
  // accepted in the brackets), "unix:PATH" or "unix:@NAME" (abstract).
  // Fails with kInvalidArgument naming the problem.
  static absl::StatusOr<SocketAddress> parse(std::string_view text);

  // SocketAddress::from_ip()
  //
  // A numeric IPv4 or IPv6 address (no brackets; an IPv6 one may carry a
  // scope, "%lo" or "%2") and a port. kInvalidArgument for anything else,
  // including text with a NUL byte and an empty scope ("::1%").
  static absl::StatusOr<SocketAddress> from_ip(std::string_view ip, uint16_t port);

  // loopback_v4()/loopback_v6()/any_v4()/any_v6(): the usual addresses.
  static SocketAddress loopback_v4(uint16_t port);
  static SocketAddress loopback_v6(uint16_t port);
  static SocketAddress any_v4(uint16_t port);
  static SocketAddress any_v6(uint16_t port);

  // SocketAddress::unix_path()
  //
  // A UNIX domain socket at a file system path. kInvalidArgument if the
  // path is empty, holds a NUL byte or is longer than 107 bytes
  // (sun_path).
  static absl::StatusOr<SocketAddress> unix_path(std::string_view path);

  // SocketAddress::unix_abstract()
  //
  // A Linux abstract socket name (no file; it disappears with the last
  // socket). Up to 107 bytes. kInvalidArgument if longer.
  static absl::StatusOr<SocketAddress> unix_abstract(std::string_view name);

  // from_sockaddr() copies a kernel address (AF_INET, AF_INET6 or AF_UNIX;
  // anything else gives an invalid address). An AF_UNIX address needs its
  // real length (an unnamed socket's is just the family).
  static SocketAddress from_sockaddr(const sockaddr* sa, socklen_t len);

  // valid(): IPv4, IPv6 or UNIX (including an unnamed UNIX peer).
  bool valid() const {
    return storage_.ss_family == AF_INET || storage_.ss_family == AF_INET6 ||
           storage_.ss_family == AF_UNIX;
  }
  int family() const { return storage_.ss_family; }
  bool is_v4() const { return storage_.ss_family == AF_INET; }
  bool is_v6() const { return storage_.ss_family == AF_INET6; }
  bool is_unix() const { return storage_.ss_family == AF_UNIX; }
  // is_unix_abstract(): a Linux abstract name; is_unix_unnamed(): a socket
  // with no name (the peer of an accepted connection, usually).
  bool is_unix_abstract() const;
  bool is_unix_unnamed() const;
  // unix_path() is the path of a UNIX address, "@NAME" for an abstract one
  // and "" for an unnamed one or a non-UNIX address.
  std::string unix_path() const;
  uint16_t port() const;
  void set_port(uint16_t port);
  // ip() is the address without the port, e.g. "::1" or "10.0.0.1".
  std::string ip() const;
  // to_string() is "ip:port", with the IPv6 address in brackets;
  // "unix:PATH", "unix:@NAME" or "unix:<unnamed>" for UNIX addresses (which
  // parse() reads back, except unnamed).
  std::string to_string() const;

  const sockaddr* sockaddr_ptr() const { return reinterpret_cast<const sockaddr*>(&storage_); }
  socklen_t sockaddr_len() const {
    return is_v6()     ? sizeof(sockaddr_in6)
           : is_v4()   ? sizeof(sockaddr_in)
           : is_unix() ? unix_len_
                       : sizeof(storage_);
  }

  friend bool operator==(const SocketAddress& a, const SocketAddress& b);

 private:
  sockaddr_storage storage_{};
  socklen_t unix_len_ = 0;  // AF_UNIX: offsetof(sun_path) + the name's bytes
};

}  // namespace weft::net
