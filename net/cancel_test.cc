// Cancellation of socket waits and name resolution: a read, accept or
// connect that waits returns kCancelled when the fiber is cancelled; a read
// racing with arriving bytes returns them or leaves them for the next read
// (exact byte accounting); resolve() gives up at once while its lookup is
// stuck behind a busy resolver lane.
#include <doctest/doctest.h>
#include <unistd.h>

#include <atomic>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "net/resolve.h"
#include "net/tcp.h"
#include "runtime/blocking.h"
#include "runtime/runtime.h"
#include "sync/sync.h"
#include "tests/net_util.h"
#include "tests/stress_util.h"
#include "tests/test_util.h"

namespace weft::net {
namespace {

using weft::testing::eventually;

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

uint64_t parks(const Runtime& rt) { return rt.stats().total(&WorkerStats::parks); }

TEST_CASE("a read waiting for bytes returns kCancelled; the stream stays usable") {
  const int fds_before = weft::testing::open_fds();
  auto rt = *Runtime::create({.workers = 2});
  Runtime* r = rt.get();
  rt->block_on([r] {
    auto [c, s] = connected_pair();
    CancellationToken t;
    const uint64_t base = parks(*r);
    auto h = spawn({.token = t}, [&s = s] {
      char buf[16];
      return s.read(buf).status().code();
    });
    while (parks(*r) < base + 1) (void)this_fiber::sleep_for(absl::Milliseconds(1));
    const absl::Time start = absl::Now();
    t.cancel();
    CHECK(h.join() == absl::StatusCode::kCancelled);
    CHECK(absl::Now() - start < absl::Seconds(5));
    // Already cancelled: at once.
    auto h2 = spawn([&s = s] {
      this_fiber::cancellation().cancel();
      char buf[16];
      return s.read(buf).status().code();
    });
    CHECK(h2.join() == absl::StatusCode::kCancelled);
    // Bytes already there: a cancelled fiber still reads them (no wait).
    REQUIRE(c.write_all(std::string_view("hello")).ok());
    (void)this_fiber::sleep_for(absl::Milliseconds(20));
    auto h3 = spawn([&s = s] {
      this_fiber::cancellation().cancel();
      std::string got(16, '\0');
      auto n = s.read(std::span<char>(got.data(), got.size()));
      if (!n.ok()) return std::string(n.status().message());
      got.resize(*n);
      return got;
    });
    CHECK(h3.join() == "hello");
  });
  rt.reset();
  CHECK(weft::testing::open_fds() == fds_before);
}

TEST_CASE("bytes arriving while the reader is cancelled: read by it, or by the next read") {
  const int64_t kRounds = weft::testing::stress_size(3000);
  auto rt = *Runtime::create({.workers = 2});
  struct Tally {
    int64_t written = 0, by_racer = 0, after = 0, corrupt = 0, racer_cancelled = 0, racer_never_ran = 0;
  };
  Tally tally = rt->block_on([kRounds] {
    Tally t;
    auto [c, s] = connected_pair();
    s.set_read_timeout(absl::Seconds(10));
    uint8_t next_out = 0, next_in = 0;
    auto check = [&](const char* p, size_t n) {
      for (size_t i = 0; i < n; ++i) t.corrupt += static_cast<uint8_t>(p[i]) != next_in++;
    };
    for (int64_t r = 0; r < kRounds; ++r) {
      const size_t k = 1 + static_cast<size_t>(r % 64);
      std::string data(k, '\0');
      for (auto& ch : data) ch = static_cast<char>(next_out++);
      CancellationToken tok;
      auto racer = spawn({.token = tok}, [&s = s] {
        std::string got(128, '\0');
        auto n = s.read(std::span<char>(got.data(), got.size()));
        if (!n.ok()) return absl::StatusOr<std::string>(n.status());
        got.resize(*n);
        return absl::StatusOr<std::string>(std::move(got));
      });
      auto writer = spawn([&c = c, &data, r] {
        for (int64_t i = 0; i < r % 5; ++i) this_fiber::yield();
        return c.write_all(data);
      });
      for (int64_t i = 0; i < r % 7; ++i) this_fiber::yield();
      tok.cancel();
      REQUIRE(writer.join().ok());
      t.written += static_cast<int64_t>(k);
      size_t have = 0;
      auto got = racer.try_join();  // flattened: the racer's own StatusOr
      if (absl::IsAborted(got.status())) {
        ++t.racer_never_ran;
      } else if (got.ok()) {
        have = got->size();
        REQUIRE(have >= 1);
        REQUIRE(have <= k);
        check(got->data(), have);
        t.by_racer += static_cast<int64_t>(have);
      } else {
        REQUIRE(got.status().code() == absl::StatusCode::kCancelled);
        ++t.racer_cancelled;
      }
      // What the racer did not take is still in the socket.
      std::string rest(k - have, '\0');
      if (!rest.empty()) {
        REQUIRE(s.read_exact(std::span<char>(rest.data(), rest.size())).ok());
        check(rest.data(), rest.size());
        t.after += static_cast<int64_t>(rest.size());
      }
    }
    // And nothing more: the writer's shutdown is the next thing read.
    REQUIRE(c.shutdown(Shutdown::kWrite).ok());
    char buf[8];
    auto eof = s.read(buf);
    REQUIRE(eof.ok());
    CHECK(*eof == 0);
    return t;
  });
  MESSAGE("bytes read by the racing read " << tally.by_racer << ", by the next read " << tally.after
                                           << "; racer cancelled " << tally.racer_cancelled << ", never ran "
                                           << tally.racer_never_ran);
  CHECK(tally.corrupt == 0);
  CHECK(tally.by_racer + tally.after == tally.written);
}

TEST_CASE("accept and connect waiting are cancelled; the listener stays usable") {
  const int fds_before = weft::testing::open_fds();
  auto rt = *Runtime::create({.workers = 2});
  Runtime* r = rt.get();
  rt->block_on([r] {
    TcpListener l = listen_loopback();
    CancellationToken t;
    uint64_t base = parks(*r);
    auto acc = spawn({.token = t}, [&l] { return l.accept().status().code(); });
    while (parks(*r) < base + 1) (void)this_fiber::sleep_for(absl::Milliseconds(1));
    t.cancel();
    CHECK(acc.join() == absl::StatusCode::kCancelled);
    auto acc2 = spawn([&l] {
      this_fiber::cancellation().cancel();
      return l.accept_for(absl::Seconds(30)).status().code();
    });
    CHECK(acc2.join() == absl::StatusCode::kCancelled);
    auto c = TcpStream::connect(addr_of(l), absl::Seconds(10));
    REQUIRE(c.ok());
    auto a = l.accept_for(absl::Seconds(10));
    CHECK(a.ok());

    // A listener whose accept queue is full drops further SYNs, so a
    // connect to it waits (as in tcp_test).
    ListenOptions o;
    o.backlog = 1;
    TcpListener full = listen_loopback(o);
    std::vector<TcpStream> held;
    bool timed_out = false;
    for (int i = 0; i < 64 && !timed_out; ++i) {
      auto hc = TcpStream::connect(addr_of(full), absl::Milliseconds(100));
      if (hc.ok()) {
        held.push_back(std::move(*hc));
      } else {
        REQUIRE(hc.status().code() == absl::StatusCode::kDeadlineExceeded);
        timed_out = true;
      }
    }
    REQUIRE(timed_out);
    CancellationToken ct;
    base = parks(*r);
    const SocketAddress full_addr = addr_of(full);
    auto con = spawn({.token = ct}, [full_addr] {
      const absl::Time start = absl::Now();
      absl::Status s = TcpStream::connect(full_addr).status();
      return std::make_pair(s.code(), absl::Now() - start);
    });
    while (parks(*r) < base + 1) (void)this_fiber::sleep_for(absl::Milliseconds(1));
    (void)this_fiber::sleep_for(absl::Milliseconds(20));
    ct.cancel();
    auto [code, took] = con.join();
    CHECK(code == absl::StatusCode::kCancelled);
    CHECK(took < absl::Seconds(5));
  });
  rt.reset();
  CHECK(weft::testing::open_fds() == fds_before);
}

TEST_CASE("shutdown(grace) ends a read that waits on a socket") {
  auto rt = *Runtime::create({.workers = 2});
  std::atomic<bool> reading{false};
  auto h = rt->spawn([&] {
    auto [c, s] = connected_pair();
    reading.store(true);
    char buf[8];
    return s.read(buf).status().code();
  });
  REQUIRE(eventually([&] { return reading.load(); }));
  ::usleep(20000);
  ShutdownReport report = rt->shutdown(absl::Seconds(20));
  CHECK(report.left == 0);
  CHECK(h.join() == absl::StatusCode::kCancelled);
}

// The resolver lane narrowed to one thread, held by a call that waits for
// the gate: a resolve() queued behind it is as slow as a stuck DNS server,
// without needing one.
TEST_CASE("resolve() is cancelled promptly while its lookup waits behind a busy resolver lane") {
  auto rt = *Runtime::create({.workers = 2, .blocking = {.max_resolve_threads = 1}});
  auto resolve_lane = [&rt] { return rt->stats().blocking.lane(BlockingLane::kResolve); };
  auto gate = std::make_shared<std::atomic<int>>(0);  // 1: entered, 2: open
  auto blocker = rt->block_on([gate] {
    return spawn_blocking(BlockingLane::kResolve, [gate] {
      gate->store(1);
      while (gate->load() != 2) ::usleep(200);
      return 0;
    });
  });
  REQUIRE(eventually([&] { return gate->load() == 1; }));

  CancellationToken t;
  auto h = rt->spawn(
      [] {
        const absl::Time start = absl::Now();
        absl::Status s = resolve("localhost", 80).status();
        return std::make_pair(s.code(), absl::Now() - start);
      },
      {.token = t});
  REQUIRE(eventually([&] { return resolve_lane().queued == 1; }));
  ::usleep(20000);
  t.cancel();
  auto [code, took] = h.join();
  CHECK(code == absl::StatusCode::kCancelled);
  CHECK(took < absl::Seconds(5));
  CHECK(gate->load() == 1);  // the lane was stuck all along

  rt->block_on([] {
    this_fiber::cancellation().cancel();
    CHECK(resolve("localhost", 80).status().code() == absl::StatusCode::kCancelled);
    // A numeric address needs no lookup: a cancelled fiber still gets it.
    auto numeric = resolve("127.0.0.1", 80);
    REQUIRE(numeric.ok());
    CHECK(numeric->size() == 1);
  });

  gate->store(2);
  CHECK(blocker.join() == 0);
  // The two cancelled lookups were dropped, never run.
  REQUIRE(eventually([&] { return resolve_lane().queued == 0 && resolve_lane().calls_dropped == 2; }));
  CHECK(resolve_lane().calls_served == 1);  // the blocker
  rt->block_on([] {
    auto ok = resolve("localhost", 80);
    CHECK(ok.ok());
  });
  CHECK(resolve_lane().threads_started == 1);
}

}  // namespace
}  // namespace weft::net
