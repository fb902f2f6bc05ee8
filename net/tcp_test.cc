// TcpListener and TcpStream on loopback: every call, every error status,
// placement, deadlines, close, and migration with fibers parked.
#include "net/tcp.h"

#include <doctest/doctest.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <string>
#include <thread>
#include <vector>

#include "net/resolve.h"
#include "runtime/runtime.h"
#include "sync/sync.h"
#include "tests/net_util.h"
#include "tests/test_util.h"

namespace weft::net {
namespace {

using testing::open_fds;

TcpListener listen_loopback(ListenOptions opts = {}) {
  auto l = TcpListener::bind(SocketAddress::loopback_v4(0), opts);
  REQUIRE(l.ok());
  return std::move(*l);
}

SocketAddress addr_of(const TcpListener& l) {
  auto a = l.local_address();
  REQUIRE(a.ok());
  return *a;
}

// A connected pair: {client, server side}.
std::pair<TcpStream, TcpStream> connected_pair() {
  TcpListener l = listen_loopback();
  auto c = TcpStream::connect(addr_of(l));
  REQUIRE(c.ok());
  auto s = l.accept();
  REQUIRE(s.ok());
  return {std::move(*c), std::move(s->stream)};
}

TEST_CASE("echo over loopback on every worker count, no descriptor leaked") {
  int fds_before = open_fds();
  testing::for_each_worker_count({1, 2, 4}, [](int n) {
    auto rt = *Runtime::create({.workers = n});
    rt->block_on([] {
      TcpListener l = listen_loopback();
      SocketAddress a = addr_of(l);
      CHECK(a.ip() == "127.0.0.1");
      CHECK(a.port() != 0);
      auto server = spawn([&] {
        auto acc = l.accept();
        REQUIRE(acc.ok());
        CHECK(acc->peer.ip() == "127.0.0.1");
        TcpStream s = std::move(acc->stream);
        char buf[1024];
        uint64_t total = 0;
        for (;;) {
          auto r = s.read(buf);
          REQUIRE(r.ok());
          if (*r == 0) break;  // EOF
          total += *r;
          REQUIRE(s.write_all({buf, *r}).ok());
        }
        return total;
      });
      auto c = TcpStream::connect(a);
      REQUIRE(c.ok());
      CHECK(c->peer_address()->port() == a.port());
      CHECK(c->local_address()->ip() == "127.0.0.1");
      std::string msg(100000, 'x');
      for (size_t i = 0; i < msg.size(); ++i) msg[i] = static_cast<char>('a' + i % 26);
      auto writer = spawn([&] { CHECK(c->write_all(msg).ok()); });
      std::string back(msg.size(), '\0');
      CHECK(c->read_exact(back).ok());
      CHECK(back == msg);
      writer.join();
      CHECK(c->shutdown(Shutdown::kWrite).ok());
      CHECK(server.join() == msg.size());
      char one;
      auto eof = c->read({&one, 1});
      REQUIRE(eof.ok());
      CHECK(*eof == 0);
    });
  });
  CHECK(open_fds() == fds_before);
}

TEST_CASE("IPv6 loopback, SO_REUSEPORT and accept_for timeouts") {
  auto rt = *Runtime::create({.workers = 2});
  rt->block_on([] {
    auto l6 = TcpListener::bind(SocketAddress::loopback_v6(0));
    REQUIRE(l6.ok());
    SocketAddress a6 = *l6->local_address();
    CHECK(a6.is_v6());
    auto c = TcpStream::connect(a6);
    REQUIRE(c.ok());
    auto s = l6->accept();
    REQUIRE(s.ok());
    CHECK(s->peer.is_v6());
    CHECK(c->write_all("v6").ok());
    char buf[2];
    CHECK(s->stream.read_exact(buf).ok());
    CHECK(std::string(buf, 2) == "v6");

    // Two listeners on one port with SO_REUSEPORT; without it, EADDRINUSE.
    ListenOptions o;
    o.reuse_port = true;
    auto r1 = TcpListener::bind(SocketAddress::loopback_v4(0), o);
    REQUIRE(r1.ok());
    auto r2 = TcpListener::bind(*r1->local_address(), o);
    CHECK(r2.ok());
    auto r3 = TcpListener::bind(*r1->local_address());
    CHECK(r3.status().code() == absl::StatusCode::kFailedPrecondition);  // EADDRINUSE
    CHECK(error_number(r3.status()) == EADDRINUSE);
    CHECK(r3.status().message().find("bind") != std::string_view::npos);

    auto none = r1->accept_for(absl::Milliseconds(20));
    CHECK(none.status().code() == absl::StatusCode::kDeadlineExceeded);
    CHECK(r1->is_open());
  });
}

TEST_CASE("connect errors: refused, timed out, bad address, resolve") {
  auto rt = *Runtime::create({.workers = 2});
  rt->block_on([] {
    // A port with no listener: bind one, note its port, close it.
    uint16_t port;
    {
      TcpListener l = listen_loopback();
      port = addr_of(l).port();
    }
    auto refused = TcpStream::connect(SocketAddress::loopback_v4(port));
    CHECK(refused.status().code() == absl::StatusCode::kUnavailable);
    CHECK(error_number(refused.status()) == ECONNREFUSED);

    // A listener whose accept queue is full drops further SYNs, so a
    // connect with a timeout ends in kDeadlineExceeded.
    ListenOptions o;
    o.backlog = 1;
    TcpListener full = listen_loopback(o);
    std::vector<TcpStream> held;
    bool timed_out = false;
    for (int i = 0; i < 64 && !timed_out; ++i) {
      auto c = TcpStream::connect(addr_of(full), absl::Milliseconds(100));
      if (c.ok()) {
        held.push_back(std::move(*c));
      } else {
        CHECK(c.status().code() == absl::StatusCode::kDeadlineExceeded);
        CHECK(c.status().message().find("timed out") != std::string_view::npos);
        timed_out = true;
      }
    }
    CHECK(timed_out);

    CHECK(TcpStream::connect(SocketAddress()).status().code() == absl::StatusCode::kInvalidArgument);
    TcpListener l = listen_loopback();
    auto by_name = TcpStream::connect("localhost", addr_of(l).port(), absl::Seconds(5));
    CHECK(by_name.ok());
    auto addrs = resolve("localhost", 80);
    REQUIRE(addrs.ok());
    CHECK(!addrs->empty());
    CHECK((*addrs)[0].port() == 80);
    CHECK(resolve("no-such-host.invalid", 1).status().code() == absl::StatusCode::kNotFound);
    CHECK(resolve("", 1).status().code() == absl::StatusCode::kInvalidArgument);
    CHECK(resolve("::1", 7)->front().is_v6());
    // getaddrinfo() would stop at the NUL and look up "localhost".
    CHECK(resolve(std::string_view("localhost\0.example.com", 21), 1).status().code() ==
          absl::StatusCode::kInvalidArgument);
  });
}

TEST_CASE("reset, broken pipe, half-close and EOF are distinct statuses") {
  auto rt = *Runtime::create({.workers = 2});
  rt->block_on([] {
    {
      // Reset: the peer closes with SO_LINGER {1, 0}, which sends RST.
      auto [c, s] = connected_pair();
      linger lg{1, 0};
      REQUIRE(::setsockopt(s.native_handle(), SOL_SOCKET, SO_LINGER, &lg, sizeof(lg)) == 0);
      CHECK(s.close().ok());
      char buf[16];
      auto r = c.read(buf);
      CHECK(r.status().code() == absl::StatusCode::kUnavailable);
      CHECK(error_number(r.status()) == ECONNRESET);
      CHECK(r.status().message().find("TcpStream::read") != std::string_view::npos);
    }
    {
      // Broken pipe: writing after our own shutdown(kWrite); no SIGPIPE.
      auto [c, s] = connected_pair();
      CHECK(c.shutdown(Shutdown::kWrite).ok());
      auto w = c.write("x");
      CHECK(w.status().code() == absl::StatusCode::kFailedPrecondition);
      CHECK(error_number(w.status()) == EPIPE);
      // The peer sees EOF but can still talk back (half-close).
      char buf[8];
      auto eof = s.read(buf);
      REQUIRE(eof.ok());
      CHECK(*eof == 0);
      CHECK(s.write_all("back").ok());
      CHECK(c.read_exact({buf, 4}).ok());
      CHECK(std::string(buf, 4) == "back");
    }
    {
      // Writes to a peer that closed end in EPIPE or ECONNRESET, never a
      // signal.
      auto [c, s] = connected_pair();
      CHECK(s.close().ok());
      absl::Status st;
      std::string chunk(4096, 'z');
      for (int i = 0; i < 1000 && st.ok(); ++i) st = c.write_all(chunk);
      CHECK(!st.ok());
      auto e = error_number(st);
      CHECK((e == EPIPE || e == ECONNRESET));
    }
    {
      // read_exact: EOF before the buffer filled is kOutOfRange.
      auto [c, s] = connected_pair();
      CHECK(s.write_all("abc").ok());
      CHECK(s.close().ok());
      char buf[8];
      absl::Status st = c.read_exact(buf);
      CHECK(st.code() == absl::StatusCode::kOutOfRange);
      CHECK(st.message().find("3 of 8") != std::string_view::npos);
      CHECK(std::string(buf, 3) == "abc");
      // shutdown(kRead): our reads then return 0.
      auto [c2, s2] = connected_pair();
      CHECK(c2.shutdown(Shutdown::kRead).ok());
      auto z = c2.read(buf);
      REQUIRE(z.ok());
      CHECK(*z == 0);
      CHECK(c2.shutdown(Shutdown::kBoth).ok());
    }
    {
      // Calls on a closed or empty stream fail, and say so.
      auto [c, s] = connected_pair();
      CHECK(c.close().ok());
      CHECK(c.close().ok());  // idempotent
      CHECK(!c.is_open());
      char b;
      CHECK(c.read({&b, 1}).status().code() == absl::StatusCode::kFailedPrecondition);
      CHECK(c.write("x").status().code() == absl::StatusCode::kFailedPrecondition);
      CHECK(c.set_nodelay(true).code() == absl::StatusCode::kFailedPrecondition);
      CHECK(c.owner_worker() == -1);
      TcpStream empty;
      CHECK(empty.read({&b, 1}).status().code() == absl::StatusCode::kFailedPrecondition);
      CHECK(empty.migrate_to(0).code() == absl::StatusCode::kFailedPrecondition);
    }
  });
}

// A read shorter than its buffer emptied the receive queue, so the next
// read waits for an edge before trying (one system call less per message).
// What must still arrive: bytes sent later, and an end of stream or a reset
// that came in the same edge as the last bytes (no new edge follows them).
TEST_CASE("after a short read: later bytes, EOF and reset in the same edge all arrive") {
  auto rt = *Runtime::create({.workers = 2});
  rt->block_on([] {
    // No CAPTURE here: doctest keeps it per thread, and fibers move.
    for (int round = 0; round < 200; ++round) {
      auto [c, s] = connected_pair();
      s.set_read_timeout(absl::Seconds(10));  // a lost wake-up fails, never hangs
      const int ending = round % 3;           // 0: more bytes, 1: EOF, 2: reset
      Event read_first;  // ending 0 sends "world" only after the short read
      auto reader = spawn([&s = s, &read_first, ending] {
        char buf[4096];
        auto first = s.read(buf);  // parks first, unless "hello" is already there
        REQUIRE(first.ok());
        CHECK(*first == 5);  // short: the queue is empty after it
        read_first.set();
        auto next = s.read(buf);
        if (ending == 0) {
          REQUIRE(next.ok());
          CHECK(std::string(buf, *next) == "world");
        } else if (ending == 1) {
          REQUIRE(next.ok());
          CHECK(*next == 0);
        } else {
          CHECK(error_number(next.status()) == ECONNRESET);
        }
      });
      (void)this_fiber::sleep_for(absl::Microseconds(200 * (round % 4)));
      const absl::Time start = absl::Now();
      if (ending == 2) {
        linger lg{1, 0};
        REQUIRE(::setsockopt(c.native_handle(), SOL_SOCKET, SO_LINGER, &lg, sizeof(lg)) == 0);
      }
      REQUIRE(c.write_all("hello").ok());
      if (ending == 0) {
        (void)read_first.wait();
        (void)this_fiber::sleep_for(absl::Microseconds(100 * (round % 4)));  // reader parked, or not yet
        REQUIRE(c.write_all("world").ok());
      } else if (ending == 1) {
        REQUIRE(c.shutdown(Shutdown::kWrite).ok());  // FIN right behind the bytes
      } else {
        REQUIRE(c.close().ok());  // RST right behind the bytes
      }
      reader.join();
      // A lost wake-up surfaces only when the 10 s timeout makes the read
      // try again; stop at the first such round.
      REQUIRE(absl::Now() - start < absl::Seconds(5));
    }
  });
}

TEST_CASE("after a short read by one reader, another reader still gets every byte") {
  // One worker, so the order is fixed: Y parks; the main fiber's read is
  // short (before the poller has dispatched that edge); 3000 bytes arrive
  // and their edge wakes Y, which reads them 1000 at a time. Y's reads are
  // full, and the main fiber's mark must not make Y's next read wait for
  // an edge that already came.
  auto rt = *Runtime::create({.workers = 1});
  rt->block_on([] {
    auto [c, s] = connected_pair();
    s.set_read_timeout(absl::Seconds(10));  // a lost wake-up fails, never hangs
    auto y = spawn([&s = s] {
      size_t total = 0;
      char small[1000];
      while (total < 3000) {
        auto n = s.read(small);
        if (!n.ok() || *n == 0) return total;
        total += *n;
      }
      return total;
    });
    (void)this_fiber::sleep_for(absl::Milliseconds(5));  // Y is parked in read()
    REQUIRE(c.write_all("x").ok());
    char big[4096];
    auto first = s.read(big);  // loopback delivered it already
    REQUIRE(first.ok());
    CHECK(*first == 1);
    const absl::Time start = absl::Now();
    REQUIRE(c.write_all(std::string(3000, 'y')).ok());
    CHECK(y.join() == 3000);
    // A lost wake-up would surface only when the 10 s read timeout makes
    // the read try again; a working one takes milliseconds.
    CHECK(absl::Now() - start < absl::Seconds(5));
  });
}

TEST_CASE("after a short read: urgent data, a zero timeout") {
  auto rt = *Runtime::create({.workers = 1});
  rt->block_on([] {
    {
      // Urgent data: a read stops short at the urgent mark although bytes
      // follow it; the EPOLLPRI edge makes the next read try first. One
      // worker, so the reader is parked when everything arrives and the
      // one edge wakes it instead of leaving a token.
      auto [c, s] = connected_pair();
      s.set_read_timeout(absl::Seconds(10));
      auto reader = spawn([&s = s] {
        std::string got;
        char buf[4096];
        while (got.size() < 11) {
          auto n = s.read(buf);
          if (!n.ok() || *n == 0) break;
          got.append(buf, *n);
        }
        return got;
      });
      (void)this_fiber::sleep_for(absl::Milliseconds(5));  // the reader is parked
      const absl::Time start = absl::Now();
      REQUIRE(c.write_all("hello").ok());
      REQUIRE(::send(c.native_handle(), "!", 1, MSG_OOB) == 1);
      REQUIRE(c.write_all(" world").ok());
      CHECK(reader.join() == "hello world");  // the urgent byte is out of band
      CHECK(absl::Now() - start < absl::Seconds(5));  // no read waited out its timeout
    }
    {
      // A zero timeout after a short read still tries the call.
      auto [c, s] = connected_pair();
      REQUIRE(c.write_all("a").ok());
      char buf[64];
      auto first = s.read(buf);
      REQUIRE(first.ok());
      REQUIRE(c.write_all("b").ok());
      (void)this_fiber::sleep_for(absl::Milliseconds(5));
      s.set_read_timeout(absl::ZeroDuration());
      auto second = s.read(buf);
      REQUIRE(second.ok());
      CHECK(*second == 1);
      auto third = s.read(buf);  // nothing left: the zero timeout passes
      CHECK(third.status().code() == absl::StatusCode::kDeadlineExceeded);
    }
  });
}

TEST_CASE("socket options, writev and empty buffers") {
  auto rt = *Runtime::create({.workers = 2});
  rt->block_on([] {
    auto [c, s] = connected_pair();
    CHECK(c.set_nodelay(true).ok());
    int v = 0;
    socklen_t len = sizeof(v);
    ::getsockopt(c.native_handle(), IPPROTO_TCP, TCP_NODELAY, &v, &len);
    CHECK(v == 1);
    CHECK(c.set_keepalive(true, absl::Seconds(30), absl::Seconds(5), 4).ok());
    ::getsockopt(c.native_handle(), SOL_SOCKET, SO_KEEPALIVE, &v, &len);
    CHECK(v == 1);
    ::getsockopt(c.native_handle(), IPPROTO_TCP, TCP_KEEPIDLE, &v, &len);
    CHECK(v == 30);
    ::getsockopt(c.native_handle(), IPPROTO_TCP, TCP_KEEPCNT, &v, &len);
    CHECK(v == 4);
    CHECK(c.set_keepalive(false).ok());

    char a[] = "hello, ", b[] = "", d[] = "world";
    iovec iov[3] = {{a, 7}, {b, 0}, {d, 5}};
    CHECK(c.writev_all(iov).ok());
    char got[12];
    CHECK(s.read_exact(got).ok());
    CHECK(std::string(got, 12) == "hello, world");
    auto n = c.writev(std::span<const iovec>(iov, 2));
    REQUIRE(n.ok());
    CHECK(*n == 7);
    CHECK(s.read_exact({got, 7}).ok());
    CHECK(*c.write(std::string_view()) == 0);
    CHECK(*c.read(std::span<char>()) == 0);
  });
}

TEST_CASE("per-call timeouts and absolute deadlines") {
  auto rt = *Runtime::create({.workers = 2});
  rt->block_on([] {
    auto [c, s] = connected_pair();
    char buf[8];
    c.set_read_timeout(absl::Milliseconds(20));
    auto r = c.read(buf);
    CHECK(r.status().code() == absl::StatusCode::kDeadlineExceeded);
    CHECK(s.write_all("ok").ok());
    r = c.read(buf);  // still usable after a per-call timeout
    REQUIRE(r.ok());
    CHECK(*r == 2);
    c.set_read_timeout(absl::InfiniteDuration());

    // A deadline wakes a parked reader.
    CHECK(c.set_read_deadline(absl::Now() + absl::Milliseconds(30)).ok());
    r = c.read(buf);
    CHECK(r.status().code() == absl::StatusCode::kDeadlineExceeded);
    // Expired deadlines stay expired, even with data waiting...
    CHECK(s.write_all("zz").ok());
    (void)this_fiber::sleep_for(absl::Milliseconds(5));
    CHECK(c.read(buf).status().code() == absl::StatusCode::kDeadlineExceeded);
    // ...until cleared.
    CHECK(c.set_read_deadline(absl::InfiniteFuture()).ok());
    r = c.read(buf);
    REQUIRE(r.ok());
    CHECK(*r == 2);
    // A deadline in the past fails at once; one moved later does not fire
    // early.
    CHECK(c.set_read_deadline(absl::Now() - absl::Seconds(1)).ok());
    CHECK(c.read(buf).status().code() == absl::StatusCode::kDeadlineExceeded);
    CHECK(c.set_read_deadline(absl::Now() + absl::Milliseconds(10)).ok());
    CHECK(c.set_read_deadline(absl::Now() + absl::Seconds(30)).ok());
    auto later = spawn([&] {
      (void)this_fiber::sleep_for(absl::Milliseconds(60));
      CHECK(s.write_all("late").ok());
    });
    r = c.read(buf);
    REQUIRE(r.ok());
    CHECK(*r == 4);
    later.join();

    // Write deadline: fill the send path until the writer parks.
    CHECK(c.set_write_deadline(absl::Now() + absl::Milliseconds(50)).ok());
    std::string chunk(1 << 16, 'w');
    absl::Status st;
    for (int i = 0; i < 100000 && st.ok(); ++i) st = c.write_all(chunk);
    CHECK(st.code() == absl::StatusCode::kDeadlineExceeded);
    // A per-call write timeout, once the deadline is cleared.
    c.set_write_timeout(absl::Milliseconds(10));
    CHECK(c.set_write_deadline(absl::InfiniteFuture()).ok());
    st = absl::OkStatus();
    for (int i = 0; i < 100000 && st.ok(); ++i) st = c.write_all(chunk);
    CHECK(st.code() == absl::StatusCode::kDeadlineExceeded);
  });
}

TEST_CASE("close wakes every fiber parked on the socket with kCancelled") {
  auto rt = *Runtime::create({.workers = 2});
  rt->block_on([] {
    auto [c, s] = connected_pair();
    std::atomic<int> woke{0};
    auto reader = spawn([&] {
      char buf[8];
      auto r = c.read(buf);
      CHECK(r.status().code() == absl::StatusCode::kCancelled);
      woke.fetch_add(1);
    });
    // A writer parked on a full send buffer.
    auto writer = spawn([&] {
      std::string chunk(1 << 16, 'w');
      absl::Status st;
      while (st.ok()) st = c.write_all(chunk);
      CHECK((st.code() == absl::StatusCode::kCancelled ||
             st.code() == absl::StatusCode::kFailedPrecondition));
      woke.fetch_add(1);
    });
    (void)this_fiber::sleep_for(absl::Milliseconds(50));
    CHECK(c.close().ok());
    reader.join();
    writer.join();
    CHECK(woke.load() == 2);

    // The same for accept().
    TcpListener l = listen_loopback();
    auto acceptor = spawn([&] { return l.accept().status().code(); });
    (void)this_fiber::sleep_for(absl::Milliseconds(20));
    CHECK(l.close().ok());
    CHECK(acceptor.join() == absl::StatusCode::kCancelled);
    CHECK(l.accept().status().code() == absl::StatusCode::kFailedPrecondition);
  });
}

TEST_CASE("full duplex: one reader and one writer on a stream at once") {
  auto rt = *Runtime::create({.workers = 2});
  rt->block_on([] {
    auto [c, s] = connected_pair();
    constexpr size_t kBytes = 8 << 20;
    auto echo = spawn([&s] {
      std::vector<char> buf(65536);
      for (;;) {
        auto n = s.read(buf);
        if (!n.ok() || *n == 0) return;
        if (!s.write_all({buf.data(), *n}).ok()) return;
      }
    });
    auto writer = spawn([&c] {
      std::vector<char> buf(65536);
      uint64_t sent = 0;
      uint8_t x = 0;
      while (sent < kBytes) {
        for (char& ch : buf) ch = static_cast<char>(x++);
        REQUIRE(c.write_all(buf).ok());
        sent += buf.size();
      }
      return sent;
    });
    std::vector<char> buf(65536);
    uint64_t got = 0;
    uint8_t expect = 0;
    bool same = true;
    while (got < kBytes) {
      auto n = c.read(buf);
      REQUIRE(n.ok());
      REQUIRE(*n > 0);
      for (size_t i = 0; i < *n; ++i) same &= static_cast<uint8_t>(buf[i]) == expect++;
      got += *n;
    }
    CHECK(same);
    CHECK(writer.join() == kBytes);
    CHECK(c.shutdown(Shutdown::kWrite).ok());
    echo.join();
  });
}

TEST_CASE("accept placement: same worker, round robin, least loaded") {
  auto rt = *Runtime::create({.workers = 4});
  rt->block_on([] {
    ListenOptions o;
    o.placement = AcceptPlacement::kRoundRobin;
    TcpListener l = listen_loopback(o);
    std::vector<TcpStream> clients, served;
    std::vector<int> owners;
    for (int i = 0; i < 8; ++i) {
      auto c = TcpStream::connect(addr_of(l));
      REQUIRE(c.ok());
      clients.push_back(std::move(*c));
      auto a = l.accept();
      REQUIRE(a.ok());
      owners.push_back(a->stream.owner_worker());
      served.push_back(std::move(a->stream));
    }
    for (int i = 0; i < 8; ++i) CHECK(owners[static_cast<size_t>(i)] == (owners[0] + i) % 4);
    CHECK(l.stats().accepted == 8);

    l.set_placement(AcceptPlacement::kSameWorker);
    auto c = TcpStream::connect(addr_of(l));
    REQUIRE(c.ok());
    auto a = l.accept();
    int here = this_fiber::worker_id();  // no suspension since accept returned
    CHECK(a->stream.owner_worker() == here);

    // Least loaded: pile sockets onto worker 0, then accept.
    for (auto& s : served) CHECK(s.migrate_to(0).ok());
    l.set_placement(AcceptPlacement::kLeastLoaded);
    auto c2 = TcpStream::connect(addr_of(l));
    REQUIRE(c2.ok());
    auto a2 = l.accept();
    REQUIRE(a2.ok());
    CHECK(a2->stream.owner_worker() != 0);
  });
}

TEST_CASE("migration keeps bytes, readiness and parked fibers") {
  auto rt = *Runtime::create({.workers = 3});
  rt->block_on([] {
    auto [c, s] = connected_pair();
    // A reader parks on s; s moves twice; then data arrives: it must wake.
    auto reader = spawn([&] {
      char buf[5];
      CHECK(s.read_exact(buf).ok());
      return std::string(buf, 5);
    });
    (void)this_fiber::sleep_for(absl::Milliseconds(20));
    int from = s.owner_worker();
    CHECK(s.migrate_to((from + 1) % 3).ok());
    CHECK(s.owner_worker() == (from + 1) % 3);
    CHECK(s.migrate_to((from + 2) % 3).ok());
    CHECK(s.migrate_to((from + 2) % 3).ok());  // already there: no-op
    CHECK(s.migrations() == 2);
    CHECK(c.write_all("hello").ok());
    CHECK(reader.join() == "hello");

    // Bytes that arrive while nobody waits, before and during a move.
    CHECK(c.write_all("abc").ok());
    (void)this_fiber::sleep_for(absl::Milliseconds(5));
    CHECK(s.migrate_to(0).ok());
    char buf[3];
    CHECK(s.read_exact(buf).ok());
    CHECK(std::string(buf, 3) == "abc");

    // A deadline follows the socket to its new worker.
    CHECK(s.set_read_deadline(absl::Now() + absl::Milliseconds(40)).ok());
    CHECK(s.migrate_to(1).ok());
    CHECK(s.read(buf).status().code() == absl::StatusCode::kDeadlineExceeded);
    CHECK(s.set_read_deadline(absl::InfiniteFuture()).ok());

    CHECK(s.migrate_to(7).code() == absl::StatusCode::kInvalidArgument);
    CHECK(s.migrate_to(-1).code() == absl::StatusCode::kInvalidArgument);

    // A listener moves with a fiber parked in accept().
    TcpListener l = listen_loopback();
    auto acceptor = spawn([&] { return l.accept().ok(); });
    (void)this_fiber::sleep_for(absl::Milliseconds(10));
    CHECK(l.migrate_to((l.owner_worker() + 1) % 3).ok());
    auto c2 = TcpStream::connect(addr_of(l));
    CHECK(c2.ok());
    CHECK(acceptor.join());
  });
}

TEST_CASE("EMFILE on accept: a status, a back-off, and the connection is served later") {
  auto rt = *Runtime::create({.workers = 1});
  rlimit old{};
  ::getrlimit(RLIMIT_NOFILE, &old);
  rt->block_on([&] {
    TcpListener l = listen_loopback();
    auto c = TcpStream::connect(addr_of(l));
    REQUIRE(c.ok());
    // Use up every descriptor below a lowered limit.
    std::vector<int> hog;
    rlimit low = old;
    low.rlim_cur = static_cast<rlim_t>(testing::open_fds() + 16);
    REQUIRE(::setrlimit(RLIMIT_NOFILE, &low) == 0);
    for (;;) {
      int fd = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
      if (fd < 0) break;
      hog.push_back(fd);
    }
    auto a = l.accept();
    CHECK(a.status().code() == absl::StatusCode::kResourceExhausted);
    CHECK(error_number(a.status()) == EMFILE);
    CHECK(l.stats().resource_errors == 1);
    CHECK(error_number(l.stats().last_resource_error) == EMFILE);
    auto b = l.accept();  // backs off first, still out of descriptors
    CHECK(b.status().code() == absl::StatusCode::kResourceExhausted);
    CHECK(l.stats().resource_errors == 2);
    for (int fd : hog) ::close(fd);
    ::setrlimit(RLIMIT_NOFILE, &old);
    auto ok = l.accept();  // the pending connection was kept by the kernel
    REQUIRE(ok.ok());
    CHECK(c->write_all("still here").ok());
    char buf[10];
    CHECK(ok->stream.read_exact(buf).ok());
    CHECK(std::string(buf, 10) == "still here");
  });
}

TEST_CASE("socket calls from plain threads work; creating one off a runtime dies") {
  auto rt = *Runtime::create({.workers = 2});
  std::pair<TcpStream, TcpStream> p = rt->block_on([] { return connected_pair(); });
  // Read and write from this (non-worker) thread: it blocks on a futex.
  std::thread t([&] { CHECK(p.second.write_all("thread").ok()); });
  char buf[6];
  CHECK(p.first.read_exact(buf).ok());
  t.join();
  CHECK(std::string(buf, 6) == "thread");
  CHECK(p.first.close().ok());
  CHECK(p.second.close().ok());
  testing::expect_death([] { (void)TcpListener::bind(SocketAddress::loopback_v4(0)); },
                       "called outside a weft runtime");
}

TEST_CASE("shutdown cancels fibers parked on sockets and closes them") {
  int fds_before = open_fds();
  {
    auto rt = *Runtime::create({.workers = 2});
    std::atomic<int> cancelled{0};
    rt->spawn([&] {
      TcpListener l = listen_loopback();
      auto c = TcpStream::connect(addr_of(l));
      auto a = l.accept();
      // The fiber parks in read; shutdown must unwind it (closing both
      // sockets on the way out).
      struct Count {
        std::atomic<int>* n;
        ~Count() { n->fetch_add(1); }
      } count{&cancelled};
      char b;
      (void)a->stream.read({&b, 1});
    }).detach();
    testing::eventually([&] { return rt->stats().total(&WorkerStats::parks) >= 1; });
    std::this_thread::sleep_for(std::chrono::milliseconds(30));
    rt->shutdown();
    CHECK(cancelled.load() == 1);
  }
  CHECK(open_fds() == fds_before);
}

TEST_CASE("close races with writers that fill the buffer for the first time") {
  // A writer's first EAGAIN adds write interest under the socket's control
  // lock while close() may be draining the calls in flight: neither may
  // wait for the other.
  auto rt = *Runtime::create({.workers = 2});
  rt->block_on([] {
    for (int round = 0; round < 40; ++round) {
      auto [c, s] = connected_pair();
      auto writer = spawn([&c] {
        std::string chunk(1 << 16, 'w');
        absl::Status st;
        while (st.ok()) st = c.write_all(chunk);
        return st.code();
      });
      if (round % 2 == 0) (void)this_fiber::sleep_for(absl::Microseconds(200 * (round % 7)));
      CHECK(c.close().ok());
      absl::StatusCode code = writer.join();
      CHECK((code == absl::StatusCode::kCancelled || code == absl::StatusCode::kFailedPrecondition));
    }
  });
}

TEST_CASE("a worker woken by its own poller wakes nobody for one fiber, and polls once") {
  // A plain thread plays ping-pong with a fiber, so the workers go idle
  // between round trips and each one wakes the socket's worker through its
  // poller. That costs no eventfd wake-up: the lone woken fiber runs there
  // (a worker used to signal an idle peer, or its own eventfd while still
  // on the idle list, for every fiber it woke). With one worker it also
  // costs one poll (the worker used to poll without blocking before
  // blocking: two epoll_wait calls per wake-up).
  constexpr int kRounds = 300;
  testing::for_each_worker_count({1, 2}, [](int n) {
    auto rt = *Runtime::create({.workers = n});
    TcpListener l = rt->block_on([] { return listen_loopback(); });
    const uint16_t port = addr_of(l).port();
    auto server = rt->spawn([&l] {
      auto acc = l.accept();
      REQUIRE(acc.ok());
      char c;
      for (;;) {
        auto r = acc->stream.read({&c, 1});
        if (!r.ok() || *r == 0) return;
        REQUIRE(acc->stream.write_all({&c, 1}).ok());
      }
    });
    int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    REQUIRE(fd >= 0);
    sockaddr_in sa{};
    sa.sin_family = AF_INET;
    sa.sin_port = htons(port);
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    REQUIRE(::connect(fd, reinterpret_cast<sockaddr*>(&sa), sizeof(sa)) == 0);
    auto round_trip = [fd](char c) {
      // Give the fiber time to park and the worker to go idle, whatever
      // the machine's load: otherwise the next byte can be there before
      // the fiber reads again, and nothing sleeps at all.
      ::usleep(100);
      REQUIRE(::write(fd, &c, 1) == 1);
      char back = 0;
      REQUIRE(::read(fd, &back, 1) == 1);
      CHECK(back == c);
    };
    for (int i = 0; i < 10; ++i) round_trip('w');  // accepted, settled
    RuntimeStats before = rt->stats();
    for (int i = 0; i < kRounds; ++i) round_trip(static_cast<char>('a' + i % 26));
    RuntimeStats after = rt->stats();
    ::close(fd);
    server.join();
    auto delta = [&](uint64_t WorkerStats::*f) { return after.total(f) - before.total(f); };
    const uint64_t polls = delta(&WorkerStats::polls);
    const uint64_t sleeps = delta(&WorkerStats::idle_sleeps);
    const uint64_t wakeups = delta(&WorkerStats::wakeups);
    MESSAGE(n, " workers: polls ", polls, ", idle sleeps ", sleeps, ", eventfd wake-ups ", wakeups);
    CHECK(sleeps >= kRounds / 5);  // the setup this test needs: idle workers
    CHECK(wakeups <= kRounds / 10);
    if (n == 1) CHECK(polls <= sleeps + sleeps / 4 + 10);  // was 2 per sleep
  });
}

TEST_CASE("a poll takes at most 32 events, and the next polls serve the rest in full") {
  // 200 readers park on the one worker. A fiber on that worker then makes
  // all 200 readable without suspending, so the worker's next poll finds
  // every event ready at once: it must take 32 (the poll batch) and leave
  // the rest in the kernel's ready list for the polls after it, every
  // reader getting its byte. A poll that took them all would put 200
  // fibers in the queue at once (worker_io.cc step 2).
  constexpr int kConns = 200;
  constexpr uint64_t kPollBatch = 32;
  auto rt = *Runtime::create({.workers = 1});
  const int got = rt->block_on([&] {
    TcpListener l = listen_loopback();
    std::vector<TcpStream> clients;
    std::vector<JoinHandle<int>> readers;
    int started = 0;
    for (int i = 0; i < kConns; ++i) {
      auto c = TcpStream::connect(addr_of(l));
      REQUIRE(c.ok());
      clients.push_back(std::move(*c));
      auto acc = l.accept();
      REQUIRE(acc.ok());
      readers.push_back(spawn([s = std::move(acc->stream), &started]() mutable {
        ++started;  // then parks in read() within the same run
        char c = 0;
        auto r = s.read({&c, 1});
        return r.ok() && *r == 1 && c == 'x' ? 1 : 0;
      }));
    }
    // One worker: once every reader has started, every reader has parked.
    while (started < kConns) this_fiber::yield();
    for (TcpStream& c : clients) REQUIRE(c.write_all("x").ok());  // does not suspend
    int n = 0;
    for (auto& r : readers) n += r.join();
    return n;
  });
  CHECK(got == kConns);
  const RuntimeStats st = rt->stats();
  MESSAGE("largest poll ", st.workers[0].largest_poll, ", polls ", st.workers[0].polls);
  CHECK(st.workers[0].largest_poll <= kPollBatch);
  CHECK(st.workers[0].largest_poll >= kPollBatch - 4);  // the setup: many events ready at once
}

}  // namespace
}  // namespace weft::net
