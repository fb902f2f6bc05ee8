// net/http/beast_stream.h
//
// BeastStream<S>: a weft byte stream (TcpStream, PipeEnd, ...) seen as an
// Asio SyncReadStream and SyncWriteStream, so that Boost.Beast's
// synchronous algorithms run on a fiber and park it, never the worker:
//
//   weft::net::TcpStream tcp = ...;
//   weft::http::BeastStream stream(tcp);
//   boost::beast::flat_buffer buffer;
//   boost::beast::http::request<boost::beast::http::string_body> req;
//   boost::beast::error_code ec;
//   boost::beast::http::read(stream, buffer, req, ec);   // parks the fiber
//
// Beast's synchronous algorithms need only read_some()/write_some(), each
// with a throwing overload and an error_code overload; no executor.
//
// Status to error_code (the error_code overloads set these; the throwing
// ones throw boost::system::system_error with them):
//   read() == 0 (end of stream)    boost::asio::error::eof (Beast turns it
//                                  into http::error::end_of_stream, or
//                                  partial_message mid-message)
//   kDeadlineExceeded              boost::asio::error::timed_out
//   kCancelled                     boost::asio::error::operation_aborted
//   a status carrying an errno     that errno in the system category, so
//                                  ECONNRESET == asio::error::connection_reset,
//                                  EPIPE == asio::error::broken_pipe
//   kFailedPrecondition, no errno  boost::asio::error::not_connected
//   kOutOfRange                    boost::asio::error::eof
//   anything else                  boost::system::errc::io_error
// last_status() keeps the weft status of the last failure, message and all,
// for error reports.
//
// Threads: as for the wrapped stream (one reader and one writer at once
// for a TcpStream). Holds a reference; the stream must outlive it.
#pragma once

#include <sys/uio.h>

#include <cstddef>
#include <span>
#include <string_view>
#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "boost/asio/buffer.hpp"
#include "boost/asio/error.hpp"
#include "boost/system/error_code.hpp"
#include "boost/system/system_error.hpp"

namespace weft::http {

// ByteStream: what BeastStream wraps. `s.read(buf)` reads up to buf.size()
// bytes (0 at end of stream); `s.write(data)` writes at least one byte of
// a non-empty data. TcpStream and PipeEnd are ByteStreams.
template <class S>
concept ByteStream = requires(S& s, std::span<char> buf, std::string_view data) {
  { s.read(buf) } -> std::same_as<absl::StatusOr<size_t>>;
  { s.write(data) } -> std::same_as<absl::StatusOr<size_t>>;
};

// to_error_code() maps a weft status to the error_code Beast expects (see
// the file comment). OK maps to a clear error_code.
boost::system::error_code to_error_code(const absl::Status& s);

// gather_buffers() puts the non-empty buffers of an Asio buffer sequence,
// at most kMaxGather of them, into `iov` for one writev(); returns how
// many. A write of the first few buffers is a valid write_some().
inline constexpr size_t kMaxGather = 16;
template <class ConstBufferSequence>
size_t gather_buffers(const ConstBufferSequence& buffers, iovec (&iov)[kMaxGather]) {
  size_t count = 0;
  for (auto it = boost::asio::buffer_sequence_begin(buffers);
       it != boost::asio::buffer_sequence_end(buffers) && count < kMaxGather; ++it) {
    boost::asio::const_buffer b(*it);
    if (b.size() == 0) continue;
    iov[count++] = iovec{const_cast<void*>(b.data()), b.size()};
  }
  return count;
}

template <ByteStream S>
class BeastStream {
 public:
  explicit BeastStream(S& stream) : stream_(&stream) {}

  // BeastStream::read_some()
  //
  // Reads into the first non-empty buffer of `buffers`, parking until at
  // least one byte is available; 0 bytes for an empty sequence. End of
  // stream is asio::error::eof. Suspends.
  template <class MutableBufferSequence>
  size_t read_some(const MutableBufferSequence& buffers, boost::system::error_code& ec) {
    ec = {};
    for (auto it = boost::asio::buffer_sequence_begin(buffers);
         it != boost::asio::buffer_sequence_end(buffers); ++it) {
      boost::asio::mutable_buffer b(*it);
      if (b.size() == 0) continue;
      absl::StatusOr<size_t> n = stream_->read(std::span<char>(static_cast<char*>(b.data()), b.size()));
      if (!n.ok()) {
        fail(n.status(), ec);
        return 0;
      }
      if (*n == 0) ec = boost::asio::error::eof;
      return *n;
    }
    return 0;
  }
  template <class MutableBufferSequence>
  size_t read_some(const MutableBufferSequence& buffers) {
    boost::system::error_code ec;
    size_t n = read_some(buffers, ec);
    if (ec) throw boost::system::system_error(ec, "BeastStream::read_some");
    return n;
  }

  // BeastStream::write_some()
  //
  // Writes at least one byte of a non-empty `buffers`, gathering up to 16
  // buffers into one writev() when the stream has writev(); returns how
  // many bytes. Suspends.
  template <class ConstBufferSequence>
  size_t write_some(const ConstBufferSequence& buffers, boost::system::error_code& ec) {
    ec = {};
    if constexpr (requires(S& s, std::span<const iovec> v) {
                    { s.writev(v) } -> std::same_as<absl::StatusOr<size_t>>;
                  }) {
      iovec iov[kMaxGather];
      const size_t count = gather_buffers(buffers, iov);
      if (count == 0) return 0;
      absl::StatusOr<size_t> n = count == 1
          ? stream_->write(std::string_view(static_cast<const char*>(iov[0].iov_base), iov[0].iov_len))
          : stream_->writev(std::span<const iovec>(iov, count));
      if (!n.ok()) {
        fail(n.status(), ec);
        return 0;
      }
      return *n;
    } else {
      for (auto it = boost::asio::buffer_sequence_begin(buffers);
           it != boost::asio::buffer_sequence_end(buffers); ++it) {
        boost::asio::const_buffer b(*it);
        if (b.size() == 0) continue;
        absl::StatusOr<size_t> n =
            stream_->write(std::string_view(static_cast<const char*>(b.data()), b.size()));
        if (!n.ok()) {
          fail(n.status(), ec);
          return 0;
        }
        return *n;
      }
      return 0;
    }
  }
  template <class ConstBufferSequence>
  size_t write_some(const ConstBufferSequence& buffers) {
    boost::system::error_code ec;
    size_t n = write_some(buffers, ec);
    if (ec) throw boost::system::system_error(ec, "BeastStream::write_some");
    return n;
  }

  // last_status() is the weft status behind the last error_code this
  // stream set (OK if none, or if the last one was end of stream).
  const absl::Status& last_status() const { return last_status_; }
  S& next_layer() const { return *stream_; }

 private:
  void fail(const absl::Status& s, boost::system::error_code& ec) {
    last_status_ = s;
    ec = to_error_code(s);
  }

  S* stream_;
  absl::Status last_status_;
};

}  // namespace weft::http
