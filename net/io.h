// net/io.h
//
// Stream adapters for blocking-style I/O on fibers. They work over anything
// Readable or Writable (TcpStream, PipeEnd, and each other), so they
// compose into pipelines:
//
//   auto conn = weft::net::TcpStream::connect(addr);
//   weft::net::BufferedWriter out(*conn);                  // 64 KiB buffer
//   auto upper = weft::net::transform(out, [](std::string_view c) {
//     std::string s(c);
//     for (char& ch : s) ch = static_cast<char>(std::toupper(ch));
//     return s;
//   });
//   auto [left, right] = weft::net::DuplexPipe::create();   // in-memory pipe
//   auto feeder = weft::spawn([&left] {
//     (void)left.write_all("hello\nworld\n");
//     (void)left.shutdown_write();                          // right reads EOF
//   });
//   auto n = weft::net::copy(right, upper);                 // StatusOr<uint64_t>: 12
//   feeder.join();
//   absl::Status s = out.flush();                           // "HELLO\nWORLD\n" sent
//
// What is here:
//   Readable, Writable       the two concepts every adapter is built on
//   BufferedReader<R>        read(), read_exact(), read_until(), read_line()
//   BufferedWriter<W>        write_all() into a buffer, flush()
//   copy(from, to)           pumps a Readable into a Writable until EOF
//   DuplexPipe / PipeEnd     an in-memory, bounded, full-duplex byte pipe
//   TransformWriter<W, Fn>   applies fn to each chunk on its way to W
//   TransformReader<R, Fn>   applies fn to each chunk read from R
//
// Statuses: every error carries a message that starts with the call that
// failed ("BufferedReader::read_line: ...", "copy: write: ..."). An error
// from the wrapped stream keeps its code and payloads (so
// net::error_number() still finds the errno) and gains the prefix.
//   read() == 0           end of stream, as for TcpStream
//   kOutOfRange           read_line()/read_until() at end of stream with
//                         nothing read; read_exact() short of the buffer
//   kResourceExhausted    read_line()/read_until(): the line exceeds max
//   kFailedPrecondition   PipeEnd: broken pipe (peer closed), a closed or
//                         empty end, a write after shutdown_write()
//   kDeadlineExceeded     PipeEnd: a read or write timeout passed
//   anything else         from the wrapped stream or a transform function
//
// Threads: BufferedReader, BufferedWriter and the transform stages are
// plain objects, like a std::string: one fiber (or thread) at a time, but
// they may move between fibers and workers between calls. PipeEnd is safe
// to use from many fibers and plain threads at once.
//
// Functions that can suspend say so: they park the calling fiber (or block
// a plain thread) and never the worker thread, as long as the wrapped
// stream does the same.
#pragma once

#include <algorithm>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "runtime/platform/check.h"

namespace weft::internal {

// prefix_status() returns `s` with `prefix` put before its message, keeping
// its code and payloads. OK stays OK.
absl::Status prefix_status(std::string_view prefix, const absl::Status& s);

// IoByteSpan: contiguous bytes that are not text (the same rule as
// net::ByteSpan in net/tcp.h): std::span<const char>, std::vector<char>.
// Text (std::string, string literals) goes through the std::string_view
// overloads, so a literal's terminating NUL is never written.
template <class S>
concept IoByteSpan = std::is_convertible_v<const S&, std::span<const char>> &&
                     !std::is_convertible_v<const S&, std::string_view>;

class PipeState;

}  // namespace weft::internal

