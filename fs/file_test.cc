#include "fs/file.h"

#include <doctest/doctest.h>
#include <fcntl.h>
#include <unistd.h>

#include <cctype>
#include <cstdlib>
#include <string>
#include <vector>

#include "fs/fs.h"
#include "net/io.h"
#include "runtime/runtime.h"

namespace weft::fs {
namespace {

static_assert(net::Readable<File>);
static_assert(net::Writable<File>);

struct TempDir {
  TempDir() {
    const char* base = std::getenv("TEST_TMPDIR");
    std::string templ = std::string(base != nullptr ? base : "/tmp") + "/file_test.XXXXXX";
    char* p = ::mkdtemp(templ.data());
    REQUIRE(p != nullptr);
    path = p;
  }
  ~TempDir() { (void)remove_all(path); }
  std::string operator/(std::string_view name) const { return path + "/" + std::string(name); }
  std::string path;
};

template <class Fn>
void on_fiber(Fn&& fn) {
  auto rt = *Runtime::create({.workers = 2});
  rt->block_on(std::forward<Fn>(fn));
}

TEST_CASE("File: open options, read, write, seek, pread, pwrite, size, truncate") {
  TempDir d;
  on_fiber([&] {
    auto f = File::open(d / "a", {.read = true, .write = true, .create = true});
    REQUIRE(f.ok());
    CHECK(f->is_open());
    CHECK(f->path() == d / "a");
    CHECK(*f->write("hello ") == 6);
    uint64_t written = 0;
    REQUIRE(f->write_all(std::string("world"), &written).ok());
    CHECK(written == 5);
    std::vector<char> bytes{'!', '\n'};
    REQUIRE(f->write_all(bytes).ok());
    CHECK(*f->size() == 13);
    CHECK(*f->seek(0) == 0);
    char buf[64];
    auto n = f->read(buf);
    REQUIRE(n.ok());
    CHECK(std::string(buf, *n) == "hello world!\n");
    CHECK(*f->read(buf) == 0);  // end of file
    CHECK(*f->seek(-2, Whence::kEnd) == 11);
    CHECK(*f->seek(1, Whence::kCurrent) == 12);
    REQUIRE(f->pwrite("HELLO", 0).ok());
    CHECK(*f->pread(std::span<char>(buf, 5), 0) == 5);
    CHECK(std::string(buf, 5) == "HELLO");
    CHECK(*f->pread(std::span<char>(buf, 5), 100) == 0);
    REQUIRE(f->truncate(5).ok());
    CHECK(*f->size() == 5);
    REQUIRE(f->sync().ok());
    REQUIRE(f->datasync().ok());
    CHECK((fcntl(f->native_handle(), F_GETFD) & FD_CLOEXEC) != 0);
    REQUIRE(f->close().ok());
    CHECK(f->close().ok());  // idempotent
    CHECK_FALSE(f->is_open());
    CHECK(f->read(buf).status().code() == absl::StatusCode::kFailedPrecondition);
    CHECK(f->write_all("x").code() == absl::StatusCode::kFailedPrecondition);
    CHECK(*read_file_to_string(d / "a") == "HELLO");
  });
}

TEST_CASE("File: append, exclusive, truncate, create; option errors") {
  TempDir d;
  on_fiber([&] {
    {
      auto f = File::create(d / "log");
      REQUIRE(f.ok());
      REQUIRE(f->write_all("one\n").ok());
    }
    {
      auto f = File::open(d / "log", {.append = true});
      REQUIRE(f.ok());
      REQUIRE(f->seek(0).ok());
      REQUIRE(f->write_all("two\n").ok());  // O_APPEND: at the end anyway
    }
    CHECK(*read_file_to_string(d / "log") == "one\ntwo\n");
    auto ex = File::open(d / "log", {.write = true, .create = true, .exclusive = true});
    CHECK(error_number(ex.status()) == EEXIST);
    CHECK(ex.status().code() == absl::StatusCode::kAlreadyExists);
    auto ex2 = File::open(d / "fresh", {.write = true, .create = true, .exclusive = true,
                                        .mode = 0600});
    REQUIRE(ex2.ok());
    CHECK(stat(d / "fresh")->permissions == 0600);
    {
      auto t = File::open(d / "log", {.write = true, .truncate = true});
      REQUIRE(t.ok());
    }
    CHECK(read_file_to_string(d / "log")->empty());
    CHECK(File::open(d / "x", {.truncate = true}).status().code() ==
          absl::StatusCode::kInvalidArgument);
    CHECK(File::open(d / "x", {.write = true, .exclusive = true}).status().code() ==
          absl::StatusCode::kInvalidArgument);
    auto missing = File::open(d / "missing");
    CHECK(error_number(missing.status()) == ENOENT);
    CHECK(std::string(missing.status().message()) ==
          "fs::File::open(\"" + d / "missing" + "\"): open: No such file or directory");
    CHECK(error_number(File::open(d.path, {.write = true}).status()) == EISDIR);
    // A read-only file refuses writes with EBADF.
    auto ro = File::open(d / "fresh");
    REQUIRE(ro.ok());
    CHECK(error_number(ro->write_all("x")) == EBADF);
    // write_all reports how much it wrote.
    auto full = File::open("/dev/full", {.write = true});
    REQUIRE(full.ok());
    uint64_t written = 99;
    absl::Status s = full->write_all(std::string(5000, 'x'), &written);
    CHECK(error_number(s) == ENOSPC);
    CHECK(written == 0);
    CHECK(std::string(s.message()).find("wrote 0 of 5000 bytes") != std::string::npos);
    // Moves.
    File a = std::move(*ex2);
    File b;
    b = std::move(a);
    CHECK_FALSE(a.is_open());
    CHECK(b.is_open());
  });
}

TEST_CASE("File works with BufferedReader, BufferedWriter, copy and transforms") {
  TempDir d;
  on_fiber([&] {
    std::string text;
    for (int i = 0; i < 5000; ++i) text += "line " + std::to_string(i) + "\n";
    {
      auto out = File::create(d / "in.txt");
      REQUIRE(out.ok());
      net::BufferedWriter w(*out, 4096);
      REQUIRE(w.write_all(text).ok());
      REQUIRE(w.flush().ok());
    }
    auto in = File::open(d / "in.txt");
    REQUIRE(in.ok());
    net::BufferedReader r(*in, 1000);
    std::string line;
    int lines = 0;
    absl::Status s;
    while ((s = r.read_line(&line)).ok()) {
      CHECK(line == "line " + std::to_string(lines));
      ++lines;
    }
    CHECK(s.code() == absl::StatusCode::kOutOfRange);
    CHECK(lines == 5000);
    // copy() through an upper-casing transform into another file.
    auto src = File::open(d / "in.txt");
    auto dst = File::create(d / "out.txt");
    REQUIRE(src.ok());
    REQUIRE(dst.ok());
    net::BufferedWriter bw(*dst);
    auto upper = net::transform(bw, [](std::string_view c) {
      std::string u(c);
      for (char& ch : u) ch = static_cast<char>(std::toupper(static_cast<unsigned char>(ch)));
      return u;
    });
    auto n = net::copy(*src, upper);
    REQUIRE(n.ok());
    CHECK(*n == text.size());
    REQUIRE(bw.flush().ok());
    std::string expect = text;
    for (char& ch : expect) ch = static_cast<char>(std::toupper(static_cast<unsigned char>(ch)));
    CHECK(*read_file_to_string(d / "out.txt") == expect);
  });
}

}  // namespace
}  // namespace weft::fs
