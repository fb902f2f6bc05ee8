// net/http/server.h
//
// weft::http::Server: an HTTP/1.1 server on fibers. Boost.Beast parses the
// requests and serializes the responses; weft does the I/O, one fiber per
// connection, so a handler is plain blocking code that may sleep, lock,
// call other services: only its fiber waits.
//
//   weft::http::Server server([](const weft::http::Request& req) {
//     weft::http::Response res{boost::beast::http::status::ok, req.version()};
//     res.set(boost::beast::http::field::content_type, "text/plain");
//     res.body() = "Hello, World!\n";
//     return res;                                  // Content-Length is set for you
//   });
//   absl::Status s = server.listen(weft::net::SocketAddress::loopback_v4(8080));
//   auto loop = weft::spawn([&] { return server.serve(); });   // accepts until shutdown
//   ...
//   (void)server.shutdown(absl::Seconds(5));       // stop accepting, drain, close
//   loop.join();
//
// Request and Response are Beast's http::request/response with a
// std::string body: the full Beast message API (fields, target(), method(),
// keep_alive(), chunked()) with no wrapper to learn.
//
// What the server does for every connection:
//   - keep-alive (HTTP/1.1 by default, HTTP/1.0 with "Connection:
//     keep-alive") and pipelining: requests are answered in order, and the
//     answers to requests that arrived together leave in one write;
//   - chunked request bodies (Beast decodes them); a handler that sets
//     res.chunked(true) gets a chunked response (the body as one chunk);
//   - Content-Length, Date and Server on every response, "Connection:
//     close" on the last one; HEAD gets the headers only, and so do 1xx,
//     204 and 304 responses (a body the handler set is not sent). The server owns
//     Content-Length, Transfer-Encoding and Connection: the handler's values
//     for those are replaced (use res.chunked(true) for chunked, and
//     res.keep_alive(false) to close after this response); a Date or
//     Server the handler set is kept;
//   - limits (ServerOptions): head size (431), body size (413), requests per
//     connection, idle timeout (the connection closes silently), request
//     timeout from the first byte to the end of the body (408), write timeout;
//   - rejections, each answered and followed by a close: malformed syntax
//     (400: Beast's verdict, plus a check of the first bytes so that binary
//     garbage such as a TLS ClientHello is refused at once, not after the
//     request timeout); HTTP/1.1 without Host, or two Host fields (400);
//     a transfer coding other than chunked (501), chunked not last (400);
//     a method Beast does not know (501, unless allowed);
//   - a handler that throws, or sets a reason phrase or a field whose name
//     or value holds CR, LF or NUL (which would split the response), gets a
//     500 and the connection closes.
//
// Streaming, for bodies too large or too slow to hold whole: a server made
// with a StreamingHandler gets the request head, reads the body piece by
// piece (BodyReader; chunked coding removed, max_body_bytes still counts),
// and writes its response piece by piece (ResponseWriter):
//
//   weft::http::Server server([](const weft::http::RequestHead& req,
//                                weft::http::BodyReader& body,
//                                weft::http::ResponseWriter& out) {
//     auto head = weft::http::response_head(boost::beast::http::status::ok, req.version());
//     if (!out.begin(std::move(head)).ok()) return;   // chunked for HTTP/1.1
//     for (const auto& row : rows) if (!out.write(row).ok()) return;
//     (void)out.finish();                               // the last chunk
//   });
//
// Each write() leaves at once (a fiber write: a slow client holds the
// handler back, not the server's memory). The body is chunked unless the
// handler set Content-Length (then exactly that many bytes), and
// close-delimited for an HTTP/1.0 client. The server finishes a response
// the handler began but did not finish; a handler that returns without
// begin() gets a 500 (or the 413/408/400 its body read ran into); one that
// leaves part of the request body unread has its connection closed after
// the response. Same limits, timeouts and shutdown as the plain handler
// (the request timeout covers the body as the handler reads it).
//
// Threads: every method may be called from any fiber. The handler runs on
// the connection's fiber, concurrently for different connections.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <list>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "boost/beast/http/message.hpp"
#include "boost/beast/http/string_body.hpp"
#include "net/tcp.h"
#include "net/tls/tls.h"
#include "sync/condition_variable.h"
#include "sync/mutex.h"

