// ping-pong: two fibers bounce a token through two capacity-1 channels N
// times (default 1,000,000), on one worker and across two. Baseline: a raw
// Boost.Context round trip (two switches).
#include <cstdio>

#include "runtime/runtime.h"
#include "sync/channel.h"
#include "tools/bench/bench_util.h"

namespace {

int64_t run(weft::Runtime& rt, int64_t n, int a_worker, int b_worker) {
  using namespace weft;
  Channel<int64_t> ping(1), pong(1);
  int64_t t0 = bench::now_ns();
  auto a = rt.spawn_on(a_worker, [&] {
    for (int64_t i = 0; i < n; ++i) {
      (void)ping.send(i);
      (void)pong.recv();
    }
  });
  auto b = rt.spawn_on(b_worker, [&] {
    for (int64_t i = 0; i < n; ++i) (void)pong.send(*ping.recv());
  });
  a.join();
  b.join();
  return bench::now_ns() - t0;
}

}  // namespace

int main(int argc, char** argv) {
  using namespace weft;
  const int64_t n = bench::flag(argc, argv, "rounds", 1000000);
  double baseline = 2 * bench::raw_switch_ns(20000000);
  {
    auto rt = *Runtime::create({.workers = 1});
    int64_t ns = run(*rt, n, 0, 0);
    bench::report("ping-pong, 1 worker", static_cast<double>(ns) / n, "ns", "raw fcontext round trip", baseline,
                  100, "<= 100 ns per round trip");
  }
  {
    auto rt = *Runtime::create({.workers = 2});
    int64_t ns = run(*rt, n, 0, 1);
    RuntimeStats st = rt->stats();
    bench::report("ping-pong, 2 workers", static_cast<double>(ns) / n, "ns", "raw fcontext round trip",
                  baseline, 0, "(no target; cross-worker)");
    std::printf("  steals %llu, idle sleeps %llu\n",
                static_cast<unsigned long long>(st.total(&WorkerStats::steal_successes)),
                static_cast<unsigned long long>(st.total(&WorkerStats::idle_sleeps)));
  }
  return 0;
}
