// UdpSocket on loopback: datagrams, truncation, connected mode, timeouts,
// deadlines, close, migration and exact counts across workers.
#include "net/udp.h"

#include <doctest/doctest.h>

#include <atomic>
#include <string>
#include <vector>

#include "runtime/runtime.h"
#include "tests/net_util.h"

namespace weft::net {
namespace {

UdpSocket bind_loopback(bool v6 = false) {
  auto s = UdpSocket::bind(v6 ? SocketAddress::loopback_v6(0) : SocketAddress::loopback_v4(0));
  REQUIRE(s.ok());
  return std::move(*s);
}

TEST_CASE("send_to and recv_from, IPv4 and IPv6, with truncation reported") {
  int fds_before = testing::open_fds();
  {
    auto rt = *Runtime::create({.workers = 2});
    rt->block_on([] {
      // (No CAPTURE here: doctest keeps it in a thread-local, and this
      // fiber may resume on another thread.)
      for (bool v6 : {false, true}) {
        UdpSocket a = bind_loopback(v6);
        UdpSocket b = bind_loopback(v6);
        SocketAddress to = *b.local_address();
        auto receiver = spawn([&] {
          char buf[64];
          auto d = b.recv_from(buf);  // parks until the datagram comes
          REQUIRE(d.ok());
          CHECK(d->from == *a.local_address());
          CHECK(!d->truncated);
          return std::string(buf, d->size);
        });
        (void)this_fiber::sleep_for(absl::Milliseconds(5));
        auto n = a.send_to("datagram", to);
        REQUIRE(n.ok());
        CHECK(*n == 8);
        CHECK(receiver.join() == "datagram");

        CHECK(a.send_to(std::string(100, 'q'), to).ok());
        char small[10];
        auto d = b.recv_from(small);
        REQUIRE(d.ok());
        CHECK(d->size == 10);
        CHECK(d->truncated);
      }
    });
  }
  CHECK(testing::open_fds() == fds_before);
}

TEST_CASE("connected UDP: send, recv, refused, timeouts, deadlines, close") {
  auto rt = *Runtime::create({.workers = 2});
  rt->block_on([] {
    UdpSocket a = bind_loopback();
    UdpSocket b = bind_loopback();
    CHECK(a.connect(*b.local_address()).ok());
    CHECK(b.connect(*a.local_address()).ok());
    CHECK(*a.send("ping") == 4);
    char buf[16];
    auto n = b.recv(buf);
    REQUIRE(n.ok());
    CHECK(std::string(buf, *n) == "ping");

    // Per-call timeout, then an absolute deadline.
    b.set_read_timeout(absl::Milliseconds(15));
    CHECK(b.recv(buf).status().code() == absl::StatusCode::kDeadlineExceeded);
    b.set_read_timeout(absl::InfiniteDuration());
    CHECK(b.set_read_deadline(absl::Now() + absl::Milliseconds(20)).ok());
    CHECK(b.recv_from(buf).status().code() == absl::StatusCode::kDeadlineExceeded);
    CHECK(b.set_read_deadline(absl::InfiniteFuture()).ok());
    CHECK(b.set_write_deadline(absl::Now() - absl::Seconds(1)).ok());
    CHECK(b.send("x").status().code() == absl::StatusCode::kDeadlineExceeded);
    CHECK(b.set_write_deadline(absl::InfiniteFuture()).ok());
    // A timeout too long to add to the clock (it saturates to INT64_MAX
    // nanoseconds) means no deadline: no overflow, no early failure.
    b.set_read_timeout(absl::Hours(24 * 365 * 1000));
    auto later = spawn([&] {
      (void)this_fiber::sleep_for(absl::Milliseconds(20));
      return a.send("late").status();
    });
    auto late = b.recv(buf);
    CHECK(later.join().ok());
    REQUIRE_MESSAGE(late.ok(), late.status().ToString());
    CHECK(std::string(buf, *late) == "late");
    b.set_read_timeout(absl::InfiniteDuration());

    // A connected socket whose peer port is gone: the ICMP error comes
    // back as ECONNREFUSED on a later call.
    UdpSocket c = bind_loopback();
    {
      UdpSocket gone = bind_loopback();
      CHECK(c.connect(*gone.local_address()).ok());
    }
    CHECK(c.send("anyone?").ok());
    c.set_read_timeout(absl::Seconds(5));
    auto r = c.recv(buf);
    CHECK(r.status().code() == absl::StatusCode::kUnavailable);
    CHECK(error_number(r.status()) == ECONNREFUSED);

    // Close wakes a parked receiver; later calls fail.
    auto parked = spawn([&] { return a.recv(buf).status().code(); });
    (void)this_fiber::sleep_for(absl::Milliseconds(10));
    CHECK(a.close().ok());
    CHECK(parked.join() == absl::StatusCode::kCancelled);
    CHECK(a.send("x").status().code() == absl::StatusCode::kFailedPrecondition);
    CHECK(a.connect(*b.local_address()).code() == absl::StatusCode::kFailedPrecondition);
    CHECK(a.send_to("x", *b.local_address()).status().code() == absl::StatusCode::kFailedPrecondition);
    CHECK(b.send_to("x", SocketAddress()).status().code() == absl::StatusCode::kInvalidArgument);

    // Binding a port in use without SO_REUSEADDR fails with the errno.
    auto dup = UdpSocket::bind(*b.local_address());
    CHECK(error_number(dup.status()) == EADDRINUSE);
  });
}

TEST_CASE("datagrams across workers and migrations arrive exactly once") {
  auto rt = *Runtime::create({.workers = 3});
  rt->block_on([] {
    UdpSocket server = bind_loopback();
    SocketAddress to = *server.local_address();
    constexpr int kSenders = 6, kEach = 300;
    std::atomic<int> acked{0};
    // The server echoes; senders wait for each echo (so nothing is dropped
    // by a full receive buffer) and count them; the server socket keeps
    // moving between workers meanwhile.
    auto echo = spawn([&] {
      char buf[64];
      uint64_t seen = 0;
      while (seen < uint64_t{kSenders} * kEach) {
        auto d = server.recv_from(buf);
        REQUIRE(d.ok());
        REQUIRE(server.send_to(std::string_view(buf, d->size), d->from).ok());
        ++seen;
      }
      return seen;
    });
    auto mover = spawn([&] {
      int moves = 0;
      while (acked.load() < kSenders * kEach) {
        CHECK(server.migrate_to((server.owner_worker() + 1) % 3).ok());
        ++moves;
        (void)this_fiber::sleep_for(absl::Milliseconds(1));
      }
      return moves;
    });
    std::vector<JoinHandle<void>> senders;
    for (int i = 0; i < kSenders; ++i) {
      senders.push_back(spawn([&, i] {
        UdpSocket s = bind_loopback();
        s.set_read_timeout(absl::Milliseconds(200));
        char buf[64];
        for (int k = 0; k < kEach; ++k) {
          std::string msg = std::to_string(i) + ":" + std::to_string(k);
          // One datagram in flight per sender: loopback drops nothing
          // unless a receive buffer overflows, which this cannot cause.
          REQUIRE(s.send_to(msg, to).ok());
          auto d = s.recv_from(buf);
          REQUIRE(d.ok());
          CHECK(std::string(buf, d->size) == msg);
          acked.fetch_add(1);
        }
      }));
    }
    for (auto& h : senders) h.join();
    CHECK(echo.join() == uint64_t{kSenders} * kEach);
    CHECK(mover.join() > 0);
    CHECK(acked.load() == kSenders * kEach);
  });
}

}  // namespace
}  // namespace weft::net
