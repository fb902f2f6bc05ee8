#include "net/address.h"

#include <arpa/inet.h>
#include <net/if.h>

#include <algorithm>
#include <charconv>
#include <cstddef>
#include <cstring>

namespace weft::net {

namespace {

absl::StatusOr<uint16_t> parse_port(std::string_view s, std::string_view whole) {
  unsigned v = 0;
  auto r = std::from_chars(s.data(), s.data() + s.size(), v);
  if (s.empty() || r.ec != std::errc() || r.ptr != s.data() + s.size() || v > 65535) {
    return absl::InvalidArgumentError("bad port in address \"" + std::string(whole) + "\"");
  }
  return static_cast<uint16_t>(v);
}

}  // namespace

absl::StatusOr<SocketAddress> SocketAddress::from_ip(std::string_view ip, uint16_t port) {
  SocketAddress a;
  // inet_pton() and if_nametoindex() stop at a NUL: refuse one rather than
  // drop what follows it.
  if (ip.find('\0') != std::string_view::npos) {
    return absl::InvalidArgumentError("NUL byte in IP address \"" + std::string(ip) + "\"");
  }
  std::string host(ip);
  std::string scope;
  if (auto pct = host.find('%'); pct != std::string::npos) {
    scope = host.substr(pct + 1);
    host.resize(pct);
    if (scope.empty()) {
      return absl::InvalidArgumentError("empty IPv6 scope after '%' in \"" + std::string(ip) + "\"");
    }
  }
  auto* v4 = reinterpret_cast<sockaddr_in*>(&a.storage_);
  if (scope.empty() && ::inet_pton(AF_INET, host.c_str(), &v4->sin_addr) == 1) {
    v4->sin_family = AF_INET;
    v4->sin_port = htons(port);
    return a;
  }
  a.storage_ = {};
  auto* v6 = reinterpret_cast<sockaddr_in6*>(&a.storage_);
  if (::inet_pton(AF_INET6, host.c_str(), &v6->sin6_addr) == 1) {
    v6->sin6_family = AF_INET6;
    v6->sin6_port = htons(port);
    if (!scope.empty()) {
      unsigned idx = ::if_nametoindex(scope.c_str());
      if (idx == 0) {
        auto r = std::from_chars(scope.data(), scope.data() + scope.size(), idx);
        if (r.ec != std::errc() || r.ptr != scope.data() + scope.size()) {
          return absl::InvalidArgumentError("unknown IPv6 scope \"" + scope + "\"");
        }
      }
      v6->sin6_scope_id = idx;
    }
    return a;
  }
  return absl::InvalidArgumentError("not a numeric IPv4 or IPv6 address: \"" + std::string(ip) + "\"");
}

absl::StatusOr<SocketAddress> SocketAddress::unix_path(std::string_view path) {
  if (path.empty()) return absl::InvalidArgumentError("empty UNIX socket path");
  if (path.find('\0') != std::string_view::npos) {
    return absl::InvalidArgumentError("UNIX socket path contains a NUL byte");
  }
  sockaddr_un un{};
  if (path.size() >= sizeof(un.sun_path)) {
    return absl::InvalidArgumentError("UNIX socket path longer than " +
                                      std::to_string(sizeof(un.sun_path) - 1) + " bytes: \"" +
                                      std::string(path) + "\"");
  }
  SocketAddress a;
  auto* u = reinterpret_cast<sockaddr_un*>(&a.storage_);
  u->sun_family = AF_UNIX;
  std::memcpy(u->sun_path, path.data(), path.size());
  a.unix_len_ = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + path.size() + 1);
  return a;
}

absl::StatusOr<SocketAddress> SocketAddress::unix_abstract(std::string_view name) {
  sockaddr_un un{};
  if (name.size() >= sizeof(un.sun_path)) {
    return absl::InvalidArgumentError("abstract UNIX socket name longer than " +
                                      std::to_string(sizeof(un.sun_path) - 1) + " bytes");
  }
  SocketAddress a;
  auto* u = reinterpret_cast<sockaddr_un*>(&a.storage_);
  u->sun_family = AF_UNIX;
  u->sun_path[0] = '\0';
  std::memcpy(u->sun_path + 1, name.data(), name.size());
  a.unix_len_ = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + 1 + name.size());
  return a;
}

