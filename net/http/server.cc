// net/http/server.cc
//
// One connection, step by step (Server::serve_connection):
//   1. Wait for the first bytes of the next request with the idle timeout
//      (per-call read timeout; no timer message on the fast path). The
//      connection is kIdle meanwhile: shutdown() may close it.
//   2. Claim it (kIdle -> kBusy). From here shutdown() leaves it alone
//      until the grace period ends.
//   3. Skip empty lines before the request line (RFC 9112 2.2). Check the
//      first bytes: a method is a token followed by a space, so anything
//      else (a TLS ClientHello, binary noise) is refused now.
//   4. Beast reads the head (read_head(): http::read_header's loop over
//      BeastStream, each parse step on the worker's stack). If the
//      request did not arrive whole in one read, a read deadline bounds the
//      rest (request_timeout). Then the checks Beast leaves to us: Host,
//      transfer codings, unknown methods. Then the body (http::read).
//   5. The handler runs; its response gets Date, Server, Content-Length and
//      Connection, and is serialized into the output buffer. The buffer is
//      written when no further request is buffered (so pipelined requests
//      get one write), or at once for large bodies.
//   6. After an error response or "Connection: close": half-close, drain
//      what the peer still sends for a moment (so that the kernel does not
//      reset the connection and destroy the response), close.
//
// Upgrades (ServerOptions::upgrade): in step 5, a plain-TCP request asking
// to switch protocols goes to the upgrade function instead of the handler,
// with the socket and the bytes buffered after the request. If it takes
// the connection over, step 6 only closes the socket (the new protocol has
// ended its own way); otherwise its response is sent as the last one.
//
// Shutdown: draining_ is set, the listener closed, every kIdle connection
// claimed (kIdle -> kClosing) and closed; busy ones see draining_ after
// their response and close. The connection list and the condition variable
// tell shutdown() when the last one has gone.
#include "net/http/server.h"

#include <time.h>

#include <array>
#include <charconv>
#include <cstring>
#include <exception>
#include <functional>
#include <string_view>

#include "boost/beast/core/flat_buffer.hpp"
#include "boost/beast/core/read_size.hpp"
#include "boost/beast/http/buffer_body.hpp"
#include "boost/beast/http/error.hpp"
#include "boost/beast/http/parser.hpp"
#include "boost/beast/http/rfc7230.hpp"
#include "boost/beast/http/read.hpp"
#include "boost/beast/http/serializer.hpp"
#include "boost/beast/http/write.hpp"
#include "net/http/beast_stream.h"
#include "runtime/internal/worker_stack.h"
#include "runtime/platform/check.h"
#include "runtime/runtime.h"

namespace weft::http {

namespace bhttp = boost::beast::http;

namespace {

constexpr size_t kReadChunk = 16 * 1024;
constexpr size_t kFlushAt = 64 * 1024;     // output buffered beyond this is written at once
constexpr size_t kDirectBody = 64 * 1024;  // larger bodies are written without a copy

enum ConnState : int { kIdle, kBusy, kClosing };

// StringSink: a SyncWriteStream that appends to a string, so that
// responses are serialized into one output buffer.
class StringSink {
 public:
  explicit StringSink(std::string& out) : out_(&out) {}
  template <class ConstBufferSequence>
  size_t write_some(const ConstBufferSequence& buffers, boost::system::error_code& ec) {
    ec = {};
    size_t n = 0;
    for (auto it = boost::asio::buffer_sequence_begin(buffers);
         it != boost::asio::buffer_sequence_end(buffers); ++it) {
      boost::asio::const_buffer b(*it);
      out_->append(static_cast<const char*>(b.data()), b.size());
      n += b.size();
    }
    return n;
  }
  template <class ConstBufferSequence>
  size_t write_some(const ConstBufferSequence& buffers) {
    boost::system::error_code ec;
    return write_some(buffers, ec);
  }

