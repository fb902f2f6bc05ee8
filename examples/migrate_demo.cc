// migrate_demo: live socket migration under load. An echo server runs on N
// workers; every --interval_ms a migrator fiber moves every live server
// connection to the next worker's poller (TcpStream::migrate_to) while
// in-process clients keep streaming through them and check every echoed
// byte.
//
//   bazel run -c opt //examples:migrate_demo -- --workers 4 --seconds 10
//
// Each client has a writer fiber that sends messages of random size (a
// window of --window messages in flight) and a reader fiber that checks
// the echo against the same pseudo-random sequence, so a lost, duplicated
// or reordered byte anywhere is caught. It prints one line per second
//   t=1s migrations=812 roundtrips=40213 errors=0
// and a summary, and exits 1 if any byte was wrong, any call failed, or
// nothing migrated. SIGINT/SIGTERM ends the run early (exit 0 if clean).
#include <atomic>
#include <cstdio>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "examples/example_util.h"
#include "net/net.h"
#include "runtime/runtime.h"
#include "sync/sync.h"

namespace {

// ByteStream: the pseudo-random content (and message sizes) of one
// client's traffic; the writer and the checker each run their own copy.
class ByteStream {
 public:
  explicit ByteStream(uint64_t seed) : x_(seed * 0x9E3779B97F4A7C15ull + 1) {}
  uint64_t next() {
    x_ ^= x_ << 13;
    x_ ^= x_ >> 7;
    x_ ^= x_ << 17;
    return x_;
  }
  char byte() { return static_cast<char>(next() >> 56); }

 private:
  uint64_t x_;
};

struct Config {
  int clients = 32;
  int64_t seconds = 5;
  int interval_ms = 5;
  int max_message = 4096;
  int window = 4;
};

// Demo: the shared state. Lives in main, longer than the runtime.
struct Demo {
  Config cfg;
  std::atomic<int64_t> migrations{0};
  std::atomic<int64_t> roundtrips{0};
  std::atomic<int64_t> bytes_checked{0};
  std::atomic<int64_t> errors{0};
  std::atomic<bool> stop_clients{false};

  // The live server-side connections, for the migrator.
  weft::Mutex mu;
  std::map<uint64_t, std::shared_ptr<weft::net::TcpStream>> conns ABSL_GUARDED_BY(mu);
  uint64_t next_conn ABSL_GUARDED_BY(mu) = 0;
  weft::WaitGroup conns_running;

  void error(const std::string& what) {
    if (errors.fetch_add(1) < 20) std::fprintf(stderr, "migrate_demo: ERROR %s\n", what.c_str());
  }

  // echo() serves one connection until the client's end of stream.
  void echo(weft::net::TcpStream s) {
    auto conn = std::make_shared<weft::net::TcpStream>(std::move(s));
    uint64_t id;
    {
      std::lock_guard<weft::Mutex> g(mu);
      id = next_conn++;
      conns.emplace(id, conn);
    }
    std::vector<char> buf(16 * 1024);
    for (;;) {
      auto n = conn->read(buf);
      if (!n.ok()) {
        error("server read: " + n.status().ToString());
        break;
      }
      if (*n == 0) break;
      if (absl::Status st = conn->write_all({buf.data(), *n}); !st.ok()) {
        error("server write: " + st.ToString());
        break;
      }
    }
    {
      std::lock_guard<weft::Mutex> g(mu);
      conns.erase(id);
    }
    (void)conn->close();  // the migrator may still hold a reference
    conns_running.done();
  }

  // migrate_all() moves every live server connection to the next worker.
  void migrate_all(int workers) {
    std::vector<std::shared_ptr<weft::net::TcpStream>> snapshot;
    {
      std::lock_guard<weft::Mutex> g(mu);
      for (auto& [id, c] : conns) snapshot.push_back(c);
    }
    for (auto& c : snapshot) {
      int owner = c->owner_worker();
      if (owner < 0) continue;  // closed meanwhile
      absl::Status st = c->migrate_to((owner + 1) % workers);
      if (st.ok()) {
        migrations.fetch_add(1, std::memory_order_relaxed);
      } else if (c->is_open()) {  // failing because it closed meanwhile is fine
        error("migrate_to: " + st.ToString());
      }
    }
  }

