#include "fs/fs.h"

#include <dirent.h>
#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <memory>
#include <optional>
#include <random>
#include <utility>

#include "fs/internal/fs_util.h"
#include "runtime/blocking.h"
#include "runtime/internal/uring.h"

namespace weft::fs {

using internal::fs_error;
using internal::fs_error2;
using internal::path_string;

namespace {

// Closes a descriptor at scope exit. Pool threads only.
struct Fd {
  int fd = -1;
  explicit Fd(int f) : fd(f) {}
  Fd(const Fd&) = delete;
  ~Fd() {
    if (fd >= 0) ::close(fd);
  }
};

FileKind kind_of_mode(mode_t m) {
  switch (m & S_IFMT) {
    case S_IFREG: return FileKind::kRegular;
    case S_IFDIR: return FileKind::kDirectory;
    case S_IFLNK: return FileKind::kSymlink;
    case S_IFBLK: return FileKind::kBlockDevice;
    case S_IFCHR: return FileKind::kCharDevice;
    case S_IFIFO: return FileKind::kFifo;
    case S_IFSOCK: return FileKind::kSocket;
    default: return FileKind::kUnknown;
  }
}

FileKind kind_of_dirent(unsigned char t) {
  switch (t) {
    case DT_REG: return FileKind::kRegular;
    case DT_DIR: return FileKind::kDirectory;
    case DT_LNK: return FileKind::kSymlink;
    case DT_BLK: return FileKind::kBlockDevice;
    case DT_CHR: return FileKind::kCharDevice;
    case DT_FIFO: return FileKind::kFifo;
    case DT_SOCK: return FileKind::kSocket;
    default: return FileKind::kUnknown;
  }
}

FileStatus to_file_status(const struct stat& st) {
  FileStatus s;
  s.kind = kind_of_mode(st.st_mode);
  s.size = static_cast<uint64_t>(st.st_size);
  s.permissions = st.st_mode & 07777;
  s.mtime = absl::TimeFromTimespec(st.st_mtim);
  s.inode = st.st_ino;
  s.device = st.st_dev;
  s.links = st.st_nlink;
  s.uid = st.st_uid;
  s.gid = st.st_gid;
  return s;
}

// read_all_fd() reads an open file to its end into out. Blocking.
template <class Out>
absl::Status read_all_fd(int fd, Out* out, std::string_view call, const std::string& path) {
  struct stat st;
  if (::fstat(fd, &st) < 0) return fs_error(errno, call, path, "fstat");
  // Files in /proc report size 0: grow as we go.
  size_t cap = S_ISREG(st.st_mode) && st.st_size > 0 ? static_cast<size_t>(st.st_size) + 1 : 4096;
  out->resize(cap);
  size_t len = 0;
  for (;;) {
    if (len == out->size()) out->resize(out->size() * 2);
    ssize_t n = weft::internal::retry_on_eintr(
        [&] { return ::read(fd, out->data() + len, out->size() - len); });
    if (n < 0) return fs_error(errno, call, path, "read");
    if (n == 0) break;
    len += static_cast<size_t>(n);
  }
  out->resize(len);
  return absl::OkStatus();
}

template <class Out>
absl::StatusOr<Out> read_file_impl(std::string_view call, std::string_view path) {
  auto p = path_string(call, path);
  if (!p.ok()) return p.status();
  return run_blocking([&]() -> absl::StatusOr<Out> {
    Fd fd(weft::internal::retry_on_eintr([&] { return ::open(p->c_str(), O_RDONLY | O_CLOEXEC); }));
    if (fd.fd < 0) return fs_error(errno, call, *p, "open");
    Out out;
    if (absl::Status s = read_all_fd(fd.fd, &out, call, *p); !s.ok()) return s;
    return out;
  });
}

// dir_name() is the directory part of a path ("." for a bare name).
std::string dir_name(const std::string& p) {
  size_t slash = p.find_last_of('/');
  if (slash == std::string::npos) return ".";
  if (slash == 0) return "/";
  return p.substr(0, slash);
}

std::string base_name(const std::string& p) {
  size_t slash = p.find_last_of('/');
  return slash == std::string::npos ? p : p.substr(slash + 1);
}

std::string temp_suffix() {
  static std::atomic<uint64_t> counter{0};
  thread_local std::mt19937_64 rng(std::random_device{}());
  return "." + std::to_string(::getpid()) + "." +
         std::to_string(counter.fetch_add(1, std::memory_order_relaxed)) + "." +
         std::to_string(rng() & 0xffffff);
}

absl::Status write_atomic(const std::string& path, std::string_view data, mode_t mode) {
  const char* call = "write_file";
  std::string dir = dir_name(path);
  std::string tmp = dir + "/." + base_name(path) + ".tmp" + temp_suffix();
  int raw = weft::internal::retry_on_eintr(
      [&] { return ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode); });
  if (raw < 0) return fs_error(errno, call, path, "open temporary file " + tmp);
  Fd fd(raw);
  auto fail = [&](absl::Status s) {
    ::unlink(tmp.c_str());
    return s;
  };
  uint64_t done = 0;
  if (absl::Status s = internal::write_all_fd(fd.fd, data, &done, call, path); !s.ok()) return fail(s);
  if (weft::internal::retry_on_eintr([&] { return ::fsync(fd.fd); }) < 0) {
    return fail(fs_error(errno, call, path, "fsync"));
  }
  if (::close(std::exchange(fd.fd, -1)) < 0 && errno != EINTR) {
    return fail(fs_error(errno, call, path, "close"));
  }
  if (::rename(tmp.c_str(), path.c_str()) < 0) return fail(fs_error(errno, call, path, "rename"));
  Fd dfd(weft::internal::retry_on_eintr(
      [&] { return ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC); }));
  if (dfd.fd < 0) return fs_error(errno, call, path, "open directory " + dir);
  if (weft::internal::retry_on_eintr([&] { return ::fsync(dfd.fd); }) < 0) {
    return fs_error(errno, call, path, "fsync directory " + dir);
  }
  return absl::OkStatus();
}