 private:
  std::string* out_;
};

// http_date() is the current time as an IMF-fixdate, computed once a
// second per thread.
std::string_view http_date() {
  thread_local time_t cached_second = 0;
  thread_local char cached[64];
  thread_local size_t cached_len = 0;
  time_t now = ::time(nullptr);
  if (now != cached_second) {
    tm t;
    ::gmtime_r(&now, &t);
    cached_len = ::strftime(cached, sizeof cached, "%a, %d %b %Y %H:%M:%S GMT", &t);
    cached_second = now;
  }
  return std::string_view(cached, cached_len);
}

// kTchar[c]: c may appear in a token (RFC 9110 5.6.2).
constexpr std::array<bool, 256> kTchar = [] {
  std::array<bool, 256> t{};
  for (int c = '0'; c <= '9'; ++c) t[c] = true;
  for (int c = 'a'; c <= 'z'; ++c) t[c] = true;
  for (int c = 'A'; c <= 'Z'; ++c) t[c] = true;
  for (char c : std::string_view("!#$%&'*+-.^_`|~")) t[static_cast<unsigned char>(c)] = true;
  return t;
}();

// could_be_request() is false once the buffered start of a request cannot
// begin an HTTP/1.x request line: the method must be a token followed by a
// space.
bool could_be_request(std::string_view data) {
  for (size_t i = 0; i < data.size(); ++i) {
    unsigned char c = static_cast<unsigned char>(data[i]);
    if (c == ' ') return i > 0;
    if (!kTchar[c]) return false;
    if (i >= 32) return false;  // no method is this long
  }
  return true;
}

// splits_line() is true if s holds CR, LF or NUL: in a response's status
// line or fields, such a byte would end the line (or the head) early.
// Eight bytes at a time: a word with no byte below 0x20 (the usual case:
// names and values are printable) holds none of the three; only a word
// with a control byte (a tab, say) is looked at byte by byte.
bool splits_line(std::string_view s) {
  constexpr uint64_t kOnes = 0x0101010101010101ull, kHigh = 0x8080808080808080ull;
  auto bad = [](unsigned char c) { return c <= '\r' && (c == '\r' || c == '\n' || c == 0); };
  const char* p = s.data();
  const char* const end = p + s.size();
  for (; end - p >= 8; p += 8) {
    uint64_t w;
    std::memcpy(&w, p, sizeof w);
    if (((w - 0x20 * kOnes) & ~w & kHigh) == 0) continue;  // every byte is 0x20 or more
    for (int i = 0; i < 8; ++i) {
      if (bad(static_cast<unsigned char>(p[i]))) return true;
    }
  }
  for (; p != end; ++p) {
    if (bad(static_cast<unsigned char>(*p))) return true;
  }
  return false;
}

// lower_trim() is the ASCII-lowercased token without surrounding blanks.
std::string lower_trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  std::string out(s);
  for (char& c : out) {
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  }
  return out;
}

// is_upgrade() is true for a request that asks to switch protocols: an
// Upgrade field and "upgrade" among the Connection tokens.
bool is_upgrade(const Request& req) {
  if (req.find(bhttp::field::upgrade) == req.end()) return false;
  auto c = req.find(bhttp::field::connection);
  if (c == req.end()) return false;
  for (auto token : bhttp::token_list{c->value()}) {
    if (boost::beast::iequals(token, "upgrade")) return true;
  }
  return false;
}

// The status of a request the server refuses itself, or 0. One pass over
// the fields in arrival order, comparing the field enums Beast stored: a
// lookup by name (find, count) costs a tree walk with case-insensitive
// string compares, several times this for the usual handful of fields.
unsigned check_head(const bhttp::request_parser<bhttp::string_body>& parser, const ServerOptions& opts) {
  const Request& req = parser.get();
  size_t hosts = 0;
  bool te_others = false;
  size_t te_fields = 0, chunked_seen = 0;
  for (const auto& f : req) {
    const bhttp::field name = f.name();
    if (name == bhttp::field::host) {
      ++hosts;
    } else if (name == bhttp::field::transfer_encoding) {
      // Beast decodes chunked only when it is the last coding; we implement
      // no other coding.
      ++te_fields;
      std::string_view v = f.value();
      while (!v.empty()) {
        size_t comma = v.find(',');
        std::string coding = lower_trim(v.substr(0, comma));
        v = comma == std::string_view::npos ? std::string_view() : v.substr(comma + 1);
        if (coding.empty()) continue;
        if (coding == "chunked") {
          ++chunked_seen;
        } else {
          te_others = true;
        }
      }
    }
  }
  if (hosts > 1 || (hosts == 0 && req.version() >= 11)) return 400;
  if (req.method() == bhttp::verb::unknown && !opts.allow_unknown_methods) return 501;
  if (te_fields > 0) {
    if (te_others) return 501;
    // One Transfer-Encoding field only: with an empty one first (Beast
    // accepts it, then chunked from the next), a proxy in front that reads
    // the first field would frame the body differently (smuggling).
    if (te_fields > 1) return 400;
    if (chunked_seen != 1 || !parser.chunked()) return 400;
  }
  return 0;
}

const char* reason_text(unsigned status) {
  switch (status) {
    case 400: return "Bad Request\n";
    case 408: return "Request Timeout\n";
    case 413: return "Content Too Large\n";
    case 431: return "Request Header Fields Too Large\n";
    case 500: return "Internal Server Error\n";
    case 501: return "Not Implemented\n";
    default: return "Error\n";
  }
}

// status_for_read_error() is the response to a failed read of a request,
// or 0 to close without one (the peer left or reset).
unsigned status_for_read_error(const boost::system::error_code& ec) {
  if (ec == bhttp::error::header_limit) return 431;
  if (ec == bhttp::error::body_limit) return 413;
  if (ec == boost::asio::error::timed_out) return 408;
  if (ec.category() == bhttp::make_error_code(bhttp::error::bad_method).category() &&
      ec != bhttp::error::end_of_stream && ec != bhttp::error::partial_message) {
    return 400;
  }
  return 0;
}

// read_head() is Beast's http::read_header (read_some until the header is
// done, the same errors), except that each parse step runs on the worker's
// stack: Beast's field parser has a 4 KiB buffer in its frame, below which
// it touches a few lines of stack that, on a fiber's own stack, are cold
// again by the time a thousand other connections have had their turn
// (runtime/internal/worker_stack.h). Reads stay on the fiber; a parse step
// never suspends.
template <class Io, class Parser>
void read_head(Io& io, boost::beast::flat_buffer& b, Parser& p, boost::system::error_code& ec) {
  p.eager(false);
  ec = {};
  while (!p.is_header_done()) {
    if (b.size() != 0) {
      const size_t used = internal::on_worker_stack([&] { return p.put(b.data(), ec); });
      b.consume(used);
      if (ec != bhttp::error::need_more) {
        if (ec) return;
        continue;
      }
      ec = {};
    }
    const size_t size = boost::beast::read_size(b, 65536);
    if (size == 0) {
      ec = bhttp::error::buffer_overflow;
      return;
    }
    const size_t n = io.read_some(b.prepare(size), ec);
    b.commit(n);
    if (ec == boost::asio::error::eof) {
      if (p.got_some()) {
        ec = {};
        p.put_eof(ec);  // partial_message: the peer left mid-head
        return;
      }
      ec = bhttp::error::end_of_stream;
      return;
    }
    if (ec) return;
  }
}

// RequestStream: the connection as Beast reads a request from it. The
// first read that has to wait on the socket for the current request sets
// the read deadline (request_timeout); a request that arrived whole never
// pays for the timer.
template <class S>
struct RequestStream {
  S* stream = nullptr;
  net::TcpStream* tcp = nullptr;  // the socket under `stream`
  absl::Duration timeout;
  bool deadline_set = false;

