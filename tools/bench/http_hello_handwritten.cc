// tools/bench/http_hello_handwritten.cc: the hand-written HTTP/1.1 server
// that examples/http_hello was before it moved to weft::http::Server, kept
// unchanged as a benchmark baseline (tools/bench/net_bench.sh, section
// http_server). Not an example to follow: its parser is the reason the
// example moved to Boost.Beast (it accepts requests without a version in
// some forms, NUL bytes in values, missing or repeated Host fields, and
// waits for a whole head before refusing binary garbage).
//
// The original comment follows.
//
// http_hello: an HTTP/1.1 server that answers every request with
// "Hello, World!\n", fast enough for wrk and correct enough for curl.
//
//   bazel run -c opt //examples:http_hello -- --port 8080
//   curl http://127.0.0.1:8080/      wrk -c100 -d5s http://127.0.0.1:8080/
//
// Shows: a request loop that does one read, answers every complete
// (pipelined) request found in the buffer, and then does one write.
//
// What it handles: keep-alive (HTTP/1.1 by default, HTTP/1.0 only with
// "Connection: keep-alive"), "Connection: close", request bodies with
// Content-Length (skipped, also across reads), HEAD (no body). A bad
// request line, a header line without ':', a head over 8 KiB, a bad or
// conflicting Content-Length get "400 Bad Request" and the connection
// closes; Transfer-Encoding (chunked bodies) gets "501 Not Implemented" and
// closes.
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "examples/example_util.h"
#include "net/net.h"