FileStatus to_file_status(const struct statx& st) {
  FileStatus s;
  s.kind = kind_of_mode(st.stx_mode);
  s.size = st.stx_size;
  s.permissions = st.stx_mode & 07777;
  s.mtime = absl::FromUnixSeconds(st.stx_mtime.tv_sec) + absl::Nanoseconds(st.stx_mtime.tv_nsec);
  s.inode = st.stx_ino;
  s.device = makedev(st.stx_dev_major, st.stx_dev_minor);
  s.links = st.stx_nlink;
  s.uid = st.stx_uid;
  s.gid = st.stx_gid;
  return s;
}

// ring_stat() runs statx on the calling worker's io_uring (uring.h):
// nullopt if there is none (or it is full), and the caller uses the pool.
std::optional<absl::StatusOr<struct statx>> ring_stat(std::string_view call, const std::string& p,
                                                      bool follow) {
  using weft::internal::RingOp;
  using weft::internal::RingResult;
  if (!weft::internal::ring_available()) return std::nullopt;
  weft::internal::RingOpPtr op = weft::internal::make_ring_op(RingOp::Kind::kStatx);
  op->path = p;
  op->flags = follow ? 0 : AT_SYMLINK_NOFOLLOW;
  op->mask = STATX_BASIC_STATS;
  switch (weft::internal::ring_call(op.get())) {
    case RingResult::kNoRing:
      return std::nullopt;
    case RingResult::kCancelled:
      return absl::StatusOr<struct statx>(internal::cancelled_error(call, p));
    case RingResult::kDone:
      break;
  }
  if (op->res < 0) {
    return absl::StatusOr<struct statx>(fs_error(-op->res, call, p, follow ? "stat" : "lstat"));
  }
  return absl::StatusOr<struct statx>(op->stx);
}

absl::StatusOr<FileStatus> stat_impl(std::string_view call, std::string_view path, bool follow) {
  auto p = path_string(call, path);
  if (!p.ok()) return p.status();
  if (auto r = ring_stat(call, *p, follow)) {
    if (!r->ok()) return r->status();
    return to_file_status(**r);
  }
  return run_blocking([&]() -> absl::StatusOr<FileStatus> {
    struct stat st;
    int rc = follow ? ::stat(p->c_str(), &st) : ::lstat(p->c_str(), &st);
    if (rc < 0) return fs_error(errno, call, *p, follow ? "stat" : "lstat");
    return to_file_status(st);
  });
}