  absl::StatusOr<size_t> read(std::span<char> buf) {
    if (!deadline_set) {
      absl::Status s = tcp->set_read_deadline(absl::Now() + timeout);
      if (!s.ok()) return s;
      deadline_set = true;
    }
    return stream->read(buf);
  }
  absl::StatusOr<size_t> write(std::string_view data) { return stream->write(data); }
  absl::StatusOr<size_t> writev(std::span<const iovec> bufs)
    requires std::is_same_v<S, net::TcpStream>
  {
    return stream->writev(bufs);
  }
};

// How a response's body is delimited.
enum class Framing { kLength, kChunked, kNone };

// append_head() serializes the status line and fields of a response: the
// handler's fields except Content-Length, Transfer-Encoding and Connection,
// which the server decides, then Server and Date unless the handler set
// them, the framing field (Content-Length or Transfer-Encoding; none for
// 1xx, 204 and 304) and Connection.
// A handler's "Connection: close" (res.keep_alive(false)) clears `keep`.
// Returns false, appending nothing, if the reason phrase or a field name or
// value holds CR, LF or NUL (a handler bug that would split the response).
// Two passes: the first checks and measures, the second copies into space
// made once (a hello-world response is about ten fields' worth of small
// appends, each a capacity check and a copy call otherwise).
bool append_head(std::string& out, const ResponseHead& res, Framing framing, uint64_t length, bool& keep,
                 bool http10, const std::string& server_name) {
  using namespace std::string_view_literals;
  const unsigned status = res.result_int();
  char status_digits[8];
  const size_t status_len =
      static_cast<size_t>(std::to_chars(status_digits, status_digits + sizeof status_digits, status).ptr -
                          status_digits);
  const std::string_view reason = res.reason();
  if (splits_line(reason)) return false;
  // Pass 1.
  size_t size = "HTTP/1.1 "sv.size() + status_len + 1 + reason.size() + 2;
  bool has_server = false, has_date = false;
  for (const auto& f : res) {
    switch (f.name()) {
      case bhttp::field::connection:
        for (auto token : bhttp::token_list{f.value()}) {
          if (boost::beast::iequals(token, "close")) keep = false;
        }
        continue;
      case bhttp::field::content_length:
      case bhttp::field::transfer_encoding:
        continue;
      case bhttp::field::server:
        has_server = true;
        break;
      case bhttp::field::date:
        has_date = true;
        break;
      default:
        break;
    }
    const std::string_view name = f.name_string();
    const std::string_view value = f.value();
    // A name Beast recognised matched one of its field names, which hold
    // no control bytes: only the others need the check.
    if ((f.name() == bhttp::field::unknown && splits_line(name)) || splits_line(value)) return false;
    size += name.size() + 2 + value.size() + 2;
  }
  const bool add_server = !has_server && !server_name.empty();
  const std::string_view date = has_date ? std::string_view() : http_date();
  const bool has_body = !(status < 200 || status == 204 || status == 304);
  char length_digits[24];
  size_t length_len = 0;
  if (has_body && framing == Framing::kLength) {
    length_len = static_cast<size_t>(
        std::to_chars(length_digits, length_digits + sizeof length_digits, length).ptr - length_digits);
  }
  constexpr std::string_view kServer = "Server: ", kDate = "Date: ", kLength = "Content-Length: ",
                             kChunked = "Transfer-Encoding: chunked\r\n", kClose = "Connection: close\r\n",
                             kKeepAlive = "Connection: keep-alive\r\n", kCrlf = "\r\n";
  if (add_server) size += kServer.size() + server_name.size() + 2;
  if (!has_date) size += kDate.size() + date.size() + 2;
  if (has_body && framing == Framing::kLength) size += kLength.size() + length_len + 2;
  if (has_body && framing == Framing::kChunked) size += kChunked.size();
  if (!keep) {
    size += kClose.size();
  } else if (http10) {
    size += kKeepAlive.size();
  }
  size += 2;
  // Pass 2.
  const size_t at = out.size();
  out.resize(at + size);
  char* p = out.data() + at;
  auto put = [&p](std::string_view s) __attribute__((always_inline)) {
    std::memcpy(p, s.data(), s.size());
    p += s.size();
  };
  put("HTTP/1.1 "sv);
  put(std::string_view(status_digits, status_len));
  *p++ = ' ';
  put(reason);
  put(kCrlf);
  for (const auto& f : res) {
    switch (f.name()) {
      case bhttp::field::connection:
      case bhttp::field::content_length:
      case bhttp::field::transfer_encoding:
        continue;
      default:
        break;
    }
    put(f.name_string());
    put(": "sv);
    put(f.value());
    put(kCrlf);
  }
  if (add_server) {
    put(kServer);
    put(server_name);
    put(kCrlf);
  }
  if (!has_date) {
    put(kDate);
    put(date);
    put(kCrlf);
  }
  if (has_body && framing == Framing::kLength) {
    put(kLength);
    put(std::string_view(length_digits, length_len));
    put(kCrlf);
  }
  if (has_body && framing == Framing::kChunked) put(kChunked);
  if (!keep) {
    put(kClose);
  } else if (http10) {
    put(kKeepAlive);
  }
  put(kCrlf);
  WEFT_DCHECK(p == out.data() + out.size(), "append_head: measured %zu bytes, wrote %zu", size,
              static_cast<size_t>(p - (out.data() + at)));
  return true;
}

absl::Status status_of_read_error(const boost::system::error_code& ec) {
  const std::string what = "http request body: " + ec.message();
  switch (status_for_read_error(ec)) {
    case 413:
      return absl::ResourceExhaustedError(what);
    case 408:
      return absl::DeadlineExceededError(what);
    case 400:
      return absl::InvalidArgumentError(what);
    default:
      return absl::UnavailableError(what);
  }
}

// StreamBody: BodyReader over Beast's buffer_body parser. Each read() is
// one parse step (read_some) at most, repeated only while it yields chunk
// framing and no body bytes.
template <class Io>
class StreamBody final : public BodyReader {
 public:
  using Parser = bhttp::request_parser<bhttp::buffer_body>;
  StreamBody(Io& io, boost::beast::flat_buffer& in, Parser& parser, std::function<bool()> send_continue)
      : io_(io), in_(in), parser_(parser), send_continue_(std::move(send_continue)) {}

