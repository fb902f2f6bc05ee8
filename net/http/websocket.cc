// net/http/websocket.cc
//
// WebSocket on Beast's synchronous websocket::stream, shared by a reader
// fiber and writer fibers.
//
// Beast's stream is not thread-safe: read and write share its state (the
// status, the masking key generator, the control-frame writes a read makes).
// Its asynchronous API allows one read and one write in flight at once; the
// synchronous one allows one call at a time. We get the asynchronous
// interleaving from synchronous calls, step by step:
//   1. Every call into Beast (read, write, ping, close, the handshakes) holds
//      Shared::mu, a weft::Mutex. Beast's state is only touched under it, so
//      each holder sees everything the previous one did.
//   2. A writer holds mu for a whole message, including its waits for the
//      socket to take more bytes: two messages' frames never interleave, and
//      a pong that read() sends goes between messages.
//   3. The reader holds mu too, except inside the next layer's read_some
//      (Io::read_some) when it is called from read(): there it unlocks mu,
//      waits until the socket is readable (or close() asks for the
//      handshake, step 5), reads the socket into the buffer Beast gave it,
//      and locks mu again before returning to Beast. Meanwhile writers run.
//      The buffer is part of Beast's read buffer (or the caller's), which
//      only the reader touches: no write, ping or handshake path reads it,
//      and Beast's close() only runs where step 5 says.
//   4. So the only code that ever reads the socket is the fiber inside
//      read(), or, when no fiber is inside read(), whoever holds mu.
//   5. close() must not run Beast's synchronous close() next to a reader:
//      that close() reads the socket until the peer's close frame, a second
//      reader. Instead, under mu: if no read() is in progress, close() calls
//      Beast's close() itself. Otherwise it records the request, sets
//      close_requested (an Event), and waits on a condition variable. The
//      reader, waiting on the socket in step 3, wakes on the event, locks mu
//      and runs Beast's close() there, on its own stack: it sends the close
//      frame, reads (through Io::read_some, now directly under mu) up to the
//      peer's close frame, and tears the connection down. Io::read_some then
//      returns operation_aborted to the read() it was called from, whose
//      Beast state Beast's close() has just left consistent (it discards the
//      rest of a message in progress, and a closed stream fails every later
//      call). The reader signals the result; read() returns kOutOfRange.
//      If read() returns before it sees the request, close() takes over
//      when the reader leaves (reading goes false).
//   6. The peer's close frame, arriving in read(), is answered by Beast
//      (do_fail: the echo, then teardown()) under the reader's hold, and
//      read() returns kOutOfRange. Protocol errors and an over-long message
//      go the same way with codes 1002/1007/1009.
//   7. teardown() (Beast's hook for the transport): the server shuts down
//      its sending side first and reads until the peer's end of stream, as
//      RFC 6455 asks; the client waits for the server's end of stream, then
//      shuts down its side. Both reads are bounded by close_timeout.
#include "net/http/websocket.h"

#include <sys/uio.h>

#include <cstring>
#include <mutex>
#include <utility>

#include "boost/asio/io_context.hpp"
#include "boost/beast/core/buffers_to_string.hpp"
#include "boost/beast/core/flat_buffer.hpp"
#include "boost/beast/http/read.hpp"
#include "boost/beast/websocket/error.hpp"
#include "boost/beast/websocket/rfc6455.hpp"
#include "boost/beast/websocket/stream.hpp"
#include "lifecycle/select.h"
#include "net/http/beast_stream.h"
#include "net/http/client.h"
#include "net/select.h"
#include "sync/condition_variable.h"
#include "sync/event.h"
#include "sync/mutex.h"

namespace weft::http {

namespace bws = boost::beast::websocket;
using boost::system::error_code;

namespace {

// Beast's websocket::stream asks its next layer for an executor when it is
// constructed (for the timer of its asynchronous timeouts). The
// synchronous calls never use it: one io_context, never run, serves every
// stream. Leaked on purpose: streams may be destroyed during exit.
boost::asio::io_context& unused_context() {
  static auto* ctx = new boost::asio::io_context(1);
  return *ctx;
}

}  // namespace

// Io: the next layer of Beast's stream, the socket as the steps at the top
// of the file use it.
class WsIo {
 public:
  using executor_type = boost::asio::io_context::executor_type;
  explicit WsIo(WebSocket::Shared* s) : s_(s) {}
  executor_type get_executor() { return unused_context().get_executor(); }

