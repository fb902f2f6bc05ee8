// The weft demo, in two parts, on one runtime with a worker per core.
//
//   bazel run -c opt //examples:demo -- [--fibers=N] [--workers=N] [--in_flight=N]
//                                       [--connections=N] [--seconds=S] [--migrate_ms=M]
//
// 1. Fibers: 1,000,000 fibers each yield twice, sleep 1-4 ms, and send
//    their number through a bounded channel to one of the collector
//    fibers, which add them up; the totals are checked. A semaphore bounds
//    how many fibers are in flight at once (each started fiber holds a
//    stack).
// 2. Sockets: an echo server and the load generator (tools/loadgen, fibers
//    as clients) talk over loopback for a few seconds while a migrator
//    fiber keeps moving every live server connection to another worker's
//    poller. The load generator checks every echoed byte; the report shows
//    throughput, latency percentiles, migrations and errors (which must be
//    0).
#include <algorithm>
#include <atomic>
#include <iostream>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "net/tcp.h"
#include "runtime/runtime.h"
#include "sync/sync.h"
#include "tools/loadgen/loadgen_lib.h"

namespace {

int64_t flag(int argc, char** argv, const char* name, int64_t def) {
  std::string prefix = std::string("--") + name + "=";
  for (int i = 1; i < argc; ++i) {
    if (std::strncmp(argv[i], prefix.c_str(), prefix.size()) == 0) return std::atoll(argv[i] + prefix.size());
  }
  return def;
}

// Part 2: the echo server, its migrator and the load generator. Returns
// true if the run was clean (no error, every connection migrated).
bool socket_demo(weft::Runtime& rt, int connections, double seconds, int migrate_ms) {
  std::printf("\n--- sockets: echo server + load generator on loopback, live migration every %d ms ---\n",
              migrate_ms);
  struct Result {
    absl::StatusOr<weft::loadgen::Report> report;
    uint64_t migrations = 0;
    uint64_t migrate_errors = 0;
    uint64_t served = 0;
    uint64_t accept_errors = 0;
  };
  Result r = rt.block_on([&] {
    Result out;
    auto listener = weft::net::TcpListener::bind(weft::net::SocketAddress::loopback_v4(0),
                                                 {.placement = weft::net::AcceptPlacement::kRoundRobin});
    if (!listener.ok()) {
      out.report = listener.status();
      return out;
    }
    const uint16_t port = listener->local_address()->port();
    // Live server connections, so the migrator can reach them.
    weft::Mutex mu;
    std::vector<weft::net::TcpStream*> live;
    std::atomic<bool> stop{false};
    weft::WaitGroup conns;
    auto acceptor = weft::spawn([&] {
      for (;;) {
        auto c = listener->accept();
        if (!c.ok()) {
          const absl::StatusCode code = c.status().code();
          // Closed at the end of the run.
          if (code == absl::StatusCode::kCancelled || code == absl::StatusCode::kFailedPrecondition) return;
          // Anything else (a connection reset before it was accepted, out
          // of descriptors) is reported; the server keeps accepting. Out of
          // descriptors, accept() itself backs off before the next try.
          std::printf("accept: %s\n", c.status().ToString().c_str());
          ++out.accept_errors;
          if (code != absl::StatusCode::kResourceExhausted) (void)weft::this_fiber::sleep_for(absl::Milliseconds(10));
          continue;
        }
        ++out.served;
        conns.add();
        weft::spawn([&, s = std::move(c->stream)]() mutable {
          {
            std::lock_guard<weft::Mutex> g(mu);
            live.push_back(&s);
          }
          char buf[4096];
          for (;;) {
            auto n = s.read(buf);
            if (!n.ok() || *n == 0 || !s.write_all(std::string_view(buf, *n)).ok()) break;
          }
          {
            std::lock_guard<weft::Mutex> g(mu);
            live.erase(std::find(live.begin(), live.end(), &s));
          }
          conns.done();
        }).detach();
      }
    });
    auto migrator = weft::spawn([&] {
      const int n = rt.num_workers();
      while (!stop.load()) {
        (void)weft::this_fiber::sleep_for(absl::Milliseconds(migrate_ms));
        std::lock_guard<weft::Mutex> g(mu);
        for (weft::net::TcpStream* s : live) {
          if (absl::Status st = s->migrate_to((s->owner_worker() + 1) % n); st.ok()) {
            ++out.migrations;
          } else {
            if (out.migrate_errors++ == 0) std::printf("first failed migration: %s\n", st.ToString().c_str());
          }
        }
      }
    });
    weft::loadgen::Options o;
    o.port = port;
    o.mode = weft::loadgen::Mode::kEcho;
    o.connections = connections;
    o.message_size = 64;
    o.duration = absl::Seconds(seconds);
    o.progress_out = &std::cout;
    out.report = weft::loadgen::run(o);
    stop.store(true);
    migrator.join();
    (void)listener->close();
    acceptor.join();
    (void)conns.wait();
    return out;
  });
  if (!r.report.ok()) {
    std::printf("socket demo failed: %s\n", r.report.status().ToString().c_str());
    return false;
  }
  std::printf("%s", weft::loadgen::format_report(*r.report).c_str());
  std::printf("connections served %llu (accept errors %llu), migrations %llu (failed %llu)\n",
              static_cast<unsigned long long>(r.served), static_cast<unsigned long long>(r.accept_errors),
              static_cast<unsigned long long>(r.migrations), static_cast<unsigned long long>(r.migrate_errors));
  std::string wrong;
  if (r.report->errors != 0) wrong += " load generator errors;";
  if (r.report->requests == 0) wrong += " no request completed;";
  if (r.migrate_errors != 0) wrong += " failed migrations;";
  if (r.migrations < static_cast<uint64_t>(connections)) wrong += " fewer migrations than connections;";
  std::printf("socket demo: %s\n", wrong.empty() ? "every echo checked, no errors" : ("ERRORS:" + wrong).c_str());
  return wrong.empty();
}

}  // namespace

