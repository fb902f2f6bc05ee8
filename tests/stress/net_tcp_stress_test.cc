// TCP on loopback under load: many concurrent connections, each doing
// checksummed request-response round trips, with exact totals; the same
// with every connection migrated between workers mid-stream; and no
// descriptor left behind.
//
// Sizes: by default 1,000 connections x 100 round trips (200 x 20 under
// the sanitizers). --scale=10 (or WEFT_STRESS_SCALE=10) runs the full
// size: 10,000 connections x 1,000 round trips. Connections spread over
// four listening addresses (127.0.0.1-4) so ports never run short.
#include <doctest/doctest.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstring>
#include <random>
#include <vector>

#include "net/tcp.h"
#include "runtime/runtime.h"
#include "sync/sync.h"
#include "tests/net_util.h"
#include "tests/stress_util.h"

namespace weft::net {
namespace {

constexpr size_t kMsg = 64;
constexpr int kListeners = 4;

struct Sizes {
  int64_t connections;
  int64_t round_trips;
};

Sizes sizes() {
#if defined(__SANITIZE_THREAD__) || defined(__SANITIZE_ADDRESS__)
  Sizes s{200, 20};
#else
  Sizes s{1000, 100};
#endif
  int64_t k = testing::Scale();
  s.connections = std::min<int64_t>(s.connections * k, 10000);
  s.round_trips = std::min<int64_t>(s.round_trips * k, 1000);
  return s;
}

// fill() writes message `seq` of connection `conn`: the two ids, then
// bytes derived from them; check() verifies one.
void fill(char* m, uint32_t conn, uint32_t seq) {
  std::memcpy(m, &conn, 4);
  std::memcpy(m + 4, &seq, 4);
  for (size_t i = 8; i < kMsg; ++i) m[i] = static_cast<char>((conn * 31 + seq * 7 + i) & 0xff);
}

uint64_t checksum(const char* m) {
  uint64_t h = 1469598103934665603ull;  // FNV-1a
  for (size_t i = 0; i < kMsg; ++i) h = (h ^ static_cast<uint8_t>(m[i])) * 1099511628211ull;
  return h;
}

struct Totals {
  std::atomic<int64_t> client_round_trips{0}, server_messages{0}, errors{0};
  std::atomic<uint64_t> client_sum{0}, server_sum{0};
  std::atomic<int64_t> min_migrations{INT64_MAX};
  std::atomic<uint64_t> migrations{0};
};

void run(bool migrate) {
  const Sizes sz = sizes();
  CAPTURE(sz.connections);
  CAPTURE(sz.round_trips);
  uint64_t limit = testing::RaiseFdLimit(static_cast<uint64_t>(sz.connections) * 2 + 256);
  REQUIRE_MESSAGE(limit >= static_cast<uint64_t>(sz.connections) * 2 + 64,
                  "RLIMIT_NOFILE too low for this many connections");
  const int fds_before = testing::OpenFds();
  // Migrations per connection: at least 10, spread over the stream.
  const int64_t migrate_every = std::max<int64_t>(1, sz.round_trips / 12);
  Totals t;
  {
    auto rt = *Runtime::create({.workers = 2, .seed = 7});
    rt->block_on([&] {
      std::vector<TcpListener> listeners;
      std::vector<SocketAddress> addrs;
      for (int i = 0; i < kListeners; ++i) {
        auto l = TcpListener::bind(*SocketAddress::from_ip("127.0.0." + std::to_string(i + 1), 0),
                                   {.backlog = 4096, .placement = AcceptPlacement::kRoundRobin});
        REQUIRE(l.ok());
        addrs.push_back(*l->local_address());
        listeners.push_back(std::move(*l));
      }
      WaitGroup served;
      std::vector<JoinHandle<void>> acceptors;
      const int64_t per_listener = (sz.connections + kListeners - 1) / kListeners;
      for (int i = 0; i < kListeners; ++i) {
        int64_t mine = std::min<int64_t>(per_listener, sz.connections - per_listener * i);
        served.add(static_cast<int>(std::max<int64_t>(mine, 0)));
        acceptors.push_back(spawn([&, i, mine] {
          for (int64_t k = 0; k < mine; ++k) {
            auto a = listeners[static_cast<size_t>(i)].accept();
            if (!a.ok()) {
              t.errors.fetch_add(1);
              served.done();
              continue;
            }
            spawn([&, s = std::move(a->stream)]() mutable {
              char m[kMsg];
              int64_t n = 0;
              for (;;) {
                absl::Status st = s.read_exact({m, kMsg});
                if (st.code() == absl::StatusCode::kOutOfRange) break;  // client done
                if (!st.ok()) {
                  t.errors.fetch_add(1);
                  break;
                }
                t.server_sum.fetch_add(checksum(m), std::memory_order_relaxed);
                ++n;
                if (migrate && n % migrate_every == 0) {
                  if (!s.migrate_to((s.owner_worker() + 1) % 2).ok()) t.errors.fetch_add(1);
                }
                if (!s.write_all(std::string_view(m, kMsg)).ok()) {
                  t.errors.fetch_add(1);
                  break;
                }
              }
              t.server_messages.fetch_add(n);
              if (migrate) {
                auto mig = static_cast<int64_t>(s.migrations());
                t.migrations.fetch_add(static_cast<uint64_t>(mig));
                int64_t cur = t.min_migrations.load();
                while (mig < cur && !t.min_migrations.compare_exchange_weak(cur, mig)) {
                }
              }
              served.done();
            }).detach();
          }
        }));
      }
      // Clients: all connect first, then all talk at once.
      std::vector<JoinHandle<void>> clients;
      Event go;
      for (int64_t c = 0; c < sz.connections; ++c) {
        clients.push_back(spawn([&, c] {
          auto s = TcpStream::connect(addrs[static_cast<size_t>(c % kListeners)]);
          if (!s.ok()) {
            t.errors.fetch_add(1);
            return;
          }
          go.wait();
          char out[kMsg], in[kMsg];
          for (int64_t k = 0; k < sz.round_trips; ++k) {
            fill(out, static_cast<uint32_t>(c), static_cast<uint32_t>(k));
            if (!s->write_all(std::string_view(out, kMsg)).ok() || !s->read_exact({in, kMsg}).ok() ||
                std::memcmp(in, out, kMsg) != 0) {
              t.errors.fetch_add(1);
              return;
            }
            t.client_sum.fetch_add(checksum(in), std::memory_order_relaxed);
            t.client_round_trips.fetch_add(1, std::memory_order_relaxed);
            // Client sides move too, from their own fiber.
            if (migrate && k % (migrate_every * 2) == 1) {
              if (!s->migrate_to((s->owner_worker() + 1) % 2).ok()) t.errors.fetch_add(1);
            }
          }
          (void)s->shutdown(Shutdown::kWrite);
        }));
      }
      go.set();
      for (auto& h : clients) h.join();
      for (auto& h : acceptors) h.join();
      served.wait();
    });
  }
  const int64_t expect = sz.connections * sz.round_trips;
  CHECK(t.errors.load() == 0);
  CHECK(t.client_round_trips.load() == expect);
  CHECK(t.server_messages.load() == expect);
  CHECK(t.client_sum.load() == t.server_sum.load());
  if (migrate) {
    CHECK(t.min_migrations.load() >= 10);
    MESSAGE("server-side migrations: " << t.migrations.load());
  }
  CHECK(testing::OpenFds() == fds_before);
}

TEST_CASE("concurrent loopback connections keep every checksummed round trip") { run(false); }

TEST_CASE("the same with every connection migrated at least 10 times mid-stream") { run(true); }

}  // namespace
}  // namespace weft::net
