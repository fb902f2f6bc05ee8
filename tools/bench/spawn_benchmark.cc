// spawn: one fiber spawns N fibers (default 1,000,000) that each add 1 to
// an atomic, then waits for all. 2 workers. Baseline: starting and
// finishing a raw Boost.Context context on a reused stack.
//
// The counter and the wait group that every fiber writes each have a cache
// line of their own, and the spawn loop's bound is a copy in the loop's
// frame, as Go's side has them (separate heap objects): until 2026-12-01
// the bound shared a line with the counter, so each turn of the spawner
// read a line the other core had just written.
//
// --work=K makes the spawner compute K steps of a xorshift chain before
// each spawn, so that it is slower than the runner: the runner then keeps
// up with it, taking each fiber soon after it is spawned (by stealing),
// the regime some runs fall into by themselves (docs/benchmarks.md, "Spawn
// when the runner keeps up"). The chain's own time, measured alone in the
// same run, is subtracted from the figure.
#include <sys/resource.h>

#include <atomic>
#include <cstdio>

#include "runtime/runtime.h"
#include "sync/wait_group.h"
#include "tools/bench/bench_util.h"

namespace {
// chain() is k dependent xorshift steps: work that no compiler folds away.
__attribute__((noinline)) uint64_t chain(uint64_t x, int64_t k) {
  for (int64_t i = 0; i < k; ++i) {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
  }
  return x;
}
}  // namespace

int main(int argc, char** argv) {
  using namespace weft;
  const int64_t n = bench::flag(argc, argv, "fibers", 1000000);
  const int workers = static_cast<int>(bench::flag(argc, argv, "workers", 2));
  const int64_t work = bench::flag(argc, argv, "work", 0);
  double baseline = bench::raw_start_ns(n);
  double work_ns = 0;
  std::atomic<uint64_t> sink{0};
  if (work > 0) {
    uint64_t x = 88172645463325252ull;
    int64_t w0 = bench::now_ns();
    for (int64_t i = 0; i < n; ++i) x = chain(x, work);
    work_ns = static_cast<double>(bench::now_ns() - w0) / static_cast<double>(n);
    sink.store(x, std::memory_order_relaxed);
  }
  auto rt = *Runtime::create({.workers = workers});
  struct alignas(64) Sum {
    std::atomic<int64_t> v{0};
  } sum;
  struct alignas(64) Group {
    explicit Group(int64_t count) : wg(count) {}
    WaitGroup wg;
  };
  int64_t elapsed = rt->block_on([&sum, &sink, n, work] {
    Group g(n);
    uint64_t x = 88172645463325252ull;
    int64_t t0 = bench::now_ns();
    for (int64_t i = 0; i < n; ++i) {
      if (work > 0) x = chain(x, work);
      spawn([&sum, &g] {
        sum.v.fetch_add(1, std::memory_order_relaxed);
        g.wg.done();
      }).detach();
    }
    (void)g.wg.wait();
    int64_t t = bench::now_ns() - t0;
    sink.fetch_xor(x, std::memory_order_relaxed);
    return t;
  });
  if (sum.v.load() != n) {
    std::fprintf(stderr, "spawn bench: expected %lld, got %lld\n", static_cast<long long>(n),
                 static_cast<long long>(sum.v.load()));
    return 1;
  }
  RuntimeStats st = rt->stats();
  const double per_fiber = static_cast<double>(elapsed) / static_cast<double>(n);
  bench::report(work > 0 ? "spawn (per fiber, work subtracted)" : "spawn (per fiber)", per_fiber - work_ns, "ns",
                "raw fcontext start", baseline, 100, "<= 100 ns per fiber");
  if (work > 0) {
    std::printf("  the spawner's work: %.1f ns per fiber alone, %.1f ns with the spawns\n", work_ns, per_fiber);
  }
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  std::printf("  peak RSS %.1f MiB (the process's, baseline included)\n", static_cast<double>(ru.ru_maxrss) / 1024);
  std::printf("  %lld fibers in %.1f ms on %d workers; steals %llu, stolen %llu\n", static_cast<long long>(n),
              elapsed / 1e6, workers, static_cast<unsigned long long>(st.total(&WorkerStats::steal_successes)),
              static_cast<unsigned long long>(st.total(&WorkerStats::stolen)));
  // Who ran the fibers, and how they got there: the spawner's worker runs
  // what is left once it waits; the other one keeps up, or does not,
  // through the inject queue and steals.
  for (size_t i = 0; i < st.workers.size(); ++i) {
    const WorkerStats& w = st.workers[i];
    std::printf("  worker %zu: ran %llu, took %llu from the inject queue, %llu steals, %llu idle sleeps\n", i,
                static_cast<unsigned long long>(w.run), static_cast<unsigned long long>(w.inject_taken),
                static_cast<unsigned long long>(w.steal_successes), static_cast<unsigned long long>(w.idle_sleeps));
  }
  return 0;
}
