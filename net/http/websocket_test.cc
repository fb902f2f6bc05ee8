// WebSocket: echo, limits, control frames, both close directions, a peer
// that vanishes, a reader and writers on different workers at once, a bad
// handshake, cancellation.
#include "net/http/websocket.h"

#include <doctest/doctest.h>

#include <atomic>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/match.h"
#include "net/http/client.h"
#include "net/http/server.h"
#include "net/net.h"
#include "runtime/runtime.h"
#include "sync/sync.h"
#include "tests/stress_util.h"

namespace weft::http {
namespace {

// A listener and the ws:// URL of its port.
struct Listener {
  net::TcpListener l;
  std::string url;
};

Listener listen() {
  auto l = net::TcpListener::bind(net::SocketAddress::loopback_v4(0));
  REQUIRE(l.ok());
  std::string url = "ws://" + l->local_address()->to_string() + "/chat";
  return {std::move(*l), url};
}

// accept_ws() is the server side of the next connection.
WebSocket accept_ws(net::TcpListener& l, WebSocketOptions opts = {}) {
  auto c = l.accept();
  REQUIRE(c.ok());
  auto ws = WebSocket::accept(std::move(c->stream), std::move(opts));
  REQUIRE(ws.ok());
  return std::move(*ws);
}

TEST_CASE("text and binary messages echo, a large one too") {
  auto rt = *Runtime::create({.workers = 2});
  rt->block_on([] {
    auto [l, url] = listen();
    auto server = spawn([&l = l] {
      WebSocket ws = accept_ws(l, {.max_message_bytes = 4 << 20});
      for (;;) {
        auto m = ws.read();
        if (!m.ok()) return m.status();
        if (absl::Status s = ws.write(m->data, m->kind); !s.ok()) return s;
      }
    });
    auto ws = WebSocket::connect(url, {.max_message_bytes = 4 << 20});
    REQUIRE(ws.ok());
    REQUIRE(ws->write_text("hello").ok());
    auto m = ws->read();
    REQUIRE(m.ok());
    CHECK(m->is_text());
    CHECK(m->data == "hello");
    std::string bin("\0\1\2\xff", 4);
    REQUIRE(ws->write_binary(bin).ok());
    m = ws->read();
    REQUIRE(m.ok());
    CHECK(m->kind == MessageKind::kBinary);
    CHECK(m->data == bin);
    std::string big(3 << 20, 'x');
    for (size_t i = 0; i < big.size(); i += 4097) big[i] = static_cast<char>('a' + i % 26);
    REQUIRE(ws->write_binary(big).ok());
    m = ws->read();
    REQUIRE(m.ok());
    CHECK(m->data == big);
    REQUIRE(ws->write_text("").ok());  // empty messages are messages
    m = ws->read();
    REQUIRE(m.ok());
    CHECK(m->data.empty());
    CHECK(ws->close(1000, "bye").ok());
    absl::Status end = server.join();
    CHECK(end.code() == absl::StatusCode::kOutOfRange);
    CHECK(ws->stats().messages_written == 4);
    CHECK(ws->stats().messages_read == 4);
  });
}

TEST_CASE("a message over max_message_bytes closes the connection with 1009") {
  auto rt = *Runtime::create({.workers = 2});
  rt->block_on([] {
    auto [l, url] = listen();
    auto server = spawn([&l = l] {
      WebSocket ws = accept_ws(l, {.max_message_bytes = 1000});
      auto ok = ws.read();
      CHECK(ok.ok());
      return ws.read().status();
    });
    auto ws = WebSocket::connect(url);
    REQUIRE(ws.ok());
    REQUIRE(ws->write_text(std::string(1000, 'a')).ok());  // at the limit: fine
    REQUIRE(ws->write_text(std::string(1001, 'a')).ok());
    auto m = ws->read();
    CHECK(m.status().code() == absl::StatusCode::kOutOfRange);
    auto pc = ws->peer_close();
    REQUIRE(pc.has_value());
    CHECK(pc->code == 1009);
    absl::Status s = server.join();
    CHECK(s.code() == absl::StatusCode::kResourceExhausted);
  });
}

TEST_CASE("ping gets a pong; pings from the peer are answered by read()") {
  auto rt = *Runtime::create({.workers = 2});
  rt->block_on([] {
    auto [l, url] = listen();
    auto server = spawn([&l = l] {
      WebSocket ws = accept_ws(l);
      auto m = ws.read();  // the ping comes first and is answered
      CHECK(m.ok());
      CHECK(ws.stats().pings_received == 1);
      CHECK(ws.ping("from server").ok());
      CHECK(ws.write_text("ack").ok());
      auto end = ws.read();
      CHECK(end.status().code() == absl::StatusCode::kOutOfRange);
      CHECK(ws.stats().pongs_received == 1);
    });
    auto ws = WebSocket::connect(url);
    REQUIRE(ws.ok());
    REQUIRE(ws->ping("from client").ok());
    REQUIRE(ws->write_text("after ping").ok());
    auto m = ws->read();  // the pong, the server's ping (answered), then "ack"
    REQUIRE(m.ok());
    CHECK(m->data == "ack");
    CHECK(ws->stats().pongs_received == 1);
    CHECK(ws->stats().pings_received == 1);
    CHECK(ws->ping(std::string(126, 'p')).code() == absl::StatusCode::kInvalidArgument);
    CHECK(ws->close().ok());
    server.join();
  });
}

TEST_CASE("close handshake started by the client, with code and reason") {
  auto rt = *Runtime::create({.workers = 2});
  rt->block_on([] {
    auto [l, url] = listen();
    auto server = spawn([&l = l] {
      WebSocket ws = accept_ws(l);
      auto m = ws.read();
      CHECK(m.status().code() == absl::StatusCode::kOutOfRange);
      auto pc = ws.peer_close();
      REQUIRE(pc.has_value());
      CHECK(pc->code == 4001);
      CHECK(pc->reason == "client done");
      CHECK(ws.write_text("too late").code() == absl::StatusCode::kFailedPrecondition);
      CHECK(ws.close().ok());  // already closed by the peer: OK
    });
    auto ws = WebSocket::connect(url);
    REQUIRE(ws.ok());
    CHECK(ws->close(4001, "client done").ok());
    auto pc = ws->peer_close();
    REQUIRE(pc.has_value());
    CHECK(pc->code == 4001);  // Beast echoes the code
    CHECK(ws->read().status().code() == absl::StatusCode::kOutOfRange);
    CHECK(ws->write_text("x").code() == absl::StatusCode::kFailedPrecondition);
    CHECK(ws->close().ok());  // idempotent
    server.join();
  });
}

TEST_CASE("close() refuses a code that may not be sent, and sends nothing") {
  auto rt = *Runtime::create({.workers = 2});
  rt->block_on([] {
    auto [l, url] = listen();
    auto server = spawn([&l = l] {
      WebSocket ws = accept_ws(l);
      auto m = ws.read();
      CHECK_MESSAGE(m.status().code() == absl::StatusCode::kOutOfRange, m.status().ToString());
      auto pc = ws.peer_close();
      REQUIRE(pc.has_value());
      CHECK(pc->code == 1000);
    });
    auto ws = WebSocket::connect(url);
    REQUIRE(ws.ok());
    // RFC 6455 7.4: 1005, 1006 and 1015 stand for "no code", "no close
    // frame" and "TLS failure" locally and must not be sent; 1004, 1014,
    // 1016-2999 are reserved, below 1000 unused. A peer fails the
    // connection (1002) on any of them.
    for (uint16_t bad : {0, 999, 1004, 1005, 1006, 1014, 1015, 1016, 2999, 5000}) {
      absl::Status st = ws->close(bad, "x");
      CHECK_MESSAGE(st.code() == absl::StatusCode::kInvalidArgument, bad << ": " << st.ToString());
    }
    CHECK(ws->close(1000, "done").ok());
    server.join();
  });
}

TEST_CASE("close() while another fiber is parked in read(): the reader runs the handshake") {
  auto rt = *Runtime::create({.workers = 2});
  rt->block_on([] {
    auto [l, url] = listen();
    auto server = spawn([&l = l] {
      WebSocket ws = accept_ws(l);
      auto reader = spawn([&] { return ws.read().status(); });
      (void)this_fiber::sleep_for(absl::Milliseconds(50));  // the reader parks on the socket
      CHECK(ws.close(1001, "going away").ok());
      absl::Status r = reader.join();
      CHECK(r.code() == absl::StatusCode::kOutOfRange);
      auto pc = ws.peer_close();
      REQUIRE(pc.has_value());
      CHECK(pc->code == 1001);
    });
    auto ws = WebSocket::connect(url);
    REQUIRE(ws.ok());
    auto m = ws->read();
    CHECK(m.status().code() == absl::StatusCode::kOutOfRange);
    auto pc = ws->peer_close();
    REQUIRE(pc.has_value());
    CHECK(pc->code == 1001);
    CHECK(pc->reason == "going away");
    server.join();
  });
}

// handshake_raw() performs a client upgrade on a plain socket and returns
// it after the 101.
net::TcpStream handshake_raw(const std::string& host_port) {
  auto tcp = net::TcpStream::connect(*net::SocketAddress::parse(host_port));
  REQUIRE(tcp.ok());
  std::string req =
      "GET /chat HTTP/1.1\r\nHost: " + host_port +
      "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
      "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";
  REQUIRE(tcp->write_all(req).ok());
  std::string got;
  char buf[1024];
  while (got.find("\r\n\r\n") == std::string::npos) {
    auto n = tcp->read(buf);
    REQUIRE(n.ok());
    REQUIRE(*n > 0);
    got.append(buf, *n);
  }
  CHECK(got.rfind("HTTP/1.1 101", 0) == 0);
  return std::move(*tcp);
}

TEST_CASE("a peer that vanishes mid-message: kUnavailable") {
  auto rt = *Runtime::create({.workers = 2});
  rt->block_on([] {
    auto [l, url] = listen();
    const std::string addr = l.local_address()->to_string();
    auto server = spawn([&l = l] {
      WebSocket ws = accept_ws(l);
      return ws.read().status();
    });
    net::TcpStream tcp = handshake_raw(addr);
    // A masked binary frame that announces 1000 bytes, and 10 of them.
    std::string frame = {'\x82', static_cast<char>(0x80 | 126), '\x03', '\xe8', 1, 2, 3, 4};
    frame += std::string(10, 'z');
    REQUIRE(tcp.write_all(frame).ok());
    (void)this_fiber::sleep_for(absl::Milliseconds(20));
    REQUIRE(tcp.close().ok());
    absl::Status s = server.join();
    CHECK(s.code() == absl::StatusCode::kUnavailable);
  });
}

TEST_CASE("a plain GET without the upgrade fields gets a 4xx and a close") {
  auto rt = *Runtime::create({.workers = 2});
  rt->block_on([] {
    auto [l, url] = listen();
    const std::string addr = l.local_address()->to_string();
    auto server = spawn([&l = l] {
      auto c = l.accept();
      REQUIRE(c.ok());
      return WebSocket::accept(std::move(c->stream)).status();
    });
    auto tcp = net::TcpStream::connect(*net::SocketAddress::parse(addr));
    REQUIRE(tcp.ok());
    REQUIRE(tcp->write_all(std::string_view("GET /chat HTTP/1.1\r\nHost: x\r\n\r\n")).ok());
    std::string got;
    char buf[1024];
    for (;;) {
      auto n = tcp->read(buf);
      if (!n.ok() || *n == 0) break;  // the server closed the connection
      got.append(buf, *n);
    }
    CHECK(got.rfind("HTTP/1.1 4", 0) == 0);
    absl::Status s = server.join();
    CHECK(s.code() == absl::StatusCode::kInvalidArgument);
    // And a bad URL or a refused port, on the client side.
    CHECK(WebSocket::connect("http://x/").status().code() == absl::StatusCode::kInvalidArgument);
    CHECK(WebSocket::connect("wss://x/").status().code() == absl::StatusCode::kInvalidArgument);
  });
}

TEST_CASE("a read parked on the socket is cancelled; a read deadline passes") {
  auto rt = *Runtime::create({.workers = 2});
  rt->block_on([] {
    auto [l, url] = listen();
    auto server = spawn([&l = l] {
      WebSocket a = accept_ws(l);
      WebSocket b = accept_ws(l);
      CHECK(!a.read().ok());  // the client drops both without a close frame
      CHECK(!b.read().ok());
    });
    {
      auto a = WebSocket::connect(url);
      REQUIRE(a.ok());
      auto reader = spawn([&] { return a->read().status(); });
      (void)this_fiber::sleep_for(absl::Milliseconds(30));  // it has started and parked
      reader.abort();
      absl::Status s = reader.join();
      CHECK(s.code() == absl::StatusCode::kCancelled);
      // The WebSocket has failed, as Beast's do after any error.
      CHECK(a->read().status().code() == absl::StatusCode::kFailedPrecondition);
      CHECK(a->close().code() == absl::StatusCode::kFailedPrecondition);
    }
    {
      auto b = WebSocket::connect(url);
      REQUIRE(b.ok());
      REQUIRE(b->set_read_deadline(absl::Now() + absl::Milliseconds(50)).ok());
      auto r = b->read();
      CHECK(r.status().code() == absl::StatusCode::kDeadlineExceeded);
    }
    server.join();
  });
}

TEST_CASE("http::Server serves HTTP and WebSocket on one port (ServerOptions::upgrade)") {
  auto rt = *Runtime::create({.workers = 2});
  rt->block_on([] {
    ServerOptions opts;
    opts.upgrade = [](const Request& req, net::TcpStream& stream,
                      std::string_view buffered) -> std::optional<Response> {
      if (req.target() != "/echo") {
        Response res{boost::beast::http::status::not_found, req.version()};
        res.body() = "no such socket\n";
        return res;
      }
      auto ws = WebSocket::upgrade(stream, req, buffered);
      if (!ws.ok()) return std::nullopt;
      for (auto m = ws->read(); m.ok(); m = ws->read()) {
        if (!ws->write(m->data, m->kind).ok()) break;
      }
      return std::nullopt;
    };
    Server server(
        [](const Request& req) {
          Response res{boost::beast::http::status::ok, req.version()};
          res.body() = "plain\n";
          return res;
        },
        opts);
    REQUIRE(server.listen(net::SocketAddress::loopback_v4(0)).ok());
    auto loop = spawn([&] { return server.serve(); });
    const std::string host = server.local_address()->to_string();

    auto ws = WebSocket::connect("ws://" + host + "/echo");
    REQUIRE(ws.ok());
    REQUIRE(ws->write_text("over http::Server").ok());
    auto m = ws->read();
    REQUIRE(m.ok());
    CHECK(m->data == "over http::Server");

    Client client;
    auto r = client.get("http://" + host + "/");
    REQUIRE(r.ok());
    CHECK(r->body() == "plain\n");

    auto refused = WebSocket::connect("ws://" + host + "/nowhere");
    CHECK(refused.status().code() == absl::StatusCode::kInvalidArgument);
    CHECK_MESSAGE(absl::StrContains(refused.status().message(), "declined"), refused.status().ToString());

    CHECK(ws->close(1000, "done").ok());
    client.close();
    CHECK(server.shutdown(absl::Seconds(5)).ok());
    CHECK(loop.join().ok());
  });
}

// Two fibers read and write one connection at once on each side, on
// different workers; the server also sends messages of its own. Every
// message is numbered and checked in order.
TEST_CASE("stress: a reader and writers on different workers, exact counts") {
  const int64_t n = testing::stress_size(2000);
  auto rt = *Runtime::create({.workers = 4});
  Runtime* r = rt.get();
  rt->block_on([n, r] {
    auto [l, url] = listen();
    std::atomic<int64_t> server_got{0};
    auto server = r->spawn_on(1, [&, &l = l] {
      WebSocket ws = accept_ws(l);
      Channel<std::string> echo(64);
      // The reader queues echoes for the writer fiber; a second writer sends
      // "tick" messages at the same time.
      auto writer = r->spawn_on(2, [&] {
        for (auto m = echo.recv(); m.ok(); m = echo.recv()) {
          if (!ws.write_text(*m).ok()) return;
        }
      });
      auto ticker = r->spawn_on(3, [&] {
        for (int64_t i = 0; i < n; ++i) {
          if (!ws.write_binary("tick " + std::to_string(i)).ok()) return;
        }
      });
      for (int64_t i = 0;; ++i) {
        auto m = ws.read();
        if (!m.ok()) {
          CHECK(m.status().code() == absl::StatusCode::kOutOfRange);
          break;
        }
        if (m->data != "m " + std::to_string(i)) {
          FAIL("server got '" << m->data << "' for message " << i);
          break;
        }
        server_got.fetch_add(1);
        if (!echo.send(std::move(m->data)).ok()) break;
      }
      echo.close();
      writer.join();
      ticker.join();
    });
    auto ws = WebSocket::connect(url);
    REQUIRE(ws.ok());
    auto writer = r->spawn_on(0, [&] {
      for (int64_t i = 0; i < n; ++i) {
        if (!ws->write_text("m " + std::to_string(i)).ok()) return;
      }
    });
    int64_t echoes = 0, ticks = 0;
    bool in_order = true;
    while (echoes < n || ticks < n) {
      auto m = ws->read();
      if (!m.ok()) break;
      if (m->is_text()) {
        in_order = in_order && m->data == "m " + std::to_string(echoes);
        ++echoes;
      } else {
        in_order = in_order && m->data == "tick " + std::to_string(ticks);
        ++ticks;
      }
    }
    writer.join();
    CHECK(in_order);
    CHECK(echoes == n);
    CHECK(ticks == n);
    CHECK(ws->close().ok());
    server.join();
    CHECK(server_got.load() == n);
  });
}

}  // namespace
}  // namespace weft::http
