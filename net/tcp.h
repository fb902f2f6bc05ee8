// net/tcp.h
//
// Blocking-style TCP on fibers: TcpListener and TcpStream. A call that
// would block parks the calling fiber, never the worker thread:
//
//   auto listener = weft::net::TcpListener::bind(
//       weft::net::SocketAddress::loopback_v4(0));          // port 0: any free port
//   for (;;) {
//     auto conn = listener->accept();                       // parks until a client comes
//     if (!conn.ok()) break;                                // listener closed, ...
//     weft::spawn([s = std::move(conn->stream)]() mutable {
//       char buf[4096];
//       for (;;) {
//         auto n = s.read(buf);                             // parks until bytes arrive
//         if (!n.ok() || *n == 0) return;                   // error or EOF
//         if (!s.write_all({buf, *n}).ok()) return;
//       }
//     }).detach();
//   }
//
// Every socket belongs to one worker's epoll poller (its owning worker);
// fibers using it may run on any worker. migrate_to() moves it to another
// worker's poller without losing bytes, readiness or parked fibers.
//
// Statuses (each also carries the errno, see net::error_number()):
//   read() == 0           end of stream (the peer shut down its side)
//   kOutOfRange           read_exact(): end of stream before the buffer filled
//   kUnavailable          ECONNRESET (reset by peer), ECONNREFUSED (connect),
//                         EHOSTUNREACH/ENETUNREACH
//   kFailedPrecondition   EPIPE (write after the peer closed, or after
//                         shutdown(kWrite)); any call on a closed socket
//   kDeadlineExceeded     a timeout or a deadline passed
//   kCancelled            the socket was closed while the fiber waited on it
//   kResourceExhausted    EMFILE/ENFILE/ENOBUFS/ENOMEM
// SIGPIPE is never raised: writes use MSG_NOSIGNAL.
//
// Threads: one reader and one writer may use a stream at once (full
// duplex); close() may be called from any fiber while others wait on the
// socket, and wakes them. Sockets must be closed or destroyed before their
// runtime is. Calls that create sockets must run on a fiber of a runtime.
#pragma once

#include <sys/uio.h>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string_view>
#include <type_traits>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "net/address.h"
#include "net/common.h"

namespace weft::internal {
class SocketCore;
struct SocketAccess;  // net/select.h
}  // namespace weft::internal

namespace weft::net {

enum class Shutdown { kRead, kWrite, kBoth };

class TcpStream {
 public:
  TcpStream();  // not connected; every call fails with kFailedPrecondition
  ~TcpStream();
  TcpStream(TcpStream&&) noexcept;
  TcpStream& operator=(TcpStream&&) noexcept;

  // TcpStream::connect()
  //
  // Connects to `addr`, parking until the handshake ends or `timeout`
  // passes (kDeadlineExceeded). A refused connection is kUnavailable
  // (ECONNREFUSED). The socket is owned by the calling worker. Suspends.
  static absl::StatusOr<TcpStream> connect(const SocketAddress& addr,
                                           absl::Duration timeout = absl::InfiniteDuration());
  // Resolves `host` (weft::net::resolve) and tries each address in turn.
  static absl::StatusOr<TcpStream> connect(std::string_view host, uint16_t port,
                                           absl::Duration timeout = absl::InfiniteDuration());

  // TcpStream::read()
  //
  // Reads up to buf.size() bytes, parking until at least one is available.
  // Returns 0 at end of stream (or for an empty buffer). Suspends.
  absl::StatusOr<size_t> read(std::span<char> buf);
  // TcpStream::read_exact()
  //
  // Fills buf completely; end of stream first is kOutOfRange (the bytes
  // read so far are in buf). Suspends.
  absl::Status read_exact(std::span<char> buf);
  // TcpStream::write()
  //
  // Writes at least one byte (of a non-empty buffer), parking while the
  // send buffer is full; returns how many. Suspends.
  absl::StatusOr<size_t> write(std::string_view data);
  template <ByteSpan S>
  absl::StatusOr<size_t> write(const S& data) {
    std::span<const char> s(data);
    return write(std::string_view(s.data(), s.size()));
  }
  // TcpStream::write_all()
  //
  // Writes all of data. Suspends.
  absl::Status write_all(std::string_view data);
  template <ByteSpan S>
  absl::Status write_all(const S& data) {
    std::span<const char> s(data);
    return write_all(std::string_view(s.data(), s.size()));
  }
  // TcpStream::writev()
  //
  // Gathers from several buffers in one system call; returns the bytes
  // written (at least one unless all are empty). writev_all() writes all.
  // Suspends.
  absl::StatusOr<size_t> writev(std::span<const iovec> bufs);
  absl::Status writev_all(std::span<const iovec> bufs);

  // TcpStream::shutdown()
  //
  // Shuts down one or both directions (half-close): after kWrite the peer
  // reads end of stream; after kRead our reads return 0.
  absl::Status shutdown(Shutdown how);
  // TcpStream::close()
  //
  // Wakes every fiber parked on the stream (kCancelled), waits for calls
  // in flight to leave, deregisters the socket and closes it. Idempotent;
  // the destructor calls it. Suspends.
  absl::Status close();
  bool is_open() const;

