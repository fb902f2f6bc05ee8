// net/unix.h
//
// UNIX domain stream sockets: UnixListener and UnixStream, with the API,
// deadlines, placement and migration of TcpListener/TcpStream, because they
// are the same machinery (a TcpStream's calls work on any stream socket; a
// UnixStream is one with a UNIX address and peer credentials).
//
//   auto l = weft::net::UnixListener::bind("/run/app.sock");      // StatusOr
//   auto c = l->accept();                                          // parks
//   auto cred = c->stream.peer_credentials();                      // pid, uid, gid
//   auto s = weft::net::UnixStream::connect("/run/app.sock");
//   auto a = weft::net::UnixStream::connect(*weft::net::SocketAddress::unix_abstract("app"));
//
// Socket files. bind() on a path that exists fails with EADDRINUSE, unless
// the file is a socket nobody listens on (connect() to it is refused): such
// a stale file, left by a server that crashed, is removed and the bind is
// retried once (UnixListenOptions::remove_stale, default on). A file that
// is not a socket is never removed. The listener removes its own socket
// file when it is closed or destroyed, if the path still names that
// socket (UnixListenOptions::unlink_on_close). Abstract names have no file.
//
// UnixDatagram is a datagram socket with a UNIX address, over UdpSocket in
// the same way (messages name UdpSocket).
//
// Error messages name the TCP and UDP types ("TcpStream::read: ..."): the
// calls are theirs.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "net/address.h"
#include "net/tcp.h"
#include "net/udp.h"

namespace weft::net {

// The credentials of the process at the other end (SO_PEERCRED), as they
// were when it called connect() (or listen()).
struct PeerCredentials {
  pid_t pid = 0;
  uid_t uid = 0;
  gid_t gid = 0;
};

class UnixStream : private TcpStream {
 public:
  UnixStream() = default;
  UnixStream(UnixStream&&) noexcept = default;
  UnixStream& operator=(UnixStream&&) noexcept = default;

  // UnixStream::connect()
  //
  // Connects to a UNIX address (a path or an abstract name). kInvalidArgument
  // for a non-UNIX address; ENOENT (no such socket file), ECONNREFUSED
  // (nobody listens), EACCES. If the listener's backlog is full, waits for
  // room as a blocking connect(2) would (retrying every 1 to 64 ms, since
  // the kernel gives no event for it) until the timeout, which is then
  // kDeadlineExceeded, or cancellation (kCancelled). Suspends.
  static absl::StatusOr<UnixStream> connect(const SocketAddress& addr,
                                            absl::Duration timeout = absl::InfiniteDuration());
  static absl::StatusOr<UnixStream> connect(std::string_view path,
                                            absl::Duration timeout = absl::InfiniteDuration());

  // The stream calls, exactly as TcpStream's (see net/tcp.h).
  using TcpStream::close;
  using TcpStream::is_open;
  using TcpStream::local_address;
  using TcpStream::migrate_to;
  using TcpStream::migrations;
  using TcpStream::native_handle;
  using TcpStream::owner_worker;
  using TcpStream::peer_address;
  using TcpStream::read;
  using TcpStream::read_exact;
  using TcpStream::set_read_deadline;
  using TcpStream::set_read_timeout;
  using TcpStream::set_write_deadline;
  using TcpStream::set_write_timeout;
  using TcpStream::shutdown;
  using TcpStream::write;
  using TcpStream::write_all;
  using TcpStream::writev;
  using TcpStream::writev_all;

  // UnixStream::peer_credentials() is SO_PEERCRED of the connection.
  absl::StatusOr<PeerCredentials> peer_credentials() const;

  // UnixStream::into_stream() gives up the socket as a TcpStream, the type
  // code written for TCP takes (every call works on a UNIX stream but
  // set_nodelay/set_keepalive, which fail with EOPNOTSUPP).
  TcpStream into_stream() && { return std::move(static_cast<TcpStream&>(*this)); }

