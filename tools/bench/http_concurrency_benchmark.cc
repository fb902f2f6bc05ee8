// http_concurrency_benchmark: N requests to a local http::Server whose
// handler sleeps 100 ms (this_fiber::sleep_for), sent at once from N fibers
// through one http::Client. Fibers park instead of blocking threads, so
// on two workers the batch should take about 100 ms, not N x 100 ms.
// Prints the wall time of the concurrent batch, of the same requests one
// after another, and the ratio concurrent / (N x 100 ms).
//
//   bazel run -c opt //tools/bench:http_concurrency_benchmark [-- --requests 10 --rounds 5]
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

#include "net/http/client.h"
#include "net/http/server.h"
#include "runtime/runtime.h"

int main(int argc, char** argv) {
  int requests = 10;
  int rounds = 5;
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string_view a = argv[i];
    if (a == "--requests") requests = std::atoi(argv[i + 1]);
    if (a == "--rounds") rounds = std::atoi(argv[i + 1]);
  }
  if (requests <= 0 || rounds <= 0) {
    std::fprintf(stderr, "usage: http_concurrency_benchmark [--requests N] [--rounds N]\n");
    return 2;
  }
  const absl::Duration sleep = absl::Milliseconds(100);
  auto rt = weft::Runtime::create({.workers = 2});
  if (!rt.ok()) return 1;
  int rc = (*rt)->block_on([&] {
    weft::http::Server server([&](const weft::http::Request& req) {
      (void)weft::this_fiber::sleep_for(sleep);
      weft::http::Response res{boost::beast::http::status::ok, req.version()};
      res.body() = "done";
      return res;
    });
    if (!server.listen(weft::net::SocketAddress::loopback_v4(0)).ok()) return 1;
    std::string url = "http://" + server.local_address()->to_string() + "/";
    auto loop = weft::spawn([&] { return server.serve(); });
    weft::http::Client client({.max_idle_per_host = static_cast<size_t>(requests)});
    int errors = 0;
    absl::Duration best = absl::InfiniteDuration();
    for (int r = 0; r < rounds; ++r) {
      absl::Time start = absl::Now();
      std::vector<weft::JoinHandle<bool>> calls;
      for (int i = 0; i < requests; ++i) {
        calls.push_back(weft::spawn([&] {
          auto res = client.get(url);
          return res.ok() && res->body() == "done";
        }));
      }
      for (auto& c : calls) errors += c.join() ? 0 : 1;
      absl::Duration took = absl::Now() - start;
      if (took < best) best = took;
    }
    absl::Time start = absl::Now();
    for (int i = 0; i < requests; ++i) errors += client.get(url).ok() ? 0 : 1;
    absl::Duration sequential = absl::Now() - start;
    client.close();
    (void)server.shutdown(absl::Seconds(5));
    (void)loop.join();
    std::printf("%d requests, handler sleeps %.0f ms, 2 workers\n", requests, absl::ToDoubleMilliseconds(sleep));
    std::printf("concurrent (best of %d): %.1f ms\n", rounds, absl::ToDoubleMilliseconds(best));
    std::printf("sequential: %.1f ms\n", absl::ToDoubleMilliseconds(sequential));
    std::printf("concurrent / (requests x sleep) = %.3f (1.0 would mean no overlap; ~%.2f is ideal)\n",
                absl::ToDoubleMilliseconds(best) / (requests * absl::ToDoubleMilliseconds(sleep)),
                1.0 / requests);
    if (errors) std::fprintf(stderr, "%d requests failed\n", errors);
    return errors == 0 ? 0 : 1;
  });
  return rc;
}
