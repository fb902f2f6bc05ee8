// http::Server with a tls::Context: requests over TLS from a weft TLS
// client, keep-alive across requests, a failed handshake counted, graceful
// shutdown with a TLS connection idle.
#include <doctest/doctest.h>

#include <string>

#include "boost/beast/core/flat_buffer.hpp"
#include "boost/beast/http/read.hpp"
#include "boost/beast/http/write.hpp"
#include "net/http/beast_stream.h"
#include "net/http/client.h"
#include "net/http/server.h"
#include "net/net.h"
#include "net/tls/test_certs.h"
#include "net/tls/tls.h"
#include "runtime/runtime.h"

namespace weft::http {
namespace {

namespace bhttp = boost::beast::http;
using tls::testing::pki;

TEST_CASE("HTTPS: Beast over tls::Stream on both sides, keep-alive, a bad handshake, shutdown") {
  auto rt = *Runtime::create({.workers = 2});
  rt->block_on([] {
    auto sctx = tls::Context::server({.cert_chain_pem = pki().leaf->cert_pem, .key_pem = pki().leaf->key_pem});
    REQUIRE(sctx.ok());
    Server server(
        [](const Request& req) {
          Response res{bhttp::status::ok, req.version()};
          res.body() = "secure " + std::string(req.target());
          return res;
        },
        {.tls = *sctx, .tls_handshake_timeout = absl::Seconds(2)});
    REQUIRE(server.listen(net::SocketAddress::loopback_v4(0)).ok());
    auto addr = *server.local_address();
    auto loop = spawn([&] { return server.serve(); });

    auto cctx = tls::Context::client({.ca_pem = pki().ca->cert_pem});
    REQUIRE(cctx.ok());
    auto tcp = net::TcpStream::connect(addr);
    REQUIRE(tcp.ok());
    auto s = tls::Stream::connect(std::move(*tcp), *cctx, "localhost");
    REQUIRE_MESSAGE(s.ok(), s.status().ToString());
    BeastStream io(*s);
    boost::beast::flat_buffer buf;
    for (const char* target : {"/a", "/b"}) {
      bhttp::request<bhttp::string_body> req{bhttp::verb::get, target, 11};
      req.set(bhttp::field::host, "localhost");
      boost::beast::error_code ec;
      bhttp::write(io, req, ec);
      REQUIRE(!ec);
      Response res;
      bhttp::read(io, buf, res, ec);
      REQUIRE_MESSAGE(!ec, ec.message());
      CHECK(res.body() == std::string("secure ") + target);
    }
    // Plain HTTP to the TLS port: the handshake fails, the connection
    // closes, the server counts it.
    auto plain = net::TcpStream::connect(addr);
    REQUIRE(plain.ok());
    REQUIRE(plain->write_all("GET / HTTP/1.1\r\nHost: x\r\n\r\n").ok());
    plain->set_read_timeout(absl::Seconds(5));
    char sink[512];
    for (;;) {
      auto n = plain->read(sink);
      if (!n.ok() || *n == 0) break;
    }
    // The failed handshake closes the socket before its fiber counts it:
    // the count may land just after the client sees the end of stream.
    for (int i = 0; i < 2000 && server.stats().tls_handshake_failures == 0; ++i) {
      (void)this_fiber::sleep_for(absl::Milliseconds(1));
    }
    CHECK(server.stats().tls_handshake_failures == 1);
    // Shutdown closes the idle TLS connection; the client reads its end.
    CHECK(server.shutdown(absl::Seconds(5)).ok());
    CHECK(loop.join().ok());
    s->set_read_timeout(absl::Seconds(5));
    auto n = s->read(sink);
    CHECK((!n.ok() || *n == 0));
    CHECK(server.stats().active_connections == 0);
  });
}

TEST_CASE("http::Client over https: pool, verification failures, plain http to the TLS port") {
  auto rt = *Runtime::create({.workers = 2});
  rt->block_on([] {
    auto sctx = tls::Context::server({.cert_chain_pem = pki().leaf->cert_pem, .key_pem = pki().leaf->key_pem});
    REQUIRE(sctx.ok());
    Server server([](const Request& req) {
      Response res{bhttp::status::ok, req.version()};
      res.body() = "secure " + std::string(req.target());
      return res;
    }, {.tls = *sctx});
    REQUIRE(server.listen(net::SocketAddress::loopback_v4(0)).ok());
    const uint16_t port = server.local_address()->port();
    auto loop = spawn([&] { return server.serve(); });

    auto cctx = tls::Context::client({.ca_pem = pki().ca->cert_pem});
    REQUIRE(cctx.ok());
    {
      Client client({.tls = *cctx});
      const std::string base = "https://localhost:" + std::to_string(port);
      for (const char* path : {"/x", "/y"}) {
        auto r = client.get(base + path);
        REQUIRE_MESSAGE(r.ok(), r.status().ToString());
        CHECK(r->body() == std::string("secure ") + path);
      }
      CHECK(client.stats().connections_opened == 1);
      CHECK(client.stats().connections_reused == 1);
      // The IP address is in the certificate too.
      auto r = client.get("https://127.0.0.1:" + std::to_string(port) + "/ip");
      REQUIRE_MESSAGE(r.ok(), r.status().ToString());
      client.close();
    }
    {
      // The system store does not know the test CA.
      Client client;
      const std::string url = "https://localhost:" + std::to_string(port) + "/";
      auto r = client.get(url);
      CHECK(r.status().code() == absl::StatusCode::kUnauthenticated);
      CHECK(std::string(r.status().message()).find(url) != std::string::npos);
      // Plain HTTP to the TLS port: the server drops the handshake.
      r = client.get("http://127.0.0.1:" + std::to_string(port) + "/");
      CHECK(!r.ok());
    }
    CHECK(server.shutdown(absl::Seconds(5)).ok());
    CHECK(loop.join().ok());
  });
}

TEST_CASE("http::Client over https: a body delimited by the close needs close_notify") {
  auto rt = *Runtime::create({.workers = 2});
  rt->block_on([] {
    auto sctx = tls::Context::server({.cert_chain_pem = pki().leaf->cert_pem, .key_pem = pki().leaf->key_pem});
    REQUIRE(sctx.ok());
    auto cctx = tls::Context::client({.ca_pem = pki().ca->cert_pem});
    REQUIRE(cctx.ok());
    for (bool clean : {true, false}) {
      // A raw TLS server: a response without Content-Length or chunking,
      // then the end of the connection, with or without close_notify (as
      // an attacker who cuts the TCP connection would leave it).
      auto l = net::TcpListener::bind(net::SocketAddress::loopback_v4(0));
      REQUIRE(l.ok());
      auto raw = spawn([&] {
        auto c = l->accept();
        REQUIRE(c.ok());
        auto s = tls::Stream::accept(std::move(c->stream), *sctx);
        REQUIRE(s.ok());
        std::string got;
        char buf[4096];
        while (got.find("\r\n\r\n") == std::string::npos) {  // the request may come in several records
          auto n = s->read(buf);
          if (!n.ok() || *n == 0) break;
          got.append(buf, *n);
        }
        (void)s->write_all("HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nthe whole body");
        if (clean) (void)s->shutdown();
        (void)s->close();
      });
      Client client({.tls = *cctx});
      const std::string url = "https://localhost:" + std::to_string(l->local_address()->port()) + "/";
      auto r = client.get(url);
      raw.join();
      if (clean) {
        REQUIRE_MESSAGE(r.ok(), r.status().ToString());
        CHECK(r->body() == "the whole body");
      } else {
        CHECK_MESSAGE(r.status().code() == absl::StatusCode::kUnavailable, r.status().ToString());
        CHECK(std::string(r.status().message()).find("close_notify") != std::string::npos);
        CHECK(std::string(r.status().message()).find(url) != std::string::npos);
      }
    }
  });
}

}  // namespace
}  // namespace weft::http
