// tools/loadgen/reference_servers.h
//
// weft::loadgen::ReferenceServer: minimal servers on weft::net for each
// loadgen protocol, one fiber per connection. loadgen's tests run against
// them, and //tools/loadgen:reference_server serves them for measuring.
//
//   auto server = weft::loadgen::ReferenceServer::start({.mode = Mode::kEcho});
//   uint16_t port = (*server)->port();
//   ...                                   // run load against it
//   (*server)->stop();
//
//   kEcho  writes back every byte it reads. With corrupt_after = n, it
//          flips one byte (exactly once per server) at stream offset n of
//          the bytes echoed so far, summed over connections.
//   kHttp  answers each request (bytes up to "\r\n\r\n"; request bodies
//          are not supported) with "200 OK" and a 12-byte body; pipelined
//          requests are answered in one write.
//   kResp  Redis protocol subset: arrays of bulk strings; SET key value
//          (+OK), GET key (bulk string or nil), PING (+PONG); anything else
//          is an -ERR reply. One key space per server.
//
// These are test and measuring aids, not production servers: no limits on
// request size beyond memory, no idle timeouts.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "net/address.h"
#include "net/tcp.h"
#include "runtime/runtime.h"
#include "sync/mutex.h"
#include "tools/loadgen/loadgen_lib.h"

namespace weft::loadgen {

struct ServerOptions {
  Mode mode = Mode::kEcho;
  net::SocketAddress address = net::SocketAddress::loopback_v4(0);  // port 0: any free port
  // kEcho only: flip one byte at this offset of the echoed bytes (-1: never).
  int64_t corrupt_after = -1;
  int backlog = 1024;
};

class ReferenceServer {
 public:
  // ReferenceServer::start()
  //
  // Binds, listens and starts accepting on a new fiber. Must run on a
  // fiber. Suspends.
  static absl::StatusOr<std::unique_ptr<ReferenceServer>> start(const ServerOptions& options);

  // The destructor calls stop(); so it must run on a fiber too.
  ~ReferenceServer();
  ReferenceServer(const ReferenceServer&) = delete;
  ReferenceServer& operator=(const ReferenceServer&) = delete;

  net::SocketAddress address() const { return address_; }
  uint16_t port() const { return address_.port(); }

  // ReferenceServer::stop()
  //
  // Closes the listener and every open connection, and joins every fiber
  // of the server. Idempotent. Must be called on a fiber, not concurrently
  // with itself. Suspends.
  void stop();

  // Connections accepted so far. Any thread.
  uint64_t accepted() const { return accepted_.load(std::memory_order_relaxed); }

 private:
  struct Conn {
    std::shared_ptr<net::TcpStream> stream;
    JoinHandle<void> fiber;
  };

  explicit ReferenceServer(const ServerOptions& options) : options_(options) {}
  void accept_loop();
  void serve_echo(net::TcpStream& s);
  void serve_http(net::TcpStream& s);
  void serve_resp(net::TcpStream& s);

  const ServerOptions options_;
  net::TcpListener listener_;
  net::SocketAddress address_;
  JoinHandle<void> acceptor_;
  bool stopped_ = false;
  // Touched only by the accept fiber, and by stop() once that is joined.
  std::vector<Conn> conns_;
  std::atomic<uint64_t> accepted_{0};
  // kEcho corruption.
  std::atomic<int64_t> echoed_{0};
  std::atomic<bool> corrupted_{false};
  // kResp key space.
  Mutex store_mu_;
  std::unordered_map<std::string, std::string> store_ ABSL_GUARDED_BY(store_mu_);
};

}  // namespace weft::loadgen
