// net/http/websocket.h
//
// weft::http::WebSocket: RFC 6455 WebSocket connections on fibers, with
// Boost.Beast's websocket::stream doing the protocol (handshake, framing,
// masking, UTF-8 checks, control frames) over a weft TcpStream, so every
// call is plain blocking code that parks its fiber:
//
//   // server: a raw accepted socket (or WebSocket::upgrade() from inside
//   // an http::Server's upgrade handler, so one port serves both)
//   auto ws = weft::http::WebSocket::accept(std::move(tcp));
//   for (auto m = ws->read(); m.ok(); m = ws->read()) {
//     (void)ws->write(m->data, m->kind);          // echo
//   }
//
//   // client
//   auto ws = weft::http::WebSocket::connect("ws://127.0.0.1:8080/chat");
//   (void)ws->write_text("hello");
//   auto reply = ws->read();                       // absl::StatusOr<WebSocketMessage>
//   (void)ws->close(1000, "bye");                  // the close handshake
//
// One fiber may read while others write, ping and close at once, on any
// workers: a chat connection reads on one fiber and writes from another.
// Writers take turns (a message goes out whole, never interleaved with
// another's frames). read() answers pings with pongs by itself. The
// concurrency design (a per-connection weft::Mutex that the reader gives up
// while it waits on the socket) is in websocket.cc and docs/http.md.
//
// read() statuses:
//   kOutOfRange          the connection is closed: the peer's close frame
//                        arrived (peer_close() has its code and reason,
//                        Beast has echoed it), or our close() completed
//   kResourceExhausted   a message longer than max_message_bytes: the
//                        connection was closed with code 1009
//   kInvalidArgument     a protocol violation by the peer (bad frame,
//                        invalid UTF-8 in a text message): closed with
//                        1002/1007
//   kUnavailable         the peer went away without a close frame (end of
//                        stream or reset mid-message)
//   kDeadlineExceeded    the read deadline passed (set_read_deadline)
//   kCancelled           the reading fiber was cancelled
//   kFailedPrecondition  the WebSocket had already failed or closed, or a
//                        second fiber called read() while one reads
// A read that fails for any reason but the last leaves the WebSocket
// failed, as Beast's own streams are after any error: later calls fail
// with kFailedPrecondition; close() or destroy it.
//
// Threads: one read() at a time; write(), ping() and close() from any
// number of fibers, concurrently with the read. The WebSocket must be
// destroyed on a fiber (it may close its socket) before its runtime.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "net/http/server.h"
#include "net/tcp.h"

namespace weft::http {

enum class MessageKind { kText, kBinary };

struct WebSocketMessage {
  MessageKind kind = MessageKind::kText;
  std::string data;
  bool is_text() const { return kind == MessageKind::kText; }
};

// The code and reason of a close frame (RFC 6455 7.4: 1000 normal, 1001
// going away, 1009 too big, ...). Code 1005 means the frame had no code.
struct CloseReason {
  uint16_t code = 0;
  std::string reason;
};

struct WebSocketOptions {
  // The longest message read() accepts; a longer one closes the
  // connection with 1009 and read() fails with kResourceExhausted.
  size_t max_message_bytes = 1024 * 1024;
  // connect() and accept(): the TCP connect, and each read and write of
  // the HTTP upgrade.
  absl::Duration handshake_timeout = absl::Seconds(10);
  // close(): how long to wait for the peer's close frame (and then for its
  // end of stream) before the connection is dropped.
  absl::Duration close_timeout = absl::Seconds(5);
  // Each socket write of a message may wait this long for the peer to
  // read; then the write fails with kDeadlineExceeded (and the WebSocket
  // fails).
  absl::Duration write_timeout = absl::InfiniteDuration();
  // Sent as Server (accept) or User-Agent (connect) in the handshake;
  // empty for none.
  std::string agent = "weft";
};

struct WebSocketStats {
  uint64_t messages_read = 0;
  uint64_t messages_written = 0;
  uint64_t pings_received = 0;  // each answered with a pong by read()
  uint64_t pongs_received = 0;
};

class WebSocket {
 public:
  // WebSocket::accept()
  //
  // The server side on a freshly accepted socket: reads the HTTP upgrade
  // request and answers 101 Switching Protocols. A request that is not a
  // valid WebSocket upgrade (a plain GET, a missing Sec-WebSocket-Key, a
  // wrong version) gets Beast's 400 (426 for a wrong version) and the
  // socket is closed; the status is kInvalidArgument. Suspends.
  static absl::StatusOr<WebSocket> accept(net::TcpStream stream, WebSocketOptions opts = {});

