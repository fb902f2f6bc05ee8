// resp_server: a small Redis-compatible server (RESP2) over a sharded
// in-memory map, enough for redis-cli and redis-benchmark.
//
//   bazel run -c opt //examples:resp_server -- --port 6380
//   redis-cli -p 6380 SET k v     redis-benchmark -p 6380 -t ping_inline,set,get -q
//
// Commands: PING [msg], ECHO msg, SET k v, GET k, DEL k [k ...], INCR k,
// EXISTS k [k ...], QUIT; COMMAND (any subcommand) and CONFIG GET answer an
// empty array, which is what redis-cli and redis-benchmark ask at start.
// Both the multibulk form ("*2\r\n$3\r\nGET\r\n$1\r\nk\r\n") and inline
// commands ("PING\r\n") are accepted.
//
// Shows: pipelining (every complete command in the read buffer is answered,
// then one write), a map split into shards each behind its own weft::Mutex,
// and defensive parsing: framing errors (bad multibulk or bulk length,
// oversized requests) get "-ERR Protocol error: ..." and the connection
// closes, as Redis does; command errors (unknown command, wrong arity, INCR
// of a non-integer) get "-ERR ..." and the connection stays open.
#include <charconv>
#include <cstdint>
#include <cstdio>
#include <functional>
#include <algorithm>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "examples/example_util.h"
#include "net/net.h"
#include "sync/sync.h"

namespace {

constexpr int64_t kMaxMultibulk = 1024 * 1024;  // arguments per command
constexpr size_t kMaxInline = 64 * 1024;        // an inline command, and a "*N" or "$N" line
constexpr size_t kReadChunk = 16 * 1024;
constexpr size_t kMaxPendingReply = 1 << 20;    // write replies out once this much is ready

// Debian's abseil has its own string_view type; these helpers and the
// map's hash work on std::string_view directly.
char lower(char c) { return c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c; }
std::string to_lower(std::string_view s) {
  std::string r(s);
  for (char& c : r) c = lower(c);
  return r;
}
bool is_space(char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '\v' || c == '\f'; }

// KeyHash, KeyEq: transparent, so lookups by std::string_view need no copy.
struct KeyHash {
  using is_transparent = void;
  size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
};
struct KeyEq {
  using is_transparent = void;
  bool operator()(std::string_view a, std::string_view b) const { return a == b; }
};

// Store: the keyspace, split into shards so that commands on different keys
// rarely wait for each other. Thread-safe.
class Store {
 public:
  explicit Store(size_t shards) : shards_(shards) {}

  std::optional<std::string> get(std::string_view k) {
    Shard& s = shard(k);
    std::lock_guard<weft::Mutex> g(s.mu);
    auto it = s.map.find(k);
    if (it == s.map.end()) return std::nullopt;
    return it->second;
  }
  void set(std::string_view k, std::string_view v) {
    Shard& s = shard(k);
    std::lock_guard<weft::Mutex> g(s.mu);
    s.map.insert_or_assign(std::string(k), std::string(v));
  }
  bool del(std::string_view k) {
    Shard& s = shard(k);
    std::lock_guard<weft::Mutex> g(s.mu);
    auto it = s.map.find(k);
    if (it == s.map.end()) return false;
    s.map.erase(it);
    return true;
  }
  bool exists(std::string_view k) {
    Shard& s = shard(k);
    std::lock_guard<weft::Mutex> g(s.mu);
    return s.map.contains(k);
  }
  // incr() adds one to the integer at k (a missing key counts as 0); the
  // error text when the value is not an integer or would overflow.
  absl::StatusOr<int64_t> incr(std::string_view k) {
    Shard& s = shard(k);
    std::lock_guard<weft::Mutex> g(s.mu);
    auto [it, inserted] = s.map.try_emplace(k, "0");
    const std::string& v = it->second;
    int64_t n = 0;
    auto [end, ec] = std::from_chars(v.data(), v.data() + v.size(), n);
    // Redis takes only the canonical form: no spaces, no '+', no leading zeros.
    bool canonical = ec == std::errc() && end == v.data() + v.size() && !v.empty() && v.size() <= 20 &&
                     std::to_string(n) == v;
    if (!canonical) {
      if (inserted) s.map.erase(it);
      return absl::InvalidArgumentError("ERR value is not an integer or out of range");
    }
    if (n == INT64_MAX) return absl::InvalidArgumentError("ERR increment or decrement would overflow");
    it->second = std::to_string(n + 1);
    return n + 1;
  }

