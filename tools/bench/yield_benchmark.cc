// yield: 4 fibers per worker each yield N times (default 1,000,000), on 2
// workers. Reports ns per yield per worker (wall time x workers / yields).
// Baseline: a raw Boost.Context switch.
#include <cstdio>
#include <vector>

#include "runtime/runtime.h"
#include "tools/bench/bench_util.h"

int main(int argc, char** argv) {
  using namespace weft;
  const int64_t n = bench::flag(argc, argv, "yields", 1000000);
  const int workers = static_cast<int>(bench::flag(argc, argv, "workers", 2));
  const int per_worker = 4;
  double baseline = bench::raw_switch_ns(20000000);
  auto rt = *Runtime::create({.workers = workers});
  int64_t elapsed = rt->block_on([&] {
    std::vector<JoinHandle<void>> hs;
    int64_t t0 = bench::now_ns();
    for (int w = 0; w < workers; ++w) {
      for (int i = 0; i < per_worker; ++i) {
        hs.push_back(spawn([&] {
          for (int64_t k = 0; k < n; ++k) this_fiber::yield();
        }));
      }
    }
    for (auto& h : hs) h.join();
    return bench::now_ns() - t0;
  });
  const double total = static_cast<double>(n) * workers * per_worker;
  double ns = static_cast<double>(elapsed) * workers / total;
  bench::report("yield (per worker)", ns, "ns", "raw fcontext switch", baseline, 3, "<= 3x raw switch");
  RuntimeStats st = rt->stats();
  for (const auto& w : st.workers) {
    std::printf("  worker %d: ran %llu, stolen %llu\n", w.worker, static_cast<unsigned long long>(w.run),
                static_cast<unsigned long long>(w.stolen));
  }
  return 0;
}
