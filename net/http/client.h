// net/http/client.h
//
// weft::http::Client: HTTP/1.1 requests from fibers, with a keep-alive
// connection pool. Boost.Beast serializes the requests and parses the
// responses; the calling fiber parks while it waits, so a thousand fibers
// can each wait for a response on two worker threads.
//
//   weft::http::Client client;                           // share it between fibers
//   auto res = client.get("http://127.0.0.1:8080/hello");  // absl::StatusOr<Response>
//   if (res.ok()) use(res->result_int(), res->body());
//   auto posted = client.post("http://127.0.0.1:8080/echo", "data", "text/plain");
//
// What it does:
//   - URLs "http://host[:port][/path][?query]" and "https://..." (IPv6 as
//     "[::1]"); the host goes through weft::net::resolve (getaddrinfo off
//     the workers); https verifies the server's certificate and name
//     (weft::tls, OpenSSL) with ClientOptions::tls or the system store;
//   - one pool of idle connections per scheme://host:port, at most
//     max_idle_per_host each; a response is read whole (Content-Length,
//     chunked, or up to the close), after any interim 1xx answers (100
//     Continue, 103 Early Hints), which are skipped; the connection goes
//     back to the pool when both sides allow keep-alive and nothing
//     follows the body;
//   - a request on a pooled connection that fails before any byte of the
//     response arrived (the server closed it while idle) is sent once more
//     on a new connection;
//   - timeouts per call: connect, and the whole request (connect, send,
//     response head and body);
//   - redirects are not followed unless max_redirects > 0 (301, 302, 303,
//     307, 308 with a Location; 303, and 301/302 after a POST, become GET);
//     once a redirect leaves the call's origin (scheme, host, port), the
//     caller's Authorization, Proxy-Authorization, Cookie and Host fields
//     are no longer sent.
//
// Statuses: every message starts with "http::Client: METHOD URL: ".
//   kInvalidArgument     a malformed or unsupported URL, a header name
//                        that is not a token, a value with CR, LF or NUL
//   kUnauthenticated     https: the server's certificate or name did not verify
//   kUnavailable         connect refused or unreachable, connection reset,
//                        closed before or during the response
//                        (partial_message: a body shorter than its
//                        Content-Length; https: a body delimited by the
//                        close, which came without TLS close_notify)
//   kDeadlineExceeded    the connect or request timeout passed
//   kDataLoss            the response is not valid HTTP/1.1
//   kResourceExhausted   the response head or body is over the limit
//   kFailedPrecondition  more redirects than max_redirects
//   others               from name resolution (net::resolve)
//
// Threads: any number of fibers may use one Client at once. Calls must run
// on a fiber of a runtime, and the Client must be destroyed (or close()d)
// on one, before the runtime: it holds sockets.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "boost/beast/http/verb.hpp"
#include "net/http/server.h"
#include "net/tcp.h"
#include "net/tls/tls.h"
#include "sync/mutex.h"

namespace weft::http {

using Headers = std::vector<std::pair<std::string, std::string>>;

struct ClientOptions {
  absl::Duration connect_timeout = absl::Seconds(10);
  // From the start of a call to the end of the response body, redirects
  // included.
  absl::Duration request_timeout = absl::Seconds(30);
  // Idle connections kept per host:port.
  size_t max_idle_per_host = 8;
  // Redirects followed per call; 0 returns the 3xx response as it is.
  int max_redirects = 0;
  size_t max_header_bytes = 64 * 1024;
  uint64_t max_body_bytes = 64 * 1024 * 1024;
  // Sent unless the caller's headers have one; empty for none.
  std::string user_agent = "weft";
  // For https:// URLs: a client tls::Context. If null, the first https
  // call makes one that trusts the system store (tls::Context::client()).
  std::shared_ptr<tls::Context> tls = nullptr;
  absl::Duration tls_handshake_timeout = absl::Seconds(10);
};

// Per-call overrides of ClientOptions.
struct CallOptions {
  std::optional<absl::Duration> connect_timeout = std::nullopt;
  std::optional<absl::Duration> request_timeout = std::nullopt;
};

struct ClientStats {
  uint64_t connections_opened = 0;
  uint64_t connections_reused = 0;
  uint64_t requests = 0;  // responses received (each redirect hop counts)
};

// Url: the parts of an http:// URL the client uses.
struct Url {
  std::string scheme;  // "http" (or "https")
  std::string host;    // without brackets for IPv6
  uint16_t port = 0;
  std::string target;  // path and query, "/" at least

  // Url::parse()
  //
  // Splits "scheme://host[:port][/path][?query]"; a fragment is dropped.
  // kInvalidArgument if malformed.
  static absl::StatusOr<Url> parse(std::string_view url);
  // host_port() is "host:port" ("[v6]:port"), the pool key and Host field.
  std::string host_port() const;
  std::string to_string() const;
};

class Client {
 public:
  explicit Client(ClientOptions opts = {});
  ~Client();  // close()
  Client(const Client&) = delete;
  Client& operator=(const Client&) = delete;

  // Client::request()
  //
  // Sends METHOD url with `headers` (Host, User-Agent and Content-Length
  // are added unless given) and `body`, and returns the whole response.
  // kInvalidArgument, with nothing sent, for a header whose name is not a
  // token or whose value holds CR, LF or NUL. Suspends.
  absl::StatusOr<Response> request(boost::beast::http::verb method, std::string_view url,
                                   const Headers& headers = {}, std::string body = {},
                                   const CallOptions& call = {});
  // Client::get() / post()
  //
  // request() with GET, and with POST and a Content-Type. Suspends.
  absl::StatusOr<Response> get(std::string_view url, const Headers& headers = {},
                               const CallOptions& call = {});
  absl::StatusOr<Response> post(std::string_view url, std::string body,
                                std::string_view content_type = "application/octet-stream",
                                const Headers& headers = {}, const CallOptions& call = {});

  // close() closes the pooled connections; calls in flight keep theirs.
  // Suspends.
  void close();

  ClientStats stats() const;
  // idle_connections() counts pooled connections over all hosts.
  size_t idle_connections() const;

 private:
  absl::StatusOr<Response> round_trip(boost::beast::http::verb method, const Url& url,
                                      const Headers& headers, const std::string& body,
                                      absl::Duration connect_timeout, absl::Time deadline);
  struct Connection;
  std::unique_ptr<Connection> take_idle(const std::string& key);
  void put_idle(const std::string& key, std::unique_ptr<Connection> c);
  absl::StatusOr<std::shared_ptr<tls::Context>> tls_context();

  ClientOptions opts_;
  mutable Mutex mu_;
  std::map<std::string, std::vector<std::unique_ptr<Connection>>> idle_ ABSL_GUARDED_BY(mu_);
  std::shared_ptr<tls::Context> default_tls_ ABSL_GUARDED_BY(mu_);
  ClientStats stats_ ABSL_GUARDED_BY(mu_);
};

}  // namespace weft::http
