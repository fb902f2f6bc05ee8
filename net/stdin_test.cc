#include "net/stdin.h"

#include <doctest/doctest.h>
#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdlib>
#include <string>

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

}  // namespace
}  // namespace weft::net
