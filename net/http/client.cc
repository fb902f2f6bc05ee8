// net/http/client.cc
//
// One call (Client::request):
//   1. Parse the URL; the deadline is now + request_timeout.
//   2. round_trip(): take an idle connection for host:port, or connect
//      (resolve, then each address in turn, within connect_timeout and the
//      deadline). Read and write deadlines on the socket bound everything
//      that follows.
//   3. Beast serializes the request and parses the response (BeastStream).
//      A reused connection that fails before any response byte arrived is
//      dropped and the request sent once more on a new connection.
//   4. The connection goes back to the pool if the response allows
//      keep-alive, its body was delimited (not by the close), and no byte
//      follows it.
//   5. Redirects, when enabled, go back to 2 with the new URL.
#include "net/http/client.h"

#include <algorithm>
#include <charconv>
#include <cstdio>

#include "boost/beast/core/flat_buffer.hpp"
#include "boost/beast/http/error.hpp"
#include "boost/beast/http/parser.hpp"
#include "boost/beast/http/read.hpp"
#include "boost/beast/http/write.hpp"
#include "net/http/beast_stream.h"

namespace weft::http {

namespace bhttp = boost::beast::http;

namespace {

std::string lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) {
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  }
  return out;
}

bool has_header(const Headers& headers, std::string_view name) {
  std::string want = lower(name);
  return std::any_of(headers.begin(), headers.end(), [&](const auto& h) { return lower(h.first) == want; });
}

// call_error() turns a failed Beast read or write into a status.
absl::Status call_error(const std::string& prefix, const boost::system::error_code& ec,
                        const absl::Status& io_status) {
  const auto& http_category = bhttp::make_error_code(bhttp::error::end_of_stream).category();
  if (ec.category() == http_category) {
    if (ec == bhttp::error::end_of_stream) {
      return absl::UnavailableError(prefix + "connection closed before the response");
    }
    if (ec == bhttp::error::partial_message) {
      return absl::UnavailableError(prefix + "connection closed in the middle of the response (partial_message)");
    }
    if (ec == bhttp::error::header_limit || ec == bhttp::error::body_limit) {
      return absl::ResourceExhaustedError(prefix + "response over the limit: " + ec.message());
    }
    return absl::DataLossError(prefix + "malformed response: " + ec.message());
  }
  if (!io_status.ok()) return absl::Status(io_status.code(), prefix + std::string(io_status.message()));
  if (ec == boost::asio::error::timed_out) return absl::DeadlineExceededError(prefix + "timed out");
  return absl::UnavailableError(prefix + ec.message());
}

// header_error() says what is wrong with a caller's field, or "" if
// nothing: the name must be a token (RFC 9110 5.1), and the value must not
// hold CR, LF or NUL, which would end the line early and let the rest pass
// as further fields or a second request.
std::string header_error(std::string_view name, std::string_view value) {
  if (name.empty()) return "a header with an empty name";
  for (char c : name) {
    const bool tchar = (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
                       std::string_view("!#$%&'*+-.^_`|~").find(c) != std::string_view::npos;
    if (!tchar) return "a header name holds a byte that is not allowed in a field name (RFC 9110 5.1)";
  }
  if (value.find_first_of(std::string_view("\r\n\0", 3)) != std::string_view::npos) {
    return "header " + std::string(name) + ": the value holds CR, LF or NUL";
  }
  return "";
}

bool is_redirect(unsigned status) {
  return status == 301 || status == 302 || status == 303 || status == 307 || status == 308;
}

}  // namespace

// ---------------------------------------------------------------------------
// Url
// ---------------------------------------------------------------------------

