// EACCES from weft::fs. Permission bits do not bind root, so when the test
// runs as root a child process drops to uid/gid 65534 (nobody) before any
// thread exists and makes the calls; the parent checks its report and
// removes the files afterwards.
#include <doctest/doctest.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "fs/fs.h"
#include "runtime/runtime.h"

namespace weft::fs {
namespace {

// Runs the calls; returns how many did not fail with EACCES as expected
// (each printed).
int run_checks(const std::string& dir) {
  std::string secret = dir + "/secret";
  std::string locked = dir + "/locked";
  std::string unlistable = dir + "/unlistable";
  int failures = 0;
  auto expect = [&](const char* what, const absl::Status& s, bool ok) {
    if (!ok) {
      std::fprintf(stderr, "FAILED: %s: %s\n", what, s.ToString().c_str());
      ++failures;
    }
  };
  // stat and File::open on the workers' io_uring and on the pool: the
  // same statuses, message included.
  std::string hidden = dir + "/noexec/f";
  for (const char* what : {"stat", "lstat", "exists", "File::open"}) {
    absl::Status on[2];
    for (IoUringMode mode : {IoUringMode::kAuto, IoUringMode::kOff}) {
      auto rt = *Runtime::create({.workers = 1, .io_uring = mode});
      on[mode == IoUringMode::kOff] = rt->block_on([&] {
        std::string_view w(what);
        if (w == "stat") return stat(hidden).status();
        if (w == "lstat") return lstat(hidden).status();
        if (w == "exists") return exists(hidden).status();
        return File::open(secret).status();
      });
    }
    expect(what, on[0], error_number(on[0]) == EACCES && on[0] == on[1]);
    if (on[0] != on[1]) std::fprintf(stderr, "  the pool said: %s\n", on[1].ToString().c_str());
  }
  auto rt = *Runtime::create({.workers = 1});
  rt->block_on([&] {
    absl::Status r = read_file(secret).status();
    expect("read_file", r,
           error_number(r) == EACCES && r.code() == absl::StatusCode::kPermissionDenied &&
               r.message() == "fs::read_file(\"" + secret + "\"): open: Permission denied");
    absl::Status s = write_file(locked + "/new", "x");
    expect("write_file", s, error_number(s) == EACCES);
    s = write_file(locked + "/new", "x", {.atomic = true});
    expect("write_file atomic", s, error_number(s) == EACCES);
    s = create_dir(locked + "/sub");
    expect("create_dir", s, error_number(s) == EACCES);
    s = read_dir(unlistable).status();
    expect("read_dir", s, error_number(s) == EACCES);
    s = File::open(secret).status();
    expect("File::open", s, error_number(s) == EACCES);
    s = copy_file(secret, dir + "/copy").status();
    expect("copy_file", s, error_number(s) == EACCES);
    s = remove(locked + "/inside");
    expect("remove", s, error_number(s) == EACCES);
  });
  return failures;
}

TEST_CASE("EACCES: unreadable file, unwritable and unlistable directory") {
  // /tmp: every user can traverse it (TEST_TMPDIR may not be).
  std::string templ = "/tmp/fs_permission_test.XXXXXX";
  REQUIRE(::mkdtemp(templ.data()) != nullptr);
  std::string dir = templ;
  REQUIRE(::chmod(dir.c_str(), 0755) == 0);
  std::string secret = dir + "/secret";
  int fd = ::open(secret.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
  REQUIRE(fd >= 0);
  REQUIRE(::write(fd, "s", 1) == 1);
  ::close(fd);
  REQUIRE(::chmod(secret.c_str(), 0000) == 0);
  std::string locked = dir + "/locked";
  REQUIRE(::mkdir(locked.c_str(), 0700) == 0);
  fd = ::open((locked + "/inside").c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
  REQUIRE(fd >= 0);
  ::close(fd);
  REQUIRE(::chmod(locked.c_str(), 0500) == 0);  // r-x: list but not write
  std::string unlistable = dir + "/unlistable";
  REQUIRE(::mkdir(unlistable.c_str(), 0100) == 0);  // --x
  std::string noexec = dir + "/noexec";
  REQUIRE(::mkdir(noexec.c_str(), 0700) == 0);
  fd = ::open((noexec + "/f").c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
  REQUIRE(fd >= 0);
  ::close(fd);
  REQUIRE(::chmod(noexec.c_str(), 0600) == 0);  // rw-: no search

  int failures = 0;
  if (::geteuid() != 0) {
    failures = run_checks(dir);
  } else {
    // No thread exists yet in this process, so the child may create a
    // runtime and the blocking pool from scratch.
    pid_t pid = ::fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
      if (::setresgid(65534, 65534, 65534) != 0 || ::setresuid(65534, 65534, 65534) != 0) {
        std::_Exit(77);
      }
      std::_Exit(run_checks(dir) == 0 ? 0 : 1);
    }
    int status = 0;
    REQUIRE(::waitpid(pid, &status, 0) == pid);
    REQUIRE(WIFEXITED(status));
    if (WEXITSTATUS(status) == 77) {
      // In a user namespace that maps only root (linux-sandbox), uid 65534
      // does not exist and root passes every permission check.
      MESSAGE("SKIPPED: running as root and cannot drop to uid 65534");
    } else {
      MESSAGE("running as root: the calls ran in a child as uid 65534");
      failures = WEXITSTATUS(status);
    }
  }
  CHECK(failures == 0);
  ::chmod(secret.c_str(), 0600);
  ::chmod(unlistable.c_str(), 0700);
  ::chmod(locked.c_str(), 0700);
  ::chmod(noexec.c_str(), 0700);
  auto rt = *Runtime::create({.workers = 1});
  rt->block_on([&] { CHECK(remove_all(dir).ok()); });
}

}  // namespace
}  // namespace weft::fs