  absl::StatusOr<size_t> read(std::span<char> buf) override {
    if (!error_.ok()) return error_;
    if (parser_.is_done()) return size_t{0};
    if (buf.empty()) return size_t{0};
    if (send_continue_ != nullptr) {
      auto once = std::exchange(send_continue_, nullptr);
      if (!once()) {
        error_ = absl::UnavailableError("http request body: cannot send 100 Continue");
        return error_;
      }
    }
    for (;;) {
      auto& body = parser_.get().body();
      body.data = buf.data();
      body.size = buf.size();
      body.more = true;
      boost::system::error_code ec;
      bhttp::read_some(io_, in_, parser_, ec);
      if (ec == bhttp::error::need_buffer) ec = {};
      const size_t n = buf.size() - parser_.get().body().size;
      if (ec) {
        error_ = status_of_read_error(ec);
        code_ = status_for_read_error(ec);
        if (n > 0) return n;  // the error again on the next read
        return error_;
      }
      if (n > 0 || parser_.is_done()) return n;
    }
  }

  bool done() const { return parser_.is_done(); }
  // http_status() is the answer a read error calls for (413, 408, 400), or 0.
  unsigned http_status() const { return code_; }

 private:
  Io& io_;
  boost::beast::flat_buffer& in_;
  Parser& parser_;
  std::function<bool()> send_continue_;
  absl::Status error_;
  unsigned code_ = 0;
};

// StreamResponse: ResponseWriter onto the connection. `out` holds what the
// connection has not written yet (earlier pipelined answers): begin()
// appends the head to it and writes it all.
template <class S>
class StreamResponse final : public ResponseWriter {
 public:
  StreamResponse(S& stream, std::string& out, bool& keep, bool http10, bool head_only,
                 const std::string& server_name)
      : stream_(stream), out_(out), keep_(keep), http10_(http10), head_only_(head_only), server_name_(server_name) {}

  absl::Status begin(ResponseHead head) override {
    if (begun_) return absl::FailedPreconditionError("ResponseWriter::begin: the response has begun");
    const unsigned status = head.result_int();
    const bool no_body = head_only_ || status < 200 || status == 204 || status == 304;
    Framing framing = http10_ ? Framing::kNone : Framing::kChunked;
    uint64_t length = 0;
    if (auto cl = head.find(bhttp::field::content_length); cl != head.end()) {
      std::string_view v = cl->value();
      auto [end, ec] = std::from_chars(v.data(), v.data() + v.size(), length);
      if (ec != std::errc() || end != v.data() + v.size() || v.empty()) {
        return absl::InvalidArgumentError("ResponseWriter::begin: malformed Content-Length '" + std::string(v) + "'");
      }
      framing = Framing::kLength;
    }
    if (framing == Framing::kNone) keep_ = false;  // HTTP/1.0: the close ends the body
    if (!append_head(out_, head, framing, length, keep_, http10_, server_name_)) {
      return absl::InvalidArgumentError("ResponseWriter::begin: the reason or a field name or value holds CR, LF or NUL");
    }
    begun_ = true;
    framing_ = no_body ? Framing::kLength : framing;
    length_ = no_body ? 0 : length;
    no_body_ = no_body;
    return flush();
  }

  absl::Status write(std::string_view piece) override {
    if (!begun_ || finished_) {
      return absl::FailedPreconditionError(begun_ ? "ResponseWriter::write after finish()"
                                                  : "ResponseWriter::write before begin()");
    }
    if (!error_.ok()) return error_;
    if (piece.empty()) return absl::OkStatus();
    if (no_body_) return absl::OkStatus();  // HEAD, 204, 304: the body is not sent
    if (framing_ == Framing::kLength && written_ + piece.size() > length_) {
      return absl::InvalidArgumentError("ResponseWriter::write: " + std::to_string(written_ + piece.size()) +
                                        " bytes is more than the Content-Length " + std::to_string(length_));
    }
    if (framing_ == Framing::kChunked) {
      char hex[24];
      auto [end, ec] = std::to_chars(hex, hex + sizeof hex, piece.size(), 16);
      out_.append(hex, static_cast<size_t>(end - hex));
      out_.append("\r\n");
      if (piece.size() < kDirectBody) {
        out_.append(piece);
        out_.append("\r\n");
        absl::Status st = flush();
        if (st.ok()) written_ += piece.size();
        return st;
      }
      if (absl::Status st = flush(); !st.ok()) return st;
      if (absl::Status st = put(piece); !st.ok()) return st;
      out_.append("\r\n");  // leaves with the next piece or the last chunk
      written_ += piece.size();
      return absl::OkStatus();
    }
    if (absl::Status st = put(piece); !st.ok()) return st;
    written_ += piece.size();
    return absl::OkStatus();
  }

