#include "fs/internal/fs_util.h"

#include <unistd.h>

#include <cerrno>
#include <string>

namespace weft::fs::internal {

namespace {

// `fs::CALL("PATH"): SYSCALL`, the start of every error of one path.
std::string op_name(std::string_view call, std::string_view path, std::string_view syscall) {
  std::string op = "fs::";
  op.append(call);
  op += "(\"";
  op.append(path);
  op += "\"): ";
  op.append(syscall);
  return op;
}

}  // namespace

absl::Status fs_error(int err, std::string_view call, std::string_view path,
                     std::string_view syscall) {
  return weft::internal::errno_status(err, op_name(call, path, syscall));
}

absl::Status fs_error2(int err, std::string_view call, std::string_view from,
                      std::string_view to, std::string_view syscall) {
  std::string op = "fs::";
  op.append(call);
  op += "(\"";
  op.append(from);
  op += "\", \"";
  op.append(to);
  op += "\"): ";
  op.append(syscall);
  return weft::internal::errno_status(err, op);
}

absl::Status cancelled_error(std::string_view call, std::string_view path) {
  std::string m = "fs::";
  m.append(call);
  m += "(\"";
  m.append(path);
  m += "\"): the waiting fiber was cancelled";
  return absl::CancelledError(m);
}

absl::StatusOr<std::string> path_string(std::string_view call, std::string_view path) {
  if (path.empty()) {
    return absl::InvalidArgumentError("fs::" + std::string(call) + "(\"\"): empty path");
  }
  if (path.find('\0') != std::string_view::npos) {
    return absl::InvalidArgumentError("fs::" + std::string(call) +
                                      ": the path contains a NUL byte");
  }
  return std::string(path);
}

absl::Status zero_write_error(std::string_view call, std::string_view path,
                              std::string_view syscall, uint64_t done, uint64_t total) {
  return absl::ResourceExhaustedError(op_name(call, path, syscall) + " returned 0 after " +
                                      std::to_string(done) + " of " + std::to_string(total) +
                                      " bytes: the file takes no more");
}

absl::Status write_all_with(std::string_view data, uint64_t* done, std::string_view call,
                            std::string_view path, std::string_view syscall,
                            absl::FunctionRef<ssize_t(const char*, size_t)> write) {
  *done = 0;
  while (*done < data.size()) {
    ssize_t n = weft::internal::retry_on_eintr(
        [&] { return write(data.data() + *done, data.size() - *done); });
    if (n < 0) {
      return fs_error(errno, call, path,
                     std::string(syscall) + " (wrote " + std::to_string(*done) + " of " +
                         std::to_string(data.size()) + " bytes)");
    }
    if (n == 0) return zero_write_error(call, path, syscall, *done, data.size());
    *done += static_cast<uint64_t>(n);
  }
  return absl::OkStatus();
}

absl::Status write_all_fd(int fd, std::string_view data, uint64_t* done, std::string_view call,
                      std::string_view path) {
  return write_all_with(data, done, call, path, "write",
                        [fd](const char* p, size_t n) { return ::write(fd, p, n); });
}

}  // namespace weft::fs::internal
