// HTTP stress with exact counts: 1,000 keep-alive connections (divided by
// 20 under the sanitizers; times --scale) each sending 100 requests one
// after another, every response body checked against its request, and the
// server's counters checked at the end. Client fibers and the server share
// one two-worker runtime.
#include <doctest/doctest.h>

#include <atomic>
#include <string>
#include <vector>

#include "boost/beast/core/flat_buffer.hpp"
#include "boost/beast/http/read.hpp"
#include "boost/beast/http/write.hpp"
#include "net/http/beast_stream.h"
#include "net/http/server.h"
#include "net/net.h"
#include "runtime/runtime.h"
#include "tests/net_util.h"
#include "tests/stress_util.h"

namespace weft::http {
namespace {

namespace bhttp = boost::beast::http;

TEST_CASE("keep-alive connections x requests, every response checked") {
  const int64_t connections = testing::stress_size(1000);
  const int requests = 100;
  testing::raise_fd_limit(static_cast<uint64_t>(2 * connections + 256));
  auto rt = *Runtime::create({.workers = 2});
  rt->block_on([&] {
    Server server([](const Request& req) {
      Response res{bhttp::status::ok, req.version()};
      res.body() = std::string(req.target()) + "|" + req.body();
      return res;
    });
    REQUIRE(server.listen(net::SocketAddress::loopback_v4(0), {.backlog = 4096}).ok());
    auto addr = *server.local_address();
    auto loop = spawn([&] { return server.serve(); });

    std::atomic<int64_t> ok{0}, bad{0};
    std::vector<JoinHandle<void>> clients;
    clients.reserve(static_cast<size_t>(connections));
    for (int64_t c = 0; c < connections; ++c) {
      clients.push_back(spawn([&, c] {
        auto tcp = net::TcpStream::connect(addr, absl::Seconds(30));
        if (!tcp.ok()) {
          bad.fetch_add(requests);
          return;
        }
        tcp->set_read_timeout(absl::Seconds(30));
        BeastStream io(*tcp);
        boost::beast::flat_buffer buf;
        for (int i = 0; i < requests; ++i) {
          std::string target = "/" + std::to_string(c) + "/" + std::to_string(i);
          bhttp::request<bhttp::string_body> req{i % 2 ? bhttp::verb::post : bhttp::verb::get, target, 11};
          req.set(bhttp::field::host, "stress");
          if (i % 2) {
            req.body() = std::string(static_cast<size_t>(i), 'b');
            req.prepare_payload();
          }
          boost::beast::error_code ec;
          bhttp::write(io, req, ec);
          Response res;
          if (!ec) bhttp::read(io, buf, res, ec);
          if (ec || res.result_int() != 200 || res.body() != target + "|" + req.body()) {
            bad.fetch_add(requests - i);
            return;
          }
          ok.fetch_add(1);
        }
        (void)tcp->close();
      }));
    }
    for (auto& h : clients) h.join();
    CHECK(bad.load() == 0);
    CHECK(ok.load() == connections * requests);
    CHECK(server.shutdown(absl::Seconds(10)).ok());
    CHECK(loop.join().ok());
    ServerStats st = server.stats();
    CHECK(st.accepted == static_cast<uint64_t>(connections));
    CHECK(st.requests == static_cast<uint64_t>(connections * requests));
    CHECK(st.rejected == 0);
    CHECK(st.active_connections == 0);
  });
}

}  // namespace
}  // namespace weft::http
