// TCP on loopback under load: many concurrent connections, each doing
// checksummed request-response round trips, with exact totals; the same
// with every connection migrated between workers mid-stream; and no
// descriptor left behind.
//
// Sizes: by default 1,000 connections x 100 round trips (200 x 20 under
// the sanitizers). --scale=10 (or WEFT_STRESS_SCALE=10) runs the full
// size: 10,000 connections x 1,000 round trips. Connections spread over
// four listening addresses (127.0.0.1-4) so ports never run short. The
// servers run in this process and the clients in a child process (see
// ClientPlan), each with its own runtime.
#include <doctest/doctest.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <random>
#include <vector>

#include <fcntl.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include "net/tcp.h"
#include "runtime/blocking.h"
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
  int64_t k = testing::scale();
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

// The client side runs in a second process (this binary again, running
// only the skipped test case "stress client process"), so that each process
// holds one end of every connection: 10,000 connections need 10,000
// descriptors per process, within the 20,000 a container often allows.
// The parent passes the listening ports, the sizes and a pipe for the
// result through WEFT_STRESS_CLIENT; the child writes one line:
//   errors=E round_trips=R sum=S fds_leaked=L
constexpr char kClientEnv[] = "WEFT_STRESS_CLIENT";
constexpr char kClientCase[] = "stress client process";

struct ClientPlan {
  std::vector<uint16_t> ports;  // one per listener, 127.0.0.(i+1)
  int64_t connections = 0;
  int64_t round_trips = 0;
  int64_t migrate_every = 0;  // 0: no migration
  int result_fd = -1;
};

std::string encode(const ClientPlan& p) {
  std::string s;
  for (uint16_t port : p.ports) s += std::to_string(port) + ",";
  s += ";" + std::to_string(p.connections) + ";" + std::to_string(p.round_trips) + ";" +
       std::to_string(p.migrate_every) + ";" + std::to_string(p.result_fd);
  return s;
}

bool decode(const char* text, ClientPlan* p) {
  std::string s(text);
  size_t semi = s.find(';');
  if (semi == std::string::npos) return false;
  std::string ports = s.substr(0, semi);
  for (size_t at = 0; at < ports.size();) {
    size_t comma = ports.find(',', at);
    if (comma == std::string::npos) return false;
    p->ports.push_back(static_cast<uint16_t>(std::stoul(ports.substr(at, comma - at))));
    at = comma + 1;
  }
  long long c = 0, r = 0, m = 0;
  int fd = -1;
  if (std::sscanf(s.c_str() + semi, ";%lld;%lld;%lld;%d", &c, &r, &m, &fd) != 4) return false;
  p->connections = c;
  p->round_trips = r;
  p->migrate_every = m;
  p->result_fd = fd;
  return static_cast<int>(p->ports.size()) == kListeners;
}