  // WebSocket::upgrade()
  //
  // The server side on a connection whose upgrade request http::Server has
  // already read (ServerOptions::upgrade): answers it (101, or 400 as
  // above). `stream` stays the server's and must outlive the WebSocket
  // (the upgrade handler's frame is the place for both); `buffered` holds
  // bytes the client sent after the request, if any. Suspends.
  static absl::StatusOr<WebSocket> upgrade(net::TcpStream& stream, const Request& req,
                                           std::string_view buffered = {}, WebSocketOptions opts = {});

  // WebSocket::connect()
  //
  // The client side: connects to "ws://host[:port][/path][?query]" (port
  // 80 by default; wss:// is not supported) and performs the handshake.
  // kInvalidArgument for a bad URL or a declined upgrade (Beast 1.74 does
  // not give us the refusing response's status), the connect's status
  // otherwise. Suspends.
  static absl::StatusOr<WebSocket> connect(std::string_view url, WebSocketOptions opts = {});

  WebSocket(WebSocket&&) noexcept;
  WebSocket& operator=(WebSocket&&) noexcept;
  // Closes the socket if the WebSocket owns it, without a close handshake
  // (call close() first for one). Suspends.
  ~WebSocket();

  // WebSocket::read()
  //
  // The next whole message (fragments joined). Pings are answered and
  // pongs counted on the way. Statuses: see the file comment. Suspends.
  absl::StatusOr<WebSocketMessage> read();

  // WebSocket::write()
  //
  // Sends one message, whole, as one frame (or several for large ones);
  // concurrent writers queue on the connection's mutex. kFailedPrecondition
  // once closed or failed; the socket's status otherwise. Suspends.
  absl::Status write(std::string_view data, MessageKind kind);
  absl::Status write_text(std::string_view text) { return write(text, MessageKind::kText); }
  absl::Status write_binary(std::string_view data) { return write(data, MessageKind::kBinary); }

  // WebSocket::ping()
  //
  // Sends a ping (payload of at most 125 bytes); the pong arrives through
  // read(), which counts it in stats(). Suspends.
  absl::Status ping(std::string_view payload = {});

  // WebSocket::close()
  //
  // The close handshake: sends a close frame with `code` and `reason` (at
  // most 123 bytes), waits up to close_timeout for the peer's close frame
  // (messages that arrive meanwhile are dropped), then shuts the TCP
  // connection down. If a fiber is inside read(), that fiber does the
  // waiting and its read() returns kOutOfRange; close() returns when the
  // handshake is over. OK also if the connection was already closed by the
  // peer; kInvalidArgument, with nothing sent, for a code that may not be
  // sent (only 1000-1003, 1007-1013 and 3000-4999 may: RFC 6455 7.4) or a
  // reason over 123 bytes; kFailedPrecondition if it had failed; the
  // handshake's error otherwise (kDeadlineExceeded: no reply). Waits for a write in
  // progress first (bounded by write_timeout); to drop a peer that does not
  // read at once, shut the socket down (tcp().shutdown()). Idempotent.
  // Suspends.
  absl::Status close(uint16_t code = 1000, std::string_view reason = {});

  // peer_close() is the peer's close frame, once one has arrived.
  std::optional<CloseReason> peer_close() const;

  // WebSocket::set_read_deadline() / set_write_deadline()
  //
  // Absolute deadlines on the socket (TcpStream's): a read (write) still
  // waiting when it passes fails with kDeadlineExceeded, which fails the
  // WebSocket. absl::InfiniteFuture() clears it. Suspends.
  absl::Status set_read_deadline(absl::Time deadline);
  absl::Status set_write_deadline(absl::Time deadline);

  WebSocketStats stats() const;
  // The socket, for its addresses and options; do not read or write it.
  net::TcpStream& tcp();

  struct Shared;  // websocket.cc

 private:
  explicit WebSocket(std::unique_ptr<Shared> s);
  std::unique_ptr<Shared> s_;
};

}  // namespace weft::http
