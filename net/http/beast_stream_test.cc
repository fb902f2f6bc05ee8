// BeastStream: Beast's synchronous read/write over TcpStream and PipeEnd on
// fibers, and every status mapped to the error_code Beast expects.
#include "net/http/beast_stream.h"

#include <doctest/doctest.h>

#include <string>
#include <utility>

#include "boost/beast/core/flat_buffer.hpp"
#include "boost/beast/http.hpp"
#include "net/net.h"
#include "runtime/runtime.h"
#include "sync/sync.h"

namespace weft::http {
namespace {

namespace bhttp = boost::beast::http;
using Req = bhttp::request<bhttp::string_body>;
using Res = bhttp::response<bhttp::string_body>;

static_assert(boost::beast::is_sync_read_stream<BeastStream<net::TcpStream>>::value);
static_assert(boost::beast::is_sync_write_stream<BeastStream<net::TcpStream>>::value);
static_assert(boost::beast::is_sync_stream<BeastStream<net::PipeEnd>>::value);

std::pair<net::TcpStream, net::TcpStream> connected_pair() {
  auto l = net::TcpListener::bind(net::SocketAddress::loopback_v4(0));
  REQUIRE(l.ok());
  auto c = net::TcpStream::connect(*l->local_address());
  REQUIRE(c.ok());
  auto s = l->accept();
  REQUIRE(s.ok());
  return {std::move(*c), std::move(s->stream)};
}

// read_request() reads one request from s with Beast, into a request and a
// buffer of its own, and returns the error code Beast saw.
boost::beast::error_code read_request(BeastStream<net::TcpStream>& s) {
  boost::beast::flat_buffer buf;
  Req req;
  boost::beast::error_code ec;
  bhttp::read(s, buf, req, ec);
  return ec;
}

TEST_CASE("a request and a chunked response through Beast over TCP, split in small writes") {
  auto rt = *Runtime::create({.workers = 2});
  rt->block_on([] {
    auto [client, server] = connected_pair();
    auto peer = spawn([&, &server = server] {
      BeastStream s(server);
      boost::beast::flat_buffer buf;
      Req req;
      boost::beast::error_code ec;
      bhttp::read(s, buf, req, ec);
      CHECK_MESSAGE(!ec, ec.message());
      CHECK(req.method() == bhttp::verb::post);
      CHECK(req.target() == "/upload");
      CHECK(req.body() == "hello world");
      Res res{bhttp::status::ok, 11};
      res.body() = std::string(100000, 'z');
      res.chunked(true);
      bhttp::write(s, res, ec);
      CHECK_MESSAGE(!ec, ec.message());
    });
    // The request arrives in pieces, with a chunked body.
    std::string raw =
        "POST /upload HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
        "5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n";
    for (size_t i = 0; i < raw.size(); i += 7) {
      REQUIRE(client.write_all(std::string_view(raw).substr(i, 7)).ok());
      (void)this_fiber::sleep_for(absl::Milliseconds(1));
    }
    BeastStream c(client);
    boost::beast::flat_buffer buf;
    Res res;
    boost::beast::error_code ec;
    bhttp::read(c, buf, res, ec);
    CHECK_MESSAGE(!ec, ec.message());
    CHECK(res.result_int() == 200);
    CHECK(res.chunked());
    CHECK(res.body() == std::string(100000, 'z'));
    peer.join();
  });
}

TEST_CASE("end of stream, mid-message end, reset and timeout map to Asio errors") {
  auto rt = *Runtime::create({.workers = 2});
  rt->block_on([] {
    SUBCASE("eof between messages is end_of_stream") {
      auto [client, server] = connected_pair();
      REQUIRE(client.close().ok());
      BeastStream s(server);
      CHECK(read_request(s) == bhttp::error::end_of_stream);
    }
    SUBCASE("eof mid-message is partial_message") {
      auto [client, server] = connected_pair();
      REQUIRE(client.write_all("GET / HTTP/1.1\r\nHo").ok());
      REQUIRE(client.close().ok());
      BeastStream s(server);
      CHECK(read_request(s) == bhttp::error::partial_message);
    }
    SUBCASE("read timeout is timed_out, and last_status() keeps the weft status") {
      auto [client, server] = connected_pair();
      server.set_read_timeout(absl::Milliseconds(20));
      BeastStream s(server);
      CHECK(read_request(s) == boost::asio::error::timed_out);
      CHECK(s.last_status().code() == absl::StatusCode::kDeadlineExceeded);
      // The throwing overload throws the same code.
      char b[4];
      try {
        s.read_some(boost::asio::buffer(b));
        FAIL("read_some did not throw");
      } catch (const boost::system::system_error& e) {
        CHECK(e.code() == boost::asio::error::timed_out);
      }
    }
    SUBCASE("reset by peer is connection_reset") {
      auto [client, server] = connected_pair();
      linger lg{1, 0};  // close with RST
      REQUIRE(::setsockopt(client.native_handle(), SOL_SOCKET, SO_LINGER, &lg, sizeof lg) == 0);
      REQUIRE(client.close().ok());
      BeastStream s(server);
      char b[4];
      boost::beast::error_code ec;
      s.read_some(boost::asio::buffer(b), ec);
      CHECK(ec == boost::asio::error::connection_reset);
    }
    SUBCASE("close from another fiber is operation_aborted") {
      auto [client, server] = connected_pair();
      auto closer = spawn([&, &server = server] {
        (void)this_fiber::sleep_for(absl::Milliseconds(20));
        (void)server.close();
      });
      BeastStream s(server);
      char b[4];
      boost::beast::error_code ec;
      s.read_some(boost::asio::buffer(b), ec);
      CHECK(ec == boost::asio::error::operation_aborted);
      closer.join();
    }
  });
}

TEST_CASE("write_some over a PipeEnd (no writev) and empty buffers") {
  auto rt = *Runtime::create({.workers = 1});
  rt->block_on([] {
    auto [a, b] = net::DuplexPipe::create(1024);
    BeastStream s(a);
    boost::beast::error_code ec;
    CHECK(s.write_some(boost::asio::const_buffer(), ec) == 0);
    CHECK(!ec);
    Res res{bhttp::status::not_found, 11};
    res.body() = "nope";
    res.prepare_payload();
    bhttp::write(s, res, ec);
    CHECK(!ec);
    a.close();
    BeastStream r(b);
    boost::beast::flat_buffer buf;
    Res got;
    bhttp::read(r, buf, got, ec);
    CHECK(!ec);
    CHECK(got.result_int() == 404);
    CHECK(got.body() == "nope");
    b.close();
    char x[1];
    s.write_some(boost::asio::buffer(x, 1), ec);
    CHECK(ec);  // a closed end: kFailedPrecondition, not_connected
    CHECK(ec == boost::asio::error::not_connected);
  });
}

TEST_CASE("to_error_code") {
  CHECK(!to_error_code(absl::OkStatus()));
  CHECK(to_error_code(absl::DeadlineExceededError("x")) == boost::asio::error::timed_out);
  CHECK(to_error_code(absl::CancelledError("x")) == boost::asio::error::operation_aborted);
  CHECK(to_error_code(absl::InternalError("x")) ==
        boost::system::errc::make_error_code(boost::system::errc::io_error));
}

}  // namespace
}  // namespace weft::http