  // client() streams messages through one connection and checks the echo.
  void client(int index, const weft::net::SocketAddress& addr) {
    auto s = weft::net::TcpStream::connect(addr, absl::Seconds(10));
    if (!s.ok()) return error("connect: " + s.status().ToString());
    s->set_read_timeout(absl::Seconds(10));   // a stuck migration shows up as an error,
    s->set_write_timeout(absl::Seconds(10));  // not as a hang
    weft::Semaphore window(cfg.window);
    std::atomic<bool> failed{false};
    std::atomic<int64_t> sent{0};

    auto writer = weft::spawn([&] {
      ByteStream gen(static_cast<uint64_t>(index));
      std::string msg;
      while (!stop_clients.load(std::memory_order_relaxed) && !failed.load()) {
        (void)window.acquire();
        if (failed.load()) break;
        msg.resize(1 + gen.next() % static_cast<uint64_t>(cfg.max_message));
        for (char& c : msg) c = gen.byte();
        if (absl::Status st = s->write_all(msg); !st.ok()) {
          if (!failed.exchange(true)) error("client write: " + st.ToString());
          break;
        }
        sent.fetch_add(1);
      }
      (void)s->shutdown(weft::net::Shutdown::kWrite);  // the server echoes, then ends too
    });

    ByteStream want(static_cast<uint64_t>(index));
    std::vector<char> buf(16 * 1024);
    int64_t received = 0;   // complete messages
    uint64_t offset = 0;    // bytes of the current message checked
    uint64_t size = 1 + want.next() % static_cast<uint64_t>(cfg.max_message);
    for (;;) {
      auto n = s->read(buf);
      if (!n.ok()) {
        if (!failed.exchange(true)) error("client read: " + n.status().ToString());
        break;
      }
      if (*n == 0) break;
      bool bad = false;
      for (size_t i = 0; i < *n && !bad; ++i) {
        if (buf[i] != want.byte()) {
          bad = true;
          error("client " + std::to_string(index) + ": byte " + std::to_string(offset) + " of message " +
                std::to_string(received) + " is wrong");
          break;
        }
        if (++offset == size) {
          ++received;
          roundtrips.fetch_add(1, std::memory_order_relaxed);
          window.release();
          offset = 0;
          size = 1 + want.next() % static_cast<uint64_t>(cfg.max_message);
        }
      }
      bytes_checked.fetch_add(static_cast<int64_t>(*n), std::memory_order_relaxed);
      if (bad) {
        failed.store(true);
        break;
      }
    }
    if (failed.load()) {
      (void)s->shutdown(weft::net::Shutdown::kBoth);
      window.release(cfg.window + 1);  // let the writer see it
    }
    writer.join();
    if (!failed.load() && (received != sent.load() || offset != 0)) {
      error("client " + std::to_string(index) + ": sent " + std::to_string(sent.load()) + " messages, " +
            std::to_string(received) + " came back");
    }
  }
};

}  // namespace