absl::StatusOr<Url> Url::parse(std::string_view text) {
  auto bad = [&](std::string_view why) {
    return absl::InvalidArgumentError("invalid URL '" + std::string(text) + "': " + std::string(why));
  };
  Url u;
  size_t colon = text.find("://");
  if (colon == std::string_view::npos) return bad("no scheme (http://...)");
  u.scheme = lower(text.substr(0, colon));
  if (u.scheme == "http") {
    u.port = 80;
  } else if (u.scheme == "https") {
    u.port = 443;
  } else {
    return bad("scheme is not http or https");
  }
  std::string_view rest = text.substr(colon + 3);
  if (size_t hash = rest.find('#'); hash != std::string_view::npos) rest = rest.substr(0, hash);
  size_t path = rest.find_first_of("/?");
  std::string_view authority = rest.substr(0, path);
  std::string_view target = path == std::string_view::npos ? std::string_view() : rest.substr(path);
  if (authority.find('@') != std::string_view::npos) return bad("user information is not supported");
  std::string_view port_text;
  if (!authority.empty() && authority.front() == '[') {
    size_t close = authority.find(']');
    if (close == std::string_view::npos) return bad("unterminated IPv6 address");
    u.host = std::string(authority.substr(1, close - 1));
    std::string_view after = authority.substr(close + 1);
    if (!after.empty()) {
      if (after.front() != ':') return bad("junk after the IPv6 address");
      port_text = after.substr(1);
      if (port_text.empty()) return bad("empty port");
    }
  } else {
    size_t pc = authority.rfind(':');
    u.host = std::string(authority.substr(0, pc));
    if (pc != std::string_view::npos) {
      port_text = authority.substr(pc + 1);
      if (port_text.empty()) return bad("empty port");
    }
  }
  if (u.host.empty()) return bad("no host");
  for (char c : u.host) {
    if (static_cast<unsigned char>(c) <= ' ' || c == '/' || c == '\\' || c == 0x7f) return bad("bad host");
  }
  if (!port_text.empty()) {
    unsigned port = 0;
    auto [end, ec] = std::from_chars(port_text.data(), port_text.data() + port_text.size(), port);
    if (ec != std::errc() || end != port_text.data() + port_text.size() || port == 0 || port > 65535) {
      return bad("bad port");
    }
    u.port = static_cast<uint16_t>(port);
  }
  if (target.empty()) {
    u.target = "/";
  } else if (target.front() == '?') {
    u.target = "/" + std::string(target);
  } else {
    u.target = std::string(target);
  }
  for (char c : u.target) {
    if (static_cast<unsigned char>(c) <= ' ' || c == 0x7f) return bad("space or control character in the path");
  }
  return u;
}

std::string Url::host_port() const {
  std::string h = host.find(':') != std::string::npos ? "[" + host + "]" : host;
  return h + ":" + std::to_string(port);
}

std::string Url::to_string() const { return scheme + "://" + host_port() + target; }

// ---------------------------------------------------------------------------
// Client
// ---------------------------------------------------------------------------

// Connection: a pooled connection, plain or TLS; a ByteStream for
// BeastStream.
struct Client::Connection {
  net::TcpStream tcp;               // plain: the connection
  std::optional<tls::Stream> tls;   // https: owns the socket (tcp is unused)

  net::TcpStream& socket() { return tls ? tls->tcp() : tcp; }
  absl::StatusOr<size_t> read(std::span<char> buf) { return tls ? tls->read(buf) : tcp.read(buf); }
  absl::StatusOr<size_t> write(std::string_view data) { return tls ? tls->write(data) : tcp.write(data); }
  void close() { (void)(tls ? tls->close() : tcp.close()); }
  // truncated() is true if a TLS peer's end of stream came without
  // close_notify: an attacker on the path can end the connection early.
  bool truncated() const { return tls && !tls->close_notify_received(); }
};

absl::StatusOr<std::shared_ptr<tls::Context>> Client::tls_context() {
  if (opts_.tls != nullptr) return opts_.tls;
  std::unique_lock lock(mu_);
  if (default_tls_ == nullptr) {
    auto ctx = tls::Context::client({.alpn = {"http/1.1"}});
    if (!ctx.ok()) return ctx.status();
    default_tls_ = *ctx;
  }
  return default_tls_;
}

Client::Client(ClientOptions opts) : opts_(std::move(opts)) {}

Client::~Client() { close(); }

void Client::close() {
  std::map<std::string, std::vector<std::unique_ptr<Connection>>> idle;
  {
    std::unique_lock lock(mu_);
    idle.swap(idle_);
  }
  for (auto& [key, conns] : idle) {
    for (auto& c : conns) c->close();
  }
}

ClientStats Client::stats() const {
  std::unique_lock lock(mu_);
  return stats_;
}

size_t Client::idle_connections() const {
  std::unique_lock lock(mu_);
  size_t n = 0;
  for (const auto& [key, streams] : idle_) n += streams.size();
  return n;
}

std::unique_ptr<Client::Connection> Client::take_idle(const std::string& key) {
  std::unique_lock lock(mu_);
  auto it = idle_.find(key);
  if (it == idle_.end() || it->second.empty()) return nullptr;
  std::unique_ptr<Connection> c = std::move(it->second.back());
  it->second.pop_back();
  return c;
}