namespace weft::http {

using Request = boost::beast::http::request<boost::beast::http::string_body>;
using Response = boost::beast::http::response<boost::beast::http::string_body>;
using Handler = std::function<Response(const Request&)>;

using RequestHead = boost::beast::http::request_header<>;
using ResponseHead = boost::beast::http::response_header<>;

// response_head() is a response's status line, for ResponseWriter::begin().
inline ResponseHead response_head(boost::beast::http::status status, unsigned version = 11) {
  ResponseHead h;
  h.result(status);
  h.version(version);
  return h;
}

// BodyReader: the request body of a streaming handler, read on its fiber.
class BodyReader {
 public:
  virtual ~BodyReader() = default;
  // read() fills part of buf with the next bytes of the body (chunked
  // coding removed); 0 once the body has ended. Statuses:
  // kResourceExhausted past max_body_bytes, kDeadlineExceeded (the request
  // or idle timeout), kInvalidArgument for a malformed body, kUnavailable
  // if the peer left. After an error, every read returns it. Sends
  // "100 Continue" first if an HTTP/1.1 client asked for it. Suspends.
  virtual absl::StatusOr<size_t> read(std::span<char> buf) = 0;
};

// ResponseWriter: the response of a streaming handler. Fiber only.
class ResponseWriter {
 public:
  virtual ~ResponseWriter() = default;
  // begin() sends the status line and fields. The server owns
  // Transfer-Encoding and Connection as for plain responses and adds Date
  // and Server unless set; a Content-Length the handler set fixes the body
  // length. kFailedPrecondition if called twice; kInvalidArgument for a
  // reason or field with CR, LF or NUL, or a malformed Content-Length
  // (nothing is sent). Suspends.
  virtual absl::Status begin(ResponseHead head) = 0;
  // write() sends the next piece of the body (as one chunk when chunked;
  // an empty piece sends nothing). kFailedPrecondition before begin() or
  // after finish(); kInvalidArgument past a fixed Content-Length; the
  // write's own error (the client left, the write timeout) otherwise, and
  // then for every later call. Suspends.
  virtual absl::Status write(std::string_view piece) = 0;
  // finish() ends the body (the last chunk). kFailedPrecondition if a fixed
  // Content-Length was not reached (the connection then closes). Suspends.
  virtual absl::Status finish() = 0;
  virtual bool begun() const = 0;
};

using StreamingHandler = std::function<void(const RequestHead&, BodyReader&, ResponseWriter&)>;

// UpgradeHandler: see ServerOptions::upgrade. Returns std::nullopt once it
// has taken the connection over, or a response to send instead.
using UpgradeHandler =
    std::function<std::optional<Response>(const Request& req, net::TcpStream& stream, std::string_view buffered)>;

struct ServerOptions {
  // Request line and fields together; a longer head gets 431.
  size_t max_header_bytes = 8 * 1024;
  // Request body (after chunked decoding); a longer one gets 413.
  uint64_t max_body_bytes = 1024 * 1024;
  // Requests served on one connection before it closes (the last response
  // says "Connection: close"); 0 means no limit.
  uint64_t max_requests_per_connection = 0;
  // How long a connection may wait for the first byte of its next request
  // (then it closes without a response), and the longest any single read
  // may wait within a request (then 408).
  absl::Duration idle_timeout = absl::Seconds(60);
  // From the first byte of a request to the end of its body; then 408 and
  // close. A read deadline on the socket, set only when a request does not
  // arrive whole in its first read.
  absl::Duration request_timeout = absl::Seconds(30);
  // Each write of a response may wait this long for the peer; then the
  // connection closes.
  absl::Duration write_timeout = absl::Seconds(30);
  // Methods Beast does not know (verb::unknown) get 501 unless this is true.
  bool allow_unknown_methods = false;
  // The Server field of every response unless the handler set one; empty
  // for none.
  std::string server_name = "weft";
  // Protocol switches: a request with "Connection: upgrade" and an Upgrade
  // field (a WebSocket handshake) goes to this function instead of the
  // handler, on the connection's fiber. To take the connection over (say
  // with WebSocket::upgrade(stream, req, buffered)), it uses `stream`, the
  // socket, and `buffered`, bytes the client sent after the request (none
  // from a client that waits for the 101), and returns std::nullopt when it
  // is done with it: the server then closes the socket. Or it returns a
  // response (404 for an unknown path, say), sent with "Connection: close".
  // Meanwhile the connection counts as busy: shutdown(grace) waits for the
  // function to return and, at the deadline, closes the socket under it.
  // Plain HTTP servers with a Handler only: on a TLS or streaming server
  // upgrade requests go to the handler.
  UpgradeHandler upgrade = nullptr;
  // HTTPS: a server tls::Context makes every connection start with a TLS
  // handshake (accept()), bounded by tls_handshake_timeout. A failed
  // handshake closes the connection and counts in stats().
  std::shared_ptr<tls::Context> tls = nullptr;
  absl::Duration tls_handshake_timeout = absl::Seconds(10);
};

struct ServerStats {
  uint64_t accepted = 0;            // connections taken by serve() or serve_connection()
  uint64_t active_connections = 0;  // open now
  uint64_t requests = 0;            // requests passed to the handler
  uint64_t rejected = 0;            // 4xx/5xx answers the server gave itself (400, 408, 413, ...)
  uint64_t tls_handshake_failures = 0;
};

class Server {
 public:
  explicit Server(Handler handler, ServerOptions opts = {});
  explicit Server(StreamingHandler handler, ServerOptions opts = {});
  // Aborts if connections are still open: call shutdown() first.
  ~Server();
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  // Server::listen()
  //
  // Binds and listens on `addr` (port 0 picks a free port; see
  // local_address()). Suspends.
  absl::Status listen(const net::SocketAddress& addr, net::ListenOptions opts = {});
  absl::StatusOr<net::SocketAddress> local_address() const;