 private:
  friend class UnixListener;
  friend struct internal::SocketAccess;
  explicit UnixStream(TcpStream s) : TcpStream(std::move(s)) {}
};

struct UnixListenOptions {
  int backlog = 1024;
  AcceptPlacement placement = AcceptPlacement::kSameWorker;
  bool remove_stale = true;     // see the file comment
  bool unlink_on_close = true;  // remove our socket file at close
};

struct UnixAccepted {
  UnixStream stream;
  SocketAddress peer;  // usually unnamed
};

class UnixListener : private TcpListener {
 public:
  UnixListener() = default;
  UnixListener(UnixListener&& o) noexcept;
  UnixListener& operator=(UnixListener&& o) noexcept;
  ~UnixListener();

  // UnixListener::bind()
  //
  // Listens on a UNIX address or path (see the file comment for stale
  // files). kInvalidArgument for a non-UNIX address or a bad path;
  // EADDRINUSE if a live server (or a non-socket file) holds the path.
  // Suspends.
  static absl::StatusOr<UnixListener> bind(const SocketAddress& addr, UnixListenOptions opts = {});
  static absl::StatusOr<UnixListener> bind(std::string_view path, UnixListenOptions opts = {});

  // UnixListener::accept()/accept_for(): as TcpListener's. Suspend.
  absl::StatusOr<UnixAccepted> accept();
  absl::StatusOr<UnixAccepted> accept_for(absl::Duration timeout);

  // UnixListener::close() closes the socket and removes its file (if
  // unlink_on_close and the path still names our socket). Suspends.
  absl::Status close();

  using TcpListener::is_open;
  using TcpListener::local_address;
  using TcpListener::migrate_to;
  using TcpListener::native_handle;
  using TcpListener::owner_worker;
  using TcpListener::set_placement;
  using TcpListener::stats;

 private:
  friend struct internal::SocketAccess;
  UnixListener(TcpListener l, std::string path, dev_t dev, ino_t ino, bool unlink_on_close);
  void unlink_file();

  std::string path_;  // empty: nothing to remove
  dev_t dev_ = 0;
  ino_t ino_ = 0;
};

struct UnixDatagramOptions {
  bool remove_stale = true;     // as UnixListenOptions
  bool unlink_on_close = true;
};

class UnixDatagram : private UdpSocket {
 public:
  UnixDatagram() = default;
  UnixDatagram(UnixDatagram&& o) noexcept;
  UnixDatagram& operator=(UnixDatagram&& o) noexcept;
  ~UnixDatagram();

  // UnixDatagram::bind()
  //
  // A datagram socket bound to a UNIX path or abstract name (stale files
  // as for UnixListener::bind). kInvalidArgument for a non-UNIX address.
  // Suspends.
  static absl::StatusOr<UnixDatagram> bind(const SocketAddress& addr,
                                           UnixDatagramOptions opts = {});
  static absl::StatusOr<UnixDatagram> bind(std::string_view path, UnixDatagramOptions opts = {});
  // UnixDatagram::autobind() binds to a fresh abstract name the kernel
  // picks (so peers can reply). Suspends.
  static absl::StatusOr<UnixDatagram> autobind();

  // The datagram calls, exactly as UdpSocket's (see net/udp.h).
  using UdpSocket::connect;
  using UdpSocket::is_open;
  using UdpSocket::local_address;
  using UdpSocket::migrate_to;
  using UdpSocket::native_handle;
  using UdpSocket::owner_worker;
  using UdpSocket::recv;
  using UdpSocket::recv_from;
  using UdpSocket::send;
  using UdpSocket::send_to;
  using UdpSocket::set_read_deadline;
  using UdpSocket::set_read_timeout;
  using UdpSocket::set_write_deadline;
  using UdpSocket::set_write_timeout;

  // UnixDatagram::close() closes the socket and removes its file (if
  // unlink_on_close and the path still names our socket). Suspends.
  absl::Status close();

 private:
  friend struct internal::SocketAccess;
  UnixDatagram(UdpSocket s, std::string path, dev_t dev, ino_t ino);
  void unlink_file();

  std::string path_;
  dev_t dev_ = 0;
  ino_t ino_ = 0;
};

}  // namespace weft::net