  template <class MutableBufferSequence>
  size_t read_some(const MutableBufferSequence& buffers, error_code& ec);
  template <class MutableBufferSequence>
  size_t read_some(const MutableBufferSequence& buffers) {
    error_code ec;
    size_t n = read_some(buffers, ec);
    if (ec) throw boost::system::system_error(ec, "WebSocket read_some");
    return n;
  }
  template <class ConstBufferSequence>
  size_t write_some(const ConstBufferSequence& buffers, error_code& ec);
  template <class ConstBufferSequence>
  size_t write_some(const ConstBufferSequence& buffers) {
    error_code ec;
    size_t n = write_some(buffers, ec);
    if (ec) throw boost::system::system_error(ec, "WebSocket write_some");
    return n;
  }

  WebSocket::Shared* shared() const { return s_; }

 private:
  size_t finish_read(const absl::StatusOr<size_t>& n, error_code& ec);
  WebSocket::Shared* s_;
};

// teardown() is found by Beast through argument-dependent lookup (step 7).
void teardown(boost::beast::role_type role, WsIo& io, error_code& ec);

struct WebSocket::Shared {
  explicit Shared(WebSocketOptions o) : opts(std::move(o)) {}

  WebSocketOptions opts;
  net::TcpStream owned;        // the socket, unless borrowed (upgrade())
  net::TcpStream* tcp = &owned;
  std::string prefix;          // bytes read before the handshake (upgrade())
  size_t prefix_pos = 0;

  Mutex mu;  // step 1
  ConditionVariable cv;
  std::optional<bws::stream<WsIo, false>> ws;  // Beast's state: under mu (steps 1-3)
  // Under mu:
  bool reading = false;         // a fiber is inside read() (step 5)
  bool in_read_call = false;    // Io::read_some is called from read()'s Beast call
  bool in_close = false;        // Beast's close() or teardown() runs: read directly
  bool close_started = false;   // someone runs (or asked for) the close handshake
  bool close_done = false;
  bool closed_by_us = false;    // our close handshake completed
  bool peer_closed = false;     // the peer's close frame arrived
  CloseReason close_request;
  absl::Status close_status;
  absl::Status last_io;         // the weft status behind the last failed socket call
  WebSocketStats stats;
  Event close_requested;        // step 5: wakes the reader

  // run_close() runs Beast's close() (step 5); holds mu.
  void run_close() {
    error_code ec;
    in_close = true;
    bws::close_reason cr(static_cast<bws::close_code>(close_request.code),
                         boost::beast::string_view(close_request.reason));
    (void)tcp->set_read_deadline(absl::Now() + opts.close_timeout);
    ws->close(cr, ec);
    (void)tcp->set_read_deadline(absl::InfiniteFuture());
    in_close = false;
    if (!ec) {
      closed_by_us = true;
      peer_closed = ws->reason().code != bws::close_code::none;
      close_status = absl::OkStatus();
    } else if (peer_closed || closed_by_us) {
      close_status = absl::OkStatus();
    } else if (ec == boost::asio::error::operation_aborted && last_io.ok()) {
      close_status = absl::FailedPreconditionError("WebSocket::close: the WebSocket had failed");
    } else {
      close_status = status_of("WebSocket::close", ec);
    }
    close_done = true;
    cv.notify_all();
  }

