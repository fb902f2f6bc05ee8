#include "fs/fs.h"

#include <doctest/doctest.h>
#include <fcntl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <string>
#include <vector>

#include "runtime/blocking.h"
#include "runtime/runtime.h"

namespace weft::fs {
namespace {

// A fresh directory under TEST_TMPDIR (or /tmp), removed afterwards.
struct TempDir {
  TempDir() {
    const char* base = std::getenv("TEST_TMPDIR");
    std::string templ = std::string(base != nullptr ? base : "/tmp") + "/fs_test.XXXXXX";
    char* p = ::mkdtemp(templ.data());
    REQUIRE(p != nullptr);
    path = p;
  }
  ~TempDir() { (void)remove_all(path); }
  std::string operator/(std::string_view name) const { return path + "/" + std::string(name); }
  std::string path;
};

// Runs fn on a fiber of a one-worker runtime.
template <class Fn>
void on_fiber(Fn&& fn) {
  auto rt = *Runtime::create({.workers = 1});
  rt->block_on(std::forward<Fn>(fn));
}

void check_errno(const absl::Status& s, int err, std::string_view call, std::string_view path) {
  CAPTURE(s);
  CHECK_FALSE(s.ok());
  CHECK(error_number(s) == err);
  std::string msg(s.message());
  CHECK(msg.find("fs::" + std::string(call)) != std::string::npos);
  CHECK(msg.find(std::string(path)) != std::string::npos);
}

TEST_CASE("write_file, read_file, read_file_to_string, append_file") {
  TempDir d;
  on_fiber([&] {
    std::string data("bin\0ary\n", 8);
    REQUIRE(write_file(d / "a", data).ok());
    auto s = read_file_to_string(d / "a");
    REQUIRE(s.ok());
    CHECK(*s == data);
    auto v = read_file(d / "a");
    REQUIRE(v.ok());
    CHECK(std::string(v->begin(), v->end()) == data);
    REQUIRE(append_file(d / "a", "more").ok());
    CHECK(*read_file_to_string(d / "a") == data + "more");
    REQUIRE(append_file(d / "new", "x").ok());  // creates
    CHECK(*read_file_to_string(d / "new") == "x");
    // Truncates a longer file.
    REQUIRE(write_file(d / "a", "short").ok());
    CHECK(*read_file_to_string(d / "a") == "short");
    // Empty and large files.
    REQUIRE(write_file(d / "empty", "").ok());
    CHECK(read_file_to_string(d / "empty")->empty());
    std::string big(3 * 1024 * 1024 + 7, '\0');
    for (size_t i = 0; i < big.size(); ++i) big[i] = static_cast<char>(i * 131 + 7);
    REQUIRE(write_file(d / "big", big, {.sync = true}).ok());
    CHECK(*read_file_to_string(d / "big") == big);
    // /proc files report size 0 but have contents.
    auto self = read_file_to_string("/proc/self/status");
    REQUIRE(self.ok());
    CHECK(self->find("Pid:") != std::string::npos);
    // Mode of a created file.
    REQUIRE(write_file(d / "m", "m", {.mode = 0600}).ok());
    CHECK(stat(d / "m")->permissions == 0600);
  });
}

TEST_CASE("write_file atomic replaces the file and leaves no temporary file") {
  TempDir d;
  on_fiber([&] {
    REQUIRE(write_file(d / "cfg", "old").ok());
    REQUIRE(write_file(d / "cfg", "new contents", {.atomic = true, .mode = 0640}).ok());
    CHECK(*read_file_to_string(d / "cfg") == "new contents");
    CHECK(stat(d / "cfg")->permissions == 0640);
    auto entries = read_dir(d.path);
    REQUIRE(entries.ok());
    REQUIRE(entries->size() == 1);
    CHECK((*entries)[0].name == "cfg");
    // Into a missing directory: ENOENT, nothing created.
    check_errno(write_file(d / "nodir/cfg", "x", {.atomic = true}), ENOENT, "write_file",
                d / "nodir/cfg");
    // Over a directory: rename fails (EISDIR), the temporary file is removed.
    REQUIRE(create_dir(d / "sub").ok());
    absl::Status s = write_file(d / "sub", "x", {.atomic = true});
    check_errno(s, EISDIR, "write_file", d / "sub");
    CHECK(read_dir(d.path)->size() == 2);
    // A bare name writes into the working directory's path form.
    // Concurrent atomic writers: the file is always one whole version.
    std::vector<JoinHandle<void>> hs;
    for (int i = 0; i < 8; ++i) {
      hs.push_back(spawn([&, i] {
        std::string v(10000, static_cast<char>('a' + i));
        for (int k = 0; k < 5; ++k) CHECK(write_file(d / "cfg", v, {.atomic = true}).ok());
      }));
    }
    for (int k = 0; k < 20; ++k) {
      auto cur = read_file_to_string(d / "cfg");
      REQUIRE(cur.ok());
      if (cur->size() == 10000) {
        CHECK(cur->find_first_not_of((*cur)[0]) == std::string::npos);
      } else {
        CHECK(*cur == "new contents");
      }
    }
    for (auto& h : hs) h.join();
    CHECK(read_dir(d.path)->size() == 2);
  });
}

TEST_CASE("stat, lstat, exists") {
  TempDir d;
  on_fiber([&] {
    REQUIRE(write_file(d / "f", "12345", {.mode = 0640}).ok());
    REQUIRE(symlink("f", d / "link").ok());
    REQUIRE(symlink("missing", d / "dangling").ok());
    auto s = stat(d / "f");
    REQUIRE(s.ok());
    CHECK(s->kind == FileKind::kRegular);
    CHECK(s->size == 5);
    CHECK(s->permissions == 0640);
    CHECK(absl::Now() - s->mtime < absl::Minutes(5));
    CHECK(s->links == 1);
    auto via = stat(d / "link");
    REQUIRE(via.ok());
    CHECK(via->kind == FileKind::kRegular);
    CHECK(via->inode == s->inode);
    auto l = lstat(d / "link");
    REQUIRE(l.ok());
    CHECK(l->kind == FileKind::kSymlink);
    CHECK(stat(d.path)->kind == FileKind::kDirectory);
    CHECK(stat("/dev/null")->kind == FileKind::kCharDevice);
    CHECK(*exists(d / "f"));
    CHECK_FALSE(*exists(d / "nope"));
    CHECK_FALSE(*exists(d / "dangling"));
    CHECK(lstat(d / "dangling").ok());
    check_errno(stat(d / "nope").status(), ENOENT, "stat", d / "nope");
    check_errno(lstat(d / "nope").status(), ENOENT, "lstat", d / "nope");
    // A file used as a directory: ENOTDIR is an error, not "false".
    check_errno(exists(d / "f/x").status(), ENOTDIR, "exists", d / "f/x");
    CHECK(std::string(FileKindName(FileKind::kFifo)) == "fifo");
  });
}

TEST_CASE("read_dir lists entries with their kind") {
  TempDir d;
  on_fiber([&] {
    REQUIRE(write_file(d / "b_file", "").ok());
    REQUIRE(create_dir(d / "a_dir").ok());
    REQUIRE(symlink("b_file", d / "c_link").ok());
    REQUIRE(::mkfifo((d / "d_fifo").c_str(), 0600) == 0);
    auto e = read_dir(d.path);
    REQUIRE(e.ok());
    REQUIRE(e->size() == 4);
    CHECK((*e)[0].name == "a_dir");
    CHECK((*e)[0].kind == FileKind::kDirectory);
    CHECK((*e)[1].name == "b_file");
    CHECK((*e)[1].kind == FileKind::kRegular);
    CHECK((*e)[2].name == "c_link");
    CHECK((*e)[2].kind == FileKind::kSymlink);
    CHECK((*e)[3].kind == FileKind::kFifo);
    CHECK(read_dir(d / "a_dir")->empty());
    check_errno(read_dir(d / "none").status(), ENOENT, "read_dir", d / "none");
    check_errno(read_dir(d / "b_file").status(), ENOTDIR, "read_dir", d / "b_file");
  });
}

TEST_CASE("create_dir, create_dirs, remove, remove_all") {
  TempDir d;
  on_fiber([&] {
    REQUIRE(create_dir(d / "x").ok());
    absl::Status again = create_dir(d / "x");
    check_errno(again, EEXIST, "create_dir", d / "x");
    CHECK(again.code() == absl::StatusCode::kAlreadyExists);
    check_errno(create_dir(d / "p/q"), ENOENT, "create_dir", d / "p/q");
    REQUIRE(create_dirs(d / "p/q//r/").ok());
    CHECK(stat(d / "p/q/r")->kind == FileKind::kDirectory);
    CHECK(create_dirs(d / "p/q/r").ok());  // exists: fine
    REQUIRE(write_file(d / "p/file", "").ok());
    check_errno(create_dirs(d / "p/file/sub"), ENOTDIR, "create_dirs", d / "p/file");
    // remove: a file, an empty directory, a symlink (not its target).
    REQUIRE(symlink(d / "p", d / "plink").ok());
    REQUIRE(remove(d / "plink").ok());
    CHECK(*exists(d / "p"));
    REQUIRE(remove(d / "p/file").ok());
    REQUIRE(remove(d / "x").ok());
    CHECK_FALSE(*exists(d / "x"));
    check_errno(remove(d / "x"), ENOENT, "remove", d / "x");
    check_errno(remove(d / "p"), ENOTEMPTY, "remove", d / "p");
    // remove_all does not follow symlinks out of the tree.
    REQUIRE(create_dir(d / "outside").ok());
    REQUIRE(write_file(d / "outside/keep", "keep").ok());
    REQUIRE(write_file(d / "p/q/r/f1", "1").ok());
    REQUIRE(write_file(d / "p/q/f2", "2").ok());
    REQUIRE(symlink(d / "outside", d / "p/q/link").ok());
    auto n = remove_all(d / "p");
    REQUIRE(n.ok());
    CHECK(*n == 6);  // p, q, r, f1, f2, link
    CHECK_FALSE(*exists(d / "p"));
    CHECK(*read_file_to_string(d / "outside/keep") == "keep");
    CHECK(*remove_all(d / "p") == 0);
    CHECK(*remove_all(d / "outside/keep") == 1);
    CHECK(remove_all(d.path + "/.").status().code() == absl::StatusCode::kInvalidArgument);
  });
}

TEST_CASE("rename, copy_file, symlink, read_link, canonical") {
  TempDir d;
  on_fiber([&] {
    REQUIRE(write_file(d / "a", "alpha", {.mode = 0600}).ok());
    REQUIRE(rename(d / "a", d / "b").ok());
    CHECK_FALSE(*exists(d / "a"));
    absl::Status rs = rename(d / "a", d / "c");
    CHECK(error_number(rs) == ENOENT);
    CHECK(std::string(rs.message()).find(d / "a") != std::string::npos);
    CHECK(std::string(rs.message()).find(d / "c") != std::string::npos);
    std::string big(1 << 20, 'q');
    big += "end";
    REQUIRE(write_file(d / "big", big, {.mode = 0751}).ok());
    auto n = copy_file(d / "big", d / "copy");
    REQUIRE(n.ok());
    CHECK(*n == big.size());
    CHECK(*read_file_to_string(d / "copy") == big);
    CHECK(stat(d / "copy")->permissions == 0751);
    // Overwrite (shorter source truncates), and refusing to overwrite.
    REQUIRE(copy_file(d / "b", d / "copy").ok());
    CHECK(*read_file_to_string(d / "copy") == "alpha");
    auto refused = copy_file(d / "big", d / "copy", {.overwrite = false});
    CHECK(error_number(refused.status()) == EEXIST);
    CHECK(*read_file_to_string(d / "copy") == "alpha");
    CHECK(error_number(copy_file(d / "none", d / "x").status()) == ENOENT);
    CHECK(error_number(copy_file(d.path, d / "x").status()) == EISDIR);
    // Across filesystems (/proc -> here) falls back to read/write.
    auto cross = copy_file("/proc/self/status", d / "status");
    REQUIRE(cross.ok());
    CHECK(read_file_to_string(d / "status")->find("Pid:") != std::string::npos);
    // Symlinks.
    REQUIRE(symlink("b", d / "l").ok());
    CHECK(*read_link(d / "l") == "b");
    std::string longtarget(1000, 'z');
    REQUIRE(symlink(longtarget, d / "long").ok());
    CHECK(*read_link(d / "long") == longtarget);
    check_errno(read_link(d / "b").status(), EINVAL, "read_link", d / "b");
    check_errno(symlink("b", d / "l"), EEXIST, "symlink", d / "l");
    auto c = canonical(d.path + "/./l");
    REQUIRE(c.ok());
    CHECK(*c == *canonical(d / "b"));
    CHECK(c->front() == '/');
    CHECK(c->find("/./") == std::string::npos);
    check_errno(canonical(d / "none").status(), ENOENT, "canonical", d / "none");
  });
}

TEST_CASE("copy_file onto its own source fails and leaves the file intact") {
  TempDir d;
  on_fiber([&] {
    REQUIRE(write_file(d / "src", "precious bytes").ok());
    REQUIRE(::link((d / "src").c_str(), (d / "hard").c_str()) == 0);
    REQUIRE(symlink("src", d / "sym").ok());
    for (const std::string& to : {d / "src", d / "hard", d / "sym", d.path + "/./src"}) {
      CAPTURE(to);
      auto r = copy_file(d / "src", to);
      CHECK_FALSE(r.ok());
      check_errno(r.status(), EINVAL, "copy_file", to);
      CHECK(*read_file_to_string(d / "src") == "precious bytes");
    }
    // A different file is still overwritten.
    REQUIRE(write_file(d / "other", "a much longer old content").ok());
    auto n = copy_file(d / "src", d / "other");
    REQUIRE(n.ok());
    CHECK(*read_file_to_string(d / "other") == "precious bytes");
  });
}

TEST_CASE("errors: EISDIR, ENOSPC, bad paths") {
  TempDir d;
  on_fiber([&] {
    absl::Status s = read_file(d.path).status();
    check_errno(s, EISDIR, "read_file", d.path);
    CHECK(std::string(s.message()).find(": read: ") != std::string::npos);
    check_errno(write_file(d.path, "x"), EISDIR, "write_file", d.path);
    check_errno(append_file(d.path, "x"), EISDIR, "append_file", d.path);
    // ENOSPC: /dev/full fails every write with it. (A 64 KiB tmpfs would
    // need mount rights the test sandbox does not give.)
    absl::Status full = write_file("/dev/full", std::string(10000, 'x'));
    check_errno(full, ENOSPC, "write_file", "/dev/full");
    CHECK(full.code() == absl::StatusCode::kResourceExhausted);
    CHECK(std::string(full.message()).find("wrote 0 of 10000 bytes") != std::string::npos);
    check_errno(append_file("/dev/full", "x"), ENOSPC, "append_file", "/dev/full");
    // Paths the kernel must never see.
    CHECK(read_file("").status().code() == absl::StatusCode::kInvalidArgument);
    CHECK(stat(std::string("a\0b", 3)).status().code() == absl::StatusCode::kInvalidArgument);
    CHECK(rename("a", "").code() == absl::StatusCode::kInvalidArgument);
    CHECK(write_file(std::string("x\0", 2), "y").code() == absl::StatusCode::kInvalidArgument);
    // ENAMETOOLONG
    CHECK(error_number(stat(d / std::string(300, 'n')).status()) == ENAMETOOLONG);
  });
}

// EMFILE: the soft descriptor limit is lowered for the duration of the test,
// descriptors are filled up to it, and restored afterwards.
TEST_CASE("errors: EMFILE when the process is out of descriptors") {
  TempDir d;
  auto rt = *Runtime::create({.workers = 1});
  // Warm the pool so no thread start happens under the low limit.
  rt->block_on([&] { REQUIRE(write_file(d / "f", "x").ok()); });
  rlimit old;
  REQUIRE(::getrlimit(RLIMIT_NOFILE, &old) == 0);
  rlimit low = old;
  low.rlim_cur = 256;
  REQUIRE(::setrlimit(RLIMIT_NOFILE, &low) == 0);
  std::vector<int> fillers;
  for (;;) {
    int fd = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
    if (fd < 0) break;
    fillers.push_back(fd);
  }
  absl::Status read_err, dir_err, open_err;
  rt->block_on([&] {
    read_err = read_file(d / "f").status();
    dir_err = read_dir(d.path).status();
    open_err = File::open(d / "f").status();
  });
  for (int fd : fillers) ::close(fd);
  REQUIRE(::setrlimit(RLIMIT_NOFILE, &old) == 0);
  check_errno(read_err, EMFILE, "read_file", d / "f");
  CHECK(read_err.code() == absl::StatusCode::kResourceExhausted);
  check_errno(dir_err, EMFILE, "read_dir", d.path);
  check_errno(open_err, EMFILE, "File::open", d / "f");
  rt->block_on([&] { CHECK(read_file_to_string(d / "f").ok()); });
}

// No worker blocks: a ticker on the only worker keeps its pace while 32
// fibers hammer the filesystem.
TEST_CASE("fs calls park fibers, not the worker") {
  TempDir d;
  on_fiber([&] {
    std::atomic<bool> stop{false};
    int64_t max_gap_us = 0;
    auto ticker = spawn([&] {
      auto last = std::chrono::steady_clock::now();
      while (!stop.load()) {
        (void)this_fiber::sleep_for(absl::Milliseconds(1));
        auto now = std::chrono::steady_clock::now();
        max_gap_us = std::max<int64_t>(
            max_gap_us, std::chrono::duration_cast<std::chrono::microseconds>(now - last).count());
        last = now;
      }
    });
    std::vector<JoinHandle<void>> hs;
    for (int i = 0; i < 32; ++i) {
      hs.push_back(spawn([&, i] {
        std::string p = d / ("f" + std::to_string(i));
        for (int k = 0; k < 20; ++k) {
          CHECK(write_file(p, std::string(4096, 'a'), {.sync = k % 5 == 0}).ok());
          CHECK(stat(p)->size == 4096);
          CHECK(read_file(p)->size() == 4096);
        }
      }));
    }
    for (auto& h : hs) h.join();
    stop.store(true);
    ticker.join();
    CHECK(max_gap_us < 500 * 1000);
    CHECK(read_dir(d.path)->size() == 32);
  });
}

}  // namespace
}  // namespace weft::fs