void Client::put_idle(const std::string& key, std::unique_ptr<Connection> c) {
  {
    std::unique_lock lock(mu_);
    auto& v = idle_[key];
    if (v.size() < opts_.max_idle_per_host) {
      v.push_back(std::move(c));
      return;
    }
  }
  c->close();  // over the cap
}

absl::StatusOr<Response> Client::get(std::string_view url, const Headers& headers, const CallOptions& call) {
  return request(bhttp::verb::get, url, headers, {}, call);
}

absl::StatusOr<Response> Client::post(std::string_view url, std::string body, std::string_view content_type,
                                      const Headers& headers, const CallOptions& call) {
  Headers h = headers;
  if (!has_header(h, "content-type")) h.emplace_back("Content-Type", std::string(content_type));
  return request(bhttp::verb::post, url, h, std::move(body), call);
}

absl::StatusOr<Response> Client::request(bhttp::verb method, std::string_view url_text, const Headers& headers,
                                         std::string body, const CallOptions& call) {
  const std::string method_name(bhttp::to_string(method));
  absl::StatusOr<Url> url = Url::parse(url_text);
  if (!url.ok()) {
    return absl::InvalidArgumentError("http::Client: " + method_name + " " + std::string(url_text) + ": " +
                                      std::string(url.status().message()));
  }
  for (const auto& [name, value] : headers) {
    if (std::string why = header_error(name, value); !why.empty()) {
      return absl::InvalidArgumentError("http::Client: " + method_name + " " + url->to_string() + ": " + why);
    }
  }
  const absl::Duration connect_timeout = call.connect_timeout.value_or(opts_.connect_timeout);
  const absl::Time deadline = absl::Now() + call.request_timeout.value_or(opts_.request_timeout);
  const Headers* hdrs = &headers;
  Headers cross_origin;  // `headers` without the fields only their origin may see
  for (int hops = 0;; ++hops) {
    absl::StatusOr<Response> res = round_trip(method, *url, *hdrs, body, connect_timeout, deadline);
    if (!res.ok() || opts_.max_redirects <= 0 || !is_redirect(res->result_int())) return res;
    auto location = res->find(bhttp::field::location);
    if (location == res->end()) return res;
    const std::string prefix =
        "http::Client: " + std::string(bhttp::to_string(method)) + " " + url->to_string() + ": ";
    if (hops >= opts_.max_redirects) {
      return absl::FailedPreconditionError(prefix + "more than " + std::to_string(opts_.max_redirects) +
                                           " redirects");
    }
    std::string_view loc = location->value();
    Url next = *url;
    if (loc.find("://") != std::string_view::npos) {
      absl::StatusOr<Url> u = Url::parse(loc);
      if (!u.ok()) return absl::DataLossError(prefix + "bad Location: " + std::string(u.status().message()));
      next = *u;
    } else if (!loc.empty() && loc.front() == '/') {
      next.target = std::string(loc);
    } else {
      std::string base = url->target.substr(0, url->target.find('?'));
      next.target = base.substr(0, base.rfind('/') + 1) + std::string(loc);
    }
    if (hdrs == &headers && (next.scheme != url->scheme || next.host != url->host || next.port != url->port)) {
      // Credentials and a Host the caller set are for the origin named in
      // the call, not for whichever one it redirects to (curl and Go drop
      // them too).
      for (const auto& h : headers) {
        const std::string name = lower(h.first);
        if (name != "authorization" && name != "proxy-authorization" && name != "cookie" && name != "host") {
          cross_origin.push_back(h);
        }
      }
      hdrs = &cross_origin;
    }
    unsigned status = res->result_int();
    if (status == 303 || ((status == 301 || status == 302) && method == bhttp::verb::post)) {
      method = bhttp::verb::get;
      body.clear();
    }
    url = next;
  }
}