  // status_of() turns Beast's error into a status with context.
  // A socket failure is reported once, by the call that met it; Beast
  // fails every later call with operation_aborted.
  absl::Status status_of(const std::string& what, const error_code& ec) {
    if (ec == bws::error::closed) {
      auto r = ws->reason();
      return absl::OutOfRangeError(what + ": closed by the peer (code " + std::to_string(r.code) +
                                   (r.reason.empty() ? "" : ", '" + std::string(r.reason.c_str()) + "'") + ")");
    }
    if (ec == bws::error::message_too_big) {
      return absl::ResourceExhaustedError(what + ": a message longer than max_message_bytes (" +
                                          std::to_string(opts.max_message_bytes) +
                                          "); the connection was closed with 1009");
    }
    if (!last_io.ok() && ec == to_error_code(last_io)) {
      absl::Status io = std::exchange(last_io, absl::OkStatus());
      return absl::Status(io.code(), what + ": " + std::string(io.message()));
    }
    if (ec == boost::asio::error::eof) {
      return absl::UnavailableError(what + ": the peer closed the connection without a close frame");
    }
    if (ec == boost::asio::error::operation_aborted) {
      if (closed_by_us || peer_closed) return absl::FailedPreconditionError(what + ": the WebSocket is closed");
      return absl::FailedPreconditionError(what + ": the WebSocket has failed");
    }
    if (ec.category() == bws::make_error_code(bws::error::closed).category() ||
        ec.category() == boost::beast::http::make_error_code(boost::beast::http::error::bad_method).category()) {
      return absl::InvalidArgumentError(what + ": " + ec.message());
    }
    return absl::UnknownError(what + ": " + ec.message());
  }
};

// finish_read() turns the result of a socket read into what Beast expects:
// the byte count, eof at the end of the stream, or the error code of a
// failed status, whose weft status stays in last_io.
size_t WsIo::finish_read(const absl::StatusOr<size_t>& n, error_code& ec) {
  if (!n.ok()) {
    s_->last_io = n.status();
    ec = to_error_code(n.status());
    return 0;
  }
  if (*n == 0) ec = boost::asio::error::eof;
  return *n;
}

template <class MutableBufferSequence>
size_t WsIo::read_some(const MutableBufferSequence& buffers, error_code& ec) {
  ec = {};
  std::span<char> buf;
  for (auto it = boost::asio::buffer_sequence_begin(buffers); it != boost::asio::buffer_sequence_end(buffers);
       ++it) {
    boost::asio::mutable_buffer b(*it);
    if (b.size() == 0) continue;
    buf = std::span<char>(static_cast<char*>(b.data()), b.size());
    break;
  }
  if (buf.empty()) return 0;
  WebSocket::Shared& s = *s_;
  if (s.prefix_pos < s.prefix.size()) {
    size_t n = std::min(buf.size(), s.prefix.size() - s.prefix_pos);
    std::memcpy(buf.data(), s.prefix.data() + s.prefix_pos, n);
    s.prefix_pos += n;
    return n;
  }
  if (!s.in_read_call || s.in_close) return finish_read(s.tcp->read(buf), ec);  // step 4: we hold mu, nobody else reads
  for (;;) {
    // Step 5: a close() is waiting for the reader to run the handshake.
    if (s.close_started && !s.close_done) {
      s.run_close();
      ec = boost::asio::error::operation_aborted;
      return 0;
    }
    // Step 3: wait and read without mu.
    s.mu.unlock();
    absl::Status waited;
    absl::StatusOr<size_t> n = size_t{0};
    bool woken_for_close = false;
    auto r = select(net::readable(*s.tcp), is_set(s.close_requested));
    if (!r.ok()) {
      waited = r.status();  // this fiber was cancelled
    } else if (r->index() == 1) {
      woken_for_close = true;
    } else if (!std::get<0>(*r).ok()) {
      waited = std::get<0>(*r);  // closed, or the read deadline passed
    } else {
      n = s.tcp->read(buf);  // readable: does not wait (we are the only reader)
    }
    s.mu.lock();
    if (woken_for_close) continue;
    if (!waited.ok()) n = waited;  // the wait failed, so there was no read
    return finish_read(n, ec);
  }
}

template <class ConstBufferSequence>
size_t WsIo::write_some(const ConstBufferSequence& buffers, error_code& ec) {
  ec = {};
  iovec iov[kMaxGather];
  const size_t count = gather_buffers(buffers, iov);
  if (count == 0) return 0;
  absl::StatusOr<size_t> n =
      count == 1 ? s_->tcp->write(std::string_view(static_cast<const char*>(iov[0].iov_base), iov[0].iov_len))
                 : s_->tcp->writev(std::span<const iovec>(iov, count));
  if (!n.ok()) {
    s_->last_io = n.status();
    ec = to_error_code(n.status());
    return 0;
  }
  return *n;
}

void teardown(boost::beast::role_type role, WsIo& io, error_code& ec) {
  WebSocket::Shared& s = *io.shared();
  ec = {};
  const bool was_in_close = s.in_close;
  s.in_close = true;  // reads below go straight to the socket, under mu
  if (role == boost::beast::role_type::server) (void)s.tcp->shutdown(net::Shutdown::kWrite);
  s.tcp->set_read_timeout(s.opts.close_timeout);
  char sink[4096];
  for (int i = 0; i < 256; ++i) {
    auto n = s.tcp->read(sink);
    if (!n.ok() || *n == 0) break;
  }
  s.tcp->set_read_timeout(absl::InfiniteDuration());
  if (role == boost::beast::role_type::client) (void)s.tcp->shutdown(net::Shutdown::kWrite);
  s.in_close = was_in_close;
}

namespace {

// decorate() sets the agent field of the handshake.
void decorate(bws::stream<WsIo, false>& ws, const WebSocketOptions& opts, bool server) {
  if (opts.agent.empty()) return;
  std::string agent = opts.agent;
  if (server) {
    ws.set_option(bws::stream_base::decorator(
        [agent](bws::response_type& res) { res.set(boost::beast::http::field::server, agent); }));
  } else {
    ws.set_option(bws::stream_base::decorator(
        [agent](bws::request_type& req) { req.set(boost::beast::http::field::user_agent, agent); }));
  }
}

void configure(WebSocket::Shared& s, bool server) {
  s.ws.emplace(&s);
  s.ws->read_message_max(s.opts.max_message_bytes);
  s.ws->auto_fragment(false);  // a message is one frame: fewer socket writes
  decorate(*s.ws, s.opts, server);
  WebSocket::Shared* sp = &s;
  s.ws->control_callback([sp](bws::frame_type kind, boost::beast::string_view) {
    // Runs inside read(), under mu.
    if (kind == bws::frame_type::ping) ++sp->stats.pings_received;
    if (kind == bws::frame_type::pong) ++sp->stats.pongs_received;
  });
  s.tcp->set_read_timeout(s.opts.handshake_timeout);
  s.tcp->set_write_timeout(s.opts.handshake_timeout);
  (void)s.tcp->set_nodelay(true);
}

void after_handshake(WebSocket::Shared& s) {
  s.tcp->set_read_timeout(absl::InfiniteDuration());
  s.tcp->set_write_timeout(s.opts.write_timeout);
}

}  // namespace

WebSocket::WebSocket(std::unique_ptr<Shared> s) : s_(std::move(s)) {}
WebSocket::WebSocket(WebSocket&&) noexcept = default;
WebSocket& WebSocket::operator=(WebSocket&&) noexcept = default;

WebSocket::~WebSocket() {
  if (s_ == nullptr) return;
  s_->ws.reset();
  (void)s_->owned.close();
}

absl::StatusOr<WebSocket> WebSocket::accept(net::TcpStream stream, WebSocketOptions opts) {
  auto s = std::make_unique<Shared>(std::move(opts));
  s->owned = std::move(stream);
  configure(*s, true);
  error_code ec;
  {
    std::lock_guard<Mutex> g(s->mu);
    s->ws->accept(ec);
  }
  if (ec) {
    absl::Status st = s->status_of("WebSocket::accept", ec);
    s->ws.reset();
    (void)s->owned.close();
    return st;
  }
  after_handshake(*s);
  return WebSocket(std::move(s));
}

absl::StatusOr<WebSocket> WebSocket::upgrade(net::TcpStream& stream, const Request& req, std::string_view buffered,
                                             WebSocketOptions opts) {
  auto s = std::make_unique<Shared>(std::move(opts));
  s->tcp = &stream;
  s->prefix = std::string(buffered);
  configure(*s, true);
  error_code ec;
  {
    std::lock_guard<Mutex> g(s->mu);
    s->ws->accept(req, ec);
  }
  if (ec) return s->status_of("WebSocket::upgrade", ec);
  after_handshake(*s);
  return WebSocket(std::move(s));
}

absl::StatusOr<WebSocket> WebSocket::connect(std::string_view url, WebSocketOptions opts) {
  const std::string what = "WebSocket::connect " + std::string(url);
  std::string http_url;
  if (url.substr(0, 5) == "ws://") {
    http_url = "http://" + std::string(url.substr(5));
  } else if (url.substr(0, 6) == "wss://") {
    return absl::InvalidArgumentError(what + ": wss:// is not supported");
  } else {
    return absl::InvalidArgumentError(what + ": the URL does not start with ws://");
  }
  absl::StatusOr<Url> u = Url::parse(http_url);
  if (!u.ok()) return absl::InvalidArgumentError(what + ": " + std::string(u.status().message()));
  auto tcp = net::TcpStream::connect(u->host, u->port, opts.handshake_timeout);
  if (!tcp.ok()) return absl::Status(tcp.status().code(), what + ": " + std::string(tcp.status().message()));
  auto s = std::make_unique<Shared>(std::move(opts));
  s->owned = std::move(*tcp);
  configure(*s, false);
  error_code ec;
  bws::response_type res;
  {
    std::lock_guard<Mutex> g(s->mu);
    s->ws->handshake(res, u->host_port(), u->target, ec);
  }
  if (ec) {
    absl::Status st = s->status_of(what, ec);
    if (ec == bws::error::upgrade_declined) {
      // Beast 1.74 does not hand out the response of a declined handshake.
      st = absl::InvalidArgumentError(what + ": the server declined the upgrade (no 101 Switching Protocols)");
    }
    s->ws.reset();
    (void)s->owned.close();
    return st;
  }
  after_handshake(*s);
  return WebSocket(std::move(s));
}

absl::StatusOr<WebSocketMessage> WebSocket::read() {
  Shared& s = *s_;
  std::unique_lock<Mutex> lock(s.mu);
  if (s.reading) return absl::FailedPreconditionError("WebSocket::read: another fiber is reading");
  s.reading = true;
  s.in_read_call = true;
  boost::beast::flat_buffer buf;
  error_code ec;
  s.ws->read(buf, ec);
  s.in_read_call = false;
  s.reading = false;
  s.cv.notify_all();  // a close() waiting for the reader may take over (step 5)
  if (ec) {
    if (ec == bws::error::closed) s.peer_closed = true;
    if (ec == boost::asio::error::operation_aborted && (s.closed_by_us || s.peer_closed)) {
      return absl::OutOfRangeError("WebSocket::read: the WebSocket is closed");
    }
    return s.status_of("WebSocket::read", ec);
  }
  ++s.stats.messages_read;
  WebSocketMessage m;
  m.kind = s.ws->got_text() ? MessageKind::kText : MessageKind::kBinary;
  m.data = boost::beast::buffers_to_string(buf.data());
  return m;
}

absl::Status WebSocket::write(std::string_view data, MessageKind kind) {
  Shared& s = *s_;
  std::lock_guard<Mutex> g(s.mu);  // step 2: the whole message
  if (s.close_started) return absl::FailedPreconditionError("WebSocket::write: the WebSocket is closing or closed");
  s.ws->text(kind == MessageKind::kText);
  error_code ec;
  s.ws->write(boost::asio::const_buffer(data.data(), data.size()), ec);
  if (ec) return s.status_of("WebSocket::write", ec);
  ++s.stats.messages_written;
  return absl::OkStatus();
}

absl::Status WebSocket::ping(std::string_view payload) {
  if (payload.size() > 125) return absl::InvalidArgumentError("WebSocket::ping: payload over 125 bytes");
  Shared& s = *s_;
  std::lock_guard<Mutex> g(s.mu);
  if (s.close_started) return absl::FailedPreconditionError("WebSocket::ping: the WebSocket is closing or closed");
  error_code ec;
  s.ws->ping(bws::ping_data(payload.data(), payload.size()), ec);
  if (ec) return s.status_of("WebSocket::ping", ec);
  return absl::OkStatus();
}

absl::Status WebSocket::close(uint16_t code, std::string_view reason) {
  if (reason.size() > 123) return absl::InvalidArgumentError("WebSocket::close: reason over 123 bytes");
  // RFC 6455 7.4: the codes a close frame may carry. 1005, 1006 and 1015
  // are for local use only; the rest is reserved or undefined, and a peer
  // fails the connection on any of them.
  if (!((code >= 1000 && code <= 1003) || (code >= 1007 && code <= 1013) || (code >= 3000 && code <= 4999))) {
    return absl::InvalidArgumentError("WebSocket::close: " + std::to_string(code) +
                                      " is not a close code that may be sent (RFC 6455 7.4)");
  }
  Shared& s = *s_;
  std::unique_lock<Mutex> lock(s.mu);
  if (!s.close_started) {
    s.close_started = true;
    s.close_request = CloseReason{code, std::string(reason)};
    if (s.reading) s.close_requested.set();  // step 5: the reader runs it
  }
  // Whoever gets here first with no reader inside read() runs it.
  absl::Status waited = s.cv.wait(lock, [&] { return s.close_done || !s.reading; });
  if (!waited.ok()) return absl::Status(waited.code(), "WebSocket::close: " + std::string(waited.message()));
  if (!s.close_done) s.run_close();
  return s.close_status;
}

std::optional<CloseReason> WebSocket::peer_close() const {
  std::lock_guard<Mutex> g(s_->mu);
  if (!s_->peer_closed) return std::nullopt;
  auto r = s_->ws->reason();
  return CloseReason{static_cast<uint16_t>(r.code), std::string(r.reason.c_str())};
}

absl::Status WebSocket::set_read_deadline(absl::Time deadline) { return s_->tcp->set_read_deadline(deadline); }
absl::Status WebSocket::set_write_deadline(absl::Time deadline) { return s_->tcp->set_write_deadline(deadline); }

WebSocketStats WebSocket::stats() const {
  std::lock_guard<Mutex> g(s_->mu);
  return s_->stats;
}

net::TcpStream& WebSocket::tcp() { return *s_->tcp; }

}  // namespace weft::http
