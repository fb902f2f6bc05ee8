// http_hello: an HTTP/1.1 server that answers every request with
// "Hello, World!\n", on weft::http::Server (Boost.Beast parses).
//
//   bazel run -c opt //examples:http_hello -- --port 8080
//   curl http://127.0.0.1:8080/      wrk -c100 -d5s http://127.0.0.1:8080/
//   ... --tls-cert cert.pem --tls-key key.pem     HTTPS (curl --cacert cert.pem https://...)
//
// Shows: a whole HTTP server in one handler. http::Server brings
// keep-alive, pipelining, chunked request bodies, HEAD, Date, the limits
// and the rejections (400 for malformed requests, 431, 413, 408, 501),
// each followed by a close; see net/http/server.h. On SIGTERM (or SIGINT)
// the listener closes, idle connections close, and requests in flight get
// --drain-timeout (5 s) to finish; a second signal exits at once.
//
// The hand-written server this example used to be is kept as a benchmark
// baseline: tools/bench/http_hello_handwritten.cc.
#include <cstdio>
#include <string>

#include "examples/example_util.h"
#include "net/http/server.h"
#include "net/net.h"
#include "net/tls/tls.h"

int main(int argc, char** argv) {
  weft::examples::ServerFlags server_flags;
  weft::examples::Flags flags("http_hello", "An HTTP/1.1 keep-alive server answering \"Hello, World!\".");
  server_flags.add_to(flags);
  int idle_timeout_s = 60;
  flags.add("idle-timeout", &idle_timeout_s,
            "seconds a keep-alive connection may wait for its next request (0: forever)");
  std::string tls_cert, tls_key;
  flags.add("tls-cert", &tls_cert, "serve HTTPS with this PEM certificate chain (needs --tls-key)");
  flags.add("tls-key", &tls_key, "the PEM private key of --tls-cert");
  flags.parse(argc, argv);

  weft::http::ServerOptions opts;
  if (idle_timeout_s < 0) flags.usage_error("--idle-timeout must be 0 or more");
  opts.idle_timeout = idle_timeout_s == 0 ? absl::InfiniteDuration() : absl::Seconds(idle_timeout_s);
  if (!tls_cert.empty() || !tls_key.empty()) {
    if (tls_cert.empty() || tls_key.empty()) flags.usage_error("--tls-cert and --tls-key go together");
    auto ctx = weft::tls::Context::server({.cert_chain_file = tls_cert, .key_file = tls_key, .alpn = {"http/1.1"}});
    if (!ctx.ok()) {
      std::fprintf(stderr, "http_hello: %s\n", ctx.status().ToString().c_str());
      return 1;
    }
    opts.tls = *ctx;
  }

  namespace bhttp = boost::beast::http;
  weft::http::Server server(
      [](const weft::http::Request& req) {
        weft::http::Response res{bhttp::status::ok, req.version()};
        res.set(bhttp::field::content_type, "text/plain");
        res.body() = "Hello, World!\n";
        return res;
      },
      opts);

  weft::examples::ShutdownSignal signal;
  return weft::examples::run_server(
      "http_hello", server_flags, signal,
      [&server](weft::net::TcpStream s) { server.serve_connection(std::move(s)); },
      // Idle keep-alive connections close at once, requests in flight finish
      // (answered with "Connection: close") until the drain deadline.
      [&server](absl::Time deadline) { return server.shutdown(deadline - absl::Now()); });
}
