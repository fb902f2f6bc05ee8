// tools/loadgen/loadgen_lib.cc
//
// A run, step by step:
//   1. run() validates the options, resolves the host once, and fixes the
//      timeline on the steady clock: start, measure (start + warmup) and
//      end (measure + duration).
//   2. It spawns one fiber per connection and, if asked, a progress fiber.
//      Each connection fiber owns a ConnState: counters, the first error
//      and a LatencyHistogram. Nothing on the request path takes a lock;
//      the progress fiber reads two relaxed atomics per connection that
//      only their connection writes.
//   3. A connection fiber connects (trying each resolved address), sets
//      TCP_NODELAY and read/write deadlines at end + stop_grace, then runs
//      batches through its protocol Session until the end: write the
//      batch, read and check every reply, record the batch's latency once
//      per request. A batch that starts before the end is finished.
//   4. On an error the fiber records it, closes the stream and, while the
//      run is not over, reconnects after reconnect_delay.
//   5. At the end each fiber closes its stream and returns; run() joins
//      every fiber, merges counters and histograms, and builds the Report.
#include "tools/loadgen/loadgen_lib.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstring>
#include <iostream>
#include <memory>
#include <optional>
#include <span>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "net/address.h"
#include "net/resolve.h"
#include "net/tcp.h"
#include "runtime/runtime.h"
#include "tools/loadgen/histogram.h"

namespace weft::loadgen {
namespace {

// Batches larger than this are written by a helper fiber while the
// connection's fiber reads the replies, so that a peer which answers while
// it reads (echo) cannot fill both directions' buffers and deadlock us.
constexpr size_t kInlineWriteLimit = 256 * 1024;
// Longest status line, header line or RESP line accepted.
constexpr size_t kMaxLine = 64 * 1024;
// Largest message_size accepted.
constexpr size_t kMaxMessageSize = size_t{64} << 20;

// Debian's abseil has its own absl::string_view, distinct from
// std::string_view; av() bridges the two.
absl::string_view av(std::string_view s) { return absl::string_view(s.data(), s.size()); }

int64_t now_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

// The status with `what` in front of its message (code kept).
absl::Status annotate(const absl::Status& s, std::string_view what) {
  return absl::Status(s.code(), absl::StrCat(av(what), ": ", s.message()));
}

// Adds n to a counter only the calling fiber writes: no read-modify-write
// instruction, other fibers may read it at any time.
void bump(std::atomic<uint64_t>& a, uint64_t n) {
  a.store(a.load(std::memory_order_relaxed) + n, std::memory_order_relaxed);
}

// Read-only while the connection fibers run.
struct Plan {
  Options opts;
  std::vector<net::SocketAddress> addrs;
  int64_t start_ns = 0, measure_ns = 0, end_ns = 0;  // steady clock
  absl::Time start_time;  // the wall clock at start_ns, for deadlines and sleeps

  absl::Time to_time(int64_t ns) const { return start_time + absl::Nanoseconds(ns - start_ns); }
};

// One connection's results. Written only by its fiber; the progress fiber
// reads the atomics; run() reads the rest after joining the fiber.
struct alignas(64) ConnState {
  // Every completed request and every error, warmup included: for progress.
  std::atomic<uint64_t> progress_requests{0};
  std::atomic<uint64_t> progress_errors{0};
  uint64_t requests = 0, bytes = 0, errors = 0, connects = 0;
  int64_t last_done_ns = 0;
  int64_t first_error_ns = INT64_MAX;
  std::string first_error;
  LatencyHistogram hist;

  void error(const absl::Status& s) {
    ++errors;
    bump(progress_errors, 1);
    if (first_error.empty()) {
      first_error_ns = now_ns();
      first_error = absl::StrCat(absl::StatusCodeToString(s.code()), ": ", s.message());
    }
  }
};

// ByteReader: buffered reads with line and fixed-size access, for the
// protocols whose replies are not of a known size (http, resp).
class ByteReader {
 public:
  explicit ByteReader(net::TcpStream& s) : s_(s), buf_(16 * 1024) {}

