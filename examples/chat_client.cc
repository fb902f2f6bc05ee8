// chat_client: a line-oriented terminal client for chat_server (or any
// line server, e.g. echo_server). One fiber reads lines from standard input
// and sends them; another prints what the server sends. At end of input
// (Ctrl-D, or the end of a pipe) it half-closes the connection and prints
// what still arrives until the server closes or --linger_ms passes.
//
//   bazel run -c opt //examples:chat_client -- --port 7001
//   printf 'hello\n' | chat_client --port 7000        # against echo_server
//   chat_client --unix /tmp/chat.sock                   # chat_server --unix /tmp/chat.sock
//
// Shows: net::stdin_stream() (the poller for a terminal or a pipe, the
// blocking pool for a file), BufferedReader::read_line on stdin, a reader
// and a writer fiber on one TcpStream. The terminal's flags are restored on
// exit.
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <string>

#include "examples/example_util.h"
#include "net/net.h"
#include "net/stdin.h"
#include "net/unix.h"
#include "runtime/runtime.h"

int main(int argc, char** argv) {
  std::string host = "127.0.0.1";
  int port = 0;
  int64_t linger_ms = 2000;
  std::string unix_path;
  weft::examples::Flags flags("chat_client",
                              "Sends lines typed on standard input to a line server and prints "
                              "what it sends back.");
  flags.add("host", &host, "server address");
  flags.add("port", &port, "server port");
  flags.add("unix", &unix_path, "connect to this UNIX socket path (or @NAME) instead");
  flags.add("linger_ms", &linger_ms,
            "after end of input, how long to keep printing what the server sends");
  flags.parse(argc, argv);
  if (unix_path.empty() && (port <= 0 || port > 65535)) {
    flags.usage_error("--port must be 1..65535 (or give --unix)");
  }
  if (linger_ms < 0) flags.usage_error("--linger_ms must be >= 0");

  auto rt = weft::Runtime::create({.workers = 1});
  if (!rt.ok()) {
    std::fprintf(stderr, "chat_client: %s\n", rt.status().ToString().c_str());
    return 1;
  }
  int rc = (*rt)->block_on([&]() -> int {
    absl::StatusOr<weft::net::TcpStream> conn;
    if (!unix_path.empty()) {
      auto addr = weft::net::SocketAddress::parse("unix:" + unix_path);
      if (!addr.ok()) {
        std::fprintf(stderr, "chat_client: %s\n", addr.status().ToString().c_str());
        return 1;
      }
      auto u = weft::net::UnixStream::connect(*addr, absl::Seconds(10));
      if (u.ok()) {
        conn = std::move(*u).into_stream();
      } else {
        conn = u.status();
      }
    } else {
      auto addr = weft::examples::resolve_one(host, static_cast<uint16_t>(port));
      if (!addr.ok()) {
        std::fprintf(stderr, "chat_client: %s\n", addr.status().ToString().c_str());
        return 1;
      }
      conn = weft::net::TcpStream::connect(*addr, absl::Seconds(10));
    }
    if (!conn.ok()) {
      std::fprintf(stderr, "chat_client: %s\n", conn.status().ToString().c_str());
      return 1;
    }
    auto in = weft::net::stdin_stream();
    if (!in.ok()) {
      std::fprintf(stderr, "chat_client: %s\n", in.status().ToString().c_str());
      return 1;
    }
    std::atomic<bool> server_closed{false};
    // What the server sends, line by line, to stdout.
    auto printer = weft::spawn([&] {
      weft::net::BufferedReader r(*conn);
      std::string line;
      absl::Status s;
      while ((s = r.read_line(&line)).ok()) {
        std::fwrite(line.data(), 1, line.size(), stdout);
        std::fputc('\n', stdout);
        std::fflush(stdout);
      }
      server_closed.store(true);
      if (s.code() != absl::StatusCode::kOutOfRange && s.code() != absl::StatusCode::kCancelled) {
        std::fprintf(stderr, "chat_client: %s\n", s.ToString().c_str());
      }
    });
    weft::net::BufferedReader typed(*in);
    std::string line;
    absl::Status s;
    int result = 0;
    while ((s = typed.read_line(&line)).ok()) {
      line += '\n';
      if (absl::Status w = conn->write_all(line); !w.ok()) {
        std::fprintf(stderr, "chat_client: send: %s\n", w.ToString().c_str());
        result = 1;
        break;
      }
    }
    if (result == 0 && s.code() != absl::StatusCode::kOutOfRange) {
      std::fprintf(stderr, "chat_client: reading standard input: %s\n", s.ToString().c_str());
      result = 1;
    }
    (void)in->close();  // restores stdin's flags
    (void)conn->shutdown(weft::net::Shutdown::kWrite);
    for (int64_t waited = 0; waited < linger_ms && !server_closed.load(); waited += 10) {
      (void)weft::this_fiber::sleep_for(absl::Milliseconds(10));
    }
    (void)conn->close();  // wakes the printer
    printer.join();
    return result;
  });
  return rc;
}