  // Server::serve()
  //
  // Accepts connections on the listener until shutdown(), serving each on a
  // new detached fiber. Returns OK once shut down, or the listen() error.
  // Suspends.
  absl::Status serve();

  // Server::serve_connection()
  //
  // Serves one connection accepted elsewhere (your own accept loop) until
  // it closes, on the calling fiber. Counted and drained like the others.
  // Suspends.
  void serve_connection(net::TcpStream stream);

  // Server::shutdown()
  //
  // Closes the listener (serve() returns), closes idle connections, and
  // lets requests in flight finish: their responses go out with
  // "Connection: close". Connections still open after `grace` are closed
  // (their handlers' writes fail) and the result is kDeadlineExceeded;
  // either way shutdown() returns only when every connection fiber has left
  // the server, so the Server may then be destroyed. Idempotent. Suspends.
  absl::Status shutdown(absl::Duration grace = absl::Seconds(10));

  ServerStats stats() const;

 private:
  struct Conn;
  class StartTicket;
  bool register_conn(Conn* c);
  // start_done() ends a connection fiber's start (its registration or its
  // drop unrun): serve() counts it in starting_ from the spawn.
  void start_done();
  template <class S>
  void serve_requests(Conn& conn, S& stream, net::TcpStream& tcp);
  void unregister_conn(Conn* c);
  // serve_registered(): the rest of serve_connection() once conn is
  // registered; unregisters it on every way out.
  void serve_registered(Conn& conn, net::TcpStream& stream);

  Handler handler_;
  StreamingHandler streaming_;
  ServerOptions opts_;
  std::optional<net::TcpListener> listener_;
  std::atomic<bool> draining_{false};

  mutable Mutex mu_;
  ConditionVariable drained_;
  std::list<Conn*> conns_ ABSL_GUARDED_BY(mu_);
  // Connection fibers serve() spawned that have not registered yet (or
  // been dropped unrun): shutdown() waits for them too, as they will use
  // the server.
  size_t starting_ ABSL_GUARDED_BY(mu_) = 0;

  std::atomic<uint64_t> accepted_{0};
  std::atomic<uint64_t> active_{0};
  std::atomic<uint64_t> requests_{0};
  std::atomic<uint64_t> rejected_{0};
  std::atomic<uint64_t> tls_failures_{0};
};

}  // namespace weft::http
