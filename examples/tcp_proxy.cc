// tcp_proxy: forwards every connection to --upstream HOST:PORT and copies
// bytes both ways until both sides are done.
//
//   bazel run -c opt //examples:tcp_proxy -- --port 7002 --upstream 127.0.0.1:7000
//
// Shows: full duplex on fibers. Each direction is its own fiber, reading one
// stream and writing the other (one reader and one writer per stream, which
// TcpStream allows). When a side ends its output (end of stream), the proxy
// half-closes the other side (shutdown(kWrite)) and keeps copying the other
// direction, so request/response protocols that half-close still work. An
// error in either direction shuts both streams down so the other direction
// ends too; both close when the connection fiber returns.
#include <cstdio>
#include <memory>
#include <string>

#include "examples/example_util.h"
#include "net/net.h"
#include "runtime/runtime.h"

namespace {

// pipe() copies `from` to `to` until end of stream, then half-closes
// `to`. Suspends.
absl::Status pipe(weft::net::TcpStream& from, weft::net::TcpStream& to) {
  absl::StatusOr<uint64_t> n = weft::net::copy(from, to);
  if (!n.ok()) return n.status();
  return to.shutdown(weft::net::Shutdown::kWrite);
}

struct Pair {
  Pair(weft::net::TcpStream c, weft::net::TcpStream u) : client(std::move(c)), upstream(std::move(u)) {}
  // fail_both() ends both directions after an error.
  void fail_both() {
    (void)client.shutdown(weft::net::Shutdown::kBoth);
    (void)upstream.shutdown(weft::net::Shutdown::kBoth);
  }
  weft::net::TcpStream client;
  weft::net::TcpStream upstream;
};

}  // namespace

int main(int argc, char** argv) {
  weft::examples::ServerFlags server;
  std::string upstream_flag;
  weft::examples::Flags flags("tcp_proxy", "Forwards each TCP connection to an upstream server.");
  server.add_to(flags);
  flags.add("upstream", &upstream_flag, "HOST:PORT to forward to (required)");
  flags.parse(argc, argv);
  if (upstream_flag.empty()) flags.usage_error("--upstream is required");
  auto upstream = weft::examples::parse_host_port(upstream_flag);
  if (!upstream.ok()) flags.usage_error(std::string(upstream.status().message()));

  weft::examples::ShutdownSignal signal;
  return weft::examples::run_server("tcp_proxy", server, signal, [&](weft::net::TcpStream client) {
    auto up = weft::net::TcpStream::connect(upstream->first, upstream->second, absl::Seconds(10));
    if (!up.ok()) {
      std::fprintf(stderr, "tcp_proxy: upstream %s: %s\n", upstream_flag.c_str(), up.status().ToString().c_str());
      return;  // closing `client` tells it
    }
    // Both fibers share the pair, so whichever ends last (also when the
    // runtime cancels them at shutdown) closes the streams.
    auto pair = std::make_shared<Pair>(std::move(client), std::move(*up));
    (void)pair->client.set_nodelay(true);
    (void)pair->upstream.set_nodelay(true);
    auto down = weft::spawn([pair] {
      if (!pipe(pair->upstream, pair->client).ok()) pair->fail_both();
    });
    if (!pipe(pair->client, pair->upstream).ok()) pair->fail_both();
    down.join();
  });
}