  absl::Status finish() override {
    if (!begun_) return absl::FailedPreconditionError("ResponseWriter::finish before begin()");
    if (finished_) return absl::OkStatus();
    finished_ = true;
    if (!error_.ok()) return error_;
    if (!no_body_ && framing_ == Framing::kChunked) {
      out_.append("0\r\n\r\n");
      return absl::OkStatus();  // leaves with the connection's next write
    }
    if (!no_body_ && framing_ == Framing::kLength && written_ != length_) {
      keep_ = false;
      return absl::FailedPreconditionError("ResponseWriter::finish: " + std::to_string(written_) +
                                           " bytes written of the Content-Length " + std::to_string(length_));
    }
    return absl::OkStatus();
  }

  bool begun() const override { return begun_; }
  bool finished() const { return finished_; }
  bool failed() const { return !error_.ok(); }

 private:
  absl::Status flush() {
    if (out_.empty()) return absl::OkStatus();
    absl::Status st = put(out_);
    out_.clear();
    return st;
  }
  absl::Status put(std::string_view bytes) {
    absl::Status st = stream_.write_all(bytes);
    if (!st.ok()) {
      error_ = st;
      keep_ = false;
    }
    return st;
  }

  S& stream_;
  std::string& out_;
  bool& keep_;
  const bool http10_;
  const bool head_only_;
  const std::string& server_name_;
  bool begun_ = false;
  bool finished_ = false;
  bool no_body_ = false;
  Framing framing_ = Framing::kChunked;
  uint64_t length_ = 0;
  uint64_t written_ = 0;
  absl::Status error_;
};

}  // namespace

struct Server::Conn {
  net::TcpStream* stream = nullptr;
  std::atomic<int> state{kBusy};
  std::list<Conn*>::iterator pos;
};

// StartTicket: serve()'s count of one connection fiber in starting_, moved
// into the fiber's task. The fiber gives it back after it registered (or
// was refused); a task dropped unrun (the runtime shutting down, a spawn
// that failed) gives it back as it is destroyed. So shutdown() never
// returns while a fiber that will still touch the server exists.
class Server::StartTicket {
 public:
  explicit StartTicket(Server* s) : s_(s) {}
  StartTicket(StartTicket&& o) noexcept : s_(std::exchange(o.s_, nullptr)) {}
  StartTicket& operator=(StartTicket&&) = delete;
  ~StartTicket() { give_back(); }
  void give_back() {
    if (Server* s = std::exchange(s_, nullptr)) s->start_done();
  }

 private:
  Server* s_;
};

Server::Server(Handler handler, ServerOptions opts) : handler_(std::move(handler)), opts_(std::move(opts)) {
  WEFT_CHECK(handler_ != nullptr, "http::Server: the handler is empty");
  WEFT_CHECK(!splits_line(opts_.server_name), "http::Server: ServerOptions::server_name holds CR, LF or NUL");
}

Server::Server(StreamingHandler handler, ServerOptions opts)
    : streaming_(std::move(handler)), opts_(std::move(opts)) {
  WEFT_CHECK(streaming_ != nullptr, "http::Server: the streaming handler is empty");
  WEFT_CHECK(!splits_line(opts_.server_name), "http::Server: ServerOptions::server_name holds CR, LF or NUL");
}

Server::~Server() {
  std::unique_lock lock(mu_);
  WEFT_CHECK(conns_.empty() && starting_ == 0,
             "http::Server destroyed with %zu connections open and %zu starting; call shutdown() first",
             conns_.size(), starting_);
}

absl::Status Server::listen(const net::SocketAddress& addr, net::ListenOptions opts) {
  if (listener_.has_value()) return absl::FailedPreconditionError("http::Server::listen: already listening");
  auto l = net::TcpListener::bind(addr, opts);
  if (!l.ok()) {
    return absl::Status(l.status().code(),
                        "http::Server::listen " + addr.to_string() + ": " + std::string(l.status().message()));
  }
  listener_.emplace(std::move(*l));
  return absl::OkStatus();
}

absl::StatusOr<net::SocketAddress> Server::local_address() const {
  if (!listener_.has_value()) return absl::FailedPreconditionError("http::Server: not listening");
  return listener_->local_address();
}

absl::Status Server::serve() {
  if (!listener_.has_value()) return absl::FailedPreconditionError("http::Server::serve: call listen() first");
  while (!draining_.load()) {
    auto conn = listener_->accept();
    if (!conn.ok()) {
      const absl::StatusCode code = conn.status().code();
      if (code == absl::StatusCode::kCancelled || code == absl::StatusCode::kFailedPrecondition) break;
      // kResourceExhausted: accept() backs off by itself. Anything else:
      // do not spin on a lasting error.
      if (code != absl::StatusCode::kResourceExhausted) (void)this_fiber::sleep_for(absl::Milliseconds(10));
      continue;
    }
    {
      std::unique_lock lock(mu_);
      ++starting_;
    }
    StartTicket ticket(this);
    spawn([this, t = std::move(ticket), s = std::move(conn->stream)]() mutable {
      Conn conn;
      conn.stream = &s;
      const bool registered = register_conn(&conn);
      t.give_back();  // after registering: no moment with neither count
      if (registered) {
        serve_registered(conn, s);
      } else {
        (void)s.close();
      }
    }).detach();
  }
  return absl::OkStatus();
}

void Server::start_done() {
  std::unique_lock lock(mu_);
  --starting_;
  if (conns_.empty() && starting_ == 0) drained_.notify_all();
}

