// select: what a two-case select() receive costs against a plain recv().
//
// One fiber sends N values (default 1,000,000), alternately on channel A
// and channel B; the other loops select(recv(A), recv(B)) N times.
// Baseline: the same traffic over one channel, received with plain recv().
// Channels have capacity 1. Run on one worker and with the two fibers on
// two workers; the two sections alternate --reps times (default 5) and
// medians are printed, in ns per value received. --go prints one line per
// figure in the form tools/bench/select_vs_go.sh reads.
#include <algorithm>
#include <cstdio>
#include <cstring>
#include <vector>

#include "lifecycle/select.h"
#include "runtime/runtime.h"
#include "sync/channel.h"
#include "tools/bench/bench_util.h"

namespace {

using namespace weft;

void check_sum(int64_t got, int64_t n) {
  if (got != n * (n - 1) / 2) {
    std::fprintf(stderr, "select bench: wrong sum %lld\n", static_cast<long long>(got));
    std::exit(1);
  }
}

// ns per value, sender on worker 0, receiver on `rx_worker`.
double single(Runtime& rt, int64_t n, int rx_worker) {
  Channel<int64_t> ch(1);
  int64_t sum = 0;
  int64_t t0 = bench::now_ns();
  auto tx = rt.spawn_on(0, [&] {
    for (int64_t i = 0; i < n; ++i) (void)ch.send(i);
  });
  auto rx = rt.spawn_on(rx_worker, [&] {
    for (int64_t i = 0; i < n; ++i) sum += *ch.recv();
  });
  tx.join();
  rx.join();
  double ns = static_cast<double>(bench::now_ns() - t0) / static_cast<double>(n);
  check_sum(sum, n);
  return ns;
}

double selected(Runtime& rt, int64_t n, int rx_worker) {
  Channel<int64_t> a(1), b(1);
  int64_t sum = 0;
  int64_t t0 = bench::now_ns();
  auto tx = rt.spawn_on(0, [&] {
    for (int64_t i = 0; i < n; ++i) (void)(i % 2 == 0 ? a : b).send(i);
  });
  auto rx = rt.spawn_on(rx_worker, [&] {
    for (int64_t i = 0; i < n; ++i) {
      auto r = weft::select(weft::recv(a), weft::recv(b));
      sum += r->index() == 0 ? *std::get<0>(*r) : *std::get<1>(*r);
    }
  });
  tx.join();
  rx.join();
  double ns = static_cast<double>(bench::now_ns() - t0) / static_cast<double>(n);
  check_sum(sum, n);
  return ns;
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

}  // namespace

int main(int argc, char** argv) {
  const int64_t n = bench::flag(argc, argv, "values", 1000000);
  const int reps = static_cast<int>(bench::flag(argc, argv, "reps", 5));
  bool go_format = false;
  for (int i = 1; i < argc; ++i) go_format |= std::strcmp(argv[i], "--go") == 0;
  for (int workers : {1, 2}) {
    auto rt = *Runtime::create({.workers = workers});
    const int rx_worker = workers - 1;
    std::vector<double> base, sel;
    for (int r = 0; r < reps; ++r) {
      base.push_back(single(*rt, n, rx_worker));
      sel.push_back(selected(*rt, n, rx_worker));
    }
    if (go_format) {
      std::printf("weft workers=%d recv %.1f select %.1f\n", workers, median(base), median(sel));
      continue;
    }
    char name[64], bname[64];
    std::snprintf(name, sizeof name, "select recv, %d worker%s", workers, workers == 1 ? "" : "s");
    std::snprintf(bname, sizeof bname, "plain recv, 1 channel");
    bench::report(name, median(sel), "ns", bname, median(base), 0, "(medians of alternating runs)");
  }
  return 0;
}