  // line() is the next line without its "\r\n", valid until the next call.
  // Suspends.
  absl::StatusOr<std::string_view> line() {
    size_t scanned = 0;
    for (;;) {
      const char* b = buf_.data() + begin_;
      const void* nl = std::memchr(b + scanned, '\n', end_ - begin_ - scanned);
      if (nl != nullptr) {
        size_t len = static_cast<size_t>(static_cast<const char*>(nl) - b);
        if (len == 0 || b[len - 1] != '\r') {
          return absl::InternalError("line not ended by \\r\\n");
        }
        begin_ += len + 1;
        received_ += len + 1;
        return std::string_view(b, len - 1);
      }
      scanned = end_ - begin_;
      if (scanned >= kMaxLine) return absl::InternalError("line longer than 64 KiB");
      if (auto st = fill(scanned + 1); !st.ok()) return st;
    }
  }

  // take() is the next n bytes, valid until the next call. Suspends.
  absl::StatusOr<std::string_view> take(size_t n) {
    if (auto st = fill(n); !st.ok()) return st;
    std::string_view v(buf_.data() + begin_, n);
    begin_ += n;
    received_ += n;
    return v;
  }

  // skip() discards the next n bytes. Suspends.
  absl::Status skip(size_t n) {
    while (n > 0) {
      if (begin_ == end_) {
        if (auto st = fill(1); !st.ok()) return st;
      }
      size_t k = std::min(n, end_ - begin_);
      begin_ += k;
      received_ += k;
      n -= k;
    }
    return absl::OkStatus();
  }

  // Bytes consumed so far; reset by take_received().
  uint64_t take_received() { return std::exchange(received_, 0); }

 private:
  // Reads until at least n bytes are buffered.
  absl::Status fill(size_t n) {
    if (end_ - begin_ >= n) return absl::OkStatus();
    if (begin_ > 0) {
      std::memmove(buf_.data(), buf_.data() + begin_, end_ - begin_);
      end_ -= begin_;
      begin_ = 0;
    }
    if (buf_.size() < n) buf_.resize(std::max(n, buf_.size() * 2));
    while (end_ < n) {
      auto r = s_.read(std::span<char>(buf_.data() + end_, buf_.size() - end_));
      if (!r.ok()) return annotate(r.status(), "read");
      if (*r == 0) return absl::UnavailableError("connection closed by the server in a reply");
      end_ += *r;
    }
    return absl::OkStatus();
  }

  net::TcpStream& s_;
  std::vector<char> buf_;
  size_t begin_ = 0, end_ = 0;
  uint64_t received_ = 0;
};

// send_and_receive() writes `data` and runs `read_replies`; see
// kInlineWriteLimit. Suspends.
template <class ReadFn>
absl::Status send_and_receive(net::TcpStream& s, std::string_view data, ReadFn&& read_replies) {
  if (data.size() <= kInlineWriteLimit) {
    if (auto st = s.write_all(data); !st.ok()) return annotate(st, "write");
    return read_replies();
  }
  auto writer = weft::spawn([&s, data] { return s.write_all(data); });
  absl::Status r = read_replies();
  // A failed read leaves the writer perhaps parked on a full buffer;
  // closing wakes it. The connection is dropped after an error anyway.
  if (!r.ok()) (void)s.close();
  absl::Status w = writer.join();
  if (!r.ok()) return r;
  if (!w.ok()) return annotate(w, "write");
  return absl::OkStatus();
}

// Session: one protocol on one open connection.
class Session {
 public:
  virtual ~Session() = default;
  // batch() writes `pipeline` requests, reads and checks their replies,
  // and adds the bytes sent and received to *bytes. Suspends.
  virtual absl::Status batch(uint64_t* bytes) = 0;
};

// pattern() is `size` + 26 printable letters; a message is a `size`-byte
// slice starting at one of the first 26 offsets.
std::string pattern(size_t size) {
  std::string p(size + 26, '\0');
  for (size_t i = 0; i < p.size(); ++i) p[i] = static_cast<char>('a' + i % 26);
  return p;
}

class EchoSession final : public Session {
 public:
  EchoSession(net::TcpStream& s, const Options& o, int conn)
      : s_(s),
        size_(o.message_size),
        k_(static_cast<size_t>(o.pipeline)),
        pattern_(pattern(o.message_size)),
        out_(size_ * k_, '\0'),
        in_(size_ * k_),
        seq_(static_cast<uint64_t>(conn)) {}