namespace weft::net {

inline constexpr size_t kDefaultBufferSize = 64 * 1024;
inline constexpr size_t kDefaultMaxLine = 64 * 1024;

// Readable: `t.read(buf)` fills up to buf.size() bytes of a
// std::span<char>, waiting for at least one, and returns how many;
// 0 means end of stream. TcpStream, PipeEnd, BufferedReader and
// TransformReader are Readable.
template <class T>
concept Readable = requires(T& t, std::span<char> buf) {
  { t.read(buf) } -> std::same_as<absl::StatusOr<size_t>>;
};

// Writable: `t.write_all(data)` writes all of a std::span<const char> or
// fails. TcpStream, PipeEnd, BufferedWriter and TransformWriter are
// Writable.
template <class T>
concept Writable = requires(T& t, std::span<const char> data) {
  { t.write_all(data) } -> std::same_as<absl::Status>;
};

// BufferedReader<R>
//
// Reads from a Readable `R` through a buffer of fixed capacity, for
// line-oriented protocols and for many small reads. Holds a reference: the
// stream must outlive the reader. Bytes the reader has buffered are no
// longer in the stream; read them through the reader.
//
//   weft::net::BufferedReader in(stream);
//   std::string line;
//   absl::Status s;
//   while ((s = in.read_line(&line)).ok()) handle(line);
//   if (s.code() != absl::StatusCode::kOutOfRange) report(s);   // else EOF
//
// Not safe for concurrent use; see the file comment.
template <Readable R>
class BufferedReader {
 public:
  // Aborts if capacity is 0.
  explicit BufferedReader(R& inner, size_t capacity = kDefaultBufferSize)
      : inner_(&inner), buf_(std::make_unique_for_overwrite<char[]>(capacity)), cap_(capacity) {
    WEFT_CHECK(capacity > 0, "BufferedReader: capacity must be at least 1");
  }
  BufferedReader(BufferedReader&& o) noexcept
      : inner_(o.inner_),
        buf_(std::move(o.buf_)),
        cap_(std::exchange(o.cap_, 0)),
        pos_(std::exchange(o.pos_, 0)),
        end_(std::exchange(o.end_, 0)) {}
  BufferedReader& operator=(BufferedReader&& o) noexcept {
    if (this != &o) {
      inner_ = o.inner_;
      buf_ = std::move(o.buf_);
      cap_ = std::exchange(o.cap_, 0);
      pos_ = std::exchange(o.pos_, 0);
      end_ = std::exchange(o.end_, 0);
    }
    return *this;
  }

  // BufferedReader::read()
  //
  // Reads up to buf.size() bytes: from the buffer if it holds any (without
  // touching the stream), else with one read of the stream. A read at least
  // as large as the capacity bypasses the buffer. Returns 0 at end of
  // stream (or for an empty buf). Suspends while the stream has nothing.
  absl::StatusOr<size_t> read(std::span<char> buf) {
    return read_impl(buf, "BufferedReader::read: ");
  }

  // BufferedReader::read_exact()
  //
  // Fills buf completely. End of stream first is kOutOfRange; the bytes
  // read so far are then at the front of buf. An error from the stream
  // likewise leaves what was read in buf. Suspends.
  absl::Status read_exact(std::span<char> buf) {
    size_t got = 0;
    while (got < buf.size()) {
      absl::StatusOr<size_t> n = read_impl(buf.subspan(got), "BufferedReader::read_exact: ");
      if (!n.ok()) return n.status();
      if (*n == 0) {
        return absl::OutOfRangeError("BufferedReader::read_exact: end of stream after " +
                                     std::to_string(got) + " of " + std::to_string(buf.size()) +
                                     " bytes");
      }
      got += *n;
    }
    return absl::OkStatus();
  }

  // BufferedReader::read_until()
  //
  // Replaces *out with the bytes up to and including the next `delim`.
  // `max` bounds the bytes before the delimiter; the delimiter itself is not
  // counted, so *out may hold max + 1 bytes. Suspends while waiting for
  // more of the line.
  //
  //   OK                   *out ends with delim; or, at end of stream, *out
  //                        is the final piece without one (the next call
  //                        returns kOutOfRange).
  //   kOutOfRange          end of stream with nothing read; *out is empty.
  //   kResourceExhausted   no delimiter within max bytes. *out holds the
  //                        first max bytes of the line, which are consumed;
  //                        the rest of the line stays in the reader (the
  //                        next call continues from byte max).
  //   other                an error from the stream. *out holds the bytes
  //                        of the line consumed before it; the next call
  //                        continues after them. Nothing is lost.
  absl::Status read_until(char delim, std::string* out, size_t max = kDefaultMaxLine) {
    return read_until_impl(delim, out, max, "BufferedReader::read_until: ");
  }

