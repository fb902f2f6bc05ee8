#include "net/stdin.h"

#include <doctest/doctest.h>
#include <fcntl.h>
#include <sys/socket.h>
#include <termios.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <string>
#include <thread>

#include "net/io.h"
#include "runtime/runtime.h"

namespace weft::net {
namespace {

static_assert(Readable<StdinStream>);

TEST_CASE("StdinStream over a pipe: poller, read_line, flags restored") {
  int p[2];
  REQUIRE(::pipe2(p, O_CLOEXEC) == 0);
  int before = ::fcntl(p[0], F_GETFL);
  REQUIRE((before & O_NONBLOCK) == 0);
  auto rt = *Runtime::create({.workers = 1});
  rt->block_on([&] {
    auto in = StdinStream::open(p[0]);
    REQUIRE(in.ok());
    CHECK(in->uses_poller());
    CHECK((::fcntl(p[0], F_GETFL) & O_NONBLOCK) != 0);
    // The writer is slow: the reader parks between lines, the worker runs on.
    auto writer = spawn([&] {
      for (int i = 0; i < 20; ++i) {
        std::string line = "line " + std::to_string(i) + "\n";
        CHECK(::write(p[1], line.data(), line.size()) == static_cast<ssize_t>(line.size()));
        (void)this_fiber::sleep_for(absl::Milliseconds(1));
      }
      ::close(p[1]);
    });
    BufferedReader r(*in);
    std::string line;
    int n = 0;
    absl::Status s;
    while ((s = r.read_line(&line)).ok()) {
      CHECK(line == "line " + std::to_string(n));
      ++n;
    }
    CHECK(s.code() == absl::StatusCode::kOutOfRange);
    CHECK(n == 20);
    writer.join();
    REQUIRE(in->close().ok());
    CHECK(::fcntl(p[0], F_GETFL) == before);
    CHECK(in->read(std::span<char>(&line[0], 1)).status().code() ==
          absl::StatusCode::kFailedPrecondition);
  });
  CHECK(::fcntl(p[0], F_GETFL) == before);  // fd stays open, flags as they were
  ::close(p[0]);
}

TEST_CASE("StdinStream: the destructor restores flags; close wakes a parked reader") {
  int sv[2];
  REQUIRE(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == 0);
  int before = ::fcntl(sv[0], F_GETFL);
  auto rt = *Runtime::create({.workers = 2});
  rt->block_on([&] {
    {
      auto in = StdinStream::open(sv[0]);
      REQUIRE(in.ok());
      CHECK(in->uses_poller());
    }
    CHECK(::fcntl(sv[0], F_GETFL) == before);
    auto in = StdinStream::open(sv[0]);
    REQUIRE(in.ok());
    auto reader = spawn([&] {
      char c;
      return in->read(std::span<char>(&c, 1)).status();
    });
    (void)this_fiber::sleep_for(absl::Milliseconds(20));
    REQUIRE(in->close().ok());
    absl::Status s = reader.join();
    CHECK_FALSE(s.ok());
    CHECK(::fcntl(sv[0], F_GETFL) == before);
  });
  ::close(sv[0]);
  ::close(sv[1]);
}

TEST_CASE("StdinStream: a second stream on the same pipe keeps it non-blocking until the last closes") {
  // `in = *stdin_stream();` opens the new stream before the old one closes.
  // The old one's close must not make the pipe blocking under the new one,
  // whose read() would then block its worker thread instead of parking.
  int p[2];
  REQUIRE(::pipe2(p, O_CLOEXEC) == 0);
  const int before = ::fcntl(p[0], F_GETFL);
  auto rt = *Runtime::create({.workers = 1});
  rt->block_on([&] {
    auto first = StdinStream::open(p[0]);
    REQUIRE(first.ok());
    StdinStream in = std::move(*first);
    auto second = StdinStream::open(p[0]);
    REQUIRE(second.ok());
    in = std::move(*second);  // closes the first stream
    CHECK((::fcntl(p[0], F_GETFL) & O_NONBLOCK) != 0);
    {
      auto third = StdinStream::open(p[0]);
      REQUIRE(third.ok());
      REQUIRE(third->close().ok());
    }
    CHECK((::fcntl(p[0], F_GETFL) & O_NONBLOCK) != 0);
    REQUIRE(::write(p[1], "x", 1) == 1);
    char c;
    CHECK(*in.read(std::span<char>(&c, 1)) == 1);
    REQUIRE(in.close().ok());
    CHECK(::fcntl(p[0], F_GETFL) == before);
  });
  ::close(p[0]);
  ::close(p[1]);
}

TEST_CASE("StdinStream over a regular file and /dev/null: the blocking pool") {
  const char* base = std::getenv("TEST_TMPDIR");
  std::string path = std::string(base != nullptr ? base : "/tmp") + "/stdin_test_file";
  int w = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  REQUIRE(w >= 0);
  REQUIRE(::write(w, "a\nbb\n", 5) == 5);
  ::close(w);
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  int null_fd = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
  REQUIRE(fd >= 0);
  REQUIRE(null_fd >= 0);
  int null_flags = ::fcntl(null_fd, F_GETFL);
  auto rt = *Runtime::create({.workers = 1});
  rt->block_on([&] {
    auto in = StdinStream::open(fd);
    REQUIRE(in.ok());
    CHECK_FALSE(in->uses_poller());
    BufferedReader r(*in);
    std::string line;
    REQUIRE(r.read_line(&line).ok());
    CHECK(line == "a");
    REQUIRE(r.read_line(&line).ok());
    CHECK(line == "bb");
    CHECK(r.read_line(&line).code() == absl::StatusCode::kOutOfRange);
    auto dn = StdinStream::open(null_fd);
    REQUIRE_MESSAGE(dn.ok(), dn.status().ToString());
    CHECK_FALSE(dn->uses_poller());  // epoll refuses /dev/null
    char c;
    CHECK(*dn->read(std::span<char>(&c, 1)) == 0);
    CHECK(::fcntl(null_fd, F_GETFL) == null_flags);
    CHECK(StdinStream::open(1000).status().code() == absl::StatusCode::kFailedPrecondition);
  });
  ::close(fd);
  ::close(null_fd);
  ::unlink(path.c_str());
}

// Pty: a pseudo-terminal pair; tty is the terminal a program would read.
struct Pty {
  Pty() {
    master = ::posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC);
    REQUIRE(master >= 0);
    REQUIRE(::grantpt(master) == 0);
    REQUIRE(::unlockpt(master) == 0);
    tty = ::open(::ptsname(master), O_RDWR | O_NOCTTY | O_CLOEXEC);
    REQUIRE(tty >= 0);
  }
  ~Pty() {
    ::close(tty);
    ::close(master);
  }
  int master = -1;
  int tty = -1;
};

TEST_CASE("StdinStream over a terminal: a line typed ahead is read without a new key") {
  // A terminal in canonical mode returns one line per read(), so a short
  // read does not mean the input queue is empty: a second line typed (or
  // pasted) before the program reads must come out of the next read with
  // no further input, although it raises no new edge.
  Pty pty;
  const int master = pty.master;
  const int tty = pty.tty;
  termios t;
  REQUIRE(::tcgetattr(tty, &t) == 0);
  REQUIRE((t.c_lflag & ICANON) != 0);
  auto rt = *Runtime::create({.workers = 1});
  rt->block_on([&] {
    auto in = StdinStream::open(tty);
    REQUIRE(in.ok());
    CHECK(in->uses_poller());
    // The first read parks; both lines then arrive in one edge.
    auto typist = spawn([&] {
      (void)this_fiber::sleep_for(absl::Milliseconds(20));
      CHECK(::write(master, "one\ntwo\n", 8) == 8);
    });
    char buf[64];
    auto n = in->read(buf);
    REQUIRE(n.ok());
    CHECK(std::string(buf, *n) == "one\n");
    typist.join();
    (void)this_fiber::sleep_for(absl::Milliseconds(20));  // every edge dispatched
    std::atomic<bool> done{false};
    auto reader = spawn([&]() -> absl::StatusOr<std::string> {
      char b[64];
      auto m = in->read(b);
      done.store(true);
      if (!m.ok()) return m.status();
      return std::string(b, *m);
    });
    for (int i = 0; i < 100 && !done.load(); ++i) {
      (void)this_fiber::sleep_for(absl::Milliseconds(10));
    }
    CHECK(done.load());
    if (!done.load()) (void)in->close();  // unpark the reader that missed the line
    auto second = reader.join();
    REQUIRE_MESSAGE(second.ok(), second.status().ToString());
    CHECK(*second == "two\n");
  });
}

TEST_CASE("StdinStream over a terminal leaves the shared terminal file blocking for writers") {
  // A shell gives a program one open terminal file as fds 0, 1 and 2, so
  // O_NONBLOCK on fd 0 would reach stdout too: a write while the terminal
  // holds output back (Ctrl-S, a slow link) would fail with EAGAIN and
  // stdio would drop the text.
  Pty pty;
  const int master = pty.master;
  const int tty = pty.tty;
  int out = ::fcntl(tty, F_DUPFD_CLOEXEC, 0);  // "stdout": the same open file
  REQUIRE(out >= 0);
  const int before = ::fcntl(tty, F_GETFL);
  auto rt = *Runtime::create({.workers = 1});
  rt->block_on([&] {
    auto in = StdinStream::open(tty);
    REQUIRE(in.ok());
    CHECK(in->uses_poller());
    CHECK(::fcntl(out, F_GETFL) == before);
    // Output held back: a blocking write waits for the restart.
    REQUIRE(::tcflow(tty, TCOOFF) == 0);
    std::atomic<ssize_t> wrote{-2};
    std::atomic<int> err{0};
    std::thread writer([&] {
      ssize_t n = ::write(out, "hello\n", 6);
      err.store(n < 0 ? errno : 0);
      wrote.store(n);
    });
    (void)this_fiber::sleep_for(absl::Milliseconds(50));
    REQUIRE(::tcflow(tty, TCOON) == 0);
    writer.join();
    CHECK_MESSAGE(wrote.load() == 6, "errno ", err.load());
    // Reading still parks the fiber, not the worker.
    auto typist = spawn([&] {
      (void)this_fiber::sleep_for(absl::Milliseconds(20));
      CHECK(::write(master, "typed\n", 6) == 6);
    });
    char buf[64];
    auto n = in->read(buf);
    REQUIRE(n.ok());
    CHECK(std::string(buf, *n) == "typed\n");
    typist.join();
    REQUIRE(in->close().ok());
  });
  CHECK(::fcntl(tty, F_GETFL) == before);
  ::close(out);
}

}  // namespace
}  // namespace weft::net
