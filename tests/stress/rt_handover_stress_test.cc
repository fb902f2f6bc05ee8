// Hand-over and take-back of stuck workers' drivers (monitor.cc), many
// times over, while sockets migrate between workers and timers fire, with
// exact counts: every echoed byte checked, every sleep woken exactly once,
// every socket deadline fired exactly once per wait, every message-spawned
// fiber run exactly once. Hogs (spinning and blocking fibers) keep making
// workers stuck; a 1 ms stall threshold makes hand-overs frequent.
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cstring>
#include <memory>
#include <random>
#include <thread>
#include <vector>

#include "doctest/doctest.h"
#include "net/tcp.h"
#include "runtime/runtime.h"
#include "sync/sync.h"
#include "tests/stress_util.h"

namespace weft {
namespace {

int64_t now_us() { return absl::ToUnixMicros(absl::Now()); }

void spin_us(int64_t us) {
  int64_t until = now_us() + us;
  while (now_us() < until) {
  }
}

TEST_CASE("stuck workers hand over and take back their drivers without losing anything") {
  const int kConns = 20;
  const int64_t kTrips = testing::stress_size(2000);  // per connection
  const int kSleepers = 20;
  const int64_t kSleeps = testing::stress_size(200);  // per sleeper
  const int64_t kDeadlineWaits = testing::stress_size(300);
  const int64_t kSpawnMessages = testing::stress_size(2000);
  RuntimeOptions opts;
  opts.workers = 3;
  opts.stall_threshold = absl::Milliseconds(1);
  opts.report_hogs = false;
  auto rt = Runtime::create(opts);
  REQUIRE(rt.ok());
  const int nw = (*rt)->num_workers();

  std::atomic<uint16_t> port{0};
  std::vector<std::shared_ptr<net::TcpStream>> streams;
  std::atomic<bool> stop{false};
  std::atomic<int64_t> echo_fibers_done{0}, deadline_fired{0}, migrations{0};
  auto server = (*rt)->spawn([&] {
    auto l = net::TcpListener::bind(*net::SocketAddress::parse("127.0.0.1:0"));
    REQUIRE(l.ok());
    port.store(l->local_address()->port());
    for (int i = 0; i < kConns + 1; ++i) {
      auto c = l->accept();
      REQUIRE(c.ok());
      streams.push_back(std::make_shared<net::TcpStream>(std::move(c->stream)));
    }
  });
  while (port.load() == 0) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  std::vector<int> fds;
  for (int i = 0; i < kConns + 1; ++i) {
    int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(port.load());
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    REQUIRE(::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)) == 0);
    int one = 1;
    ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    fds.push_back(fd);
  }
  server.join();

  std::vector<JoinHandle<void>> fibers;
  // Echo fibers, one per connection but the last.
  for (int i = 0; i < kConns; ++i) {
    fibers.push_back((*rt)->spawn([&, s = streams[static_cast<size_t>(i)]] {
      char b[256];
      for (;;) {
        auto n = s->read(b);
        if (!n.ok() || *n == 0) break;
        REQUIRE(s->write_all({b, *n}).ok());
      }
      echo_fibers_done.fetch_add(1);
    }));
  }
  // A deadline waiter on the last connection: the timer is on its owner's
  // wheel, wherever the migrator moves it.
  fibers.push_back((*rt)->spawn([&, s = streams[static_cast<size_t>(kConns)]] {
    char b[8];
    for (int64_t i = 0; i < kDeadlineWaits; ++i) {
      REQUIRE(s->set_read_deadline(absl::Now() + absl::Milliseconds(1)).ok());
      auto n = s->read(b);
      REQUIRE(n.status().code() == absl::StatusCode::kDeadlineExceeded);
      deadline_fired.fetch_add(1);
    }
  }));
  // Sleepers.
  std::atomic<int64_t> woken{0};
  for (int i = 0; i < kSleepers; ++i) {
    fibers.push_back((*rt)->spawn([&, i] {
      for (int64_t k = 0; k < kSleeps; ++k) {
        (void)this_fiber::sleep_for(absl::Microseconds(500 + 500 * ((i + k) % 4)));
        woken.fetch_add(1);
      }
    }));
  }
  // The migrator.
  fibers.push_back((*rt)->spawn([&] {
    std::mt19937 rng(7);
    while (!stop.load()) {
      auto& s = streams[rng() % streams.size()];
      REQUIRE(s->migrate_to(static_cast<int>(rng() % static_cast<unsigned>(nw))).ok());
      migrations.fetch_add(1);
      (void)this_fiber::sleep_for(absl::Microseconds(300));
    }
  }));
  // Hogs: spinning 2-6 ms, and blocking the thread 2-4 ms, on whatever
  // worker they run.
  for (int h = 0; h < 2; ++h) {
    fibers.push_back((*rt)->spawn([&, h] {
      std::mt19937 rng(100 + h);
      while (!stop.load()) {
        if (h == 0) {
          spin_us(2000 + rng() % 4000);
        } else {
          ::usleep(2000 + rng() % 2000);
        }
        (void)this_fiber::sleep_for(absl::Milliseconds(1));
      }
    }));
  }