// run_clients() is the child's side: connect everything, then every
// connection does its round trips at once, checking each echo.
void run_clients(const ClientPlan& plan) {
  uint64_t limit = testing::raise_fd_limit(static_cast<uint64_t>(plan.connections) + 256);
  std::atomic<int64_t> errors{0}, round_trips{0};
  std::atomic<uint64_t> sum{0};
  if (limit < static_cast<uint64_t>(plan.connections) + 64) errors.fetch_add(1);
  const int fds_before = testing::open_fds();
  if (errors.load() == 0) {
    auto rt = *Runtime::create({.workers = 2, .seed = 11});
    rt->block_on([&] {
      std::vector<JoinHandle<void>> clients;
      Event go;
      for (int64_t c = 0; c < plan.connections; ++c) {
        clients.push_back(spawn([&, c] {
          const size_t l = static_cast<size_t>(c % kListeners);
          auto s = TcpStream::connect(
              *SocketAddress::from_ip("127.0.0." + std::to_string(l + 1), plan.ports[l]));
          if (!s.ok()) {
            errors.fetch_add(1);
            return;
          }
          (void)go.wait();
          char out[kMsg], in[kMsg];
          for (int64_t k = 0; k < plan.round_trips; ++k) {
            fill(out, static_cast<uint32_t>(c), static_cast<uint32_t>(k));
            if (!s->write_all(std::string_view(out, kMsg)).ok() || !s->read_exact({in, kMsg}).ok() ||
                std::memcmp(in, out, kMsg) != 0) {
              errors.fetch_add(1);
              return;
            }
            sum.fetch_add(checksum(in), std::memory_order_relaxed);
            round_trips.fetch_add(1, std::memory_order_relaxed);
            // Client sides move too, from their own fiber.
            if (plan.migrate_every > 0 && k % (plan.migrate_every * 2) == 1) {
              if (!s->migrate_to((s->owner_worker() + 1) % 2).ok()) errors.fetch_add(1);
            }
          }
          (void)s->shutdown(Shutdown::kWrite);
          // Wait for the server's end of stream, so the server has counted
          // this connection before the process exits.
          char tail[1];
          auto eof = s->read(tail);
          if (!eof.ok() || *eof != 0) errors.fetch_add(1);
        }));
      }
      go.set();
      for (auto& h : clients) h.join();
    });
  }
  const std::string line = "errors=" + std::to_string(errors.load()) +
                           " round_trips=" + std::to_string(round_trips.load()) +
                           " sum=" + std::to_string(sum.load()) +
                           " fds_leaked=" + std::to_string(testing::open_fds() - fds_before) + "\n";
  CHECK(::write(plan.result_fd, line.data(), line.size()) == static_cast<ssize_t>(line.size()));
  ::close(plan.result_fd);
}

// ClientProcess: the child, started with posix_spawn (no fork of a
// threaded process) and reaped with waitpid() on the blocking pool.
struct ClientProcess {
  pid_t pid = -1;
  int result_fd = -1;  // read end of the result pipe
};

ClientProcess spawn_client(ClientPlan plan) {
  int fds[2];
  REQUIRE(::pipe2(fds, O_CLOEXEC) == 0);
  // The write end must survive the exec: a duplicate without O_CLOEXEC.
  plan.result_fd = ::fcntl(fds[1], F_DUPFD, 3);
  REQUIRE(plan.result_fd >= 0);
  ::close(fds[1]);
  std::string env_entry = std::string(kClientEnv) + "=" + encode(plan);
  std::vector<char*> envp;
  for (char** e = environ; *e != nullptr; ++e) envp.push_back(*e);
  envp.push_back(env_entry.data());
  envp.push_back(nullptr);
  std::string exe = "/proc/self/exe", no_skip = "--no-skip",
              filter = std::string("--test-case=") + kClientCase;
  char* argv[] = {exe.data(), no_skip.data(), filter.data(), nullptr};
  ClientProcess child;
  int err = ::posix_spawn(&child.pid, exe.c_str(), nullptr, nullptr, argv, envp.data());
  ::close(plan.result_fd);
  REQUIRE_MESSAGE(err == 0, "posix_spawn: " << std::strerror(err));
  child.result_fd = fds[0];
  return child;
}

struct Totals {
  std::atomic<int64_t> server_messages{0}, errors{0};
  std::atomic<uint64_t> server_sum{0};
  std::atomic<int64_t> min_migrations{INT64_MAX};
  std::atomic<uint64_t> migrations{0};
  std::atomic<int64_t> accepted{0};
};

// field() is the number after "name=" in the child's result line, or
// UINT64_MAX if it is missing.
uint64_t field(const std::string& line, const std::string& name) {
  size_t at = line.find(name + "=");
  if (at == std::string::npos) return UINT64_MAX;
  return std::stoull(line.substr(at + name.size() + 1));
}

