// memory: N fibers (default 100,000) parked on a channel, then N sleeping;
// RSS growth per fiber. Baseline: a raw Boost.Context context suspended on
// its own 64 KiB mmap'd stack. Needs vm.max_map_count >= 4N (tools/setup.sh).
#include <cstdio>
#include <vector>

#include "runtime/runtime.h"
#include "sync/channel.h"
#include "sync/wait_group.h"
#include "tools/bench/bench_util.h"

int main(int argc, char** argv) {
  using namespace weft;
  const int64_t n = bench::flag(argc, argv, "fibers", 100000);
  double baseline = bench::raw_parked_bytes(n) / 1024.0;
  auto rt = *Runtime::create({.workers = 2});
  Channel<int> ch(Channel<int>::kUnbounded);
  std::vector<JoinHandle<void>> hs;
  hs.reserve(static_cast<size_t>(2 * n));
  rt->block_on([] {});  // warm up
  int64_t before = bench::rss_bytes();
  {
    WaitGroup started(n);
    for (int64_t i = 0; i < n; ++i) {
      hs.push_back(rt->spawn([&] {
        started.done();
        (void)ch.recv();
      }));
    }
    (void)started.wait();
  }
  int64_t parked = bench::rss_bytes();
  bench::report("parked on a channel", static_cast<double>(parked - before) / n / 1024.0, "KiB/f",
                "raw fcontext parked", baseline, 5, "<= 5 KiB per parked fiber");
  {
    WaitGroup started(n);
    for (int64_t i = 0; i < n; ++i) {
      hs.push_back(rt->spawn([&] {
        started.done();
        (void)this_fiber::sleep_for(absl::Seconds(3600));
      }));
    }
    (void)started.wait();
  }
  int64_t sleeping = bench::rss_bytes();
  bench::report("sleeping", static_cast<double>(sleeping - parked) / n / 1024.0, "KiB/f", "raw fcontext parked",
                baseline, 5, "<= 5 KiB per sleeping fiber");
  ch.close();
  for (int64_t i = 0; i < n; ++i) hs[static_cast<size_t>(i)].join();
  rt->shutdown();  // cancels the sleepers
  return 0;
}