  absl::Status set_nodelay(bool on);
  // set_keepalive() enables TCP keepalive; non-zero idle/interval/count
  // override the kernel's defaults (TCP_KEEPIDLE, TCP_KEEPINTVL,
  // TCP_KEEPCNT).
  absl::Status set_keepalive(bool on, absl::Duration idle = absl::ZeroDuration(),
                             absl::Duration interval = absl::ZeroDuration(), int count = 0);
  absl::StatusOr<SocketAddress> local_address() const;
  absl::StatusOr<SocketAddress> peer_address() const;

  // TcpStream::set_read_deadline() / set_write_deadline()
  //
  // Absolute deadlines (Go's SetReadDeadline): once one passes, parked and
  // later calls in that direction fail with kDeadlineExceeded, until a new
  // deadline is set; absl::InfiniteFuture() clears it. Kept on the owning
  // worker's timer wheel (SetSocketTimeout/CancelSocketTimeout messages).
  // Suspends.
  absl::Status set_read_deadline(absl::Time deadline);
  absl::Status set_write_deadline(absl::Time deadline);
  // TcpStream::set_read_timeout() / set_write_timeout()
  //
  // Per-call timeouts: a read (write) that waits longer than `timeout` for
  // the socket fails with kDeadlineExceeded; the stream stays usable.
  // absl::InfiniteDuration() (the default) waits forever.
  void set_read_timeout(absl::Duration timeout);
  void set_write_timeout(absl::Duration timeout);

  // TcpStream::migrate_to()
  //
  // Moves the socket to worker `worker`'s poller. Safe while other fibers
  // read and write it: nothing in flight is lost. Suspends.
  absl::Status migrate_to(int worker);
  // owner_worker() is the worker whose poller holds the socket (-1 if
  // closed); migrations() counts completed moves.
  int owner_worker() const;
  uint64_t migrations() const;

  int native_handle() const;

 private:
  friend class TcpListener;
  friend struct internal::SocketAccess;
  explicit TcpStream(std::unique_ptr<internal::SocketCore> core);
  std::unique_ptr<internal::SocketCore> core_;
  int64_t read_timeout_ns_ = -1;
  int64_t write_timeout_ns_ = -1;
};

// Which worker owns the sockets a listener accepts.
enum class AcceptPlacement {
  kSameWorker,   // the worker running the accepting fiber (default)
  kRoundRobin,   // workers in turn
  kLeastLoaded,  // the worker with the fewest registered sockets
};

struct ListenOptions {
  int backlog = 1024;
  bool reuse_address = true;  // SO_REUSEADDR
  bool reuse_port = false;    // SO_REUSEPORT: several listeners on one port
  bool v6_only = false;       // IPV6_V6ONLY for an IPv6 address
  AcceptPlacement placement = AcceptPlacement::kSameWorker;
};

struct Accepted;

struct ListenerStats {
  uint64_t accepted = 0;
  // accept() failures for lack of descriptors (EMFILE/ENFILE) or memory
  // (ENOBUFS/ENOMEM), and the last such status.
  uint64_t resource_errors = 0;
  absl::Status last_resource_error;
};

class TcpListener {
 public:
  TcpListener();
  ~TcpListener();
  TcpListener(TcpListener&&) noexcept;
  TcpListener& operator=(TcpListener&&) noexcept;

  // TcpListener::bind()
  //
  // Creates a socket, binds it to `addr` (IPv4 or IPv6; port 0 picks a free
  // port, see local_address()) and listens. Must run on a fiber.
  static absl::StatusOr<TcpListener> bind(const SocketAddress& addr, ListenOptions opts = {});

  // TcpListener::accept()
  //
  // Parks until a connection arrives and returns it, with its peer's
  // address. The new socket's owner follows the listener's placement.
  // Out of descriptors (EMFILE/ENFILE) or memory: returns
  // kResourceExhausted, counts it in stats(), and the next accept() first
  // backs off (5 ms, doubling to 1 s while the condition lasts) so a
  // server loop that just retries keeps serving without spinning; pending
  // connections stay queued in the kernel. Suspends.
  absl::StatusOr<Accepted> accept();
  // accept_for() gives up after `timeout` with kDeadlineExceeded.
  absl::StatusOr<Accepted> accept_for(absl::Duration timeout);

  absl::StatusOr<SocketAddress> local_address() const;
  void set_placement(AcceptPlacement p) { placement_ = p; }
  ListenerStats stats() const;

  // close() wakes fibers parked in accept() (kCancelled) and closes the
  // socket. Idempotent. Suspends.
  absl::Status close();
  bool is_open() const;
  absl::Status migrate_to(int worker);
  int owner_worker() const;
  int native_handle() const;

 private:
  friend struct internal::SocketAccess;
  explicit TcpListener(std::unique_ptr<internal::SocketCore> core, AcceptPlacement p);
  int pick_owner();
  std::unique_ptr<internal::SocketCore> core_;
  AcceptPlacement placement_ = AcceptPlacement::kSameWorker;
  struct Counters;  // shared by the fibers that accept at once
  std::unique_ptr<Counters> counters_;
};

struct Accepted {
  TcpStream stream;
  SocketAddress peer;
};

}  // namespace weft::net