bool SocketAddress::is_unix_unnamed() const {
  return is_unix() && unix_len_ <= static_cast<socklen_t>(offsetof(sockaddr_un, sun_path));
}

bool SocketAddress::is_unix_abstract() const {
  return is_unix() && !is_unix_unnamed() &&
         reinterpret_cast<const sockaddr_un*>(&storage_)->sun_path[0] == '\0';
}

std::string SocketAddress::unix_path() const {
  if (!is_unix() || is_unix_unnamed()) return "";
  const auto* u = reinterpret_cast<const sockaddr_un*>(&storage_);
  size_t n = unix_len_ - offsetof(sockaddr_un, sun_path);
  if (is_unix_abstract()) return "@" + std::string(u->sun_path + 1, n - 1);
  return std::string(u->sun_path, ::strnlen(u->sun_path, n));
}

absl::StatusOr<SocketAddress> SocketAddress::parse(std::string_view text) {
  if (text.substr(0, 5) == "unix:") {
    std::string_view rest = text.substr(5);
    if (!rest.empty() && rest.front() == '@') return unix_abstract(rest.substr(1));
    return unix_path(rest);
  }
  if (!text.empty() && text.front() == '[') {
    size_t close = text.find(']');
    if (close == std::string_view::npos || close + 1 >= text.size() || text[close + 1] != ':') {
      return absl::InvalidArgumentError("expected \"[IPV6]:PORT\", got \"" + std::string(text) + "\"");
    }
    auto port = parse_port(text.substr(close + 2), text);
    if (!port.ok()) return port.status();
    auto a = from_ip(text.substr(1, close - 1), *port);
    if (a.ok() && !a->is_v6()) {
      return absl::InvalidArgumentError("brackets hold an IPv4 address: \"" + std::string(text) + "\"");
    }
    return a;
  }
  size_t colon = text.rfind(':');
  if (colon == std::string_view::npos) {
    return absl::InvalidArgumentError("expected \"HOST:PORT\", got \"" + std::string(text) + "\"");
  }
  if (text.find(':') != colon) {
    return absl::InvalidArgumentError("IPv6 addresses need brackets: \"[" +
                                      std::string(text.substr(0, colon)) + "]:PORT\"");
  }
  auto port = parse_port(text.substr(colon + 1), text);
  if (!port.ok()) return port.status();
  return from_ip(text.substr(0, colon), *port);
}

SocketAddress SocketAddress::loopback_v4(uint16_t port) { return *from_ip("127.0.0.1", port); }
SocketAddress SocketAddress::loopback_v6(uint16_t port) { return *from_ip("::1", port); }
SocketAddress SocketAddress::any_v4(uint16_t port) { return *from_ip("0.0.0.0", port); }
SocketAddress SocketAddress::any_v6(uint16_t port) { return *from_ip("::", port); }