bool Server::register_conn(Conn* c) {
  std::unique_lock lock(mu_);
  if (draining_.load()) return false;
  conns_.push_front(c);
  c->pos = conns_.begin();
  accepted_.fetch_add(1, std::memory_order_relaxed);
  active_.fetch_add(1, std::memory_order_relaxed);
  return true;
}

void Server::unregister_conn(Conn* c) {
  std::unique_lock lock(mu_);
  conns_.erase(c->pos);
  active_.fetch_sub(1, std::memory_order_relaxed);
  if (conns_.empty() && starting_ == 0) drained_.notify_all();
}

void Server::serve_connection(net::TcpStream stream) {
  Conn conn;
  conn.stream = &stream;
  if (!register_conn(&conn)) {
    (void)stream.close();
    return;
  }
  serve_registered(conn, stream);
}

void Server::serve_registered(Conn& conn, net::TcpStream& stream) {
  // Every way out unregisters, an unwinding fiber's too (FiberUnwind at the
  // runtime's shutdown), and first takes the stream out of conn.stream,
  // which shutdown() closes, while the stream it names is still alive.
  struct Registered {
    Server* s;
    Conn* c;
    ~Registered() { s->unregister_conn(c); }
  } registered{this, &conn};
  struct Published {
    Server* s;
    Conn* c;
    ~Published() {
      std::unique_lock lock(s->mu_);
      c->stream = nullptr;
    }
  };
  (void)stream.set_nodelay(true);
  if (opts_.tls == nullptr) {
    {
      Published published{this, &conn};
      serve_requests(conn, stream, stream);
    }
    (void)stream.close();
    return;
  }
  // During the handshake the socket moves into the tls::Stream, so
  // shutdown() must not see it: the handshake timeout bounds this step.
  {
    std::unique_lock lock(mu_);
    conn.stream = nullptr;
  }
  auto tls = tls::Stream::accept(std::move(stream), opts_.tls, opts_.tls_handshake_timeout);
  if (!tls.ok()) {
    tls_failures_.fetch_add(1, std::memory_order_relaxed);
    return;  // what accept() left closes its socket
  }
  {
    std::unique_lock lock(mu_);
    conn.stream = &tls->tcp();  // the socket lives on the heap inside the tls::Stream
  }
  Published published{this, &conn};  // destroyed before tls
  if (conn.state.load() != kClosing) serve_requests(conn, *tls, tls->tcp());
}