  // From outside: spawns sent as messages to every worker's inbox.
  std::atomic<int64_t> spawned_ran{0};
  std::thread spawner([&] {
    std::vector<JoinHandle<void>> hs;
    for (int64_t i = 0; i < kSpawnMessages; ++i) {
      hs.push_back((*rt)->spawn_on(static_cast<int>(i % nw), [&] { spawned_ran.fetch_add(1); }));
      if (i % 64 == 0) std::this_thread::sleep_for(std::chrono::microseconds(200));
    }
    for (auto& h : hs) h.join();
  });

  // The client: checksummed round trips on every connection.
  std::vector<std::thread> clients;
  std::atomic<int64_t> trips{0}, bad{0};
  for (int c = 0; c < 2; ++c) {
    clients.emplace_back([&, c] {
      std::mt19937 rng(c);
      for (int64_t k = 0; k < kTrips; ++k) {
        for (int i = c; i < kConns; i += 2) {
          char out[200], in[200];
          size_t len = 1 + rng() % sizeof(out);
          for (size_t j = 0; j < len; ++j) out[j] = static_cast<char>(rng());
          if (::write(fds[static_cast<size_t>(i)], out, len) != static_cast<ssize_t>(len)) ++bad;
          size_t got = 0;
          while (got < len) {
            ssize_t n = ::read(fds[static_cast<size_t>(i)], in + got, len - got);
            if (n <= 0) {
              ++bad;
              break;
            }
            got += static_cast<size_t>(n);
          }
          if (std::memcmp(in, out, len) != 0) ++bad;
          trips.fetch_add(1);
        }
      }
    });
  }
  for (auto& t : clients) t.join();
  spawner.join();
  stop.store(true);
  for (int i = 0; i < kConns + 1; ++i) ::shutdown(fds[static_cast<size_t>(i)], SHUT_WR);
  for (auto& f : fibers) f.join();
  RuntimeStats st = (*rt)->stats();
  MESSAGE("round trips " << trips.load() << ", migrations " << migrations.load() << ", hog episodes "
                         << st.hog_episodes << ", hand-overs " << st.handovers);
  CHECK(bad.load() == 0);
  CHECK(trips.load() == kTrips * kConns);
  CHECK(echo_fibers_done.load() == kConns);
  CHECK(woken.load() == kSleepers * kSleeps);
  CHECK(deadline_fired.load() == kDeadlineWaits);
  CHECK(spawned_ran.load() == kSpawnMessages);
  CHECK(st.handovers >= 1);
  CHECK(st.hog_episodes >= 1);
  streams.clear();
  for (int fd : fds) ::close(fd);
  (*rt)->shutdown();
  CHECK((*rt)->stats().live_fibers == 0);
}

}  // namespace
}  // namespace weft