  // BufferedReader::read_line()
  //
  // read_until('\n'), then strips the "\n" and a "\r" just before it (CRLF).
  // A final line without "\n" is returned as is. `max` bounds the bytes
  // before the "\n", a "\r" included. Statuses and what stays buffered as
  // for read_until(). Suspends.
  absl::Status read_line(std::string* out, size_t max = kDefaultMaxLine) {
    absl::Status s = read_until_impl('\n', out, max, "BufferedReader::read_line: ");
    if (s.ok() && !out->empty() && out->back() == '\n') {
      out->pop_back();
      if (!out->empty() && out->back() == '\r') out->pop_back();
    }
    return s;
  }

  // buffered() is how many bytes are buffered and not yet read.
  size_t buffered() const { return end_ - pos_; }
  size_t capacity() const { return cap_; }
  // get() is the wrapped stream. Reading it directly skips what is
  // buffered here.
  R& get() const { return *inner_; }

 private:
  absl::StatusOr<size_t> read_impl(std::span<char> buf, std::string_view prefix) {
    if (buf.empty()) return 0;
    if (pos_ == end_) {
      if (buf.size() >= cap_) {
        absl::StatusOr<size_t> n = inner_->read(buf);
        if (!n.ok()) return internal::prefix_status(prefix, n.status());
        return std::min(*n, buf.size());
      }
      absl::Status s = fill(prefix);
      if (!s.ok()) return s;
      if (pos_ == end_) return 0;  // end of stream
    }
    return take(buf);
  }

  // fill() reads the stream once into the empty buffer.
  absl::Status fill(std::string_view prefix) {
    pos_ = end_ = 0;
    absl::StatusOr<size_t> n = inner_->read(std::span<char>(buf_.get(), cap_));
    if (!n.ok()) return internal::prefix_status(prefix, n.status());
    end_ = std::min(*n, cap_);
    return absl::OkStatus();
  }

  size_t take(std::span<char> buf) {
    size_t n = std::min(buf.size(), end_ - pos_);
    std::memcpy(buf.data(), buf_.get() + pos_, n);
    pos_ += n;
    return n;
  }

  absl::Status read_until_impl(char delim, std::string* out, size_t max, std::string_view prefix) {
    out->clear();
    for (;;) {
      const size_t avail = end_ - pos_;
      const size_t room = max - out->size();  // bytes the line may still take
      // A delimiter at index `room` still fits: the line is then max long.
      const size_t window = std::min(avail, room == SIZE_MAX ? room : room + 1);
      const char* start = buf_.get() + pos_;
      if (const void* hit = std::memchr(start, delim, window)) {
        size_t n = static_cast<size_t>(static_cast<const char*>(hit) - start) + 1;
        out->append(start, n);
        pos_ += n;
        return absl::OkStatus();
      }
      if (avail > room) {
        out->append(start, room);
        pos_ += room;
        return absl::ResourceExhaustedError(std::string(prefix) + "line exceeds " +
                                            std::to_string(max) + " bytes");
      }
      out->append(start, avail);
      pos_ = end_;
      absl::Status s = fill(prefix);
      if (!s.ok()) return s;
      if (pos_ == end_) {  // end of stream
        if (out->empty()) return absl::OutOfRangeError(std::string(prefix) + "end of stream");
        return absl::OkStatus();
      }
    }
  }