// remove_tree() removes the entry `name` in directory dirfd, recursively,
// never following symlinks. Counts removed entries. Blocking.
absl::Status remove_tree(int dirfd, const std::string& name, const std::string& shown,
                        uint64_t* count) {
  if (::unlinkat(dirfd, name.c_str(), 0) == 0) {
    ++*count;
    return absl::OkStatus();
  }
  int err = errno;
  if (err == ENOENT) return absl::OkStatus();
  if (err != EISDIR && err != EPERM) return fs_error(err, "remove_all", shown, "unlink");
  // A directory (EISDIR on Linux; EPERM on some filesystems).
  int raw = weft::internal::retry_on_eintr([&] {
    return ::openat(dirfd, name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  });
  if (raw < 0) {
    if (errno == ENOTDIR) return fs_error(err, "remove_all", shown, "unlink");
    return fs_error(errno, "remove_all", shown, "open");
  }
  DIR* d = ::fdopendir(raw);
  if (d == nullptr) {
    int e = errno;
    ::close(raw);
    return fs_error(e, "remove_all", shown, "fdopendir");
  }
  std::unique_ptr<DIR, int (*)(DIR*)> guard(d, ::closedir);
  std::vector<std::string> names;
  for (;;) {
    errno = 0;
    dirent* e = ::readdir(d);
    if (e == nullptr) {
      if (errno != 0) return fs_error(errno, "remove_all", shown, "readdir");
      break;
    }
    if (std::strcmp(e->d_name, ".") == 0 || std::strcmp(e->d_name, "..") == 0) continue;
    names.emplace_back(e->d_name);
  }
  for (const std::string& n : names) {
    if (absl::Status s = remove_tree(::dirfd(d), n, shown + "/" + n, count); !s.ok()) return s;
  }
  if (::unlinkat(dirfd, name.c_str(), AT_REMOVEDIR) < 0) {
    if (errno == ENOENT) return absl::OkStatus();
    return fs_error(errno, "remove_all", shown, "rmdir");
  }
  ++*count;
  return absl::OkStatus();
}

}  // namespace

std::optional<int> error_number(const absl::Status& s) { return weft::internal::errno_of(s); }

const char* FileKindName(FileKind k) {
  switch (k) {
    case FileKind::kRegular: return "regular";
    case FileKind::kDirectory: return "directory";
    case FileKind::kSymlink: return "symlink";
    case FileKind::kBlockDevice: return "block device";
    case FileKind::kCharDevice: return "character device";
    case FileKind::kFifo: return "fifo";
    case FileKind::kSocket: return "socket";
    case FileKind::kUnknown: break;
  }
  return "unknown";
}

absl::StatusOr<std::vector<char>> read_file(std::string_view path) {
  return read_file_impl<std::vector<char>>("read_file", path);
}

absl::StatusOr<std::string> read_file_to_string(std::string_view path) {
  return read_file_impl<std::string>("read_file_to_string", path);
}

absl::Status write_file(std::string_view path, std::string_view data, WriteOptions options) {
  auto p = path_string("write_file", path);
  if (!p.ok()) return p.status();
  return run_blocking([&]() -> absl::Status {
    if (options.atomic) return write_atomic(*p, data, options.mode);
    Fd fd(weft::internal::retry_on_eintr([&] {
      return ::open(p->c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, options.mode);
    }));
    if (fd.fd < 0) return fs_error(errno, "write_file", *p, "open");
    uint64_t done = 0;
    if (absl::Status s = internal::write_all_fd(fd.fd, data, &done, "write_file", *p); !s.ok()) {
      return s;
    }
    if (options.sync && weft::internal::retry_on_eintr([&] { return ::fsync(fd.fd); }) < 0) {
      return fs_error(errno, "write_file", *p, "fsync");
    }
    if (::close(std::exchange(fd.fd, -1)) < 0 && errno != EINTR) {
      return fs_error(errno, "write_file", *p, "close");
    }
    return absl::OkStatus();
  });
}

