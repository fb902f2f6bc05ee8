// loadgen against in-process servers on weft::net: the reference echo,
// HTTP and RESP servers (clean runs must have no errors), and servers that
// misbehave (a corrupted byte, a refused port, a 404, silence, an early
// close), each of which must show up as errors.
#include "tools/loadgen/loadgen_lib.h"

#include <doctest/doctest.h>

#include <functional>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "net/address.h"
#include "net/tcp.h"
#include "runtime/runtime.h"
#include "tests/net_util.h"
#include "tests/test_util.h"
#include "tools/loadgen/reference_servers.h"

namespace weft::loadgen {
namespace {

using net::SocketAddress;
using net::TcpListener;
using net::TcpStream;

Options quick(Mode mode, int connections = 8) {
  Options o;
  o.mode = mode;
  o.connections = connections;
  o.duration = absl::Milliseconds(300);
  o.progress = false;
  return o;
}

// Runs `o` against a ReferenceServer started with `so`, on a fresh runtime.
absl::StatusOr<Report> run_against(ServerOptions so, Options o, int workers = 2) {
  auto rt = Runtime::create({.workers = workers});
  REQUIRE(rt.ok());
  return (*rt)->block_on([&]() -> absl::StatusOr<Report> {
    auto server = ReferenceServer::start(so);
    REQUIRE(server.ok());
    o.port = (*server)->port();
    auto r = run(o);
    (*server)->stop();
    return r;
  });
}

// A clean run: work was done, nothing failed, the percentiles are ordered.
void check_clean(const absl::StatusOr<Report>& r, const Options& o) {
  REQUIRE(r.ok());
  CAPTURE(format_report(*r));
  CHECK(r->requests > 0);
  CHECK(r->requests % static_cast<uint64_t>(o.pipeline) == 0);
  CHECK(r->errors == 0);
  CHECK(r->first_error.empty());
  CHECK(r->connects == static_cast<uint64_t>(o.connections));
  CHECK(r->bytes > 0);
  CHECK(r->seconds >= absl::ToDoubleSeconds(o.duration) * 0.99);
  CHECK(r->seconds < absl::ToDoubleSeconds(o.duration) + 1.0);
  CHECK(r->requests_per_sec == doctest::Approx(static_cast<double>(r->requests) / r->seconds));
  CHECK(r->p50_us > 0);
  CHECK(r->p50_us <= r->p99_us);
  CHECK(r->p99_us <= r->p999_us);
  CHECK(r->p999_us <= r->max_us);
  CHECK(r->mean_us <= r->max_us);
}

// FnServer: serves every connection with fn on its own fiber, until stop().
class FnServer {
 public:
  explicit FnServer(std::function<void(TcpStream&)> fn) : fn_(std::move(fn)) {
    auto l = TcpListener::bind(SocketAddress::loopback_v4(0));
    REQUIRE(l.ok());
    listener_ = std::move(*l);
    port_ = listener_.local_address()->port();
    acceptor_ = spawn([this] {
      for (;;) {
        auto a = listener_.accept();
        if (!a.ok()) return;
        auto s = std::make_shared<TcpStream>(std::move(a->stream));
        streams_.push_back(s);
        fibers_.push_back(spawn([this, s] {
          fn_(*s);
          (void)s->close();
        }));
      }
    });
  }
  uint16_t port() const { return port_; }
  void stop() {
    (void)listener_.close();
    acceptor_.join();
    for (auto& s : streams_) (void)s->close();
    for (auto& f : fibers_) f.join();
  }

