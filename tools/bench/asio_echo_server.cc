// tools/bench/asio_echo_server.cc
//
// A same-run baseline for weft's echo_server: Boost.Asio (header-only in
// Boost 1.74) with one io_context per thread, the layout Asio's own
// examples recommend for throughput (io_context_pool in the HTTP server 2
// example). tools/bench/net_bench.sh runs it in its echo section next to
// raw_epoll_server and weft's echo_server, with the same load generator.
//
//   asio_echo_server --host 127.0.0.1 --port 0 --threads 2
//
// It prints exactly `listening on HOST:PORT` (flushed) once it listens, and
// exits with status 0 on SIGINT or SIGTERM.
//
// How it works:
//   - --threads N io_contexts, each run by its own thread (concurrency hint
//     1, so Asio drops its internal locking). The acceptor lives on the
//     first one; each accepted socket is moved onto the next io_context
//     round-robin and never leaves it, so a connection's handlers always
//     run on one thread and no connection is shared between threads.
//   - Each connection owns one 16 KiB buffer (the size weft's echo_server
//     reads into), allocated once at accept. async_read_some into it,
//     async_write of what was read, then read again: one handler per read
//     and one per write, no allocation per message beyond what Asio's
//     handler recycling already reuses.
//   - TCP_NODELAY on every accepted socket.
#include <signal.h>

#include <array>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include <boost/asio/buffer.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/write.hpp>

namespace {

namespace asio = boost::asio;
using asio::ip::tcp;

constexpr size_t kBufferSize = 16 * 1024;

// One accepted connection; owned by the shared_ptrs its pending handlers
// hold, so it lives until its last read or write completes.
class Connection : public std::enable_shared_from_this<Connection> {
 public:
  explicit Connection(tcp::socket socket) : socket_(std::move(socket)) {}

  void start() { read(); }

 private:
  void read() {
    socket_.async_read_some(asio::buffer(buf_),
                            [self = shared_from_this()](const boost::system::error_code& ec, size_t n) {
                              if (!ec) self->write(n);
                            });
  }

  void write(size_t n) {
    asio::async_write(socket_, asio::buffer(buf_.data(), n),
                      [self = shared_from_this()](const boost::system::error_code& ec, size_t) {
                        if (!ec) self->read();
                      });
  }

  tcp::socket socket_;
  std::array<char, kBufferSize> buf_;
};

class Server {
 public:
  Server(const std::string& host, const std::string& port, int threads) : contexts_(threads) {
    for (auto& c : contexts_) {
      c = std::make_unique<asio::io_context>(1);
      guards_.emplace_back(asio::make_work_guard(*c));
    }
    acceptor_.emplace(*contexts_[0]);
    tcp::resolver resolver(*contexts_[0]);
    tcp::endpoint ep = *resolver.resolve(host, port, tcp::resolver::passive | tcp::resolver::numeric_host |
                                                         tcp::resolver::numeric_service)
                            .begin();
    acceptor_->open(ep.protocol());
    acceptor_->set_option(tcp::acceptor::reuse_address(true));
    acceptor_->bind(ep);
    acceptor_->listen(asio::socket_base::max_listen_connections);
  }

  tcp::endpoint local_endpoint() const { return acceptor_->local_endpoint(); }

  // run() serves until SIGINT or SIGTERM; returns 0.
  int run() {
    asio::signal_set signals(*contexts_[0], SIGINT, SIGTERM);
    signals.async_wait([this](const boost::system::error_code&, int) {
      // Connections are left to exit(); the kernel closes their sockets.
      for (auto& c : contexts_) c->stop();
    });
    accept();
    std::vector<std::thread> threads;
    for (size_t i = 1; i < contexts_.size(); ++i) threads.emplace_back([c = contexts_[i].get()] { c->run(); });
    contexts_[0]->run();
    for (auto& t : threads) t.join();
    return 0;
  }

 private:
  void accept() {
    asio::io_context& target = *contexts_[next_++ % contexts_.size()];
    acceptor_->async_accept(target, [this](const boost::system::error_code& ec, tcp::socket socket) {
      if (!ec) {
        boost::system::error_code ignored;
        socket.set_option(tcp::no_delay(true), ignored);
        // The socket belongs to `target`: start it there, on its thread.
        auto ex = socket.get_executor();
        auto conn = std::make_shared<Connection>(std::move(socket));
        asio::post(ex, [conn] { conn->start(); });
      } else if (ec == asio::error::operation_aborted) {
        return;
      }
      accept();
    });
  }

  std::vector<std::unique_ptr<asio::io_context>> contexts_;
  std::vector<asio::executor_work_guard<asio::io_context::executor_type>> guards_;
  std::optional<tcp::acceptor> acceptor_;
  size_t next_ = 0;
};

[[noreturn]] void usage() {
  std::fprintf(stderr, "usage: asio_echo_server [--host 127.0.0.1] [--port 0] [--threads 1]\n");
  std::exit(2);
}

}  // namespace

int main(int argc, char** argv) {
  std::string host = "127.0.0.1", port = "0";
  int threads = 1;
  for (int i = 1; i < argc; ++i) {
    std::string name = argv[i], value;
    if (auto eq = name.find('='); eq != std::string::npos) {
      value = name.substr(eq + 1);
      name.resize(eq);
    } else if (i + 1 < argc) {
      value = argv[++i];
    } else {
      usage();
    }
    if (name == "--host") {
      host = value;
    } else if (name == "--port") {
      port = value;
    } else if (name == "--threads") {
      threads = std::atoi(value.c_str());
      if (threads < 1 || threads > 1024) usage();
    } else {
      usage();
    }
  }
  signal(SIGPIPE, SIG_IGN);
  try {
    Server server(host, port, threads);
    tcp::endpoint ep = server.local_endpoint();
    std::string h = ep.address().to_string();
    if (ep.address().is_v6()) h = "[" + h + "]";
    std::printf("listening on %s:%u\n", h.c_str(), static_cast<unsigned>(ep.port()));
    std::fflush(stdout);
    return server.run();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "asio_echo_server: %s\n", e.what());
    return 1;
  }
}
