// Socket cases of select(): readable() and writable() on TCP, UNIX, UDP
// sockets and listeners, against channels, timers, cancellation, close,
// deadlines and migration; a readiness wake-up is never lost to a select
// case that did not win, and never reported from a stale edge.
#include "net/select.h"

#include <doctest/doctest.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "lifecycle/select.h"
#include "net/tcp.h"
#include "net/udp.h"
#include "net/unix.h"
#include "runtime/internal/park.h"
#include "runtime/platform/monotonic.h"
#include "runtime/runtime.h"
#include "sync/sync.h"
#include "tests/stress_util.h"

namespace weft::net {
namespace {

std::pair<TcpStream, TcpStream> connected_pair() {
  auto l = TcpListener::bind(SocketAddress::loopback_v4(0));
  REQUIRE(l.ok());
  auto c = TcpStream::connect(*l->local_address());
  REQUIRE(c.ok());
  auto s = l->accept();
  REQUIRE(s.ok());
  return {std::move(*c), std::move(s->stream)};
}

uint64_t parks(const Runtime& rt) { return rt.stats().total(&WorkerStats::parks); }

TEST_CASE("readable() is ready at once when bytes are there, and the read does not wait") {
  auto rt = *Runtime::create({.workers = 1});
  rt->block_on([&] {
    auto [c, s] = connected_pair();
    REQUIRE(c.write_all("hello").ok());
    Channel<int> ch(1);
    // The bytes reach the peer's queue at once on loopback; readable sees the level.
    auto r = select(readable(s), recv(ch));
    REQUIRE(r.ok());
    REQUIRE(r->index() == 0);
    CHECK(std::get<0>(*r).ok());
    const uint64_t before = parks(*rt);
    char buf[16];
    auto n = s.read(buf);
    REQUIRE(n.ok());
    CHECK(std::string(buf, *n) == "hello");
    CHECK(parks(*rt) == before);
  });
}

TEST_CASE("readable() waits for bytes; a case that did not win takes nothing") {
  auto rt = *Runtime::create({.workers = 2});
  rt->block_on([&] {
    auto [c, s] = connected_pair();
    Channel<int> ch(1);
    auto writer = spawn([&c = c] {
      (void)this_fiber::sleep_for(absl::Milliseconds(20));
      REQUIRE(c.write_all("abc").ok());
    });
    auto r = select(recv(ch), readable(s), after(absl::Seconds(10)));
    REQUIRE(r.ok());
    REQUIRE(r->index() == 1);
    CHECK(std::get<1>(*r).ok());
    writer.join();
    char buf[8];
    auto n = s.read(buf);
    REQUIRE(n.ok());
    CHECK(std::string(buf, *n) == "abc");

    // A channel value wins; the socket's bytes stay for the next read.
    REQUIRE(ch.send(7).ok());
    REQUIRE(c.write_all("xyz").ok());
    (void)this_fiber::sleep_for(absl::Milliseconds(5));
    int channel_wins = 0;
    auto r2 = select(recv(ch));
    REQUIRE(r2.ok());
    channel_wins += std::get<0>(*r2).ok() && *std::get<0>(*r2) == 7;
    CHECK(channel_wins == 1);
    n = s.read(buf);
    REQUIRE(n.ok());
    CHECK(std::string(buf, *n) == "xyz");
  });
}

TEST_CASE("readable() does not fire for bytes a read already took (stale edges)") {
  // One worker: it polls only when this fiber parks in the select, so the
  // edge of each byte is dispatched after the read took it.
  auto rt = *Runtime::create({.workers = 1});
  rt->block_on([&] {
    auto [c, s] = connected_pair();
    const int rounds = 50;
    int timer_wins = 0;
    for (int i = 0; i < rounds; ++i) {
      REQUIRE(c.write_all("x").ok());
      char b;
      auto n = s.read({&b, 1});  // the edge for this byte may be dispatched later
      REQUIRE(n.ok());
      REQUIRE(*n == 1);
      auto r = select(readable(s), after(absl::Milliseconds(2)));
      REQUIRE(r.ok());
      timer_wins += r->index() == 1;
    }
    CHECK(timer_wins == rounds);
  });
}

TEST_CASE("writable() is ready on a fresh stream and waits while the send buffer is full") {
  auto rt = *Runtime::create({.workers = 2});
  rt->block_on([&] {
    auto [c, s] = connected_pair();
    auto r = select(writable(c), after(absl::Seconds(10)));
    REQUIRE(r.ok());
    REQUIRE(r->index() == 0);
    CHECK(std::get<0>(*r).ok());

    int small = 4096;
    REQUIRE(::setsockopt(c.native_handle(), SOL_SOCKET, SO_SNDBUF, &small, sizeof small) == 0);
    REQUIRE(::setsockopt(s.native_handle(), SOL_SOCKET, SO_RCVBUF, &small, sizeof small) == 0);
    std::string chunk(4096, 'w');
    uint64_t queued = 0;
    for (;;) {
      ssize_t n = ::send(c.native_handle(), chunk.data(), chunk.size(), MSG_DONTWAIT);
      if (n < 0) {
        REQUIRE((errno == EAGAIN || errno == EWOULDBLOCK));
        break;
      }
      queued += static_cast<uint64_t>(n);
    }
    REQUIRE(queued > 0);
    // Full: the timer wins.
    r = select(writable(c), after(absl::Milliseconds(20)));
    REQUIRE(r.ok());
    CHECK(r->index() == 1);
    // A reader drains the peer; writable() then wins.
    std::atomic<uint64_t> drained{0};
    auto reader = spawn([&s = s, &drained, queued] {
      std::vector<char> buf(65536);
      while (drained.load() < queued) {
        auto n = s.read(buf);
        REQUIRE(n.ok());
        REQUIRE(*n > 0);
        drained.fetch_add(*n);
      }
    });
    r = select(writable(c), after(absl::Seconds(10)));
    REQUIRE(r.ok());
    CHECK(r->index() == 0);
    reader.join();
    CHECK(drained.load() == queued);
  });
}

TEST_CASE("readable() on a listener, a UDP socket and UNIX sockets") {
  auto rt = *Runtime::create({.workers = 2});
  rt->block_on([&] {
    auto l = TcpListener::bind(SocketAddress::loopback_v4(0));
    REQUIRE(l.ok());
    auto r = select(readable(*l), after(absl::Milliseconds(10)));
    REQUIRE(r.ok());
    CHECK(r->index() == 1);  // nobody connecting
    auto connector = spawn([addr = *l->local_address()] {
      (void)this_fiber::sleep_for(absl::Milliseconds(10));
      auto c = TcpStream::connect(addr);
      REQUIRE(c.ok());
      return std::move(*c);
    });
    r = select(readable(*l), after(absl::Seconds(10)));
    REQUIRE(r.ok());
    CHECK(r->index() == 0);
    auto a = l->accept_for(absl::Milliseconds(100));
    CHECK(a.ok());
    (void)connector.join();

    auto u1 = UdpSocket::bind(SocketAddress::loopback_v4(0));
    auto u2 = UdpSocket::bind(SocketAddress::loopback_v4(0));
    REQUIRE(u1.ok());
    REQUIRE(u2.ok());
    auto ru = select(readable(*u2), after(absl::Milliseconds(10)));
    REQUIRE(ru.ok());
    CHECK(ru->index() == 1);
    auto sender = spawn([&] {
      (void)this_fiber::sleep_for(absl::Milliseconds(10));
      REQUIRE(u1->send_to("dgram", *u2->local_address()).ok());
    });
    ru = select(readable(*u2), after(absl::Seconds(10)));
    REQUIRE(ru.ok());
    CHECK(ru->index() == 0);
    sender.join();
    char buf[16];
    auto d = u2->recv_from(buf);
    REQUIRE(d.ok());
    CHECK(std::string(buf, d->size) == "dgram");

    // Not the pid alone: concurrent sandboxed runs can share it (unix_test.cc).
    auto ua = SocketAddress::unix_abstract("weft-select-test-" + std::to_string(::getpid()) + "-" +
                                           std::to_string(std::random_device{}()));
    REQUIRE(ua.ok());
    auto ul = UnixListener::bind(*ua);
    REQUIRE(ul.ok());
    auto uc = UnixStream::connect(*ua);
    REQUIRE(uc.ok());
    auto rl = select(readable(*ul), after(absl::Seconds(10)));
    REQUIRE(rl.ok());
    CHECK(rl->index() == 0);
    auto us = ul->accept();
    REQUIRE(us.ok());
    REQUIRE(uc->write_all("unix").ok());
    auto rs = select(readable(us->stream), after(absl::Seconds(10)));
    REQUIRE(rs.ok());
    CHECK(rs->index() == 0);
    auto n = us->stream.read(buf);
    REQUIRE(n.ok());
    CHECK(std::string(buf, *n) == "unix");
  });
}

TEST_CASE("close() from another fiber ends a readable() select with kFailedPrecondition") {
  auto rt = *Runtime::create({.workers = 2});
  rt->block_on([&] {
    auto [c, s] = connected_pair();
    Event started;
    absl::Status close_status;
    auto closer = spawn([&] {
      REQUIRE(started.wait().ok());
      (void)this_fiber::sleep_for(absl::Milliseconds(5));
      close_status = s.close();
    });
    started.set();
    auto r = select(readable(s), after(absl::Seconds(10)));
    REQUIRE(r.ok());
    REQUIRE(r->index() == 0);
    CHECK(std::get<0>(*r).code() == absl::StatusCode::kFailedPrecondition);
    closer.join();
    CHECK(close_status.ok());
    // Closed before the select: at once.
    auto r2 = select(readable(s), writable(s));
    REQUIRE(r2.ok());
    CHECK(r2->index() <= 1);
    CHECK(!(r2->index() == 0 ? std::get<0>(*r2) : std::get<1>(*r2)).ok());
    // An empty stream: closed.
    TcpStream none;
    auto r3 = select(readable(none));
    REQUIRE(r3.ok());
    CHECK(std::get<0>(*r3).code() == absl::StatusCode::kFailedPrecondition);
  });
}

TEST_CASE("a passed read deadline ends readable() with kDeadlineExceeded") {
  auto rt = *Runtime::create({.workers = 1});
  rt->block_on([&] {
    auto [c, s] = connected_pair();
    REQUIRE(s.set_read_deadline(absl::Now() + absl::Milliseconds(10)).ok());
    auto r = select(readable(s), after(absl::Seconds(10)));
    REQUIRE(r.ok());
    REQUIRE(r->index() == 0);
    CHECK(std::get<0>(*r).code() == absl::StatusCode::kDeadlineExceeded);
    REQUIRE(s.set_read_deadline(absl::InfiniteFuture()).ok());
    REQUIRE(c.write_all("ok").ok());
    r = select(readable(s), after(absl::Seconds(10)));
    REQUIRE(r.ok());
    CHECK(r->index() == 0);
    CHECK(std::get<0>(*r).ok());
  });
}

TEST_CASE("a cancelled select on readable() returns kCancelled and loses no bytes") {
  auto rt = *Runtime::create({.workers = 2});
  rt->block_on([&] {
    auto [c, s] = connected_pair();
    Event started;
    auto h = spawn([&s = s, &started] {
      started.set();
      return select(readable(s)).status();
    });
    REQUIRE(started.wait().ok());
    (void)this_fiber::sleep_for(absl::Milliseconds(5));
    h.abort();
    CHECK(h.join().code() == absl::StatusCode::kCancelled);
    REQUIRE(c.write_all("kept").ok());
    char buf[8];
    auto n = s.read(buf);
    REQUIRE(n.ok());
    CHECK(std::string(buf, *n) == "kept");
  });
}

TEST_CASE("a socket migrated while a select waits on it still wakes the select") {
  auto rt = *Runtime::create({.workers = 2});
  rt->block_on([&] {
    auto [c, s] = connected_pair();
    {
      // A migration wakes the socket's waiters to retry; a select case is
      // woken only if the socket is ready, which it is not.
      Event selecting;
      auto h = spawn([&s = s, &selecting] {
        selecting.set();
        auto r = select(readable(s), after(absl::Milliseconds(50)));
        REQUIRE(r.ok());
        return r->index();
      });
      REQUIRE(selecting.wait().ok());
      (void)this_fiber::sleep_for(absl::Milliseconds(5));
      REQUIRE(s.migrate_to(1 - s.owner_worker()).ok());
      REQUIRE(s.migrate_to(1 - s.owner_worker()).ok());
      CHECK(h.join() == 1);
    }
    Event started;
    auto h = spawn([&s = s, &started] {
      started.set();
      auto r = select(readable(s), after(absl::Seconds(10)));
      REQUIRE(r.ok());
      return r->index();
    });
    REQUIRE(started.wait().ok());
    (void)this_fiber::sleep_for(absl::Milliseconds(5));
    REQUIRE(s.migrate_to(1 - s.owner_worker()).ok());
    (void)this_fiber::sleep_for(absl::Milliseconds(5));
    REQUIRE(c.write_all("m").ok());
    CHECK(h.join() == 0);
  });
}

TEST_CASE("an edge that finds only a select case that already lost leaves the ready token") {
  // Select readiness step 3: the edge pops the losing case; a plain reader
  // that got EAGAIN just before the edge and parks just after it must find
  // the token, or it would wait for bytes that are already there.
  auto rt = *Runtime::create({.workers = 1});
  rt->block_on([&] {
    auto [c, s] = connected_pair();
    internal::SocketCore* core = internal::SocketAccess::core(s);
    internal::SelectGroup group(internal::current_fiber());
    REQUIRE(group.try_win(1));  // another case of that select won
    internal::Waiter w(&group, 0);
    REQUIRE(core->select_arm(internal::Dir::kRead, w) == internal::SocketCore::SelectArm::kQueued);
    REQUIRE(c.write_all("t").ok());
    // The worker dispatches the byte's edge while this fiber sleeps; it
    // pops only the losing case (nobody else waits yet).
    REQUIRE(this_fiber::sleep_for(absl::Milliseconds(10)).ok());
    core->select_disarm(internal::Dir::kRead, w);
    absl::Status st = core->wait(internal::Dir::kRead, internal::monotonic_now() + 200'000'000, "read");
    CHECK(st.ok());
    char b;
    auto n = s.read({&b, 1});
    REQUIRE(n.ok());
    CHECK(*n == 1);
  });
}

TEST_CASE("stress: a select on readable() beside a plain reader loses no wake-up, no byte") {
  // One fiber selects on the socket and a channel (the channel always
  // wins in the end); another reads the socket. Every edge that pops only
  // the select's waiter must still leave the reader its token.
  const int64_t rounds = weft::testing::stress_size(2000);
  auto rt = *Runtime::create({.workers = 2});
  rt->block_on([&] {
    auto [c, s] = connected_pair();
    s.set_read_timeout(absl::Seconds(20));
    Channel<int> ch(1);
    uint64_t select_socket_wins = 0;
    uint64_t channel_values = 0;
    auto selector = spawn([&] {
      for (;;) {
        auto r = select(readable(s), recv(ch));
        REQUIRE(r.ok());
        if (r->index() == 0) {
          ++select_socket_wins;
          (void)this_fiber::sleep_for(absl::Microseconds(50));  // let the reader take it
          continue;
        }
        auto v = std::get<1>(*r);
        if (!v.ok()) return;  // channel closed
        ++channel_values;
      }
    });
    uint64_t got = 0;
    auto reader = spawn([&] {
      char buf[256];
      while (got < static_cast<uint64_t>(rounds)) {
        auto n = s.read(buf);
        REQUIRE(n.ok());  // a lost wake-up would time out here
        REQUIRE(*n > 0);
        got += *n;
      }
    });
    for (int64_t i = 0; i < rounds; ++i) {
      REQUIRE(c.write_all("b").ok());
      if (i % 3 == 0) REQUIRE(ch.send(static_cast<int>(i)).ok());
      if (i % 7 == 0) this_fiber::yield();
    }
    reader.join();
    ch.close();
    selector.join();
    CHECK(got == static_cast<uint64_t>(rounds));
    CHECK(channel_values == static_cast<uint64_t>((rounds + 2) / 3));
    MESSAGE("select socket wins: " << select_socket_wins);
  });
}

}  // namespace
}  // namespace weft::net