  absl::Status batch(uint64_t* bytes) override {
    for (size_t m = 0; m < k_; ++m) {
      std::memcpy(out_.data() + m * size_, pattern_.data() + seq_++ % 26, size_);
    }
    absl::Status st = send_and_receive(s_, out_, [this]() -> absl::Status {
      absl::Status r = s_.read_exact(in_);
      if (r.code() == absl::StatusCode::kOutOfRange) {
        return absl::UnavailableError("connection closed by the server in a reply");
      }
      if (!r.ok()) return annotate(r, "read");
      return absl::OkStatus();
    });
    if (!st.ok()) return st;
    if (std::memcmp(out_.data(), in_.data(), out_.size()) != 0) {
      size_t i = 0;
      while (out_[i] == in_[i]) ++i;
      return absl::DataLossError(absl::StrFormat(
          "echo mismatch: byte %u of message %u of %u in the batch: sent 0x%02x, got 0x%02x",
          i % size_, i / size_ + 1, k_, static_cast<unsigned char>(out_[i]),
          static_cast<unsigned char>(in_[i])));
    }
    *bytes += 2 * out_.size();
    return absl::OkStatus();
  }

 private:
  net::TcpStream& s_;
  const size_t size_, k_;
  const std::string pattern_;
  std::string out_;
  std::vector<char> in_;
  uint64_t seq_;
};

class HttpSession final : public Session {
 public:
  HttpSession(net::TcpStream& s, const Options& o) : s_(s), reader_(s), k_(o.pipeline) {
    std::string one = absl::StrCat("GET ", o.http_path, " HTTP/1.1\r\nHost: ", o.host, "\r\n\r\n");
    for (int i = 0; i < k_; ++i) out_ += one;
  }

  absl::Status batch(uint64_t* bytes) override {
    absl::Status st = send_and_receive(s_, out_, [this]() -> absl::Status {
      for (int i = 0; i < k_; ++i) {
        if (auto r = response(); !r.ok()) return r;
      }
      return absl::OkStatus();
    });
    if (!st.ok()) return st;
    *bytes += out_.size() + reader_.take_received();
    return absl::OkStatus();
  }

 private:
  absl::Status response() {
    auto status_line = reader_.line();
    if (!status_line.ok()) return annotate(status_line.status(), "http: status line");
    std::string_view sl = *status_line;
    if (sl.size() < 12 || !absl::StartsWith(av(sl), "HTTP/1.") || sl[8] != ' ') {
      return absl::InternalError(absl::StrCat("http: bad status line '", av(sl.substr(0, 80)), "'"));
    }
    if (sl.substr(9, 3) != "200") {
      return absl::InternalError(
          absl::StrCat("http: status is not 200: '", av(sl.substr(0, 80)), "'"));
    }
    std::optional<uint64_t> length;
    for (;;) {
      auto h = reader_.line();
      if (!h.ok()) return annotate(h.status(), "http: header");
      if (h->empty()) break;
      size_t colon = h->find(':');
      if (colon == std::string_view::npos) {
        return absl::InternalError(absl::StrCat("http: bad header '", av(h->substr(0, 80)), "'"));
      }
      absl::string_view name = av(h->substr(0, colon));
      absl::string_view value = absl::StripAsciiWhitespace(av(h->substr(colon + 1)));
      if (absl::EqualsIgnoreCase(name, "content-length")) {
        uint64_t n;
        if (!absl::SimpleAtoi(value, &n)) {
          return absl::InternalError(absl::StrCat("http: bad Content-Length '", value, "'"));
        }
        length = n;
      } else if (absl::EqualsIgnoreCase(name, "transfer-encoding") &&
                 !absl::EqualsIgnoreCase(value, "identity")) {
        return absl::UnimplementedError(
            absl::StrCat("http: Transfer-Encoding '", value, "' is not supported"));
      }
    }
    if (!length) return absl::InternalError("http: response without Content-Length");
    if (auto st = reader_.skip(*length); !st.ok()) return annotate(st, "http: body");
    return absl::OkStatus();
  }

