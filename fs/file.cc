#include "fs/file.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <memory>
#include <optional>
#include <string>
#include <utility>

#include "fs/internal/fs_util.h"
#include "runtime/blocking.h"
#include "runtime/internal/uring.h"
#include "runtime/runtime.h"

namespace weft::fs {

using internal::fs_error;
using internal::path_string;
using internal::write_all_with;
using internal::zero_write_error;

namespace {

// file_type() is the S_IFMT bits of fd's inode, asked without syncing (no
// round trip on a network filesystem); 0 if statx fails.
unsigned file_type(int fd) {
  struct statx st;
  if (::statx(fd, "", AT_EMPTY_PATH | AT_STATX_DONT_SYNC, STATX_TYPE, &st) < 0) return 0;
  return st.stx_mode & S_IFMT;
}

// ring_open_differs() is whether an open the ring made (of a file of type
// `type`) must be redone with open(2) on the pool. io_uring first tries an
// open without blocking (as if O_NONBLOCK), so a FIFO opened for reading
// does not wait for a writer (and one opened for writing without a reader
// fails with ENXIO, which the caller redoes), and a character device may
// skip its open-time wait. Only those are redone.
bool ring_open_differs(unsigned type, bool write) {
  if (type == S_IFCHR) return true;
  return type == S_IFIFO && !write;
}

// The largest read or write a worker's ring serves; larger ones go to the
// pool. Measured (docs/benchmarks.md, fs_ring_benchmark, ring time / pool
// time): warm 4 KiB preads 0.16-0.41, 4 KiB pwrites 0.64-0.85; warm 64 KiB
// preads 0.56-1.14 (no clear gain), 1 MiB 2.1-4.1, and cold 1 MiB reads
// mostly slower. Sizes between 4 and 64 KiB are not measured yet.
constexpr size_t kRingIoMax = 4 << 10;

using weft::internal::RingOp;
using weft::internal::RingResult;

// ring_io() reads or writes through the calling worker's ring (uring.h),
// through a buffer the op owns: a cancelled read's data never lands in the
// caller's buffer after it has returned. offset ~0 means the file
// position. nullopt: no ring here, or the ring gave EINTR/EAGAIN; use the
// pool. Otherwise the result or the status the pool would give.
std::optional<absl::StatusOr<size_t>> ring_io(RingOp::Kind kind, int fd, const char* in, char* out,
                                              size_t len, uint64_t offset, std::string_view call,
                                              const std::string& path, std::string_view syscall) {
  if (len > kRingIoMax || !weft::internal::ring_available()) return std::nullopt;
  weft::internal::RingOpPtr op = weft::internal::make_ring_op(kind);
  op->fd = fd;
  op->len = len;
  op->offset = offset;
  op->buf = std::make_unique_for_overwrite<char[]>(len);
  if (kind == RingOp::Kind::kWrite) std::memcpy(op->buf.get(), in, len);
  switch (weft::internal::ring_call(op.get())) {
    case RingResult::kNoRing:
      return std::nullopt;
    case RingResult::kCancelled:
      return absl::StatusOr<size_t>(internal::cancelled_error(call, path));
    case RingResult::kDone:
      break;
  }
  if (op->res == -EINTR || op->res == -EAGAIN) return std::nullopt;
  if (op->res < 0) return absl::StatusOr<size_t>(fs_error(-op->res, call, path, syscall));
  if (kind == RingOp::Kind::kRead) std::memcpy(out, op->buf.get(), static_cast<size_t>(op->res));
  return absl::StatusOr<size_t>(static_cast<size_t>(op->res));
}

}  // namespace

absl::StatusOr<File> File::open(std::string_view path, OpenOptions o) {
  auto p = path_string("File::open", path);
  if (!p.ok()) return p.status();
  bool write = o.write || o.append;
  if (o.truncate && !write) {
    return absl::InvalidArgumentError("fs::File::open(\"" + *p + "\"): truncate needs write");
  }
  if (o.exclusive && !o.create) {
    return absl::InvalidArgumentError("fs::File::open(\"" + *p + "\"): exclusive needs create");
  }
  int flags = O_CLOEXEC;
  if (write) {
    flags |= o.read ? O_RDWR : O_WRONLY;
  } else {
    flags |= O_RDONLY;
  }
  if (o.create) flags |= O_CREAT;
  if (o.truncate) flags |= O_TRUNC;
  if (o.append) flags |= O_APPEND;
  if (o.exclusive) flags |= O_EXCL;
  if (internal::kRingOpenClose && weft::internal::ring_available()) {
    using weft::internal::RingOp;
    using weft::internal::RingResult;
    weft::internal::RingOpPtr op = weft::internal::make_ring_op(RingOp::Kind::kOpen);
    op->path = *p;
    op->flags = flags;
    op->mode = o.mode;
    switch (weft::internal::ring_call(op.get())) {
      case RingResult::kNoRing:
        break;
      case RingResult::kCancelled:
        return internal::cancelled_error("File::open", *p);
      case RingResult::kDone:
        if (op->res >= 0) {
          unsigned type = file_type(op->res);
          if (!ring_open_differs(type, write)) return File(op->res, *p, type == S_IFREG);
        }
        if (op->res >= 0) {
          ::close(op->res);
        } else if (op->res != -ENXIO) {
          return fs_error(-op->res, "File::open", *p, "open");
        }
        break;  // open(2) on the pool gives the blocking semantics
    }
  }
  return run_blocking([&]() -> absl::StatusOr<File> {
    int fd = weft::internal::retry_on_eintr([&] { return ::open(p->c_str(), flags, o.mode); });
    if (fd < 0) return fs_error(errno, "File::open", *p, "open");
    struct stat st;
    bool regular = ::fstat(fd, &st) == 0 && S_ISREG(st.st_mode);
    return File(fd, *p, regular);
  });
}

absl::StatusOr<File> File::create(std::string_view path, mode_t mode) {
  return open(path, {.write = true, .create = true, .truncate = true, .mode = mode});
}

File::File(File&& o) noexcept
    : fd_(std::exchange(o.fd_, -1)), regular_(std::exchange(o.regular_, false)), path_(std::move(o.path_)) {}

File& File::operator=(File&& o) noexcept {
  if (this != &o) {
    if (fd_ >= 0) ::close(fd_);
    fd_ = std::exchange(o.fd_, -1);
    regular_ = std::exchange(o.regular_, false);
    path_ = std::move(o.path_);
  }
  return *this;
}

File::~File() {
  if (fd_ >= 0) ::close(fd_);
}

absl::Status File::closed_error(const char* op) const {
  return absl::FailedPreconditionError(std::string("fs::File::") + op + "(\"" + path_ +
                                       "\"): the file is closed");
}

absl::StatusOr<size_t> File::read(std::span<char> buf) {
  if (fd_ < 0) return closed_error("read");
  if (buf.empty()) return size_t{0};
  if (auto r = regular_ ? ring_io(RingOp::Kind::kRead, fd_, nullptr, buf.data(), buf.size(), ~uint64_t{0},
                                  "File::read", path_, "read")
                        : std::nullopt) {
    return *std::move(r);
  }
  return run_blocking([&]() -> absl::StatusOr<size_t> {
    ssize_t n = weft::internal::retry_on_eintr([&] { return ::read(fd_, buf.data(), buf.size()); });
    if (n < 0) return fs_error(errno, "File::read", path_, "read");
    return static_cast<size_t>(n);
  });
}

absl::StatusOr<size_t> File::write(std::string_view data) {
  if (fd_ < 0) return closed_error("write");
  if (data.empty()) return size_t{0};
  if (auto r = regular_ ? ring_io(RingOp::Kind::kWrite, fd_, data.data(), nullptr, data.size(), ~uint64_t{0},
                                  "File::write", path_, "write")
                        : std::nullopt) {
    return *std::move(r);
  }
  return run_blocking([&]() -> absl::StatusOr<size_t> {
    ssize_t n =
        weft::internal::retry_on_eintr([&] { return ::write(fd_, data.data(), data.size()); });
    if (n < 0) return fs_error(errno, "File::write", path_, "write");
    return static_cast<size_t>(n);
  });
}

absl::Status File::write_all(std::string_view data, uint64_t* written) {
  if (written != nullptr) *written = 0;
  if (fd_ < 0) return closed_error("write_all");
  uint64_t done = 0;
  absl::Status s = run_blocking([&] {
    return internal::write_all_fd(fd_, data, &done, "File::write_all", path_);
  });
  if (written != nullptr) *written = done;
  return s;
}

absl::StatusOr<size_t> File::pread(std::span<char> buf, uint64_t offset) {
  if (fd_ < 0) return closed_error("pread");
  if (buf.empty()) return size_t{0};
  if (auto r = regular_ ? ring_io(RingOp::Kind::kRead, fd_, nullptr, buf.data(), buf.size(), offset,
                                  "File::pread", path_, "pread")
                        : std::nullopt) {
    return *std::move(r);
  }
  return run_blocking([&]() -> absl::StatusOr<size_t> {
    ssize_t n = weft::internal::retry_on_eintr(
        [&] { return ::pread(fd_, buf.data(), buf.size(), static_cast<off_t>(offset)); });
    if (n < 0) return fs_error(errno, "File::pread", path_, "pread");
    return static_cast<size_t>(n);
  });
}

absl::Status File::pwrite(std::string_view data, uint64_t offset) {
  if (fd_ < 0) return closed_error("pwrite");
  if (regular_ && data.size() <= kRingIoMax && weft::internal::ring_available()) {
    size_t done = 0;
    while (done < data.size()) {
      auto r = ring_io(RingOp::Kind::kWrite, fd_, data.data() + done, nullptr, data.size() - done, offset + done,
                       "File::pwrite", path_,
                       "pwrite (wrote " + std::to_string(done) + " of " + std::to_string(data.size()) + " bytes)");
      if (!r) break;  // no ring after all: the pool writes the rest
      if (!r->ok()) return r->status();
      if (**r == 0) return zero_write_error("File::pwrite", path_, "pwrite", done, data.size());
      done += **r;
    }
    if (done == data.size()) return absl::OkStatus();
    data.remove_prefix(done);
    offset += done;
  }
  return run_blocking([&]() -> absl::Status {
    uint64_t done = 0;
    return write_all_with(data, &done, "File::pwrite", path_, "pwrite", [&](const char* p, size_t n) {
      return ::pwrite(fd_, p, n, static_cast<off_t>(offset + done));
    });
  });
}

absl::StatusOr<uint64_t> File::seek(int64_t offset, Whence whence) {
  if (fd_ < 0) return closed_error("seek");
  int w = whence == Whence::kStart ? SEEK_SET : whence == Whence::kCurrent ? SEEK_CUR : SEEK_END;
  return run_blocking([&]() -> absl::StatusOr<uint64_t> {
    off_t r = ::lseek(fd_, static_cast<off_t>(offset), w);
    if (r < 0) return fs_error(errno, "File::seek", path_, "lseek");
    return static_cast<uint64_t>(r);
  });
}

absl::Status File::sync() {
  if (fd_ < 0) return closed_error("sync");
  return run_blocking([&]() -> absl::Status {
    if (weft::internal::retry_on_eintr([&] { return ::fsync(fd_); }) < 0) {
      return fs_error(errno, "File::sync", path_, "fsync");
    }
    return absl::OkStatus();
  });
}

absl::Status File::datasync() {
  if (fd_ < 0) return closed_error("datasync");
  return run_blocking([&]() -> absl::Status {
    if (weft::internal::retry_on_eintr([&] { return ::fdatasync(fd_); }) < 0) {
      return fs_error(errno, "File::datasync", path_, "fdatasync");
    }
    return absl::OkStatus();
  });
}

absl::Status File::truncate(uint64_t size) {
  if (fd_ < 0) return closed_error("truncate");
  return run_blocking([&]() -> absl::Status {
    if (weft::internal::retry_on_eintr(
            [&] { return ::ftruncate(fd_, static_cast<off_t>(size)); }) < 0) {
      return fs_error(errno, "File::truncate", path_, "ftruncate");
    }
    return absl::OkStatus();
  });
}

absl::StatusOr<uint64_t> File::size() {
  if (fd_ < 0) return closed_error("size");
  return run_blocking([&]() -> absl::StatusOr<uint64_t> {
    struct stat st;
    if (::fstat(fd_, &st) < 0) return fs_error(errno, "File::size", path_, "fstat");
    return static_cast<uint64_t>(st.st_size);
  });
}

absl::Status File::close() {
  if (fd_ < 0) return absl::OkStatus();
  int fd = std::exchange(fd_, -1);
  if (internal::kRingOpenClose && weft::internal::ring_available()) {
    using weft::internal::RingOp;
    using weft::internal::RingResult;
    weft::internal::RingOpPtr op = weft::internal::make_ring_op(RingOp::Kind::kClose);
    op->fd = fd;
    switch (weft::internal::ring_call(op.get())) {
      case RingResult::kNoRing:
        break;
      case RingResult::kCancelled:
        // The close goes on in the kernel (it is never cancelled).
        return internal::cancelled_error("File::close", path_);
      case RingResult::kDone:
        if (op->res < 0 && op->res != -EINTR) return fs_error(-op->res, "File::close", path_, "close");
        return absl::OkStatus();
    }
  }
  // Not cancellable: a close dropped from the pool's queue would leak the
  // descriptor. A runtime that shuts down drops queued calls all the same
  // (and unwinds this fiber); then the guard closes the descriptor here.
  // A call that started is waited for before run_blocking() returns or
  // unwinds, so `ran` is final when the guard reads it.
  this_fiber::CancellationShield shield;
  struct CloseIfNotRun {
    int fd;
    bool ran = false;
    ~CloseIfNotRun() {
      if (!ran) ::close(fd);
    }
  } guard{fd};
  return run_blocking([&]() -> absl::Status {
    guard.ran = true;
    // No retry on EINTR: the descriptor is gone either way on Linux.
    if (::close(fd) < 0 && errno != EINTR) return fs_error(errno, "File::close", path_, "close");
    return absl::OkStatus();
  });
}

}  // namespace weft::fs