absl::Status append_file(std::string_view path, std::string_view data) {
  auto p = path_string("append_file", path);
  if (!p.ok()) return p.status();
  return run_blocking([&]() -> absl::Status {
    Fd fd(weft::internal::retry_on_eintr([&] {
      return ::open(p->c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    }));
    if (fd.fd < 0) return fs_error(errno, "append_file", *p, "open");
    uint64_t done = 0;
    if (absl::Status s = internal::write_all_fd(fd.fd, data, &done, "append_file", *p); !s.ok()) return s;
    // As in write_file: a file system that reports a failed write-back at
    // close (NFS, a full quota) must not read as success.
    if (::close(std::exchange(fd.fd, -1)) < 0 && errno != EINTR) {
      return fs_error(errno, "append_file", *p, "close");
    }
    return absl::OkStatus();
  });
}

absl::StatusOr<FileStatus> stat(std::string_view path) { return stat_impl("stat", path, true); }
absl::StatusOr<FileStatus> lstat(std::string_view path) { return stat_impl("lstat", path, false); }

absl::StatusOr<bool> exists(std::string_view path) {
  auto p = path_string("exists", path);
  if (!p.ok()) return p.status();
  if (auto r = ring_stat("exists", *p, true)) {
    if (r->ok()) return true;
    if (weft::internal::errno_of(r->status()) == ENOENT) return false;
    return r->status();
  }
  return run_blocking([&]() -> absl::StatusOr<bool> {
    struct stat st;
    if (::stat(p->c_str(), &st) == 0) return true;
    if (errno == ENOENT) return false;
    return fs_error(errno, "exists", *p, "stat");
  });
}

absl::StatusOr<std::vector<DirEntry>> read_dir(std::string_view path) {
  auto p = path_string("read_dir", path);
  if (!p.ok()) return p.status();
  return run_blocking([&]() -> absl::StatusOr<std::vector<DirEntry>> {
    int raw = weft::internal::retry_on_eintr(
        [&] { return ::open(p->c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC); });
    if (raw < 0) return fs_error(errno, "read_dir", *p, "open");
    DIR* d = ::fdopendir(raw);
    if (d == nullptr) {
      int e = errno;
      ::close(raw);
      return fs_error(e, "read_dir", *p, "fdopendir");
    }
    std::unique_ptr<DIR, int (*)(DIR*)> guard(d, ::closedir);
    std::vector<DirEntry> out;
    for (;;) {
      errno = 0;
      dirent* e = ::readdir(d);
      if (e == nullptr) {
        if (errno != 0) return fs_error(errno, "read_dir", *p, "readdir");
        break;
      }
      if (std::strcmp(e->d_name, ".") == 0 || std::strcmp(e->d_name, "..") == 0) continue;
      DirEntry de{e->d_name, kind_of_dirent(e->d_type)};
      if (de.kind == FileKind::kUnknown) {
        struct stat st;
        if (::fstatat(::dirfd(d), e->d_name, &st, AT_SYMLINK_NOFOLLOW) == 0) {
          de.kind = kind_of_mode(st.st_mode);
        }
      }
      out.push_back(std::move(de));
    }
    std::sort(out.begin(), out.end(),
              [](const DirEntry& a, const DirEntry& b) { return a.name < b.name; });
    return out;
  });
}

absl::Status create_dir(std::string_view path, mode_t mode) {
  auto p = path_string("create_dir", path);
  if (!p.ok()) return p.status();
  return run_blocking([&]() -> absl::Status {
    if (::mkdir(p->c_str(), mode) < 0) return fs_error(errno, "create_dir", *p, "mkdir");
    return absl::OkStatus();
  });
}

absl::Status create_dirs(std::string_view path, mode_t mode) {
  auto p = path_string("create_dirs", path);
  if (!p.ok()) return p.status();
  return run_blocking([&]() -> absl::Status {
    const std::string& full = *p;
    // Each prefix that ends before a '/', then the whole path.
    for (size_t i = 1; i <= full.size(); ++i) {
      if (i < full.size() && full[i] != '/') continue;
      if (full[i - 1] == '/') continue;  // "a//b", or a trailing '/'
      std::string prefix = full.substr(0, i);
      if (::mkdir(prefix.c_str(), mode) == 0) continue;
      int err = errno;
      if (err != EEXIST) return fs_error(err, "create_dirs", prefix, "mkdir");
      struct stat st;
      if (::stat(prefix.c_str(), &st) < 0) return fs_error(errno, "create_dirs", prefix, "stat");
      if (!S_ISDIR(st.st_mode)) return fs_error(ENOTDIR, "create_dirs", prefix, "mkdir");
    }
    return absl::OkStatus();
  });
}

absl::Status remove(std::string_view path) {
  auto p = path_string("remove", path);
  if (!p.ok()) return p.status();
  return run_blocking([&]() -> absl::Status {
    if (::unlink(p->c_str()) == 0) return absl::OkStatus();
    int err = errno;
    if (err != EISDIR && err != EPERM) return fs_error(err, "remove", *p, "unlink");
    struct stat st;
    if (::lstat(p->c_str(), &st) < 0 || !S_ISDIR(st.st_mode)) {
      return fs_error(err, "remove", *p, "unlink");
    }
    if (::rmdir(p->c_str()) < 0) return fs_error(errno, "remove", *p, "rmdir");
    return absl::OkStatus();
  });
}

absl::StatusOr<uint64_t> remove_all(std::string_view path) {
  auto p = path_string("remove_all", path);
  if (!p.ok()) return p.status();
  return run_blocking([&]() -> absl::StatusOr<uint64_t> {
    uint64_t count = 0;
    // The last component inside its parent, opened as a directory.
    std::string full = *p;
    while (full.size() > 1 && full.back() == '/') full.pop_back();
    std::string dir = dir_name(full);
    std::string base = base_name(full);
    if (base == "." || base == ".." || base.empty() || base == "/") {
      return absl::InvalidArgumentError("fs::remove_all(\"" + *p +
                                        "\"): refusing to remove '.', '..' or '/'");
    }
    Fd dfd(weft::internal::retry_on_eintr(
        [&] { return ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC); }));
    if (dfd.fd < 0) {
      if (errno == ENOENT) return uint64_t{0};
      return fs_error(errno, "remove_all", *p, "open parent directory");
    }
    if (absl::Status s = remove_tree(dfd.fd, base, full, &count); !s.ok()) return s;
    return count;
  });
}