  R* inner_;
  std::unique_ptr<char[]> buf_;
  size_t cap_;
  size_t pos_ = 0;  // next unread byte
  size_t end_ = 0;  // end of the buffered bytes
};

// BufferedWriter<W>
//
// Collects writes to a Writable `W` in a buffer of fixed capacity and
// writes the buffer in one call when it would overflow, or on flush(). A
// write larger than the capacity goes straight to the stream (after what
// is buffered). Holds a reference: the stream must outlive the writer.
//
// The destructor does NOT flush: a flush can fail, and a destructor could
// only drop the error. Call flush() before destroying the writer, or the
// buffered bytes are discarded.
//
// Errors are sticky, as in Go's bufio.Writer: after the stream fails, the
// buffered bytes are discarded (it is unknown how many were written) and
// every later write_all() and flush() returns the same error.
//
// Not safe for concurrent use; see the file comment.
template <Writable W>
class BufferedWriter {
 public:
  // Aborts if capacity is 0.
  explicit BufferedWriter(W& inner, size_t capacity = kDefaultBufferSize)
      : inner_(&inner), buf_(std::make_unique_for_overwrite<char[]>(capacity)), cap_(capacity) {
    WEFT_CHECK(capacity > 0, "BufferedWriter: capacity must be at least 1");
  }
  BufferedWriter(BufferedWriter&& o) noexcept
      : inner_(o.inner_),
        buf_(std::move(o.buf_)),
        cap_(std::exchange(o.cap_, 0)),
        len_(std::exchange(o.len_, 0)),
        error_(std::move(o.error_)) {}
  BufferedWriter& operator=(BufferedWriter&& o) noexcept {
    if (this != &o) {
      inner_ = o.inner_;
      buf_ = std::move(o.buf_);
      cap_ = std::exchange(o.cap_, 0);
      len_ = std::exchange(o.len_, 0);
      error_ = std::move(o.error_);
    }
    return *this;
  }

  // BufferedWriter::write_all()
  //
  // Buffers data. When it does not fit beside what is buffered, flushes
  // first; data larger than the capacity is then written through in one
  // call. Suspends when it writes to the stream.
  absl::Status write_all(std::string_view data) {
    if (!error_.ok()) return error_;
    if (data.size() > cap_ - len_) {
      if (absl::Status s = flush_impl("BufferedWriter::write_all: "); !s.ok()) return s;
      if (data.size() > cap_) {
        absl::Status s = inner_->write_all(std::span<const char>(data.data(), data.size()));
        if (!s.ok()) return fail("BufferedWriter::write_all: ", s);
        return absl::OkStatus();
      }
    }
    if (!data.empty()) std::memcpy(buf_.get() + len_, data.data(), data.size());
    len_ += data.size();
    return absl::OkStatus();
  }
  template <internal::IoByteSpan S>
  absl::Status write_all(const S& data) {
    std::span<const char> s(data);
    return write_all(std::string_view(s.data(), s.size()));
  }

  // BufferedWriter::flush()
  //
  // Writes everything buffered to the stream. It does not flush the stream
  // itself. Suspends.
  absl::Status flush() {
    if (!error_.ok()) return error_;
    return flush_impl("BufferedWriter::flush: ");
  }

  // buffered() is how many bytes wait for a flush.
  size_t buffered() const { return len_; }
  size_t capacity() const { return cap_; }
  // status() is the sticky error, or OK.
  const absl::Status& status() const { return error_; }
  W& get() const { return *inner_; }

 private:
  absl::Status flush_impl(std::string_view prefix) {
    if (len_ == 0) return absl::OkStatus();
    absl::Status s = inner_->write_all(std::span<const char>(buf_.get(), len_));
    if (!s.ok()) return fail(prefix, s);
    len_ = 0;
    return absl::OkStatus();
  }
  absl::Status fail(std::string_view prefix, const absl::Status& s) {
    len_ = 0;
    error_ = internal::prefix_status(prefix, s);
    return error_;
  }