int main(int argc, char** argv) {
  weft::examples::ServerFlags server;
  Demo demo;
  Config& cfg = demo.cfg;
  weft::examples::Flags flags("migrate_demo",
                              "Moves live connections between workers while clients check every echoed byte.");
  server.add_to(flags);
  flags.add("clients", &cfg.clients, "client connections");
  flags.add("seconds", &cfg.seconds, "how long to run");
  flags.add("interval_ms", &cfg.interval_ms, "pause between two rounds of migrations");
  flags.add("max_message", &cfg.max_message, "largest message, in bytes");
  flags.add("window", &cfg.window, "messages in flight per client");
  flags.parse(argc, argv);
  if (cfg.clients < 1 || cfg.seconds < 0 || cfg.interval_ms < 0 || cfg.max_message < 1 || cfg.window < 1) {
    flags.usage_error("--clients, --max_message and --window must be >= 1; --seconds, --interval_ms >= 0");
  }

  weft::examples::ShutdownSignal signal;
  weft::examples::ConnectionHandler on_conn = [&](weft::net::TcpStream s) { demo.echo(std::move(s)); };
  auto rt = weft::Runtime::create({.workers = server.workers});
  if (!rt.ok()) {
    std::fprintf(stderr, "migrate_demo: %s\n", rt.status().ToString().c_str());
    return 1;
  }
  const int workers = (*rt)->num_workers();
  if (workers < 2) std::fprintf(stderr, "migrate_demo: with one worker every migration stays in place\n");

  const absl::Time start = absl::Now();
  absl::Status served = (*rt)->block_on([&]() -> absl::Status {
    weft::spawn([&] { signal.watch(); }).detach();
    weft::Event server_stop;
    weft::Event bound;
    weft::net::SocketAddress addr;
    auto srv = weft::spawn([&] {
      auto st = weft::examples::serve(
          server, server_stop,
          [&](weft::net::TcpStream s) {
            demo.conns_running.add(1);
            on_conn(std::move(s));
          },
          {}, [&](const weft::net::SocketAddress& a) {
            addr = a;
            bound.set();
          });
      bound.set();  // also when bind failed
      return st;
    });
    (void)bound.wait();
    if (!addr.valid()) return srv.join();

    std::atomic<bool> stop_migrating{false};
    auto migrator = weft::spawn([&] {
      while (!stop_migrating.load()) {
        (void)weft::this_fiber::sleep_for(absl::Milliseconds(cfg.interval_ms));
        demo.migrate_all(workers);
      }
    });
    std::vector<weft::JoinHandle<void>> clients;
    for (int i = 0; i < cfg.clients; ++i) clients.push_back(weft::spawn([&, i] { demo.client(i, addr); }));

    int64_t last_m = 0, last_r = 0;
    for (int64_t t = 1; t <= cfg.seconds; ++t) {
      if (signal.requested().wait_until(start + absl::Seconds(t)).ok()) break;
      int64_t m = demo.migrations.load(), r = demo.roundtrips.load();
      std::printf("t=%llds migrations=%lld roundtrips=%lld errors=%lld\n", static_cast<long long>(t),
                  static_cast<long long>(m - last_m), static_cast<long long>(r - last_r),
                  static_cast<long long>(demo.errors.load()));
      std::fflush(stdout);
      last_m = m;
      last_r = r;
    }
    demo.stop_clients.store(true);
    for (auto& c : clients) c.join();
    stop_migrating.store(true);
    migrator.join();
    (void)demo.conns_running.wait();  // every server connection has seen its client's end
    server_stop.set();
    return srv.join();
  });
  const double secs = absl::ToDoubleSeconds(absl::Now() - start);
  rt->reset();       // every socket is closed; stop the workers
  if (!served.ok()) {
    std::fprintf(stderr, "migrate_demo: %s\n", served.ToString().c_str());
    return 1;
  }
  const int64_t errors = demo.errors.load();
  const int64_t migrations = demo.migrations.load();
  std::printf("migrate_demo: %.1f s, %d workers, %d clients: %lld migrations, %lld roundtrips, "
              "%lld bytes checked, errors=%lld\n",
              secs, workers, cfg.clients, static_cast<long long>(migrations),
              static_cast<long long>(demo.roundtrips.load()), static_cast<long long>(demo.bytes_checked.load()),
              static_cast<long long>(errors));
  if (errors != 0) return 1;
  if (migrations == 0 && cfg.seconds > 0) {
    std::fprintf(stderr, "migrate_demo: no connection was migrated\n");
    return 1;
  }
  return 0;
}
