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
  // getaddrinfo() would stop at a NUL and look up only what precedes it.
  if (host.find('\0') != std::string_view::npos) {
    return absl::InvalidArgumentError("resolve: NUL byte in host name \"" + std::string(host) + "\"");
  }
  std::string h(host);
  if (h.size() > 2 && h.front() == '[' && h.back() == ']') h = h.substr(1, h.size() - 2);
  if (auto a = SocketAddress::from_ip(h, port); a.ok()) return std::vector<SocketAddress>{*a};
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  // fn owns its inputs and its result (spawn_blocking), so a waiting fiber
  // that is cancelled returns at once: getaddrinfo finishes on its thread
  // and the result is freed with the call. Unwound by shutdown, nothing
  // leaks either.
  struct FreeAddrInfo {
    void operator()(addrinfo* p) const { ::freeaddrinfo(p); }
  };
  using AddrInfoPtr = std::unique_ptr<addrinfo, FreeAddrInfo>;
  auto handle = spawn_blocking(BlockingLane::kResolve, [h, hints] {
    addrinfo* r = nullptr;
    int code = ::getaddrinfo(h.c_str(), nullptr, &hints, &r);
    return std::pair<int, AddrInfoPtr>(code, AddrInfoPtr(code == 0 ? r : nullptr));
  });
  auto joined = handle.try_join();
  if (!joined.ok()) return absl::CancelledError("resolve(" + h + "): the waiting fiber was cancelled");
  auto& [rc, owned] = *joined;
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