  W* inner_;
  std::unique_ptr<char[]> buf_;
  size_t cap_;
  size_t len_ = 0;
  absl::Status error_;
};

// copy()
//
// Reads `from` until end of stream and writes everything to `to`, `chunk`
// bytes at most per read (one heap buffer of that size; aborts if 0).
// Returns the bytes copied. On error, returns the status with its message
// prefixed "copy: read: " or "copy: write: " to say which side failed (code
// and payloads kept); how much was copied before is then unknown to the
// caller. Does not flush `to`: flush a BufferedWriter afterwards. Suspends.
template <Readable R, Writable W>
absl::StatusOr<uint64_t> copy(R& from, W& to, size_t chunk = kDefaultBufferSize) {
  WEFT_CHECK(chunk > 0, "copy: chunk must be at least 1");
  auto buf = std::make_unique_for_overwrite<char[]>(chunk);
  uint64_t total = 0;
  for (;;) {
    absl::StatusOr<size_t> n = from.read(std::span<char>(buf.get(), chunk));
    if (!n.ok()) return internal::prefix_status("copy: read: ", n.status());
    if (*n == 0) return total;
    absl::Status s = to.write_all(std::span<const char>(buf.get(), *n));
    if (!s.ok()) return internal::prefix_status("copy: write: ", s);
    total += *n;
  }
}

// PipeEnd
//
// One end of a DuplexPipe: an in-memory, full-duplex byte stream with a
// bounded buffer in each direction. What one end writes, the other reads,
// in order. Readable and Writable.
//
// Threads: any number of fibers on any workers, and plain threads, may use
// an end at once; waiting parks the fiber (or blocks the thread). Bytes of
// concurrent write_all() calls on one end never interleave (each holds the
// end's write lock for its whole duration); concurrent write() and read()
// calls get bytes in an unspecified split.
//
// Moving an end while other fibers use it, or destroying it, is not
// allowed; close() is, from any fiber. The destructor calls close().
class PipeEnd {
 public:
  PipeEnd();  // not connected: every call fails with kFailedPrecondition
  ~PipeEnd();
  PipeEnd(PipeEnd&&) noexcept;
  PipeEnd& operator=(PipeEnd&&) noexcept;  // closes the end it replaces

  // PipeEnd::read()
  //
  // Reads up to buf.size() bytes, waiting until at least one is buffered.
  // Returns 0 at end of stream: the peer called shutdown_write() or close()
  // and everything it wrote before has been read (or for an empty buf).
  // kFailedPrecondition after this end's close(), also for reads parked at
  // that time; kDeadlineExceeded when the read timeout passes. Suspends.
  absl::StatusOr<size_t> read(std::span<char> buf);

  // PipeEnd::write()
  //
  // Writes as much of data as fits, waiting while the buffer toward the
  // peer is full (backpressure); returns how many bytes (at least one of a
  // non-empty data). kFailedPrecondition ("broken pipe") once the peer has
  // closed; kFailedPrecondition after this end's close() or
  // shutdown_write(); kDeadlineExceeded when the write timeout passes.
  // Suspends.
  absl::StatusOr<size_t> write(std::string_view data);
  template <internal::IoByteSpan S>
  absl::StatusOr<size_t> write(const S& data) {
    std::span<const char> s(data);
    return write(std::string_view(s.data(), s.size()));
  }

  // PipeEnd::write_all()
  //
  // Writes all of data, waiting for room as needed; statuses as for
  // write(). On an error, an unknown prefix of data was written. The write
  // timeout applies to the whole call. Suspends.
  absl::Status write_all(std::string_view data);
  template <internal::IoByteSpan S>
  absl::Status write_all(const S& data) {
    std::span<const char> s(data);
    return write_all(std::string_view(s.data(), s.size()));
  }

  // PipeEnd::shutdown_write()
  //
  // Half-close: the peer reads what is buffered, then end of stream. Later
  // writes on this end fail with kFailedPrecondition; reads go on.
  // Idempotent; kFailedPrecondition on a closed or unconnected end.
  absl::Status shutdown_write();

  // PipeEnd::close()
  //
  // Closes both directions: the peer reads what this end wrote, then end of
  // stream; the peer's writes fail with kFailedPrecondition (broken pipe)
  // and what it had written toward this end is discarded. Wakes every fiber
  // parked on either end. Idempotent; never suspends for long (it takes
  // the pipe's locks).
  void close();

  // is_open() is true for a connected end that was not closed.
  bool is_open() const;

  // PipeEnd::set_read_timeout() / set_write_timeout()
  //
  // A read (write, write_all) that waits longer than `timeout` fails with
  // kDeadlineExceeded; the end stays usable. absl::InfiniteDuration()
  // (the default) waits forever. Thread-safe.
  void set_read_timeout(absl::Duration timeout);
  void set_write_timeout(absl::Duration timeout);

  // readable() is how many bytes wait to be read by this end; capacity() is
  // the buffer size of each direction. 0 on an unconnected end.
  size_t readable() const;
  size_t capacity() const;