absl::StatusOr<Response> Client::round_trip(bhttp::verb method, const Url& url, const Headers& headers,
                                            const std::string& body, absl::Duration connect_timeout,
                                            absl::Time deadline) {
  const std::string prefix = "http::Client: " + std::string(bhttp::to_string(method)) + " " + url.to_string() + ": ";
  const bool https = url.scheme == "https";
  const std::string key = url.scheme + "://" + url.host_port();

  bhttp::request<bhttp::string_body> req{method, url.target, 11};
  const uint16_t default_port = https ? 443 : 80;
  if (!has_header(headers, "host")) {  // the caller's replaces ours: two would be refused (RFC 9112 3.2)
    req.set(bhttp::field::host, url.port == default_port
                                    ? (url.host.find(':') != std::string::npos ? "[" + url.host + "]" : url.host)
                                    : url.host_port());
  }
  for (const auto& [name, value] : headers) req.insert(name, value);
  if (!opts_.user_agent.empty() && !has_header(headers, "user-agent")) {
    req.set(bhttp::field::user_agent, opts_.user_agent);
  }
  req.body() = body;
  if (!body.empty() || method == bhttp::verb::post || method == bhttp::verb::put) req.prepare_payload();

  for (int attempt = 0; attempt < 2; ++attempt) {
    std::unique_ptr<Connection> s;
    if (attempt == 0) s = take_idle(key);
    const bool reused = s != nullptr;
    if (!reused) {
      absl::Duration left = deadline - absl::Now();
      if (left <= absl::ZeroDuration()) return absl::DeadlineExceededError(prefix + "request timeout passed");
      auto c = net::TcpStream::connect(url.host, url.port, std::min(connect_timeout, left));
      if (!c.ok()) return absl::Status(c.status().code(), prefix + "connect: " + std::string(c.status().message()));
      (void)c->set_nodelay(true);
      s = std::make_unique<Connection>();
      if (https) {
        auto ctx = tls_context();
        if (!ctx.ok()) return absl::Status(ctx.status().code(), prefix + std::string(ctx.status().message()));
        left = deadline - absl::Now();
        auto t = tls::Stream::connect(std::move(*c), *ctx, url.host,
                                      std::max(absl::ZeroDuration(), std::min(opts_.tls_handshake_timeout, left)));
        if (!t.ok()) return absl::Status(t.status().code(), prefix + std::string(t.status().message()));
        s->tls.emplace(std::move(*t));
      } else {
        s->tcp = std::move(*c);
      }
    }
    {
      std::unique_lock lock(mu_);
      if (reused) {
        ++stats_.connections_reused;
      } else {
        ++stats_.connections_opened;
      }
    }
    net::TcpStream& sock = s->socket();
    if (absl::Status st = sock.set_read_deadline(deadline); !st.ok()) {
      return absl::Status(st.code(), prefix + std::string(st.message()));
    }
    if (absl::Status st = sock.set_write_deadline(deadline); !st.ok()) {
      return absl::Status(st.code(), prefix + std::string(st.message()));
    }

    BeastStream<Connection> io(*s);
    boost::system::error_code ec;
    bhttp::write(io, req, ec);
    if (ec) {
      if (reused) continue;  // the server closed the idle connection
      return call_error(prefix + "sending the request: ", ec, io.last_status());
    }
    boost::beast::flat_buffer buf;
    std::optional<bhttp::response_parser<bhttp::string_body>> parser;
    bool interim = false;  // a 1xx answer came first
    for (;;) {
      parser.emplace();
      parser->header_limit(static_cast<std::uint32_t>(opts_.max_header_bytes));
      parser->body_limit(opts_.max_body_bytes);
      if (method == bhttp::verb::head) parser->skip(true);
      bhttp::read(io, buf, *parser, ec);
      // 100 Continue, 103 Early Hints: interim answers before the final one
      // (RFC 9110 15.2); 101 ends HTTP on this connection and is returned.
      const unsigned status = parser->get().result_int();
      if (ec || status / 100 != 1 || status == 101) break;
      interim = true;
    }
    if (ec) {
      if (reused && !interim && !parser->got_some() &&
          (ec == bhttp::error::end_of_stream || ec == boost::asio::error::connection_reset)) {
        continue;
      }
      return call_error(prefix, ec, io.last_status());
    }
    {
      std::unique_lock lock(mu_);
      ++stats_.requests;
    }
    const bool close_delimited = parser->need_eof();
    if (close_delimited && s->truncated()) {
      s->close();
      return absl::UnavailableError(prefix +
                                    "the body ends with the connection, which ended without TLS close_notify: it "
                                    "may be truncated");
    }
    Response res = parser->release();
    bool reusable = res.keep_alive() && !close_delimited && buf.size() == 0 && res.result_int() != 101;
    if (reusable) {
      reusable = sock.set_read_deadline(absl::InfiniteFuture()).ok() &&
                 sock.set_write_deadline(absl::InfiniteFuture()).ok();
    }
    if (reusable) {
      put_idle(key, std::move(s));
    } else {
      s->close();
    }
    return res;
  }
  return absl::UnavailableError(prefix + "the pooled connection failed and so did a new one");
}

}  // namespace weft::http