int main(int argc, char** argv) {
  const int64_t fibers = flag(argc, argv, "fibers", 1000000);
  const int workers = static_cast<int>(flag(argc, argv, "workers", 0));
  const int64_t in_flight = flag(argc, argv, "in_flight", 20000);
  const int connections = static_cast<int>(flag(argc, argv, "connections", 100));
  const int64_t seconds = flag(argc, argv, "seconds", 3);
  const int migrate_ms = static_cast<int>(flag(argc, argv, "migrate_ms", 10));

  // Every fiber in flight holds a stack. Let each worker keep enough free
  // stacks for its share, so finished fibers hand theirs to new ones
  // instead of unmapping and mapping again.
  const int n = workers > 0 ? workers : static_cast<int>(std::thread::hardware_concurrency());
  auto created = weft::Runtime::create(
      {.workers = workers, .stack_cache_size = static_cast<size_t>(in_flight / (n > 0 ? n : 1) + 1024)});
  if (!created.ok()) {
    std::fprintf(stderr, "cannot start the runtime: %s\n", created.status().ToString().c_str());
    return 1;
  }
  weft::Runtime& rt = **created;
  std::printf("weft demo: %lld fibers on %d workers, at most %lld in flight\n", static_cast<long long>(fibers),
              rt.num_workers(), static_cast<long long>(in_flight));

  struct Totals {
    int64_t received = 0;
    int64_t sum = 0;
  };
  const absl::Time t0 = absl::Now();
  Totals totals = rt.block_on([&] {
    const int kCollectors = rt.num_workers();
    std::vector<std::unique_ptr<weft::Channel<int64_t>>> chans;
    std::vector<weft::JoinHandle<Totals>> collectors;
    for (int c = 0; c < kCollectors; ++c) {
      chans.push_back(std::make_unique<weft::Channel<int64_t>>(1024));
      weft::Channel<int64_t>* ch = chans.back().get();
      collectors.push_back(weft::spawn([ch] {
        Totals t;
        for (;;) {
          auto v = ch->recv();
          if (!v.ok()) return t;  // closed and drained
          ++t.received;
          t.sum += *v;
        }
      }));
    }
    weft::Semaphore slots(in_flight);
    weft::WaitGroup done;
    for (int64_t i = 0; i < fibers; ++i) {
      (void)slots.acquire();
      done.add();
      weft::Channel<int64_t>* ch = chans[static_cast<size_t>(i % kCollectors)].get();
      weft::spawn([&, ch, i] {
        weft::this_fiber::yield();
        (void)weft::this_fiber::sleep_for(absl::Milliseconds(1 + i % 4));
        weft::this_fiber::yield();
        if (!ch->send(i).ok()) std::abort();
        slots.release();
        done.done();
      }).detach();
    }
    (void)done.wait();
    for (auto& ch : chans) ch->close();
    Totals all;
    for (auto& c : collectors) {
      Totals t = c.join();
      all.received += t.received;
      all.sum += t.sum;
    }
    return all;
  });
  const double secs = absl::ToDoubleSeconds(absl::Now() - t0);

  const bool ok = totals.received == fibers && totals.sum == fibers * (fibers - 1) / 2;
  weft::RuntimeStats st = rt.stats();
  std::printf("\n%lld fibers finished in %.2f s: %.0f fibers/s; messages %lld, checksum %s\n",
              static_cast<long long>(fibers), secs, static_cast<double>(fibers) / secs,
              static_cast<long long>(totals.received), ok ? "ok" : "WRONG");
  std::printf("steals %llu (fibers stolen %llu), parks %llu, unparks %llu, timers fired %llu\n\n",
              static_cast<unsigned long long>(st.total(&weft::WorkerStats::steal_successes)),
              static_cast<unsigned long long>(st.total(&weft::WorkerStats::stolen)),
              static_cast<unsigned long long>(st.total(&weft::WorkerStats::parks)),
              static_cast<unsigned long long>(st.total(&weft::WorkerStats::unparks)),
              static_cast<unsigned long long>(st.total(&weft::WorkerStats::timers_fired)));
  std::printf("%-7s %10s %10s %10s %10s %9s %10s %10s %9s %9s %9s\n", "worker", "spawned", "run", "completed",
              "parks", "steals", "stolen", "polls", "sleeps", "messages", "timers");
  for (const auto& w : st.workers) {
    std::printf("%-7d %10llu %10llu %10llu %10llu %9llu %10llu %10llu %9llu %9llu %9llu\n", w.worker,
                static_cast<unsigned long long>(w.spawned), static_cast<unsigned long long>(w.run),
                static_cast<unsigned long long>(w.completed), static_cast<unsigned long long>(w.parks),
                static_cast<unsigned long long>(w.steal_successes), static_cast<unsigned long long>(w.stolen),
                static_cast<unsigned long long>(w.polls), static_cast<unsigned long long>(w.idle_sleeps),
                static_cast<unsigned long long>(w.messages), static_cast<unsigned long long>(w.timers_fired));
  }
  const bool net_ok = socket_demo(rt, connections, static_cast<double>(seconds), migrate_ms);
  rt.shutdown();
  return ok && net_ok ? 0 : 1;
}