 private:
  friend class DuplexPipe;
  PipeEnd(std::shared_ptr<internal::PipeState> state, int side);
  std::shared_ptr<internal::PipeState> state_;
  int side_ = 0;  // 0 or 1: which end of state_
};

// DuplexPipe
//
// Makes connected PipeEnd pairs: for tests (a stream without sockets) and
// for in-process plumbing between fibers.
//
//   auto [a, b] = weft::net::DuplexPipe::create(4096);
//   // a.write_all("x") -> b.read() gets "x"; b.write_all("y") -> a.read().
class DuplexPipe {
 public:
  DuplexPipe() = delete;

  // DuplexPipe::create()
  //
  // Two connected ends, each direction buffering up to `capacity` bytes
  // (aborts if 0). The shared state lives until both ends are gone.
  static std::pair<PipeEnd, PipeEnd> create(size_t capacity = kDefaultBufferSize);
};

// ChunkTransform: fn(std::string_view chunk) returning the transformed
// bytes as a std::string (or anything convertible), or as
// absl::StatusOr<std::string> when it can fail.
template <class Fn>
concept ChunkTransform =
    std::invocable<Fn&, std::string_view> &&
    (std::same_as<std::remove_cvref_t<std::invoke_result_t<Fn&, std::string_view>>,
                  absl::StatusOr<std::string>> ||
     std::convertible_to<std::invoke_result_t<Fn&, std::string_view>, std::string>);

}  // namespace weft::net

namespace weft::internal {

// apply_transform() calls fn and wraps a plain result in a StatusOr.
template <class Fn>
absl::StatusOr<std::string> apply_transform(Fn& fn, std::string_view chunk) {
  using Result = std::remove_cvref_t<std::invoke_result_t<Fn&, std::string_view>>;
  if constexpr (std::is_same_v<Result, absl::StatusOr<std::string>>) {
    return fn(chunk);
  } else {
    return std::string(fn(chunk));
  }
}

}  // namespace weft::internal

namespace weft::net {

// TransformWriter<W, Fn>
//
// A Writable stage that passes each chunk given to write_all() through
// `fn` and writes the result to `W` (an empty result writes nothing).
// Chunk boundaries are the caller's write_all() calls (for copy(): its
// reads), so fn should not depend on them unless the caller controls them.
// Stages compose: a TransformWriter over a TransformWriter over a
// BufferedWriter over a TcpStream. Build one with transform(). Holds a
// reference to `W`, which must outlive it.
//
// Errors are sticky: once fn returns an error or the stream fails, every
// later write_all() returns that status without calling fn again.
//
// Not safe for concurrent use; see the file comment.
template <Writable W, ChunkTransform Fn>
class TransformWriter {
 public:
  TransformWriter(W& inner, Fn fn) : inner_(&inner), fn_(std::move(fn)) {}

  // TransformWriter::write_all()
  //
  // Transforms data and writes the result. Suspends when the next stage
  // does.
  absl::Status write_all(std::string_view data) {
    if (!error_.ok()) return error_;
    absl::StatusOr<std::string> out = internal::apply_transform(fn_, data);
    if (!out.ok()) {
      error_ = internal::prefix_status("TransformWriter::write_all: transform: ", out.status());
      return error_;
    }
    if (out->empty()) return absl::OkStatus();
    absl::Status s = inner_->write_all(std::span<const char>(out->data(), out->size()));
    if (!s.ok()) error_ = internal::prefix_status("TransformWriter::write_all: ", s);
    return error_;
  }
  template <internal::IoByteSpan S>
  absl::Status write_all(const S& data) {
    std::span<const char> s(data);
    return write_all(std::string_view(s.data(), s.size()));
  }

  // TransformWriter::flush()
  //
  // Calls flush() on the next stage if it has one (a BufferedWriter or
  // another TransformWriter), so flushing the outermost stage flushes the
  // pipeline. Suspends when that does.
  absl::Status flush() {
    if (!error_.ok()) return error_;
    if constexpr (requires(W& w) { { w.flush() } -> std::same_as<absl::Status>; }) {
      absl::Status s = inner_->flush();
      if (!s.ok()) error_ = internal::prefix_status("TransformWriter::flush: ", s);
    }
    return error_;
  }

