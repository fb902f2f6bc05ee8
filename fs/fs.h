// fs/fs.h
//
// weft::fs: files and directories for code on fibers. Every call runs its
// system calls on the blocking pool (runtime/blocking.h) and parks the
// calling fiber until they return, so no worker thread ever blocks on a
// disk. Off a fiber the calls block the calling thread, as a plain call
// would.
//
//   auto text = weft::fs::read_file_to_string("/etc/hostname");   // StatusOr
//   absl::Status s = weft::fs::write_file("out.json", json, {.atomic = true});
//   auto f = weft::fs::File::open("log", {.write = true, .create = true, .append = true});
//   weft::net::BufferedReader in(*f);                              // File is Readable
//
// Errors. Every failure is an absl::Status whose message names the call,
// the path and the system call that failed, with the errno text:
//   fs::read_file("/x/y"): open: No such file or directory
// and which carries the errno (fs::error_number(s)). Codes follow
// absl::ErrnoToStatusCode: ENOENT kNotFound, EACCES/EPERM
// kPermissionDenied, EEXIST kAlreadyExists, EISDIR/ENOTDIR/EINVAL
// kFailedPrecondition or kInvalidArgument, ENOSPC/EMFILE/ENFILE
// kResourceExhausted. A path with an embedded NUL is kInvalidArgument.
//
// Every descriptor is opened O_CLOEXEC. Paths are passed to the kernel as
// they are (relative paths resolve against the process's working
// directory when the call runs).
//
// stat, lstat and exists are one statx on the calling worker's io_uring
// when it has one; every other call here is one or a few system calls on a
// pool thread. A write(2) that takes no bytes is kResourceExhausted, never
// an endless retry. See docs/fs.md.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "fs/file.h"

namespace weft::fs {

// error_number() is the errno a status from weft::fs carries, if any.
std::optional<int> error_number(const absl::Status& s);

enum class FileKind : uint8_t {
  kRegular,
  kDirectory,
  kSymlink,
  kBlockDevice,
  kCharDevice,
  kFifo,
  kSocket,
  kUnknown,
};

// FileKindName() is "regular", "directory", ... for messages.
const char* FileKindName(FileKind k);

struct FileStatus {
  FileKind kind = FileKind::kUnknown;
  uint64_t size = 0;
  uint32_t permissions = 0;  // the low 12 bits of st_mode (07777)
  absl::Time mtime;
  uint64_t inode = 0;
  uint64_t device = 0;
  uint64_t links = 0;
  uint32_t uid = 0;
  uint32_t gid = 0;
};

struct DirEntry {
  std::string name;  // not the full path; never "." or ".."
  FileKind kind = FileKind::kUnknown;
};

struct WriteOptions {
  // Replace the file atomically: write a temporary file in the same
  // directory, fsync it, rename it over `path`, fsync the directory.
  // Readers see the old contents or the new, never a mix; after a crash the
  // file is one or the other.
  bool atomic = false;
  // fsync the file before returning (implied by atomic).
  bool sync = false;
  // Permissions of a created file (before the umask).
  mode_t mode = 0644;
};

struct CopyOptions {
  // Replace `to` if it exists; else kAlreadyExists (EEXIST).
  bool overwrite = true;
};

// fs::read_file() returns the file's contents. Suspends.
absl::StatusOr<std::vector<char>> read_file(std::string_view path);
// fs::read_file_to_string() returns the file's contents. Suspends.
absl::StatusOr<std::string> read_file_to_string(std::string_view path);

// fs::write_file()
//
// Creates or truncates `path` and writes `data` (see WriteOptions).
// Suspends. On failure with `atomic`, the old file is untouched and the
// temporary file is removed.
absl::Status write_file(std::string_view path, std::string_view data, WriteOptions options = {});
// fs::append_file() appends `data` (O_APPEND; creates the file with 0644).
// An error that close(2) reports (a failed write-back) is returned, as
// write_file() does. Suspends.
absl::Status append_file(std::string_view path, std::string_view data);

// fs::stat() follows symlinks; fs::lstat() does not. Suspend.
absl::StatusOr<FileStatus> stat(std::string_view path);
absl::StatusOr<FileStatus> lstat(std::string_view path);
// fs::exists() is false for ENOENT (and a dangling symlink), an error for
// anything else (EACCES on a parent, ...). Suspends.
absl::StatusOr<bool> exists(std::string_view path);

// fs::read_dir() lists a directory (no "." or ".."), sorted by name. The
// kind comes from the directory entry, or lstat when the filesystem does not
// report it. Suspends.
absl::StatusOr<std::vector<DirEntry>> read_dir(std::string_view path);

// fs::create_dir() creates one directory; kAlreadyExists if the path
// exists. Suspends.
absl::Status create_dir(std::string_view path, mode_t mode = 0777);
// fs::create_dirs() creates the directory and its missing parents; a
// directory that exists already is fine, anything else at a component is
// an error (ENOTDIR / EEXIST). Suspends.
absl::Status create_dirs(std::string_view path, mode_t mode = 0777);

// fs::remove() removes a file, a symlink (not its target) or an empty
// directory. Suspends.
absl::Status remove(std::string_view path);
// fs::remove_all() removes path and, for a directory, everything below it,
// never following symlinks. Returns how many entries were removed; a
// missing path is 0. Suspends (one pool call for the whole tree).
absl::StatusOr<uint64_t> remove_all(std::string_view path);

// fs::rename() renames (rename(2): replaces an existing file). Suspends.
absl::Status rename(std::string_view from, std::string_view to);

// fs::copy_file() copies a regular file's bytes and permissions, with
// copy_file_range(2) when the kernel supports it for the pair, else
// read/write. Returns the bytes copied. A destination that is the source
// itself (same path, hard link, symlink to it) is EINVAL and the file is
// left untouched. Suspends.
absl::StatusOr<uint64_t> copy_file(std::string_view from, std::string_view to,
                                   CopyOptions options = {});

// fs::symlink() creates `link` pointing at `target`. Suspends.
absl::Status symlink(std::string_view target, std::string_view link);
// fs::read_link() returns a symlink's target. Suspends.
absl::StatusOr<std::string> read_link(std::string_view path);
// fs::canonical() is the absolute path with symlinks, "." and ".."
// resolved (realpath(3)); the path must exist. Suspends.
absl::StatusOr<std::string> canonical(std::string_view path);

}  // namespace weft::fs