absl::Status rename(std::string_view from, std::string_view to) {
  auto f = path_string("rename", from);
  if (!f.ok()) return f.status();
  auto t = path_string("rename", to);
  if (!t.ok()) return t.status();
  return run_blocking([&]() -> absl::Status {
    if (::rename(f->c_str(), t->c_str()) < 0) return fs_error2(errno, "rename", *f, *t, "rename");
    return absl::OkStatus();
  });
}

absl::StatusOr<uint64_t> copy_file(std::string_view from, std::string_view to,
                                   CopyOptions options) {
  auto f = path_string("copy_file", from);
  if (!f.ok()) return f.status();
  auto t = path_string("copy_file", to);
  if (!t.ok()) return t.status();
  return run_blocking([&]() -> absl::StatusOr<uint64_t> {
    Fd in(weft::internal::retry_on_eintr([&] { return ::open(f->c_str(), O_RDONLY | O_CLOEXEC); }));
    if (in.fd < 0) return fs_error2(errno, "copy_file", *f, *t, "open source");
    struct stat st;
    if (::fstat(in.fd, &st) < 0) return fs_error2(errno, "copy_file", *f, *t, "fstat source");
    if (S_ISDIR(st.st_mode)) return fs_error2(EISDIR, "copy_file", *f, *t, "open source");
    // Not O_TRUNC: the destination may be the source itself (the same
    // path, a hard link, a symlink to it), which must not be emptied. It
    // is truncated once it is known to be another file (a regular one:
    // O_TRUNC did nothing to a device or FIFO, and ftruncate fails there).
    int flags = O_WRONLY | O_CREAT | O_CLOEXEC | (options.overwrite ? 0 : O_EXCL);
    Fd out(weft::internal::retry_on_eintr(
        [&] { return ::open(t->c_str(), flags, st.st_mode & 07777); }));
    if (out.fd < 0) return fs_error2(errno, "copy_file", *f, *t, "open destination");
    struct stat dst;
    if (::fstat(out.fd, &dst) < 0) return fs_error2(errno, "copy_file", *f, *t, "fstat destination");
    if (dst.st_dev == st.st_dev && dst.st_ino == st.st_ino) {
      return fs_error2(EINVAL, "copy_file", *f, *t, "source and destination are the same file");
    }
    if (options.overwrite && S_ISREG(dst.st_mode) &&
        weft::internal::retry_on_eintr([&] { return ::ftruncate(out.fd, 0); }) < 0) {
      return fs_error2(errno, "copy_file", *f, *t, "truncate destination");
    }
    // An existing destination keeps its own mode unless we set it.
    if (::fchmod(out.fd, st.st_mode & 07777) < 0) {
      return fs_error2(errno, "copy_file", *f, *t, "fchmod destination");
    }
    uint64_t total = 0;
    bool use_cfr = true;
    for (;;) {
      if (use_cfr) {
        ssize_t n = ::copy_file_range(in.fd, nullptr, out.fd, nullptr, 1 << 30, 0);
        if (n > 0) {
          total += static_cast<uint64_t>(n);
          continue;
        }
        if (n == 0) break;
        if (errno == EINTR) continue;
        if (total == 0 && (errno == EXDEV || errno == ENOSYS || errno == EINVAL ||
                           errno == EOPNOTSUPP || errno == EPERM)) {
          use_cfr = false;  // not for this pair of files: read/write
          continue;
        }
        return fs_error2(errno, "copy_file", *f, *t, "copy_file_range");
      }
      char buf[64 * 1024];
      ssize_t n = weft::internal::retry_on_eintr([&] { return ::read(in.fd, buf, sizeof buf); });
      if (n < 0) return fs_error2(errno, "copy_file", *f, *t, "read");
      if (n == 0) break;
      uint64_t done = 0;
      if (absl::Status s = internal::write_all_fd(out.fd, std::string_view(buf, static_cast<size_t>(n)),
                                              &done, "copy_file", *t);
          !s.ok()) {
        return s;
      }
      total += static_cast<uint64_t>(n);
    }
    if (::close(std::exchange(out.fd, -1)) < 0 && errno != EINTR) {
      return fs_error2(errno, "copy_file", *f, *t, "close destination");
    }
    return total;
  });
}

