// net/stdin.h
//
// weft::net::StdinStream: standard input (or any inherited descriptor) as a
// Readable stream for fibers, so BufferedReader(stdin).read_line() parks
// the fiber, never the worker:
//
//   auto in = weft::net::stdin_stream();                 // StatusOr<StdinStream>
//   weft::net::BufferedReader r(*in);
//   std::string line;
//   while (r.read_line(&line).ok()) handle(line);
//
// How it reads, by what fd 0 is:
//   pipe, socket, FIFO             through the poller: a dup of the
//                                  descriptor is registered with a worker
//                                  (edge-triggered, as sockets are), and
//                                  the open file is made O_NONBLOCK
//   terminal                       through the poller, on an open file of
//                                  its own (/proc/self/fd/N opened again,
//                                  O_NONBLOCK), so the terminal file that
//                                  stdout and stderr share stays blocking;
//                                  if that open fails, as a pipe. It
//                                  returns a line per read, and every read
//                                  tries before it parks
//   regular file, /dev/null, and   through the blocking pool (epoll does
//   anything epoll refuses         not take them; a file read is one pool
//                                  call)
//
// O_NONBLOCK lives on the open file, which a pipe shares with other
// processes (the shell that started us), so the original flags are put
// back by the close() or destructor of the last stream open on the
// descriptor (a stream opened before the previous one closes, as in
// `in = *stdin_stream();`, keeps it non-blocking), and at exit() (an
// atexit hook); a process killed by a signal cannot restore them.
//
// One reader at a time. fd 0 itself is never closed.
#pragma once

#include <memory>
#include <span>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace weft::internal {
class SocketCore;
}  // namespace weft::internal

namespace weft::net {

class StdinStream {
 public:
  // StdinStream::open()
  //
  // Wraps descriptor `fd` (standard input by default), which stays open
  // and owned by the caller. Must be called on a fiber or worker of a
  // runtime. kFailedPrecondition if fd is not open. Suspends.
  static absl::StatusOr<StdinStream> open(int fd = 0);

  StdinStream();
  StdinStream(StdinStream&&) noexcept;
  StdinStream& operator=(StdinStream&&) noexcept;
  ~StdinStream();

  // StdinStream::read() reads up to buf.size() bytes, waiting for at least
  // one; 0 at end of input (Ctrl-D on a terminal). Suspends.
  absl::StatusOr<size_t> read(std::span<char> buf);

  // StdinStream::close() stops reading, restores the descriptor's flags
  // and wakes a parked reader (kCancelled). Idempotent. Suspends.
  absl::Status close();

  // uses_poller() is true when reads go through a worker's poller.
  bool uses_poller() const { return core_ != nullptr; }

 private:
  int fd_ = -1;
  // This stream counts on the O_NONBLOCK a stream on fd_ set (stdin.cc,
  // acquire_nonblock()); the last to close puts the flags back.
  bool nonblock_ref_ = false;
  // A short read empties the input (a pipe, FIFO or stream socket), so the
  // next read may wait for an edge first. Not a terminal: in canonical
  // mode it returns one line per read, and lines typed ahead raise no
  // new edge.
  bool short_read_drains_ = false;
  std::unique_ptr<internal::SocketCore> core_;     // poller mode
};

// stdin_stream() is StdinStream::open(0).
absl::StatusOr<StdinStream> stdin_stream();

}  // namespace weft::net