  net::TcpStream& s_;
  ByteReader reader_;
  const int k_;
  std::string out_;
};

class RespSession final : public Session {
 public:
  RespSession(net::TcpStream& s, const Options& o, int conn)
      : s_(s),
        reader_(s),
        k_(o.pipeline),
        size_(o.message_size),
        pattern_(pattern(o.message_size)),
        key_(absl::StrCat("key:", conn)),
        seq_(static_cast<uint64_t>(conn)) {
    set_prefix_ = absl::StrCat("*3\r\n$3\r\nSET\r\n$", key_.size(), "\r\n", key_, "\r\n$", size_,
                               "\r\n");
    get_ = absl::StrCat("*2\r\n$3\r\nGET\r\n$", key_.size(), "\r\n", key_, "\r\n");
  }

  absl::Status batch(uint64_t* bytes) override {
    // Command i of the connection is a SET when i is even, else a GET of
    // the value set just before; expected_[] holds each command's value
    // offset in pattern_ (SIZE_MAX: a SET).
    out_.clear();
    expected_.clear();
    for (int i = 0; i < k_; ++i, ++command_) {
      if (command_ % 2 == 0) {
        last_set_ = seq_++ % 26;
        out_ += set_prefix_;
        out_.append(pattern_.data() + last_set_, size_);
        out_ += "\r\n";
        expected_.push_back(SIZE_MAX);
      } else {
        out_ += get_;
        expected_.push_back(last_set_);
      }
    }
    absl::Status st = send_and_receive(s_, out_, [this]() -> absl::Status {
      for (size_t e : expected_) {
        if (auto r = e == SIZE_MAX ? set_reply() : get_reply(e); !r.ok()) return r;
      }
      return absl::OkStatus();
    });
    if (!st.ok()) return st;
    *bytes += out_.size() + reader_.take_received();
    return absl::OkStatus();
  }

 private:
  absl::Status set_reply() {
    auto l = reader_.line();
    if (!l.ok()) return annotate(l.status(), "resp: SET reply");
    if (*l != "+OK") {
      return absl::InternalError(absl::StrCat("resp: SET ", key_, " replied '",
                                              av(l->substr(0, 80)), "', expected '+OK'"));
    }
    return absl::OkStatus();
  }

  absl::Status get_reply(size_t offset) {
    auto l = reader_.line();
    if (!l.ok()) return annotate(l.status(), "resp: GET reply");
    int64_t n;
    if (l->empty() || (*l)[0] != '$' || !absl::SimpleAtoi(av(l->substr(1)), &n)) {
      return absl::InternalError(absl::StrCat("resp: GET ", key_, " replied '", av(l->substr(0, 80)),
                                              "', expected a bulk string"));
    }
    if (n < 0) return absl::DataLossError(absl::StrCat("resp mismatch: GET ", key_, " is nil"));
    if (static_cast<uint64_t>(n) != size_) {
      return absl::DataLossError(absl::StrCat("resp mismatch: GET ", key_, " returned ", n,
                                              " bytes, expected ", size_));
    }
    auto v = reader_.take(size_ + 2);
    if (!v.ok()) return annotate(v.status(), "resp: GET value");
    std::string_view want(pattern_.data() + offset, size_);
    if (v->substr(0, size_) != want) {
      size_t i = 0;
      while ((*v)[i] == want[i]) ++i;
      return absl::DataLossError(absl::StrFormat(
          "resp mismatch: GET %s byte %u: expected 0x%02x, got 0x%02x", key_, i,
          static_cast<unsigned char>(want[i]), static_cast<unsigned char>((*v)[i])));
    }
    if (v->substr(size_) != "\r\n") {
      return absl::InternalError("resp: bulk string not ended by \\r\\n");
    }
    return absl::OkStatus();
  }

