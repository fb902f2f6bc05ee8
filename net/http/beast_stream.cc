// net/http/beast_stream.cc: weft statuses as Asio error codes.
#include "net/http/beast_stream.h"

#include "net/common.h"

namespace weft::http {

boost::system::error_code to_error_code(const absl::Status& s) {
  if (s.ok()) return {};
  switch (s.code()) {
    case absl::StatusCode::kDeadlineExceeded:
      return boost::asio::error::timed_out;
    case absl::StatusCode::kCancelled:
      return boost::asio::error::operation_aborted;
    case absl::StatusCode::kOutOfRange:
      return boost::asio::error::eof;
    default:
      break;
  }
  // Asio's socket errors are errno values in the system category on POSIX:
  // ECONNRESET is asio::error::connection_reset, EPIPE broken_pipe.
  if (std::optional<int> e = net::error_number(s); e.has_value() && *e != 0) {
    return boost::system::error_code(*e, boost::system::system_category());
  }
  if (s.code() == absl::StatusCode::kFailedPrecondition) return boost::asio::error::not_connected;
  return boost::system::errc::make_error_code(boost::system::errc::io_error);
}

}  // namespace weft::http
