// tools/loadgen/reference_servers.cc
//
// Lifetime of a server:
//   1. start() binds the listener and spawns the accept fiber.
//   2. Each accepted connection gets a fiber and a shared_ptr to its
//      stream, kept in conns_ by the accept fiber; the accept fiber joins
//      the fibers of connections that have ended as it goes.
//   3. stop() closes the listener, which wakes accept() with kCancelled
//      and ends the accept fiber; joins it; then closes every stream
//      (waking fibers parked in read) and joins every connection fiber.
#include "tools/loadgen/reference_servers.h"

#include <algorithm>
#include <cctype>
#include <cstring>
#include <mutex>
#include <string_view>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"

namespace weft::loadgen {

absl::StatusOr<std::unique_ptr<ReferenceServer>> ReferenceServer::start(const ServerOptions& options) {
  net::ListenOptions lo;
  lo.backlog = options.backlog;
  auto l = net::TcpListener::bind(options.address, lo);
  if (!l.ok()) return l.status();
  auto addr = l->local_address();
  if (!addr.ok()) return addr.status();
  std::unique_ptr<ReferenceServer> s(new ReferenceServer(options));
  s->listener_ = std::move(*l);
  s->address_ = *addr;
  ReferenceServer* self = s.get();
  s->acceptor_ = weft::spawn([self] { self->accept_loop(); });
  return s;
}

ReferenceServer::~ReferenceServer() { stop(); }

void ReferenceServer::stop() {
  if (stopped_) return;
  stopped_ = true;
  (void)listener_.close();
  acceptor_.join();
  for (auto& c : conns_) (void)c.stream->close();
  for (auto& c : conns_) c.fiber.join();
  conns_.clear();
}

void ReferenceServer::accept_loop() {
  for (;;) {
    auto a = listener_.accept();
    if (!a.ok()) {
      // Out of descriptors: accept() backs off by itself; keep serving.
      if (a.status().code() == absl::StatusCode::kResourceExhausted) continue;
      return;  // closed by stop()
    }
    accepted_.fetch_add(1, std::memory_order_relaxed);
    auto stream = std::make_shared<net::TcpStream>(std::move(a->stream));
    (void)stream->set_nodelay(true);
    auto fiber = weft::spawn([this, stream] {
      switch (options_.mode) {
        case Mode::kEcho:
          serve_echo(*stream);
          break;
        case Mode::kHttp:
          serve_http(*stream);
          break;
        case Mode::kResp:
          serve_resp(*stream);
          break;
      }
      (void)stream->close();
    });
    // Join the fibers of connections that have ended.
    auto done = std::partition(conns_.begin(), conns_.end(),
                               [](const Conn& c) { return !c.fiber.is_finished(); });
    for (auto it = done; it != conns_.end(); ++it) it->fiber.join();
    conns_.erase(done, conns_.end());
    conns_.push_back({std::move(stream), std::move(fiber)});
  }
}

void ReferenceServer::serve_echo(net::TcpStream& s) {
  std::vector<char> buf(64 * 1024);
  for (;;) {
    auto n = s.read(buf);
    if (!n.ok() || *n == 0) return;
    if (options_.corrupt_after >= 0 && !corrupted_.load(std::memory_order_relaxed)) {
      int64_t before = echoed_.fetch_add(static_cast<int64_t>(*n), std::memory_order_relaxed);
      int64_t at = options_.corrupt_after - before;
      if (at >= 0 && at < static_cast<int64_t>(*n) && !corrupted_.exchange(true)) {
        buf[static_cast<size_t>(at)] ^= 0x20;
      }
    }
    if (!s.write_all(std::string_view(buf.data(), *n)).ok()) return;
  }
}

void ReferenceServer::serve_http(net::TcpStream& s) {
  static constexpr std::string_view kResponse =
      "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 12\r\n\r\nhello, weft\n";
  std::string in, out;
  std::vector<char> buf(16 * 1024);
  size_t scan = 0;
  for (;;) {
    auto n = s.read(buf);
    if (!n.ok() || *n == 0) return;
    in.append(buf.data(), *n);
    size_t begin = 0;
    for (;;) {
      size_t end = in.find("\r\n\r\n", std::max(begin, scan));
      if (end == std::string::npos) break;
      out += kResponse;
      begin = end + 4;
      scan = begin;
    }
    in.erase(0, begin);
    scan = in.size() >= 3 ? in.size() - 3 : 0;
    if (!out.empty()) {
      if (!s.write_all(out).ok()) return;
      out.clear();
    }
  }
}

namespace {

// parse_command() reads one RESP array of bulk strings from the front of
// `in`. Returns 1 and sets *used and *args when complete, 0 when more bytes
// are needed, -1 on a protocol error.
int parse_command(std::string_view in, size_t* used, std::vector<std::string_view>* args) {
  size_t pos = 0;
  auto line = [&](std::string_view* l) -> int {
    size_t e = in.find("\r\n", pos);
    if (e == std::string_view::npos) return in.size() - pos > 64 ? -1 : 0;
    *l = in.substr(pos, e - pos);
    pos = e + 2;
    return 1;
  };
  std::string_view l;
  if (int r = line(&l); r != 1) return r;
  int64_t n;
  if (l.empty() || l[0] != '*' || !absl::SimpleAtoi(absl::string_view(l.data() + 1, l.size() - 1), &n) || n < 1 || n > 64) return -1;
  args->clear();
  for (int64_t i = 0; i < n; ++i) {
    if (int r = line(&l); r != 1) return r;
    int64_t len;
    if (l.empty() || l[0] != '$' || !absl::SimpleAtoi(absl::string_view(l.data() + 1, l.size() - 1), &len) || len < 0) return -1;
    size_t ulen = static_cast<size_t>(len);
    if (in.size() - pos < ulen + 2) return 0;
    if (in.substr(pos + ulen, 2) != "\r\n") return -1;
    args->push_back(in.substr(pos, ulen));
    pos += ulen + 2;
  }
  *used = pos;
  return 1;
}

}  // namespace

void ReferenceServer::serve_resp(net::TcpStream& s) {
  std::string in, out;
  std::vector<char> buf(64 * 1024);
  std::vector<std::string_view> args;
  for (;;) {
    auto n = s.read(buf);
    if (!n.ok() || *n == 0) return;
    in.append(buf.data(), *n);
    size_t begin = 0;
    for (;;) {
      size_t used = 0;
      int r = parse_command(std::string_view(in).substr(begin), &used, &args);
      if (r == 0) break;
      if (r < 0) {
        out += "-ERR protocol error\r\n";
        (void)s.write_all(out);
        return;
      }
      begin += used;
      std::string cmd(args[0]);
      for (char& c : cmd) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
      if (cmd == "SET" && args.size() == 3) {
        std::lock_guard<Mutex> g(store_mu_);
        store_[std::string(args[1])] = std::string(args[2]);
        out += "+OK\r\n";
      } else if (cmd == "GET" && args.size() == 2) {
        std::lock_guard<Mutex> g(store_mu_);
        auto it = store_.find(std::string(args[1]));
        if (it == store_.end()) {
          out += "$-1\r\n";
        } else {
          absl::StrAppend(&out, "$", it->second.size(), "\r\n", it->second, "\r\n");
        }
      } else if (cmd == "PING" && args.size() == 1) {
        out += "+PONG\r\n";
      } else {
        absl::StrAppend(&out, "-ERR unknown command '", cmd, "'\r\n");
      }
    }
    in.erase(0, begin);
    if (!out.empty()) {
      if (!s.write_all(out).ok()) return;
      out.clear();
    }
  }
}

}  // namespace weft::loadgen