template <class S>
void Server::serve_requests(Conn& conn, S& stream, net::TcpStream& tcp) {
  tcp.set_write_timeout(opts_.write_timeout);
  // Every read waits at most the idle timeout; a request as a whole at most
  // the request timeout (RequestStream's deadline).
  tcp.set_read_timeout(opts_.idle_timeout);
  RequestStream<S> rs{&stream, &tcp, opts_.request_timeout};
  BeastStream<RequestStream<S>> io(rs);
  boost::beast::flat_buffer in;
  std::string out;
  StringSink sink(out);
  std::optional<bhttp::request_parser<bhttp::string_body>> parser;
  uint64_t served = 0;
  bool write_failed = false;
  bool upgraded = false;  // the upgrade function took the connection over
  size_t blank_bytes = 0;  // empty lines skipped before the next request line

  auto flush = [&]() -> bool {
    if (out.empty()) return true;
    absl::Status s = stream.write_all(out);
    out.clear();
    if (!s.ok()) write_failed = true;
    return s.ok();
  };
  // The branches that a plain request does not take (refusals, streaming
  // handlers, upgrades, chunked responses) run in lambdas kept out of line,
  // and the closing drain reads into `in`: their locals (a Response,
  // Beast's serializer and buffer_body parser, a drain buffer) would
  // otherwise sit in this frame and spread the hot path of every
  // connection's fiber over more stack pages and cache lines. With a
  // thousand connections per worker, shrinking this frame from 6,280 to
  // about 1,200 bytes measured 10% more requests per CPU-second
  // (docs/benchmarks.md).
  auto refuse = [&](unsigned status) __attribute__((noinline)) {
    rejected_.fetch_add(1, std::memory_order_relaxed);
    Response res{static_cast<bhttp::status>(status), 11};
    if (!opts_.server_name.empty()) res.set(bhttp::field::server, opts_.server_name);
    res.set(bhttp::field::date, http_date());
    res.set(bhttp::field::content_type, "text/plain");
    res.set(bhttp::field::connection, "close");
    res.body() = reason_text(status);
    res.prepare_payload();
    boost::system::error_code ec;
    bhttp::write(sink, res, ec);
  };
  // A response the handler asked to send chunked: Beast serializes it.
  // Returns false if the write failed.
  auto write_chunked = [&](Response& res, bool& keep, bool head_only) __attribute__((noinline)) -> bool {
    // Beast's serializer writes the reason and fields as they are: the
    // same check as append_head's.
    bool splits = splits_line(res.reason());
    for (const auto& f : res) splits = splits || splits_line(f.name_string()) || splits_line(f.value());
    if (splits) {
      refuse(500);
      return false;
    }
    boost::system::error_code ec;
    res.version(11);
    if (!opts_.server_name.empty() && res.find(bhttp::field::server) == res.end()) {
      res.set(bhttp::field::server, opts_.server_name);
    }
    if (res.find(bhttp::field::date) == res.end()) res.set(bhttp::field::date, http_date());
    res.erase(bhttp::field::content_length);
    if (auto c = res.find(bhttp::field::connection); c != res.end()) {
      for (auto token : bhttp::token_list{c->value()}) {
        if (boost::beast::iequals(token, "close")) keep = false;
      }
    }
    // Chunked responses only go to HTTP/1.1 clients, for whom keep-alive
    // is the default.
    if (keep) {
      res.erase(bhttp::field::connection);
    } else {
      res.set(bhttp::field::connection, "close");
    }
    if (head_only) {
      bhttp::serializer<false, bhttp::string_body> sr{res};
      bhttp::write_header(sink, sr, ec);
    } else if (res.body().size() >= kDirectBody) {
      if (!flush()) return false;
      bhttp::write(io, res, ec);
      if (ec) {
        write_failed = true;
        return false;
      }
    } else {
      bhttp::write(sink, res, ec);
    }
    return true;
  };
  // The upgrade function: true with `res` set to its answer, false once it
  // has taken the connection over.
  auto run_upgrade = [&](Request& req, Response& res) __attribute__((noinline)) -> bool {
    auto rest = in.data();
    std::optional<Response> r =
        opts_.upgrade(req, tcp, std::string_view(static_cast<const char*>(rest.data()), rest.size()));
    if (!r.has_value()) return false;
    res = std::move(*r);
    return true;
  };
  // 5s: the streaming handler reads the body and writes the response
  // itself (StreamBody, StreamResponse); the server finishes what it left
  // undone. True to go on with the next request.
  auto serve_streaming = [&]() __attribute__((noinline)) -> bool {
    bhttp::request_parser<bhttp::buffer_body> bp{std::move(*parser)};
    bp.body_limit(opts_.max_body_bytes);
    const auto& head = bp.get();
    ++served;
    requests_.fetch_add(1, std::memory_order_relaxed);
    bool keep = head.keep_alive() && !draining_.load() &&
                (opts_.max_requests_per_connection == 0 || served < opts_.max_requests_per_connection);
    std::function<bool()> send_continue;
    if (!bp.is_done() && head.version() >= 11) {  // HTTP/1.0: ignored (RFC 9110 10.1.1)
      auto expect = head.find(bhttp::field::expect);
      if (expect != head.end() && lower_trim(expect->value()) == "100-continue") {
        send_continue = [&] {
          out.append("HTTP/1.1 100 Continue\r\n\r\n");
          return flush();
        };
      }
    }
    StreamBody<decltype(io)> body(io, in, bp, std::move(send_continue));
    StreamResponse<S> writer(stream, out, keep, head.version() < 11, head.method() == bhttp::verb::head,
                             opts_.server_name);
    bool threw = false;
    try {
      streaming_(head, body, writer);
    } catch (const internal::FiberUnwind&) {
      throw;  // the runtime unwinds this fiber
    } catch (...) {
      threw = true;
    }
    if (rs.deadline_set) {
      (void)tcp.set_read_deadline(absl::InfiniteFuture());
      rs.deadline_set = false;
    }
    if (!writer.begun()) {
      refuse(!threw && body.http_status() != 0 ? body.http_status() : 500);
      return false;
    }
    if (threw) return false;  // mid-body: the close tells the client it is cut short
    if (!writer.finished()) (void)writer.finish();
    if (writer.failed()) {
      write_failed = true;
      return false;
    }
    if (!body.done()) keep = false;  // the rest of the body is not worth reading
    if (!keep || draining_.load()) return false;
    if (out.size() >= kFlushAt && !flush()) return false;
    return true;
  };

  for (;;) {
    // 1-2: wait for the next request, then claim the connection.
    if (in.size() == 0) {
      if (!flush()) break;
      conn.state.store(kIdle);
      if (draining_.load()) break;
      auto buf = in.prepare(kReadChunk);
      absl::StatusOr<size_t> n = stream.read(std::span<char>(static_cast<char*>(buf.data()), buf.size()));
      int expected = kIdle;
      if (!conn.state.compare_exchange_strong(expected, kBusy)) break;  // shutdown() took it
      if (!n.ok() || *n == 0) break;  // idle timeout, reset or EOF: close quietly
      in.commit(*n);
    }
    // RFC 9112 2.2: empty lines before a request line are skipped (some
    // clients send CRLF after a body), up to a head's worth per request.
    if (const char c = *static_cast<const char*>(in.data().data()); c == '\r' || c == '\n') {
      auto d = in.data();
      const char* p = static_cast<const char*>(d.data());
      size_t n = 0;
      while (n < d.size() && (p[n] == '\r' || p[n] == '\n')) ++n;
      in.consume(n);
      blank_bytes += n;
      if (blank_bytes > opts_.max_header_bytes) {
        refuse(400);
        break;
      }
      if (in.size() == 0) continue;  // wait for the request line
    }
    blank_bytes = 0;
    // 3: refuse what cannot be HTTP without waiting for more.
    {
      auto d = in.data();
      if (!could_be_request(std::string_view(static_cast<const char*>(d.data()), d.size()))) {
        refuse(400);
        break;
      }
    }
    // 4: the head, the checks, the body.
    parser.emplace();
    parser->header_limit(static_cast<std::uint32_t>(opts_.max_header_bytes));
    parser->body_limit(opts_.max_body_bytes);
    // A streaming handler reads the body itself: the head alone, here.
    parser->eager(streaming_ == nullptr);
    boost::system::error_code ec;
    read_head(io, in, *parser, ec);
    unsigned status = 0;
    if (ec) {
      status = status_for_read_error(ec);
    } else {
      status = check_head(*parser, opts_);
      if (status == 0 && !parser->is_done() && streaming_ == nullptr) {
        // An HTTP/1.0 client's expectation is ignored (RFC 9110 10.1.1):
        // it would take the 100 for its answer.
        auto expect = parser->get().find(bhttp::field::expect);
        if (parser->get().version() >= 11 && expect != parser->get().end() &&
            lower_trim(expect->value()) == "100-continue") {
          out.append("HTTP/1.1 100 Continue\r\n\r\n");
          if (!flush()) break;
        }
        bhttp::read(io, in, *parser, ec);
        if (ec) status = status_for_read_error(ec);
      }
    }
    if (rs.deadline_set && streaming_ == nullptr) {
      (void)tcp.set_read_deadline(absl::InfiniteFuture());
      rs.deadline_set = false;
    }
    if (ec && status == 0) break;  // the peer left or reset mid-request
    if (status != 0) {
      refuse(status);
      break;
    }

    if (streaming_ != nullptr) {
      if (serve_streaming()) continue;
      break;
    }

    // 5: the handler and the response.
    Request& req = parser->get();
    ++served;
    requests_.fetch_add(1, std::memory_order_relaxed);
    // The parser's verdict from the Connection tokens it has seen: the
    // same answer as req.keep_alive(), without a field lookup.
    bool keep = parser->keep_alive() && !draining_.load() &&
                (opts_.max_requests_per_connection == 0 || served < opts_.max_requests_per_connection);
    Response res;
    bool upgrade = false;
    if constexpr (std::is_same_v<S, net::TcpStream>) {
      upgrade = opts_.upgrade != nullptr && is_upgrade(req);
    }
    try {
      if (upgrade) {
        if (!flush()) break;  // answers to earlier pipelined requests
        if (!run_upgrade(req, res)) {
          upgraded = true;
          break;
        }
        keep = false;
      } else {
        res = handler_(req);
      }
    } catch (const internal::FiberUnwind&) {
      throw;  // the runtime unwinds this fiber
    } catch (...) {
      refuse(500);
      break;
    }
    keep = keep && !draining_.load();
    if (req.version() < 11 && res.chunked()) res.chunked(false);  // HTTP/1.0 has no chunked coding
    // 1xx, 204 and 304 responses end with their head (RFC 9112 6.3): a
    // body the handler left in one would be read as the next response.
    const unsigned code = res.result_int();
    const bool no_body = code < 200 || code == 204 || code == 304;
    if (no_body && res.chunked()) res.chunked(false);
    const bool head_only = no_body || req.method() == bhttp::verb::head;
    if (!res.chunked()) {
      // The common case: we write the head ourselves, in one pass over the
      // handler's fields (Beast's serializer and four set() calls cost
      // about a tenth of a hello-world server's CPU).
      if (!append_head(out, res, Framing::kLength, res.body().size(), keep, req.version() < 11,
                       opts_.server_name)) {
        refuse(500);
        break;
      }
      if (!head_only && !res.body().empty()) {
        if (res.body().size() >= kDirectBody) {
          if (!flush()) break;
          if (!stream.write_all(res.body()).ok()) {
            write_failed = true;
            break;
          }
        } else {
          out.append(res.body());
        }
      }
    } else if (!write_chunked(res, keep, head_only)) {
      break;
    }
    // The request's fields go back to the heap now, while their lines are
    // in this CPU's cache, not after the next request wakes this fiber
    // (with a thousand connections, by then they are cold).
    parser.reset();
    if (!keep) break;
    if (out.size() >= kFlushAt && !flush()) break;
  }

  // 6: send what is left, then close gracefully, unless shutdown() has
  // claimed the connection (it closes the socket).
  bool ours = false;
  for (int st = conn.state.load(); st != kClosing;) {
    if (conn.state.compare_exchange_weak(st, kClosing)) {
      ours = true;
      break;
    }
  }
  if (ours && !write_failed && !upgraded && flush()) {
    if constexpr (std::is_same_v<S, net::TcpStream>) {
      (void)tcp.shutdown(net::Shutdown::kWrite);
    } else {
      (void)stream.shutdown();  // close_notify, then the TCP half-close
    }
    tcp.set_read_timeout(absl::Milliseconds(500));
    in.clear();
    auto space = in.prepare(4096);
    const std::span<char> sink_buf(static_cast<char*>(space.data()), space.size());
    for (int i = 0; i < 64; ++i) {
      auto r = stream.read(sink_buf);
      if (!r.ok() || *r == 0) break;
    }
  }
}