absl::Status symlink(std::string_view target, std::string_view link) {
  auto tg = path_string("symlink", target);
  if (!tg.ok()) return tg.status();
  auto l = path_string("symlink", link);
  if (!l.ok()) return l.status();
  return run_blocking([&]() -> absl::Status {
    if (::symlink(tg->c_str(), l->c_str()) < 0) {
      return fs_error2(errno, "symlink", *tg, *l, "symlink");
    }
    return absl::OkStatus();
  });
}

absl::StatusOr<std::string> read_link(std::string_view path) {
  auto p = path_string("read_link", path);
  if (!p.ok()) return p.status();
  return run_blocking([&]() -> absl::StatusOr<std::string> {
    std::string buf(256, '\0');
    for (;;) {
      ssize_t n = ::readlink(p->c_str(), buf.data(), buf.size());
      if (n < 0) return fs_error(errno, "read_link", *p, "readlink");
      if (static_cast<size_t>(n) < buf.size()) {
        buf.resize(static_cast<size_t>(n));
        return buf;
      }
      buf.resize(buf.size() * 2);  // possibly truncated: try a larger buffer
    }
  });
}

absl::StatusOr<std::string> canonical(std::string_view path) {
  auto p = path_string("canonical", path);
  if (!p.ok()) return p.status();
  return run_blocking([&]() -> absl::StatusOr<std::string> {
    char* r = ::realpath(p->c_str(), nullptr);
    if (r == nullptr) return fs_error(errno, "canonical", *p, "realpath");
    std::string out(r);
    ::free(r);
    return out;
  });
}

}  // namespace weft::fs
