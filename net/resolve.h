// net/resolve.h
//
// weft::net::resolve(): host name to addresses through getaddrinfo, run on
// the blocking-call pool (runtime/blocking.h) so no worker thread blocks.
//
//   auto addrs = weft::net::resolve("localhost", 8080);   // StatusOr<vector>
//
// Numeric addresses ("127.0.0.1", "::1") are returned without a lookup.
#pragma once

#include <cstdint>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "net/address.h"

namespace weft::net {

// resolve()
//
// Returns the IPv4 and IPv6 addresses of `host` with `port`, in the
// resolver's order, without duplicates. An unknown host is kNotFound; a
// temporary resolver failure is kUnavailable; an empty name or one with a
// NUL byte is kInvalidArgument. Suspends.
absl::StatusOr<std::vector<SocketAddress>> resolve(std::string_view host, uint16_t port);

}  // namespace weft::net
