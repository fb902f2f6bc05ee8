#include "net/unix.h"

#include <doctest/doctest.h>
#include <fcntl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "lifecycle/timeout.h"
#include "net/io.h"
#include "runtime/blocking.h"
#include "runtime/runtime.h"

namespace weft::net {
namespace {

static_assert(Readable<UnixStream>);
static_assert(Writable<UnixStream>);

// A short directory for socket files (sun_path holds 107 bytes; Bazel's
// TEST_TMPDIR can be longer).
struct SockDir {
  SockDir() {
    std::string templ = "/tmp/weft_unix.XXXXXX";
    REQUIRE(::mkdtemp(templ.data()) != nullptr);
    path = templ;
  }
  ~SockDir() {
    std::error_code ec;
    std::filesystem::remove_all(path, ec);
  }
  std::string operator/(const std::string& n) const { return path + "/" + n; }
  std::string path;
};

bool exists(const std::string& p) {
  struct stat st;
  return ::lstat(p.c_str(), &st) == 0;
}

TEST_CASE("SocketAddress: UNIX paths and abstract names") {
  auto p = SocketAddress::unix_path("/run/x.sock");
  REQUIRE(p.ok());
  CHECK(p->valid());
  CHECK(p->is_unix());
  CHECK_FALSE(p->is_unix_abstract());
  CHECK(p->unix_path() == "/run/x.sock");
  CHECK(p->to_string() == "unix:/run/x.sock");
  CHECK(p->port() == 0);
  CHECK(p->sockaddr_len() == offsetof(sockaddr_un, sun_path) + 12);
  auto a = SocketAddress::unix_abstract("svc");
  REQUIRE(a.ok());
  CHECK(a->is_unix_abstract());
  CHECK(a->unix_path() == "@svc");
  CHECK(a->to_string() == "unix:@svc");
  CHECK(a->sockaddr_len() == offsetof(sockaddr_un, sun_path) + 4);
  CHECK(*SocketAddress::parse("unix:/run/x.sock") == *p);
  CHECK(*SocketAddress::parse("unix:@svc") == *a);
  CHECK_FALSE(*p == *a);
  CHECK_FALSE(*p == *SocketAddress::unix_path("/run/y.sock"));
  CHECK(SocketAddress::unix_path("").status().code() == absl::StatusCode::kInvalidArgument);
  CHECK(SocketAddress::unix_path(std::string("a\0b", 3)).status().code() ==
        absl::StatusCode::kInvalidArgument);
  CHECK(SocketAddress::unix_path(std::string(108, 'x')).status().code() ==
        absl::StatusCode::kInvalidArgument);
  CHECK(SocketAddress::unix_path(std::string(107, 'x')).ok());
  CHECK(SocketAddress::unix_abstract(std::string(108, 'x')).status().code() ==
        absl::StatusCode::kInvalidArgument);
  CHECK(SocketAddress::parse("unix:").status().code() == absl::StatusCode::kInvalidArgument);
  // From the kernel: with or without the path's NUL counted; unnamed.
  sockaddr_un un{};
  un.sun_family = AF_UNIX;
  std::strcpy(un.sun_path, "/run/x.sock");
  auto k1 = SocketAddress::from_sockaddr(reinterpret_cast<sockaddr*>(&un),
                                         offsetof(sockaddr_un, sun_path) + 11);
  auto k2 = SocketAddress::from_sockaddr(reinterpret_cast<sockaddr*>(&un), sizeof un);
  CHECK(k1 == *p);
  CHECK(k2 == *p);
  auto unnamed = SocketAddress::from_sockaddr(reinterpret_cast<sockaddr*>(&un), sizeof(sa_family_t));
  CHECK(unnamed.valid());
  CHECK(unnamed.is_unix_unnamed());
  CHECK(unnamed.to_string() == "unix:<unnamed>");
  // IP addresses are unchanged.
  CHECK(SocketAddress::parse("127.0.0.1:80")->to_string() == "127.0.0.1:80");
}

TEST_CASE("UnixListener and UnixStream: echo, credentials, addresses") {
  SockDir d;
  const std::string path = d / "echo.sock";
  auto rt = *Runtime::create({.workers = 2});
  rt->block_on([&] {
    auto l = UnixListener::bind(path);
    REQUIRE(l.ok());
    CHECK(exists(path));
    CHECK(l->local_address()->unix_path() == path);
    auto server = spawn([&] {
      auto c = l->accept();
      REQUIRE(c.ok());
      CHECK(c->peer.is_unix());
      auto cred = c->stream.peer_credentials();
      REQUIRE(cred.ok());
      CHECK(cred->pid == ::getpid());
      CHECK(cred->uid == ::getuid());
      CHECK(cred->gid == ::getgid());
      char buf[4096];
      for (;;) {
        auto n = c->stream.read(buf);
        REQUIRE(n.ok());
        if (*n == 0) break;
        REQUIRE(c->stream.write_all(std::string_view(buf, *n)).ok());
      }
    });
    auto s = UnixStream::connect(path);
    REQUIRE(s.ok());
    CHECK(s->peer_address()->unix_path() == path);
    std::string msg(100000, 'u');
    auto writer = spawn([&] {
      CHECK(s->write_all(msg).ok());
      CHECK(s->shutdown(Shutdown::kWrite).ok());
    });
    BufferedReader r(*s);
    std::string back(msg.size(), '\0');
    REQUIRE(r.read_exact(std::span<char>(back.data(), back.size())).ok());
    CHECK(back == msg);
    writer.join();
    server.join();
    REQUIRE(l->close().ok());
    CHECK_FALSE(exists(path));  // unlink_on_close
  });
}

TEST_CASE("connect to a listener with a full backlog waits for room, its deadline or cancellation") {
  SockDir d;
  const std::string path = d / "full.sock";
  auto rt = *Runtime::create({.workers = 2});
  rt->block_on([&] {
    auto l = UnixListener::bind(path, {.backlog = 1});
    REQUIRE(l.ok());
    // Nobody accepts: the kernel queues backlog + 1 connections, then a
    // non-blocking connect gets EAGAIN. Fill it.
    std::vector<UnixStream> queued;
    absl::Status last;
    for (int i = 0; i < 8; ++i) {
      auto s = UnixStream::connect(path, absl::Milliseconds(50));
      if (!s.ok()) {
        last = s.status();
        break;
      }
      queued.push_back(std::move(*s));
    }
    CHECK(queued.size() == 2);
    CHECK(absl::IsDeadlineExceeded(last));
    CHECK(std::string(last.message()).find("backlog stayed full") != std::string::npos);

    // A caller's own cancellation ends the wait with a status, not a throw.
    bool threw = false;
    absl::Status st;
    try {
      st = with_timeout(absl::Milliseconds(30), [&] { return UnixStream::connect(path); }).status();
    } catch (const WaitCancelled&) {
      threw = true;
    }
    CHECK_FALSE(threw);
    CHECK(absl::IsDeadlineExceeded(st));

    // With no deadline it waits until an accept makes room.
    std::atomic<bool> connected{false};
    auto waiter = spawn([&] {
      auto s = UnixStream::connect(path);
      REQUIRE(s.ok());
      connected.store(true);
      return std::move(*s);
    });
    REQUIRE(this_fiber::sleep_for(absl::Milliseconds(100)).ok());
    CHECK_FALSE(connected.load());
    auto a = l->accept();
    REQUIRE(a.ok());
    UnixStream late = waiter.join();
    CHECK(connected.load());
    // The late connection is a working one, accepted after the two queued
    // before it (the kernel's queue is FIFO).
    auto b = l->accept();
    REQUIRE(b.ok());
    auto c = l->accept();
    REQUIRE(c.ok());
    REQUIRE(queued[0].write_all("q0").ok());
    REQUIRE(queued[1].write_all("q1").ok());
    REQUIRE(late.write_all("hi").ok());
    auto read2 = [](UnixStream& s) {
      std::string got(2, '\0');
      BufferedReader r(s);
      REQUIRE(r.read_exact(std::span<char>(got.data(), got.size())).ok());
      return got;
    };
    CHECK(read2(a->stream) == "q0");
    CHECK(read2(b->stream) == "q1");
    CHECK(read2(c->stream) == "hi");
  });
}

TEST_CASE("abstract names, deadlines, migration, into_stream") {
  auto rt = *Runtime::create({.workers = 2});
  rt->block_on([&] {
    // The pid alone is not unique: a sandbox's pid namespace gives
    // concurrent runs of this test the same pid in one network namespace.
    auto name = SocketAddress::unix_abstract("weft-unix-test-" + std::to_string(::getpid()) + "-" +
                                             std::to_string(std::random_device{}()));
    REQUIRE(name.ok());
    auto l = UnixListener::bind(*name);
    REQUIRE(l.ok());
    CHECK(l->local_address()->is_unix_abstract());
    auto server = spawn([&] {
      auto c = l->accept();
      REQUIRE(c.ok());
      TcpStream t = std::move(c->stream).into_stream();
      char buf[64];
      for (;;) {
        auto n = t.read(buf);
        if (!n.ok() || *n == 0) break;
        if (!t.write_all(std::string_view(buf, *n)).ok()) break;
      }
    });
    auto s = UnixStream::connect(*name);
    REQUIRE(s.ok());
    // A read deadline with nothing to read.
    REQUIRE(s->set_read_deadline(absl::Now() + absl::Milliseconds(30)).ok());
    char c;
    CHECK(s->read(std::span<char>(&c, 1)).status().code() == absl::StatusCode::kDeadlineExceeded);
    REQUIRE(s->set_read_deadline(absl::InfiniteFuture()).ok());
    // Migrate between every round trip.
    for (int i = 0; i < 20; ++i) {
      REQUIRE(s->migrate_to(i % 2).ok());
      std::string m = "m" + std::to_string(i);
      REQUIRE(s->write_all(m).ok());
      std::string back(m.size(), '\0');
      REQUIRE(s->read_exact(std::span<char>(back.data(), back.size())).ok());
      CHECK(back == m);
    }
    CHECK(s->migrations() >= 10);
    REQUIRE(s->close().ok());
    server.join();
  });
}

TEST_CASE("socket files: stale ones are replaced, live ones and other files are not") {
  SockDir d;
  auto rt = *Runtime::create({.workers = 1});
  rt->block_on([&] {
    const std::string stale = d / "stale.sock";
    {
      // A socket bound but closed: its file stays, nobody listens.
      int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
      auto a = SocketAddress::unix_path(stale);
      REQUIRE(::bind(fd, a->sockaddr_ptr(), a->sockaddr_len()) == 0);
      ::close(fd);
    }
    REQUIRE(exists(stale));
    auto refused = UnixStream::connect(stale);
    CHECK(error_number(refused.status()) == ECONNREFUSED);
    auto kept = UnixListener::bind(stale, {.remove_stale = false});
    CHECK(error_number(kept.status()) == EADDRINUSE);
    auto l = UnixListener::bind(stale);
    REQUIRE(l.ok());
    // Live: a second bind fails and leaves the first working.
    auto second = UnixListener::bind(stale);
    CHECK(error_number(second.status()) == EADDRINUSE);
    auto conn = UnixStream::connect(stale);
    REQUIRE(conn.ok());
    REQUIRE(l->accept().ok());
    // Not a socket: never removed.
    const std::string plain = d / "plain";
    REQUIRE(::close(::open(plain.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0644)) == 0);
    CHECK(error_number(UnixListener::bind(plain).status()) == EADDRINUSE);
    CHECK(exists(plain));
    // A listener does not remove a file that is no longer its socket.
    const std::string moved = d / "moved.sock";
    {
      auto m = UnixListener::bind(moved);
      REQUIRE(m.ok());
      REQUIRE(::unlink(moved.c_str()) == 0);
      REQUIRE(::close(::open(moved.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0644)) == 0);
    }
    CHECK(exists(moved));
    // unlink_on_close = false keeps the file.
    const std::string keep = d / "keep.sock";
    { REQUIRE(UnixListener::bind(keep, {.unlink_on_close = false}).ok()); }
    CHECK(exists(keep));
    // Errors.
    CHECK(error_number(UnixStream::connect(d / "none.sock").status()) == ENOENT);
    CHECK(UnixStream::connect(SocketAddress::loopback_v4(80)).status().code() ==
          absl::StatusCode::kInvalidArgument);
    CHECK(UnixListener::bind(SocketAddress::loopback_v4(0)).status().code() ==
          absl::StatusCode::kInvalidArgument);
    CHECK(error_number(UnixListener::bind("/weft/no/such/dir/x.sock").status()) == ENOENT);
    CHECK(UnixStream().peer_credentials().status().code() ==
          absl::StatusCode::kFailedPrecondition);
  });
}

// bind() asks the blocking pool about the socket file (the stale probe,
// the new file's identity). A caller cancelled while such a call waits in
// the pool's queue gets a status, not an exception, and no socket file is
// left behind.
TEST_CASE("bind in a cancelled fiber returns a status and leaves no socket file behind") {
  SockDir d;
  auto rt = *Runtime::create({.workers = 1});
  REQUIRE(rt->configure_blocking({.max_threads = 1}).ok());
  rt->block_on([&] {
    // Occupies the pool's only thread for a while.
    auto busy = [] {
      return spawn_blocking([] { std::this_thread::sleep_for(std::chrono::milliseconds(200)); });
    };
    const std::string stale = d / "stale.sock";
    {
      int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
      auto a = SocketAddress::unix_path(stale);
      REQUIRE(::bind(fd, a->sockaddr_ptr(), a->sockaddr_len()) == 0);
      ::close(fd);
    }
    {
      auto b = busy();
      bool threw = false;
      absl::Status st;
      try {
        st = with_timeout(absl::ZeroDuration(), [&] { return UnixListener::bind(stale); }).status();
      } catch (const WaitCancelled&) {
        threw = true;
      }
      CHECK_FALSE(threw);
      CHECK(absl::IsDeadlineExceeded(st));
      CHECK(exists(stale));  // the probe did not run: the file is as it was
      b.join();
    }
    // A fresh path: the socket is bound, then its file is looked at.
    const std::string fresh = d / "fresh.sock";
    {
      auto b = busy();
      bool threw = false;
      try {
        auto l = with_timeout(absl::ZeroDuration(), [&] { return UnixListener::bind(fresh); });
        CHECK(l.ok());
      } catch (const WaitCancelled&) {
        threw = true;
      }
      CHECK_FALSE(threw);
      CHECK_FALSE(exists(fresh));  // removed with the listener
      b.join();
    }
    const std::string dgram = d / "fresh.dgram";
    {
      auto b = busy();
      bool threw = false;
      try {
        auto s = with_timeout(absl::ZeroDuration(), [&] { return UnixDatagram::bind(dgram); });
        CHECK(s.ok());
      } catch (const WaitCancelled&) {
        threw = true;
      }
      CHECK_FALSE(threw);
      CHECK_FALSE(exists(dgram));
      b.join();
    }
  });
}

TEST_CASE("UnixDatagram: a peer bound to a 108-byte path (no NUL) gets a reply") {
  // sun_path has room for 108 bytes; weft's own unix_path() refuses one
  // without room for the NUL, but another program may bind such a path,
  // and the address recv_from() reports for it must work with send_to().
  SockDir d;
  std::string path = d / "";
  path.append(sizeof(sockaddr_un::sun_path) - path.size(), 'p');
  REQUIRE(path.size() == sizeof(sockaddr_un::sun_path));
  int peer = ::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  REQUIRE(peer >= 0);
  sockaddr_un un{};
  un.sun_family = AF_UNIX;
  std::memcpy(un.sun_path, path.data(), path.size());
  REQUIRE(::bind(peer, reinterpret_cast<const sockaddr*>(&un), sizeof(un)) == 0);
  auto rt = *Runtime::create({.workers = 1});
  rt->block_on([&] {
    auto server = UnixDatagram::bind(d / "srv.sock");
    REQUIRE(server.ok());
    sockaddr_un to{};
    to.sun_family = AF_UNIX;
    const std::string srv = d / "srv.sock";
    std::memcpy(to.sun_path, srv.data(), srv.size());
    REQUIRE(::sendto(peer, "ping", 4, 0, reinterpret_cast<const sockaddr*>(&to), sizeof(to)) == 4);
    char buf[16];
    auto dg = server->recv_from(buf);
    REQUIRE(dg.ok());
    CHECK(dg->from.unix_path() == path);
    CHECK(dg->from.sockaddr_len() == sizeof(sockaddr_un));
    auto sent = server->send_to("pong", dg->from);
    CHECK_MESSAGE(sent.ok(), sent.status().ToString());
  });
  char back[16];
  CHECK(::recv(peer, back, sizeof(back), MSG_DONTWAIT) == 4);
  ::close(peer);
}

TEST_CASE("UnixDatagram: send_to, replies to an autobound peer, truncation, stale files") {
  SockDir d;
  auto rt = *Runtime::create({.workers = 2});
  rt->block_on([&] {
    const std::string path = d / "dgram.sock";
    auto server = UnixDatagram::bind(path);
    REQUIRE(server.ok());
    CHECK(server->local_address()->unix_path() == path);
    auto client = UnixDatagram::autobind();
    REQUIRE(client.ok());
    auto caddr = client->local_address();
    REQUIRE(caddr.ok());
    CHECK(caddr->is_unix_abstract());  // the kernel picked a name
    auto echo = spawn([&] {
      char buf[64];
      for (int i = 0; i < 3; ++i) {
        auto dg = server->recv_from(buf);
        REQUIRE(dg.ok());
        CHECK(dg->from == *caddr);
        REQUIRE(server->send_to(std::string_view(buf, dg->size), dg->from).ok());
      }
    });
    for (int i = 0; i < 3; ++i) {
      std::string m = "datagram " + std::to_string(i);
      REQUIRE(client->send_to(m, *SocketAddress::unix_path(path)).ok());
      char buf[64];
      auto back = client->recv_from(buf);
      REQUIRE(back.ok());
      CHECK(std::string(buf, back->size) == m);
      CHECK(back->from.unix_path() == path);
    }
    echo.join();
    // connect/send/recv, truncation.
    REQUIRE(client->connect(*SocketAddress::unix_path(path)).ok());
    REQUIRE(client->send(std::string(100, 't')).ok());
    char small[10];
    auto tr = server->recv_from(small);
    REQUIRE(tr.ok());
    CHECK(tr->truncated);
    CHECK(tr->size == 10);
    // Timeouts.
    server->set_read_timeout(absl::Milliseconds(20));
    CHECK(server->recv_from(small).status().code() == absl::StatusCode::kDeadlineExceeded);
    // A live socket's file is not taken; a stale one is replaced.
    CHECK(error_number(UnixDatagram::bind(path).status()) == EADDRINUSE);
    REQUIRE(server->close().ok());
    CHECK_FALSE(exists(path));
    const std::string stale = d / "stale.dgram";
    {
      auto s = UnixDatagram::bind(stale, {.unlink_on_close = false});
      REQUIRE(s.ok());
    }
    REQUIRE(exists(stale));
    CHECK(error_number(UnixDatagram::bind(stale, {.remove_stale = false}).status()) == EADDRINUSE);
    auto again = UnixDatagram::bind(stale);
    REQUIRE(again.ok());
    CHECK(UnixDatagram::bind(SocketAddress::loopback_v4(0)).status().code() ==
          absl::StatusCode::kInvalidArgument);
  });
}

}  // namespace
}  // namespace weft::net