  net::TcpStream& s_;
  ByteReader reader_;
  const int k_;
  const size_t size_;
  const std::string pattern_;
  const std::string key_;
  std::string set_prefix_, get_;
  std::string out_;
  std::vector<size_t> expected_;
  uint64_t seq_;
  uint64_t command_ = 0;
  size_t last_set_ = 0;
};

std::unique_ptr<Session> make_session(net::TcpStream& s, const Options& o, int conn) {
  switch (o.mode) {
    case Mode::kEcho:
      return std::make_unique<EchoSession>(s, o, conn);
    case Mode::kHttp:
      return std::make_unique<HttpSession>(s, o);
    case Mode::kResp:
      return std::make_unique<RespSession>(s, o, conn);
  }
  return nullptr;
}

// Tries each address in turn; the last failure if none accepts. Suspends.
absl::StatusOr<net::TcpStream> connect_any(const Plan& plan) {
  absl::Duration left = plan.to_time(plan.end_ns) + plan.opts.stop_grace - absl::Now();
  absl::Duration timeout = std::max(std::min(plan.opts.connect_timeout, left), absl::Milliseconds(1));
  absl::Status last;
  for (const auto& a : plan.addrs) {
    auto s = net::TcpStream::connect(a, timeout);
    if (s.ok()) return s;
    last = annotate(s.status(), absl::StrCat("connect ", a.to_string()));
  }
  return last;
}

// Runs batches on one open connection until the end of the run or an
// error. Suspends.
absl::Status drive(const Plan& plan, int conn, ConnState& st, net::TcpStream& s) {
  const Options& o = plan.opts;
  // Small requests: do not let Nagle hold them back.
  if (auto r = s.set_nodelay(true); !r.ok()) return annotate(r, "TCP_NODELAY");
  absl::Time stop_by = plan.to_time(plan.end_ns) + o.stop_grace;
  if (auto r = s.set_read_deadline(stop_by); !r.ok()) return annotate(r, "read deadline");
  if (auto r = s.set_write_deadline(stop_by); !r.ok()) return annotate(r, "write deadline");
  std::unique_ptr<Session> session = make_session(s, o, conn);
  const uint64_t k = static_cast<uint64_t>(o.pipeline);
  for (;;) {
    int64_t t0 = now_ns();
    if (t0 >= plan.end_ns) return absl::OkStatus();
    uint64_t bytes = 0;
    absl::Status r = session->batch(&bytes);
    int64_t t1 = now_ns();
    if (!r.ok()) {
      if (r.code() == absl::StatusCode::kDeadlineExceeded && t1 >= plan.end_ns) {
        return annotate(r, "no reply within stop_grace after the end of the run");
      }
      return r;
    }
    bump(st.progress_requests, k);
    if (t0 >= plan.measure_ns) {
      st.requests += k;
      st.bytes += bytes;
      st.hist.record(static_cast<uint64_t>(t1 - t0), k);
      st.last_done_ns = t1;
    }
  }
}

// The body of a connection fiber. Suspends.
void run_connection(const Plan& plan, int conn, ConnState& st) {
  while (now_ns() < plan.end_ns) {
    absl::Status err;
    if (auto s = connect_any(plan); !s.ok()) {
      err = s.status();
    } else {
      ++st.connects;
      err = drive(plan, conn, st, *s);
      (void)s->close();
    }
    if (err.ok()) break;
    st.error(err);
    absl::Time wake = std::min(absl::Now() + plan.opts.reconnect_delay, plan.to_time(plan.end_ns));
    (void)this_fiber::sleep_until(wake);
  }
}

// The body of the progress fiber. Suspends.
void run_progress(const Plan& plan, const std::vector<std::unique_ptr<ConnState>>& conns) {
  std::ostream& out = plan.opts.progress_out != nullptr ? *plan.opts.progress_out : std::cerr;
  int64_t interval = std::max<int64_t>(absl::ToInt64Nanoseconds(plan.opts.progress_interval),
                                       1'000'000);
  int64_t last_ns = plan.start_ns;
  uint64_t last_requests = 0;
  for (int64_t next = plan.start_ns + interval; next <= plan.end_ns; next += interval) {
    (void)this_fiber::sleep_until(plan.to_time(next));
    int64_t now = now_ns();
    uint64_t requests = 0, errors = 0;
    for (const auto& c : conns) {
      requests += c->progress_requests.load(std::memory_order_relaxed);
      errors += c->progress_errors.load(std::memory_order_relaxed);
    }
    double rate = static_cast<double>(requests - last_requests) /
                  (static_cast<double>(std::max<int64_t>(now - last_ns, 1)) / 1e9);
    out << absl::StrFormat("[loadgen] %6.1fs  requests %10u  rate %10.0f/s  errors %u%s\n",
                           static_cast<double>(now - plan.start_ns) / 1e9, requests, rate, errors,
                           now < plan.measure_ns ? "  (warmup)" : "");
    out.flush();
    last_ns = now;
    last_requests = requests;
  }
}

absl::Status validate(const Options& o) {
  if (o.port == 0) return absl::InvalidArgumentError("loadgen: a port is required");
  if (o.host.empty()) return absl::InvalidArgumentError("loadgen: empty host");
  if (o.connections < 1) return absl::InvalidArgumentError("loadgen: connections must be >= 1");
  if (o.pipeline < 1) return absl::InvalidArgumentError("loadgen: pipeline must be >= 1");
  if (o.duration <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError("loadgen: duration must be > 0");
  }
  if (o.warmup < absl::ZeroDuration() || o.stop_grace < absl::ZeroDuration() ||
      o.reconnect_delay < absl::ZeroDuration() || o.connect_timeout <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError("loadgen: negative warmup, stop_grace or reconnect_delay, "
                                      "or connect_timeout <= 0");
  }
  if (o.mode == Mode::kEcho && o.message_size == 0) {
    return absl::InvalidArgumentError("loadgen: echo needs message_size >= 1");
  }
  if (o.message_size > kMaxMessageSize) {
    return absl::InvalidArgumentError("loadgen: message_size above 64 MiB");
  }
  if (o.mode == Mode::kHttp &&
      (o.http_path.empty() || o.http_path.find_first_of(" \r\n") != std::string::npos)) {
    return absl::InvalidArgumentError("loadgen: http_path must be non-empty, without spaces");
  }
  return absl::OkStatus();
}

std::string describe(const Options& o) {
  std::string d = absl::StrCat(mode_name(o.mode), " ", o.host, ":", o.port, ", ", o.connections,
                               o.connections == 1 ? " connection" : " connections");
  if (o.mode == Mode::kEcho) absl::StrAppend(&d, ", ", o.message_size, " B messages");
  if (o.mode == Mode::kResp) absl::StrAppend(&d, ", ", o.message_size, " B values");
  if (o.mode == Mode::kHttp) absl::StrAppend(&d, ", GET ", o.http_path);
  absl::StrAppend(&d, ", pipeline ", o.pipeline);
  return d;
}

}  // namespace

const char* mode_name(Mode m) {
  switch (m) {
    case Mode::kEcho:
      return "echo";
    case Mode::kHttp:
      return "http";
    case Mode::kResp:
      return "resp";
  }
  return "?";
}

absl::StatusOr<Mode> parse_mode(std::string_view name) {
  for (Mode m : {Mode::kEcho, Mode::kHttp, Mode::kResp}) {
    if (name == mode_name(m)) return m;
  }
  return absl::InvalidArgumentError(
      absl::StrCat("unknown mode '", av(name), "' (expected echo, http or resp)"));
}

absl::StatusOr<Report> run(const Options& options) {
  WEFT_CHECK(this_fiber::on_fiber(), "weft::loadgen::run() must be called on a fiber of a Runtime");
  if (auto st = validate(options); !st.ok()) return st;
  auto addrs = net::resolve(options.host, options.port);
  if (!addrs.ok()) return annotate(addrs.status(), absl::StrCat("loadgen: resolve ", options.host));
  if (addrs->empty()) return absl::NotFoundError(absl::StrCat("loadgen: no address for ", options.host));

  Plan plan;
  plan.opts = options;
  plan.addrs = std::move(*addrs);
  plan.start_time = absl::Now();
  plan.start_ns = now_ns();
  plan.measure_ns = plan.start_ns + absl::ToInt64Nanoseconds(options.warmup);
  plan.end_ns = plan.measure_ns + absl::ToInt64Nanoseconds(options.duration);

  std::vector<std::unique_ptr<ConnState>> conns;
  conns.reserve(static_cast<size_t>(options.connections));
  for (int i = 0; i < options.connections; ++i) conns.push_back(std::make_unique<ConnState>());
  std::vector<JoinHandle<void>> fibers;
  fibers.reserve(conns.size() + 1);
  for (int i = 0; i < options.connections; ++i) {
    ConnState* st = conns[static_cast<size_t>(i)].get();
    fibers.push_back(weft::spawn([&plan, i, st] { run_connection(plan, i, *st); }));
  }
  if (options.progress) fibers.push_back(weft::spawn([&plan, &conns] { run_progress(plan, conns); }));
  for (auto& f : fibers) f.join();

  Report r;
  r.description = describe(options);
  LatencyHistogram hist;
  int64_t last_done = plan.measure_ns;
  int64_t first_error_ns = INT64_MAX;
  for (const auto& c : conns) {
    r.requests += c->requests;
    r.bytes += c->bytes;
    r.errors += c->errors;
    r.connects += c->connects;
    hist.merge(c->hist);
    last_done = std::max(last_done, c->last_done_ns);
    if (!c->first_error.empty() && c->first_error_ns < first_error_ns) {
      first_error_ns = c->first_error_ns;
      r.first_error = c->first_error;
    }
  }
  // The window ends at the last counted reply, but never before the
  // nominal end (a run whose connections all failed still took that long).
  last_done = std::max(last_done, std::min(now_ns(), plan.end_ns));
  r.seconds = static_cast<double>(last_done - plan.measure_ns) / 1e9;
  r.requests_per_sec = r.seconds > 0 ? static_cast<double>(r.requests) / r.seconds : 0;
  r.p50_us = static_cast<double>(hist.value_at_quantile(0.50)) / 1e3;
  r.p99_us = static_cast<double>(hist.value_at_quantile(0.99)) / 1e3;
  r.p999_us = static_cast<double>(hist.value_at_quantile(0.999)) / 1e3;
  r.max_us = static_cast<double>(hist.max()) / 1e3;
  r.mean_us = hist.mean() / 1e3;
  return r;
}

std::string format_machine_line(const Report& r) {
  return absl::StrFormat(
      "requests_per_sec=%.1f p50_us=%.1f p99_us=%.1f p999_us=%.1f errors=%u max_us=%.1f "
      "requests=%u",
      r.requests_per_sec, r.p50_us, r.p99_us, r.p999_us, r.errors, r.max_us, r.requests);
}

std::string format_report(const Report& r) {
  std::string out = absl::StrFormat("loadgen: %s\n", r.description);
  absl::StrAppendFormat(&out, "  duration     %.2f s measured\n", r.seconds);
  absl::StrAppendFormat(&out, "  requests     %u  (%.1f/s)\n", r.requests, r.requests_per_sec);
  absl::StrAppendFormat(&out, "  bytes        %u  (%.2f MiB/s, sent + received)\n", r.bytes,
                        r.seconds > 0 ? static_cast<double>(r.bytes) / r.seconds / (1 << 20) : 0);
  absl::StrAppendFormat(&out, "  connects     %u\n", r.connects);
  absl::StrAppendFormat(&out, "  latency us   p50 %.1f  p99 %.1f  p99.9 %.1f  max %.1f  mean %.1f\n",
                        r.p50_us, r.p99_us, r.p999_us, r.max_us, r.mean_us);
  absl::StrAppendFormat(&out, "  errors       %u\n", r.errors);
  if (!r.first_error.empty()) absl::StrAppendFormat(&out, "  first error  %s\n", r.first_error);
  out += format_machine_line(r);
  out += '\n';
  return out;
}

}  // namespace weft::loadgen