SocketAddress SocketAddress::from_sockaddr(const sockaddr* sa, socklen_t len) {
  SocketAddress a;
  if (sa == nullptr) return a;
  if (sa->sa_family == AF_INET && len >= static_cast<socklen_t>(sizeof(sockaddr_in))) {
    std::memcpy(&a.storage_, sa, sizeof(sockaddr_in));
  } else if (sa->sa_family == AF_INET6 && len >= static_cast<socklen_t>(sizeof(sockaddr_in6))) {
    std::memcpy(&a.storage_, sa, sizeof(sockaddr_in6));
  } else if (sa->sa_family == AF_UNIX && len >= static_cast<socklen_t>(sizeof(sa_family_t)) &&
             len <= static_cast<socklen_t>(sizeof(sockaddr_un) + 1)) {
    // Linux reports a path that fills sun_path (108 bytes, no room for a
    // NUL) with a length one past sockaddr_un: it counts the NUL it keeps
    // after the path. Only a path can be that long.
    const size_t copy = std::min(static_cast<size_t>(len), sizeof(sockaddr_un));
    std::memcpy(&a.storage_, sa, copy);
    a.unix_len_ = static_cast<socklen_t>(copy);
    const auto* u = reinterpret_cast<const sockaddr_un*>(&a.storage_);
    const size_t off = offsetof(sockaddr_un, sun_path);
    if (copy > off && u->sun_path[0] != '\0') {
      // A path: the kernel may or may not count its NUL; normalize, and
      // count a NUL only when sun_path has room for it.
      size_t n = ::strnlen(u->sun_path, copy - off);
      a.unix_len_ = static_cast<socklen_t>(off + n + (n < sizeof(u->sun_path) ? 1 : 0));
    } else if (static_cast<size_t>(len) > sizeof(sockaddr_un)) {
      a.storage_ = {};  // an abstract name cannot be that long
      a.unix_len_ = 0;
    }
  }
  return a;
}

uint16_t SocketAddress::port() const {
  if (is_v4()) return ntohs(reinterpret_cast<const sockaddr_in*>(&storage_)->sin_port);
  if (is_v6()) return ntohs(reinterpret_cast<const sockaddr_in6*>(&storage_)->sin6_port);
  return 0;
}

void SocketAddress::set_port(uint16_t port) {
  if (is_v4()) reinterpret_cast<sockaddr_in*>(&storage_)->sin_port = htons(port);
  if (is_v6()) reinterpret_cast<sockaddr_in6*>(&storage_)->sin6_port = htons(port);
}

std::string SocketAddress::ip() const {
  char buf[INET6_ADDRSTRLEN + IF_NAMESIZE + 2] = {};
  if (is_v4()) {
    ::inet_ntop(AF_INET, &reinterpret_cast<const sockaddr_in*>(&storage_)->sin_addr, buf, sizeof(buf));
    return buf;
  }
  if (is_v6()) {
    const auto* v6 = reinterpret_cast<const sockaddr_in6*>(&storage_);
    ::inet_ntop(AF_INET6, &v6->sin6_addr, buf, sizeof(buf));
    std::string s = buf;
    if (v6->sin6_scope_id != 0) s += "%" + std::to_string(v6->sin6_scope_id);
    return s;
  }
  return "<unspecified>";
}

std::string SocketAddress::to_string() const {
  if (is_v6()) return "[" + ip() + "]:" + std::to_string(port());
  if (is_v4()) return ip() + ":" + std::to_string(port());
  if (is_unix()) return is_unix_unnamed() ? "unix:<unnamed>" : "unix:" + unix_path();
  return "<unspecified>";
}

bool operator==(const SocketAddress& a, const SocketAddress& b) {
  if (a.family() != b.family()) return false;
  if (a.is_v4()) {
    const auto* x = reinterpret_cast<const sockaddr_in*>(&a.storage_);
    const auto* y = reinterpret_cast<const sockaddr_in*>(&b.storage_);
    return x->sin_port == y->sin_port && x->sin_addr.s_addr == y->sin_addr.s_addr;
  }
  if (a.is_v6()) {
    const auto* x = reinterpret_cast<const sockaddr_in6*>(&a.storage_);
    const auto* y = reinterpret_cast<const sockaddr_in6*>(&b.storage_);
    return x->sin6_port == y->sin6_port && x->sin6_scope_id == y->sin6_scope_id &&
           std::memcmp(&x->sin6_addr, &y->sin6_addr, sizeof(in6_addr)) == 0;
  }
  if (a.is_unix()) {
    return a.unix_len_ == b.unix_len_ &&
           std::memcmp(&a.storage_, &b.storage_, static_cast<size_t>(a.unix_len_)) == 0;
  }
  return true;
}

}  // namespace weft::net