 private:
  struct Shard {
    weft::Mutex mu;
    absl::flat_hash_map<std::string, std::string, KeyHash, KeyEq> map ABSL_GUARDED_BY(mu);
  };
  // The shard comes from the hash's top bits; the map inside uses all.
  Shard& shard(std::string_view k) { return shards_[(KeyHash{}(k) >> 40) % shards_.size()]; }
  std::vector<Shard> shards_;
};

// Reply builders (RESP2).
void simple(std::string& out, std::string_view s) { out.append("+").append(s).append("\r\n"); }
void error(std::string& out, std::string_view s) { out.append("-").append(s).append("\r\n"); }
void integer(std::string& out, int64_t n) { out.append(":").append(std::to_string(n)).append("\r\n"); }
void bulk(std::string& out, std::string_view s) {
  out.append("$").append(std::to_string(s.size())).append("\r\n").append(s).append("\r\n");
}
void null_bulk(std::string& out) { out.append("$-1\r\n"); }

// printable() makes client bytes safe to echo inside an error line.
std::string printable(std::string_view s) {
  std::string r;
  for (char c : s.substr(0, 128)) r.push_back(c >= 0x20 && c < 0x7f ? c : '?');
  return r;
}

// execute() runs one command and appends its reply; false means "close the
// connection after the reply" (QUIT).
bool execute(Store& store, const std::vector<std::string_view>& argv, std::string& out) {
  const std::string name = to_lower(argv[0]);
  const size_t argc = argv.size();
  auto arity_error = [&] { error(out, "ERR wrong number of arguments for '" + printable(name) + "' command"); };
  if (name == "ping") {
    if (argc == 1) {
      simple(out, "PONG");
    } else if (argc == 2) {
      bulk(out, argv[1]);
    } else {
      arity_error();
    }
  } else if (name == "echo") {
    if (argc != 2) return arity_error(), true;
    bulk(out, argv[1]);
  } else if (name == "get") {
    if (argc != 2) return arity_error(), true;
    if (auto v = store.get(argv[1])) {
      bulk(out, *v);
    } else {
      null_bulk(out);
    }
  } else if (name == "set") {
    if (argc < 3) return arity_error(), true;
    if (argc > 3) return error(out, "ERR syntax error"), true;  // no EX/PX/NX/XX here
    store.set(argv[1], argv[2]);
    simple(out, "OK");
  } else if (name == "del" || name == "exists") {
    if (argc < 2) return arity_error(), true;
    int64_t n = 0;
    for (size_t i = 1; i < argc; ++i) n += (name == "del" ? store.del(argv[i]) : store.exists(argv[i])) ? 1 : 0;
    integer(out, n);
  } else if (name == "incr") {
    if (argc != 2) return arity_error(), true;
    auto v = store.incr(argv[1]);
    if (v.ok()) {
      integer(out, *v);
    } else {
      error(out, std::string(v.status().message()));
    }
  } else if (name == "command") {
    out.append("*0\r\n");  // redis-cli asks for COMMAND DOCS; no documentation here
  } else if (name == "config") {
    if (argc >= 2 && to_lower(argv[1]) == "get") {
      if (argc != 3) return arity_error(), true;
      out.append("*0\r\n");  // redis-benchmark asks for "save" and "appendonly"
    } else {
      error(out, "ERR CONFIG subcommand not supported");
    }
  } else if (name == "quit") {
    simple(out, "OK");
    return false;
  } else {
    error(out, "ERR unknown command '" + printable(argv[0]) + "'");
  }
  return true;
}

// Parser: finds complete commands at the front of the buffer.
enum class Parse { kCommand, kNeedMore, kProtocolError };

struct Parsed {
  std::vector<std::string_view> argv;  // views into the buffer
  size_t consumed = 0;                 // bytes of the command, terminators included
  std::string error;                   // for kProtocolError
};

// read_length() parses the "<prefix>N\r\n" line at `pos`: kNeedMore if the
// line is incomplete.
Parse read_length(std::string_view buf, size_t& pos, int64_t& n, const char* what, std::string& error) {
  size_t eol = buf.find("\r\n", pos);
  if (eol == std::string_view::npos) {
    if (buf.size() - pos > kMaxInline) {
      error = std::string("ERR Protocol error: too big ") + what + " count string";
      return Parse::kProtocolError;
    }
    return Parse::kNeedMore;
  }
  std::string_view digits = buf.substr(pos + 1, eol - pos - 1);
  auto [end, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), n);
  if (digits.empty() || ec != std::errc() || end != digits.data() + digits.size()) {
    error = std::string("ERR Protocol error: invalid ") + what + " length";
    return Parse::kProtocolError;
  }
  pos = eol + 2;
  return Parse::kCommand;
}

Parse parse_multibulk(std::string_view buf, int64_t max_bulk, Parsed& p) {
  size_t pos = 0;
  int64_t count = 0;
  Parse r = read_length(buf, pos, count, "multibulk", p.error);
  if (r != Parse::kCommand) return r;
  if (count > kMaxMultibulk) {
    p.error = "ERR Protocol error: invalid multibulk length";
    return Parse::kProtocolError;
  }
  for (int64_t i = 0; i < count; ++i) {
    if (pos >= buf.size()) return Parse::kNeedMore;
    if (buf[pos] != '$') {
      p.error = "ERR Protocol error: expected '$', got '" + printable(buf.substr(pos, 1)) + "'";
      return Parse::kProtocolError;
    }
    int64_t len = 0;
    r = read_length(buf, pos, len, "bulk", p.error);
    if (r != Parse::kCommand) return r;
    if (len < 0 || len > max_bulk) {
      p.error = "ERR Protocol error: invalid bulk length";
      return Parse::kProtocolError;
    }
    const size_t ulen = static_cast<size_t>(len);
    if (buf.size() - pos < ulen + 2) return Parse::kNeedMore;
    if (buf.substr(pos + ulen, 2) != "\r\n") {
      p.error = "ERR Protocol error: expected CRLF after a bulk string";
      return Parse::kProtocolError;
    }
    p.argv.push_back(buf.substr(pos, ulen));
    pos += ulen + 2;
  }
  p.consumed = pos;  // "*0" and "*-1" give an empty argv: nothing to run
  return Parse::kCommand;
}