  // status() is the sticky error, or OK.
  const absl::Status& status() const { return error_; }
  W& get() const { return *inner_; }

 private:
  W* inner_;
  Fn fn_;
  absl::Status error_;
};

// transform()
//
// A TransformWriter writing fn(chunk) to `to`:
//
//   weft::net::BufferedWriter out(stream);
//   auto hex = weft::net::transform(out, to_hex);       // to_hex(string_view) -> std::string
//   auto framed = weft::net::transform(hex, add_crc);   // -> absl::StatusOr<std::string>
//   absl::Status s = framed.write_all(payload);          // add_crc, then to_hex, then buffer
//   s = framed.flush();                                  // flushes `out`
template <Writable W, class Fn>
  requires ChunkTransform<std::decay_t<Fn>>
TransformWriter<W, std::decay_t<Fn>> transform(W& to, Fn&& fn) {
  return TransformWriter<W, std::decay_t<Fn>>(to, std::forward<Fn>(fn));
}

// TransformReader<R, Fn>
//
// A Readable stage: reads chunks of up to `chunk` bytes from `R`, passes
// each through `fn` and serves the results. Chunk boundaries are those of
// the underlying reads, so fn should not depend on them. A chunk that fn
// maps to nothing is skipped (read() goes on reading; it returns 0 only at
// end of stream). Build one with transform_reader(). Holds a reference to
// `R`, which must outlive it.
//
// Errors are sticky, as for TransformWriter. Not safe for concurrent use.
template <Readable R, ChunkTransform Fn>
class TransformReader {
 public:
  // Aborts if chunk is 0.
  TransformReader(R& inner, Fn fn, size_t chunk = kDefaultBufferSize)
      : inner_(&inner), fn_(std::move(fn)), chunk_(chunk) {
    WEFT_CHECK(chunk > 0, "TransformReader: chunk must be at least 1");
  }

  // TransformReader::read()
  //
  // Copies up to buf.size() transformed bytes into buf, reading and
  // transforming another chunk when none are pending. Returns 0 at end of
  // stream (or for an empty buf). Suspends when the stream does.
  absl::StatusOr<size_t> read(std::span<char> buf) {
    if (!error_.ok()) return error_;
    if (buf.empty()) return 0;
    while (pos_ == pending_.size()) {
      pending_.clear();
      pos_ = 0;
      if (in_.size() != chunk_) in_.resize(chunk_);
      absl::StatusOr<size_t> n = inner_->read(std::span<char>(in_.data(), in_.size()));
      if (!n.ok()) {
        error_ = internal::prefix_status("TransformReader::read: ", n.status());
        return error_;
      }
      if (*n == 0) return 0;
      absl::StatusOr<std::string> out =
          internal::apply_transform(fn_, std::string_view(in_.data(), std::min(*n, in_.size())));
      if (!out.ok()) {
        error_ = internal::prefix_status("TransformReader::read: transform: ", out.status());
        return error_;
      }
      pending_ = std::move(*out);
    }
    size_t n = std::min(buf.size(), pending_.size() - pos_);
    std::memcpy(buf.data(), pending_.data() + pos_, n);
    pos_ += n;
    return n;
  }

  // pending() is how many transformed bytes wait to be read.
  size_t pending() const { return pending_.size() - pos_; }
  const absl::Status& status() const { return error_; }
  R& get() const { return *inner_; }

 private:
  R* inner_;
  Fn fn_;
  size_t chunk_;
  std::string in_;
  std::string pending_;
  size_t pos_ = 0;
  absl::Status error_;
};

// transform_reader()
//
// A TransformReader serving fn(chunk) for each chunk read from `from`.
template <Readable R, class Fn>
  requires ChunkTransform<std::decay_t<Fn>>
TransformReader<R, std::decay_t<Fn>> transform_reader(R& from, Fn&& fn,
                                                      size_t chunk = kDefaultBufferSize) {
  return TransformReader<R, std::decay_t<Fn>>(from, std::forward<Fn>(fn), chunk);
}

static_assert(Readable<PipeEnd> && Writable<PipeEnd>);

}  // namespace weft::net