void run(bool migrate) {
  const Sizes sz = sizes();
  CAPTURE(sz.connections);
  CAPTURE(sz.round_trips);
  uint64_t limit = testing::raise_fd_limit(static_cast<uint64_t>(sz.connections) + 256);
  REQUIRE_MESSAGE(limit >= static_cast<uint64_t>(sz.connections) + 64,
                  "RLIMIT_NOFILE too low for this many connections");
  const int fds_before = testing::open_fds();
  // Migrations per connection: at least 10, spread over the stream.
  const int64_t migrate_every = std::max<int64_t>(1, sz.round_trips / 12);
  Totals t;
  int exit_status = -1;
  std::string result;
  {
    auto rt = *Runtime::create({.workers = 2, .seed = 7});
    rt->block_on([&] {
      std::vector<TcpListener> listeners;
      ClientPlan plan;
      plan.connections = sz.connections;
      plan.round_trips = sz.round_trips;
      plan.migrate_every = migrate ? migrate_every : 0;
      for (int i = 0; i < kListeners; ++i) {
        auto l = TcpListener::bind(*SocketAddress::from_ip("127.0.0." + std::to_string(i + 1), 0),
                                   {.backlog = 4096, .placement = AcceptPlacement::kRoundRobin});
        REQUIRE(l.ok());
        plan.ports.push_back(l->local_address()->port());
        listeners.push_back(std::move(*l));
      }
      ClientProcess child = spawn_client(plan);
      WaitGroup served;
      std::vector<JoinHandle<void>> acceptors;
      const int64_t per_listener = (sz.connections + kListeners - 1) / kListeners;
      for (int i = 0; i < kListeners; ++i) {
        int64_t mine = std::max<int64_t>(0, std::min<int64_t>(per_listener, sz.connections - per_listener * i));
        acceptors.push_back(spawn([&, i, mine] {
          for (int64_t k = 0; k < mine; ++k) {
            auto a = listeners[static_cast<size_t>(i)].accept();
            if (!a.ok()) return;  // closed: the client process is gone
            t.accepted.fetch_add(1);
            served.add(1);
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
      // The child exits once every connection has finished (or failed).
      // Then no more connections can come: close the listeners, so that
      // acceptors still waiting (after a failed connect) return.
      int status = 0;
      pid_t reaped = run_blocking([&] { return ::waitpid(child.pid, &status, 0); });
      exit_status = reaped == child.pid ? status : -1;
      for (auto& l : listeners) (void)l.close();
      for (auto& h : acceptors) h.join();
      (void)served.wait();
      char buf[256];
      ssize_t n;
      while ((n = ::read(child.result_fd, buf, sizeof buf)) > 0) result.append(buf, static_cast<size_t>(n));
      ::close(child.result_fd);
    });
  }
  const int64_t expect = sz.connections * sz.round_trips;
  CAPTURE(result);
  CHECK(WIFEXITED(exit_status));
  CHECK(WEXITSTATUS(exit_status) == 0);
  CHECK(field(result, "errors") == 0);
  CHECK(field(result, "round_trips") == static_cast<uint64_t>(expect));
  CHECK(field(result, "fds_leaked") == 0);
  CHECK(t.errors.load() == 0);
  CHECK(t.accepted.load() == sz.connections);
  CHECK(t.server_messages.load() == expect);
  CHECK(field(result, "sum") == t.server_sum.load());
  if (migrate) {
    CHECK(t.min_migrations.load() >= 10);
    MESSAGE("server-side migrations: " << t.migrations.load());
  }
  CHECK(testing::open_fds() == fds_before);
}

// The client side, in its own process; see ClientPlan. Skipped unless the
// parent starts this binary with --no-skip and WEFT_STRESS_CLIENT.
TEST_CASE("stress client process" * doctest::skip()) {
  const char* env = std::getenv(kClientEnv);
  REQUIRE_MESSAGE(env != nullptr, "run only by the stress tests, which set " << kClientEnv);
  ClientPlan plan;
  REQUIRE(decode(env, &plan));
  run_clients(plan);
}

TEST_CASE("concurrent loopback connections keep every checksummed round trip") { run(false); }

TEST_CASE("the same with every connection migrated at least 10 times mid-stream") { run(true); }

}  // namespace
}  // namespace weft::net