Parse parse_inline(std::string_view buf, Parsed& p) {
  size_t eol = buf.find('\n');
  if (eol == std::string_view::npos) {
    if (buf.size() > kMaxInline) {
      p.error = "ERR Protocol error: too big inline request";
      return Parse::kProtocolError;
    }
    return Parse::kNeedMore;
  }
  std::string_view line = buf.substr(0, eol);
  if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
  size_t i = 0;
  while (i < line.size()) {
    while (i < line.size() && is_space(line[i])) ++i;
    size_t start = i;
    while (i < line.size() && !is_space(line[i])) ++i;
    if (i > start) p.argv.push_back(line.substr(start, i - start));
  }
  p.consumed = eol + 1;  // an empty line gives an empty argv
  return Parse::kCommand;
}

Parse parse_command(std::string_view buf, int64_t max_bulk, Parsed& p) {
  p.argv.clear();
  p.consumed = 0;
  return buf[0] == '*' ? parse_multibulk(buf, max_bulk, p) : parse_inline(buf, p);
}

struct Limits {
  int64_t max_bulk = 512ll * 1024 * 1024;         // proto-max-bulk-len of Redis
  int64_t max_query_buffer = 1024ll * 1024 * 1024;  // client-query-buffer-limit of Redis
};

void serve_connection(Store& store, const Limits& limits, weft::net::TcpStream s) {
  (void)s.set_nodelay(true);
  std::string in;  // unparsed bytes are in[begin, end)
  size_t begin = 0, end = 0;
  std::string out;
  Parsed p;
  for (;;) {
    if (begin == end) begin = end = 0;
    if (in.size() - end < kReadChunk / 2) {
      if (begin > 0) {  // move the partial command to the front
        in.erase(0, begin);
        end -= begin;
        begin = 0;
      }
      if (in.size() - end < kReadChunk / 2) {
        // Grow, but never far past the limit (checked below once parsed).
        size_t cap = static_cast<size_t>(limits.max_query_buffer) + kReadChunk;
        in.resize(std::min(std::max(in.size() * 2, kReadChunk), std::max(cap, in.size())));
      }
    }
    auto n = s.read({in.data() + end, in.size() - end});
    if (!n.ok() || *n == 0) return;
    end += *n;

    bool keep_open = true;
    while (keep_open && begin < end) {
      Parse r = parse_command(std::string_view(in.data() + begin, end - begin), limits.max_bulk, p);
      if (r == Parse::kNeedMore) {
        if (static_cast<int64_t>(end - begin) >= limits.max_query_buffer) {
          error(out, "ERR Protocol error: query buffer limit exceeded");
          keep_open = false;
        }
        break;
      }
      if (r == Parse::kProtocolError) {
        error(out, p.error);
        keep_open = false;
        break;
      }
      if (!p.argv.empty()) keep_open = execute(store, p.argv, out);
      begin += p.consumed;
      if (out.size() > kMaxPendingReply) {  // e.g. many GETs of a large value
        if (!s.write_all(out).ok()) return;
        out.clear();
      }
    }
    if (!out.empty()) {
      if (!s.write_all(out).ok()) return;
      out.clear();
      if (out.capacity() > (1 << 20)) out.shrink_to_fit();  // after a large GET
    }
    if (!keep_open) return;
    if (begin == end && in.size() > (1 << 20)) in = std::string();  // after a large SET
  }
}

}  // namespace

int main(int argc, char** argv) {
  weft::examples::ServerFlags server;
  Limits limits;
  int shards = 64;
  weft::examples::Flags flags("resp_server", "A Redis-protocol (RESP2) key-value server.");
  server.add_to(flags);
  flags.add("shards", &shards, "shards of the keyspace, each with its own lock");
  flags.add("max_bulk", &limits.max_bulk, "largest bulk string accepted, in bytes");
  flags.add("max_query_buffer", &limits.max_query_buffer, "largest unanswered input per connection, in bytes");
  flags.parse(argc, argv);
  if (shards < 1) flags.usage_error("--shards must be >= 1");
  if (limits.max_bulk < 1 || limits.max_query_buffer < 1) flags.usage_error("limits must be >= 1");

  Store store(static_cast<size_t>(shards));
  weft::examples::ShutdownSignal signal;
  return weft::examples::run_server("resp_server", server, signal, [&](weft::net::TcpStream s) {
    serve_connection(store, limits, std::move(s));
  });
}
