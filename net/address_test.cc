#include "net/address.h"

#include <doctest/doctest.h>

namespace weft::net {
namespace {

TEST_CASE("SocketAddress parses IPv4 and IPv6 with ports") {
  auto a = SocketAddress::parse("127.0.0.1:8080");
  REQUIRE(a.ok());
  CHECK(a->is_v4());
  CHECK(a->port() == 8080);
  CHECK(a->ip() == "127.0.0.1");
  CHECK(a->to_string() == "127.0.0.1:8080");

  auto b = SocketAddress::parse("[::1]:0");
  REQUIRE(b.ok());
  CHECK(b->is_v6());
  CHECK(b->port() == 0);
  CHECK(b->to_string() == "[::1]:0");
  b->set_port(99);
  CHECK(b->to_string() == "[::1]:99");

  auto c = SocketAddress::from_ip("::ffff:10.1.2.3", 7);
  REQUIRE(c.ok());
  CHECK(c->is_v6());
  CHECK(SocketAddress::loopback_v4(5) == *SocketAddress::parse("127.0.0.1:5"));
  CHECK(!(SocketAddress::loopback_v4(5) == SocketAddress::loopback_v4(6)));
  CHECK(SocketAddress::any_v6(1).to_string() == "[::]:1");
  CHECK(!SocketAddress().valid());
}

TEST_CASE("SocketAddress rejects malformed text with kInvalidArgument") {
  for (const char* bad : {"", "127.0.0.1", "127.0.0.1:", "127.0.0.1:65536", "127.0.0.1:-1", "1.2.3:80",
                          "::1:80", "[::1]", "[::1]80", "[127.0.0.1]:80", "host.example:80",
                          "[::1]:x", "[fe80::1%nosuchif0]:1"}) {
    CAPTURE(bad);
    auto a = SocketAddress::parse(bad);
    CHECK(a.status().code() == absl::StatusCode::kInvalidArgument);
  }
  // A NUL byte ends the text for inet_pton: what follows it must not be
  // dropped silently. An empty scope after '%' is not "no scope".
  using namespace std::string_view_literals;
  for (std::string_view bad : {"127.0.0.1\0:80"sv, "127.0.0.1\0junk:80"sv, "[::1\0x]:80"sv,
                               "[fe80::1%]:80"sv}) {
    CAPTURE(bad);
    CHECK(SocketAddress::parse(bad).status().code() == absl::StatusCode::kInvalidArgument);
  }
  CHECK(SocketAddress::from_ip("10.0.0.1\0.evil"sv, 1).status().code() ==
        absl::StatusCode::kInvalidArgument);
  CHECK(SocketAddress::from_ip("::1%"sv, 1).status().code() == absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace weft::net
