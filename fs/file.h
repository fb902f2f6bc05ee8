// fs/file.h
//
// weft::fs::File: an open file whose calls run on the blocking pool and
// park the calling fiber. File is Readable and Writable in the sense of
// net/io.h, so BufferedReader, BufferedWriter, copy() and the transforms
// work on files:
//
//   auto in = weft::fs::File::open("access.log");           // read-only
//   weft::net::BufferedReader r(*in);
//   std::string line;
//   while (r.read_line(&line).ok()) ...
//
// Threads: one fiber (or thread) at a time for read/write/seek, which
// share the file offset; pread/pwrite/size/sync may run from several
// fibers at once. A File may move between fibers and workers.
//
// Errors: "fs::File::read(PATH): read: Input/output error" with the errno
// (fs::error_number()). Calls on a closed File are kFailedPrecondition.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace weft::fs {

// OpenOptions: the open(2) flags, by name. With none of read/write set,
// the file opens read-only.
struct OpenOptions {
  bool read = false;
  bool write = false;
  bool create = false;     // O_CREAT
  bool truncate = false;   // O_TRUNC (needs write)
  bool append = false;     // O_APPEND (implies write)
  bool exclusive = false;  // O_EXCL (needs create): fail if it exists
  mode_t mode = 0644;      // for a created file, before the umask
};

// ByteSpan: contiguous bytes that are not text (as net::ByteSpan):
// std::span<const char>, std::vector<char>. Text goes through the
// std::string_view overloads.
template <class S>
concept ByteSpan = std::is_convertible_v<const S&, std::span<const char>> &&
                   !std::is_convertible_v<const S&, std::string_view>;

enum class Whence : uint8_t { kStart, kCurrent, kEnd };

class File {
 public:
  // File::open()
  //
  // Opens `path` (always O_CLOEXEC). kInvalidArgument for contradictory
  // options (truncate or exclusive without write/create). Suspends.
  static absl::StatusOr<File> open(std::string_view path, OpenOptions options = {});
  // File::create() is open(path, {.write, .create, .truncate}). Suspends.
  static absl::StatusOr<File> create(std::string_view path, mode_t mode = 0644);

  File() = default;
  File(File&& o) noexcept;
  File& operator=(File&& o) noexcept;
  File(const File&) = delete;
  File& operator=(const File&) = delete;
  // Closes the descriptor on the calling thread (close(2) of a local file
  // does not wait for the disk; call close() to see its error, or sync()).
  ~File();

  // File::read() reads up to buf.size() bytes at the file offset; 0 at end
  // of file. Suspends.
  absl::StatusOr<size_t> read(std::span<char> buf);
  // File::write() writes up to data.size() bytes (one write(2)) and
  // returns how many. Suspends.
  absl::StatusOr<size_t> write(std::string_view data);
  template <ByteSpan S>
  absl::StatusOr<size_t> write(const S& data) {
    std::span<const char> s(data);
    return write(std::string_view(s.data(), s.size()));
  }
  // File::write_all() writes all of data or fails; the error says how much
  // was written ("wrote 4096 of 10000 bytes"), and `written`, if given,
  // receives it either way. Suspends.
  absl::Status write_all(std::string_view data, uint64_t* written = nullptr);
  template <ByteSpan S>
  absl::Status write_all(const S& data, uint64_t* written = nullptr) {
    std::span<const char> s(data);
    return write_all(std::string_view(s.data(), s.size()), written);
  }
  // File::pread()/pwrite() read/write at `offset` without moving the file
  // offset. pwrite writes everything (looping) or fails. Suspend.
  absl::StatusOr<size_t> pread(std::span<char> buf, uint64_t offset);
  absl::Status pwrite(std::string_view data, uint64_t offset);
  // File::seek() moves the offset and returns the new one. Suspends.
  absl::StatusOr<uint64_t> seek(int64_t offset, Whence whence = Whence::kStart);
  // File::sync() is fsync(2), datasync() fdatasync(2). Suspend.
  absl::Status sync();
  absl::Status datasync();
  // File::truncate() sets the size (ftruncate(2)). Suspends.
  absl::Status truncate(uint64_t size);
  // File::size() is the current size (fstat). Suspends.
  absl::StatusOr<uint64_t> size();
  // File::close() closes and reports close(2)'s error. Idempotent (a
  // second call is OK). Suspends.
  absl::Status close();

  bool is_open() const { return fd_ >= 0; }
  int native_handle() const { return fd_; }
  const std::string& path() const { return path_; }

 private:
  File(int fd, std::string path, bool regular) : fd_(fd), regular_(regular), path_(std::move(path)) {}
  absl::Status closed_error(const char* op) const;

  int fd_ = -1;
  // A regular file: small reads and writes may go to the worker's io_uring
  // (pipes and devices keep the pool's plain read/write semantics).
  bool regular_ = false;
  std::string path_;
};

}  // namespace weft::fs