 private:
  std::function<void(TcpStream&)> fn_;
  TcpListener listener_;
  uint16_t port_ = 0;
  JoinHandle<void> acceptor_;
  std::vector<std::shared_ptr<TcpStream>> streams_;
  std::vector<JoinHandle<void>> fibers_;
};

absl::StatusOr<Report> run_against_fn(std::function<void(TcpStream&)> fn, Options o) {
  auto rt = Runtime::create({.workers = 2});
  REQUIRE(rt.ok());
  return (*rt)->block_on([&]() -> absl::StatusOr<Report> {
    FnServer server(fn);
    o.port = server.port();
    auto r = run(o);
    server.stop();
    return r;
  });
}

TEST_CASE("echo: clean runs on 1 and 2 workers, no descriptor leaked") {
  int fds_before = testing::open_fds();
  testing::for_each_worker_count({1, 2}, [](int n) {
    Options o = quick(Mode::kEcho, 20);
    auto r = run_against({.mode = Mode::kEcho}, o, n);
    check_clean(r, o);
    CHECK(r->bytes == r->requests * 2 * o.message_size);
  });
  CHECK(testing::open_fds() == fds_before);
}

TEST_CASE("echo: pipelined batches, and batches too large to write before reading") {
  SUBCASE("pipeline 8, 1000-byte messages") {
    Options o = quick(Mode::kEcho);
    o.pipeline = 8;
    o.message_size = 1000;
    auto r = run_against({.mode = Mode::kEcho}, o);
    check_clean(r, o);
    CHECK(r->bytes == r->requests * 2 * o.message_size);
  }
  SUBCASE("pipeline 3 of 200 KiB: written by a helper fiber while reading") {
    Options o = quick(Mode::kEcho, 2);
    o.pipeline = 3;
    o.message_size = 200 * 1024;
    auto r = run_against({.mode = Mode::kEcho}, o);
    check_clean(r, o);
  }
}

TEST_CASE("http: 200 responses with Content-Length, pipelined or not") {
  for (int k : {1, 4}) {
    CAPTURE(k);
    Options o = quick(Mode::kHttp);
    o.pipeline = k;
    check_clean(run_against({.mode = Mode::kHttp}, o), o);
  }
}

TEST_CASE("resp: SET/GET alternate and GET returns the value set") {
  for (int k : {1, 2, 5}) {
    for (size_t size : {size_t{0}, size_t{100}, size_t{70000}}) {
      CAPTURE(k);
      CAPTURE(size);
      Options o = quick(Mode::kResp, 4);
      o.duration = absl::Milliseconds(150);
      o.pipeline = k;
      o.message_size = size;
      check_clean(run_against({.mode = Mode::kResp}, o), o);
    }
  }
}

TEST_CASE("echo: one corrupted byte is a mismatch error") {
  Options o = quick(Mode::kEcho);
  auto r = run_against({.mode = Mode::kEcho, .corrupt_after = 10000}, o);
  REQUIRE(r.ok());
  CAPTURE(format_report(*r));
  CHECK(r->errors == 1);
  CHECK(r->first_error.find("mismatch") != std::string::npos);
  CHECK(r->first_error.find("DATA_LOSS") == 0);
  // The connection that saw it reconnected; the others carried on.
  CHECK(r->connects == static_cast<uint64_t>(o.connections) + 1);
  CHECK(r->requests > 0);
  CHECK(format_machine_line(*r).find("errors=1") != std::string::npos);
}

TEST_CASE("a refused port: every connect fails, is counted, and is retried") {
  auto rt = Runtime::create({.workers = 2});
  REQUIRE(rt.ok());
  (*rt)->block_on([] {
    uint16_t port;
    {
      auto l = TcpListener::bind(SocketAddress::loopback_v4(0));
      REQUIRE(l.ok());
      port = l->local_address()->port();
    }
    Options o = quick(Mode::kEcho, 4);
    o.port = port;
    o.reconnect_delay = absl::Milliseconds(50);
    auto r = run(o);
    REQUIRE(r.ok());
    CAPTURE(format_report(*r));
    CHECK(r->requests == 0);
    CHECK(r->connects == 0);
    CHECK(r->errors >= 4 * 2);  // 300 ms, a retry every 50 ms or so
    CHECK(r->errors <= 4 * 8);
    CHECK(r->first_error.find("UNAVAILABLE: connect 127.0.0.1:") == 0);
    CHECK(r->p50_us == 0);
    CHECK(r->requests_per_sec == 0);
  });
}

TEST_CASE("http: a status other than 200 is an error") {
  Options o = quick(Mode::kHttp, 2);
  auto r = run_against_fn(
      [](TcpStream& s) {
        char buf[4096];
        for (;;) {
          auto n = s.read(buf);
          if (!n.ok() || *n == 0) return;
          if (!s.write_all("HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n").ok()) return;
        }
      },
      o);
  REQUIRE(r.ok());
  CAPTURE(format_report(*r));
  CHECK(r->errors > 0);
  CHECK(r->requests == 0);
  CHECK(r->first_error.find("status is not 200: 'HTTP/1.1 404 Not Found'") != std::string::npos);
}

TEST_CASE("a server that never answers: one deadline error per connection at the end") {
  Options o = quick(Mode::kEcho, 3);
  o.duration = absl::Milliseconds(200);
  o.stop_grace = absl::Milliseconds(100);
  auto r = run_against_fn(
      [](TcpStream& s) {
        char buf[4096];
        for (;;) {
          auto n = s.read(buf);
          if (!n.ok() || *n == 0) return;
        }
      },
      o);
  REQUIRE(r.ok());
  CAPTURE(format_report(*r));
  CHECK(r->errors == 3);
  CHECK(r->requests == 0);
  CHECK(r->first_error.find("no reply within stop_grace") != std::string::npos);
}

TEST_CASE("a server that closes after one reply: closed connections are errors") {
  Options o = quick(Mode::kResp, 2);
  o.reconnect_delay = absl::Milliseconds(20);
  auto r = run_against_fn(
      [](TcpStream& s) {
        char buf[4096];
        auto n = s.read(buf);
        if (n.ok() && *n > 0) (void)s.write_all("+OK\r\n");
      },
      o);
  REQUIRE(r.ok());
  CAPTURE(format_report(*r));
  CHECK(r->errors >= 2);
  CHECK(r->requests > 0);  // each connection's first SET succeeded
  // The FIN and the reset that answers the next request race: whichever the
  // client reads first names the error.
  const bool closed = r->first_error.find("closed by the server") != std::string::npos;
  const bool reset = r->first_error.find("Connection reset by peer") != std::string::npos;
  CHECK_MESSAGE((closed || reset), "first error: " << r->first_error);
}

TEST_CASE("warmup is not measured; progress lines appear") {
  std::ostringstream progress;
  Options o = quick(Mode::kEcho, 4);
  o.warmup = absl::Milliseconds(400);
  o.duration = absl::Milliseconds(200);
  o.progress = true;
  o.progress_out = &progress;
  o.progress_interval = absl::Milliseconds(100);
  auto r = run_against({.mode = Mode::kEcho}, o);
  check_clean(r, o);
  CHECK(r->seconds < 0.55);  // the 0.4 s of warmup are not in it
  std::string text = progress.str();
  CAPTURE(text);
  size_t lines = 0;
  for (size_t p = 0; (p = text.find("[loadgen]", p)) != std::string::npos; ++p) ++lines;
  CHECK(lines >= 4);
  CHECK(lines <= 6);
  CHECK(text.find("(warmup)") != std::string::npos);
  CHECK(text.find("rate") != std::string::npos);
}

TEST_CASE("invalid options are rejected before any connection") {
  auto rt = Runtime::create({.workers = 1});
  REQUIRE(rt.ok());
  (*rt)->block_on([] {
    Options o = quick(Mode::kEcho);
    o.port = 1;
    auto bad = [&](auto change) {
      Options c = o;
      change(c);
      return run(c).status().code();
    };
    CHECK(bad([](Options& c) { c.port = 0; }) == absl::StatusCode::kInvalidArgument);
    CHECK(bad([](Options& c) { c.connections = 0; }) == absl::StatusCode::kInvalidArgument);
    CHECK(bad([](Options& c) { c.pipeline = 0; }) == absl::StatusCode::kInvalidArgument);
    CHECK(bad([](Options& c) { c.message_size = 0; }) == absl::StatusCode::kInvalidArgument);
    CHECK(bad([](Options& c) { c.duration = absl::ZeroDuration(); }) ==
          absl::StatusCode::kInvalidArgument);
    CHECK(bad([](Options& c) { c.mode = Mode::kHttp; c.http_path = "/a b"; }) ==
          absl::StatusCode::kInvalidArgument);
  });
  CHECK(parse_mode("resp").value() == Mode::kResp);
  CHECK(!parse_mode("smtp").ok());
}

TEST_CASE("format_report: the human block and the machine line") {
  Report r;
  r.description = "echo 127.0.0.1:1, 1 connection, 64 B messages, pipeline 1";
  r.requests = 1000;
  r.seconds = 2;
  r.requests_per_sec = 500;
  r.p50_us = 12.34;
  r.p99_us = 50;
  r.p999_us = 80;
  r.max_us = 99.5;
  std::string text = format_report(r);
  CHECK(text.find("loadgen: echo 127.0.0.1:1") == 0);
  CHECK(text.find("first error") == std::string::npos);
  CHECK(format_machine_line(r) ==
        "requests_per_sec=500.0 p50_us=12.3 p99_us=50.0 p999_us=80.0 errors=0 max_us=99.5 "
        "requests=1000");
  CHECK(text.substr(text.size() - format_machine_line(r).size() - 1) ==
        format_machine_line(r) + "\n");
}

}  // namespace
}  // namespace weft::loadgen