namespace {

constexpr size_t kMaxHead = 8 * 1024;  // request line + headers + CRLFCRLF
constexpr size_t kReadChunk = 16 * 1024;

constexpr std::string_view kBody = "Hello, World!\n";
constexpr std::string_view kOkKeepAlive =
    "HTTP/1.1 200 OK\r\nServer: weft\r\nContent-Type: text/plain\r\nContent-Length: 14\r\n\r\n";
constexpr std::string_view kOkKeepAlive10 =  // HTTP/1.0 must be told it may keep the connection
    "HTTP/1.1 200 OK\r\nServer: weft\r\nContent-Type: text/plain\r\nContent-Length: 14\r\n"
    "Connection: keep-alive\r\n\r\n";
constexpr std::string_view kOkClose =
    "HTTP/1.1 200 OK\r\nServer: weft\r\nContent-Type: text/plain\r\nContent-Length: 14\r\n"
    "Connection: close\r\n\r\n";
constexpr std::string_view kBadRequest =
    "HTTP/1.1 400 Bad Request\r\nServer: weft\r\nContent-Type: text/plain\r\nContent-Length: 12\r\n"
    "Connection: close\r\n\r\nBad Request\n";
constexpr std::string_view kNotImplemented =
    "HTTP/1.1 501 Not Implemented\r\nServer: weft\r\nContent-Type: text/plain\r\nContent-Length: 16\r\n"
    "Connection: close\r\n\r\nNot Implemented\n";

// Debian's abseil has its own string_view type, so these small helpers
// work on std::string_view directly.
bool is_space(char c) { return c == ' ' || c == '\t'; }
std::string_view strip(std::string_view s) {
  while (!s.empty() && is_space(s.front())) s.remove_prefix(1);
  while (!s.empty() && is_space(s.back())) s.remove_suffix(1);
  return s;
}
char lower(char c) { return c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c; }
// iequals() compares ASCII case-insensitively; `lower_b` is lowercase.
bool iequals(std::string_view a, std::string_view lower_b) {
  if (a.size() != lower_b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    if (lower(a[i]) != lower_b[i]) return false;
  }
  return true;
}

// A token character (RFC 9110 tchar): methods and header names.
bool is_tchar(char c) {
  return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
         std::string_view("!#$%&'*+-.^_`|~").find(c) != std::string_view::npos;
}
bool is_token(std::string_view s) {
  if (s.empty()) return false;
  for (char c : s) {
    if (!is_tchar(c)) return false;
  }
  return true;
}

enum class Verdict { kOk, kBad, kNotImplemented };

struct Request {
  bool head = false;        // HEAD: no body in the response
  bool keep_alive = true;   // may the connection serve another request
  bool http10 = false;
  uint64_t body_bytes = 0;  // Content-Length of the request body
};

// parse_head() parses `head` (without the final CRLFCRLF).
Verdict parse_head(std::string_view head, Request& req) {
  size_t eol = head.find("\r\n");
  std::string_view line = head.substr(0, eol);
  std::string_view rest = eol == std::string_view::npos ? std::string_view() : head.substr(eol + 2);

  // Request line: METHOD SP TARGET SP HTTP/1.x
  size_t sp1 = line.find(' ');
  size_t sp2 = sp1 == std::string_view::npos ? sp1 : line.find(' ', sp1 + 1);
  if (sp2 == std::string_view::npos) return Verdict::kBad;
  std::string_view method = line.substr(0, sp1);
  std::string_view target = line.substr(sp1 + 1, sp2 - sp1 - 1);
  std::string_view version = line.substr(sp2 + 1);
  if (!is_token(method) || target.empty()) return Verdict::kBad;
  for (char c : target) {
    if (static_cast<unsigned char>(c) <= ' ' || c == 0x7f) return Verdict::kBad;
  }
  if (version == "HTTP/1.1") {
    req.http10 = false;
    req.keep_alive = true;
  } else if (version == "HTTP/1.0") {
    req.http10 = true;
    req.keep_alive = false;
  } else {
    return Verdict::kBad;
  }
  req.head = method == "HEAD";
  req.body_bytes = 0;

  bool have_length = false;
  while (!rest.empty()) {
    eol = rest.find("\r\n");
    line = rest.substr(0, eol);
    rest = eol == std::string_view::npos ? std::string_view() : rest.substr(eol + 2);
    size_t colon = line.find(':');
    if (colon == std::string_view::npos) return Verdict::kBad;
    std::string_view name = line.substr(0, colon);
    if (!is_token(name)) return Verdict::kBad;  // also rejects "Name :" and folded lines
    std::string_view value = strip(line.substr(colon + 1));
    if (iequals(name, "content-length")) {
      uint64_t n = 0;
      if (value.empty() || value.size() > 15) return Verdict::kBad;
      for (char c : value) {
        if (c < '0' || c > '9') return Verdict::kBad;
        n = n * 10 + static_cast<uint64_t>(c - '0');
      }
      if (have_length && n != req.body_bytes) return Verdict::kBad;
      have_length = true;
      req.body_bytes = n;
    } else if (iequals(name, "transfer-encoding")) {
      return Verdict::kNotImplemented;
    } else if (iequals(name, "connection")) {
      while (!value.empty()) {  // a comma-separated list of options
        size_t comma = value.find(',');
        std::string_view opt = strip(value.substr(0, comma));
        value = comma == std::string_view::npos ? std::string_view() : value.substr(comma + 1);
        if (iequals(opt, "close")) req.keep_alive = false;
        if (iequals(opt, "keep-alive") && req.http10) req.keep_alive = true;
      }
    }
  }
  return Verdict::kOk;
}

void serve_connection(weft::net::TcpStream s) {
  (void)s.set_nodelay(true);
  std::vector<char> in(kMaxHead + kReadChunk);
  size_t begin = 0, end = 0;    // unparsed bytes are in[begin, end)
  uint64_t body_left = 0;       // request body bytes still to skip
  std::string out;
  for (;;) {
    if (begin == end) begin = end = 0;
    if (in.size() - end < kReadChunk / 2) {  // make room: move the partial head to the front
      std::copy(in.begin() + static_cast<ptrdiff_t>(begin), in.begin() + static_cast<ptrdiff_t>(end), in.begin());
      end -= begin;
      begin = 0;
    }
    auto n = s.read({in.data() + end, in.size() - end});
    if (!n.ok() || *n == 0) return;
    end += *n;

    bool close_after = false;
    while (!close_after) {
      if (body_left > 0) {  // the body of the previous request
        size_t skip = static_cast<size_t>(std::min<uint64_t>(body_left, end - begin));
        begin += skip;
        body_left -= skip;
        if (body_left > 0) break;
      }
      std::string_view avail(in.data() + begin, end - begin);
      size_t head_end = avail.find("\r\n\r\n");
      if (head_end == std::string_view::npos) {
        if (avail.size() >= kMaxHead) {  // no end of head within the limit
          out.append(kBadRequest);
          close_after = true;
        }
        break;
      }
      if (head_end + 4 > kMaxHead) {
        out.append(kBadRequest);
        close_after = true;
        break;
      }
      Request req;
      Verdict v = parse_head(avail.substr(0, head_end), req);
      begin += head_end + 4;
      if (v != Verdict::kOk) {
        out.append(v == Verdict::kBad ? kBadRequest : kNotImplemented);
        close_after = true;
        break;
      }
      body_left = req.body_bytes;
      out.append(!req.keep_alive ? kOkClose : req.http10 ? kOkKeepAlive10 : kOkKeepAlive);
      if (!req.head) out.append(kBody);
      if (!req.keep_alive) close_after = true;
    }
    if (!out.empty()) {
      if (!s.write_all(out).ok()) return;
      out.clear();
    }
    if (close_after) {
      // Let the peer read the answer before the close: stop sending, then
      // drain briefly what it still sends so the kernel does not reset
      // the connection and discard the response.
      (void)s.shutdown(weft::net::Shutdown::kWrite);
      s.set_read_timeout(absl::Seconds(1));
      char sink[4096];
      for (int i = 0; i < 64; ++i) {
        auto r = s.read(sink);
        if (!r.ok() || *r == 0) break;
      }
      return;
    }
  }
}

}  // namespace

int main(int argc, char** argv) {
  weft::examples::ServerFlags server;
  weft::examples::Flags flags("http_hello", "An HTTP/1.1 keep-alive server answering \"Hello, World!\".");
  server.add_to(flags);
  flags.parse(argc, argv);

  weft::examples::ShutdownSignal signal;
  return weft::examples::run_server("http_hello", server, signal, serve_connection);
}