absl::Status Server::shutdown(absl::Duration grace) {
  const absl::Time deadline = absl::Now() + grace;
  draining_.store(true);
  if (listener_.has_value()) (void)listener_->close();
  // The connections' fibers use this server: wait for them even if the
  // caller is cancelled.
  this_fiber::CancellationShield shield;
  std::unique_lock lock(mu_);
  // Idle connections close now; busy ones close after their response.
  for (Conn* c : conns_) {
    int expected = kIdle;
    if (c->stream != nullptr && c->state.compare_exchange_strong(expected, kClosing)) (void)c->stream->close();
  }
  auto drained = [&]() ABSL_NO_THREAD_SAFETY_ANALYSIS { return conns_.empty() && starting_ == 0; };
  if (drained_.wait_until(lock, deadline, drained).ok()) return absl::OkStatus();
  size_t cut = conns_.size();
  for (Conn* c : conns_) {
    c->state.store(kClosing);
    if (c->stream != nullptr) (void)c->stream->close();  // null: in a TLS handshake (bounded by its timeout)
  }
  (void)drained_.wait(lock, drained);  // shielded: returns when drained
  return absl::DeadlineExceededError("http::Server::shutdown: " + std::to_string(cut) +
                                     " connections still busy after the grace period were closed");
}

ServerStats Server::stats() const {
  ServerStats s;
  s.accepted = accepted_.load(std::memory_order_relaxed);
  s.active_connections = active_.load(std::memory_order_relaxed);
  s.requests = requests_.load(std::memory_order_relaxed);
  s.rejected = rejected_.load(std::memory_order_relaxed);
  s.tls_handshake_failures = tls_failures_.load(std::memory_order_relaxed);
  return s;
}

}  // namespace weft::http
