#include "net/resolve.h"

#include <netdb.h>
#include <sys/socket.h>

#include <algorithm>
#include <memory>
#include <string>
#include <utility>

#include "runtime/blocking.h"

namespace weft::net {

absl::StatusOr<std::vector<SocketAddress>> resolve(std::string_view host, uint16_t port) {
  if (host.empty()) return absl::InvalidArgumentError("resolve: empty host name");
  std::string h(host);
  if (h.size() > 2 && h.front() == '[' && h.back() == ']') h = h.substr(1, h.size() - 2);
  if (auto a = SocketAddress::from_ip(h, port); a.ok()) return std::vector<SocketAddress>{*a};
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  // The result is owned by the call (not a local the pool writes to), so a
  // fiber unwound by shutdown after getaddrinfo returned leaks nothing.
  struct FreeAddrInfo {
    void operator()(addrinfo* p) const { ::freeaddrinfo(p); }
  };
  using AddrInfoPtr = std::unique_ptr<addrinfo, FreeAddrInfo>;
  auto [rc, owned] = run_blocking(BlockingLane::kResolve, [&] {
    addrinfo* r = nullptr;
    int code = ::getaddrinfo(h.c_str(), nullptr, &hints, &r);
    return std::pair<int, AddrInfoPtr>(code, AddrInfoPtr(code == 0 ? r : nullptr));
  });
  addrinfo* res = owned.get();
  if (rc != 0) {
    std::string msg = "resolve(" + h + "): " + ::gai_strerror(rc);
    if (rc == EAI_NONAME || rc == EAI_NODATA) return absl::NotFoundError(msg);
    if (rc == EAI_AGAIN) return absl::UnavailableError(msg);
    if (rc == EAI_MEMORY) return absl::ResourceExhaustedError(msg);
    return absl::UnknownError(msg);
  }
  std::vector<SocketAddress> out;
  for (addrinfo* ai = res; ai != nullptr; ai = ai->ai_next) {
    SocketAddress a = SocketAddress::from_sockaddr(ai->ai_addr, ai->ai_addrlen);
    if (!a.valid()) continue;
    a.set_port(port);
    if (std::find(out.begin(), out.end(), a) == out.end()) out.push_back(a);
  }
  if (out.empty()) return absl::NotFoundError("resolve(" + h + "): no IPv4 or IPv6 address");
  return out;
}

}  // namespace weft::net
