// The growth judge: flat, noisy and spiky curves pass; steady growth of
// each metric fails; short runs are not judged.
#include <doctest/doctest.h>

#include <cstdint>
#include <vector>

#include "tools/soak/soak.h"

namespace weft::soak {
namespace {

std::vector<Sample> curve(int n, int64_t rss0, int64_t rss_per_s, int64_t fds0, int64_t fds_per_s,
                          int64_t fibers0, int64_t fibers_per_s) {
  std::vector<Sample> v;
  for (int i = 0; i < n; ++i) {
    v.push_back(Sample{static_cast<double>(i + 1), rss0 + rss_per_s * i, fds0 + fds_per_s * i,
                       fibers0 + fibers_per_s * i});
  }
  return v;
}

TEST_CASE("flat curves pass") {
  GrowthVerdict v = judge_growth(curve(60, 50000, 0, 12, 0, 100, 0), GrowthLimits{});
  CHECK(v.judged);
  CHECK(v.warmup == 6);
  CHECK(!v.any_growing());
}

TEST_CASE("a warm-up that grows, then a plateau, passes") {
  std::vector<Sample> v = curve(60, 20000, 0, 12, 0, 100, 0);
  for (int i = 0; i < 20; ++i) v[i].rss_kb = 20000 + i * 2000;  // the first third fills caches
  for (int i = 20; i < 60; ++i) v[i].rss_kb = 60000;
  CHECK(!judge_growth(v, GrowthLimits{}).any_growing());
}

TEST_CASE("spikes and noise pass") {
  std::vector<Sample> v = curve(60, 50000, 0, 12, 0, 100, 0);
  for (int i = 0; i < 60; ++i) {
    v[i].rss_kb += (i * 7919) % 4000;         // +-4 MiB of allocator noise
    v[i].fds += i % 3;                        // sockets open mid-round
    v[i].live_fibers += (i * 31) % 40;        // bursts of spawns
    if (i % 10 == 9) v[i].live_fibers += 5000;  // a rare large burst
  }
  v[59].rss_kb += 100000;  // one late spike is not a trend
  GrowthVerdict g = judge_growth(v, GrowthLimits{});
  CHECK(g.judged);
  CHECK(!g.any_growing());
}

TEST_CASE("each metric's steady growth fails") {
  // 60 samples: B and C medians are 18 samples apart.
  GrowthVerdict rss = judge_growth(curve(60, 50000, 1024, 12, 0, 100, 0), GrowthLimits{});
  CHECK(rss.rss.growing);
  CHECK(!rss.fds.growing);
  CHECK(!rss.fibers.growing);
  GrowthVerdict fds = judge_growth(curve(60, 50000, 0, 12, 1, 100, 0), GrowthLimits{});
  CHECK(fds.fds.growing);
  CHECK(!fds.rss.growing);
  GrowthVerdict fibers = judge_growth(curve(60, 50000, 0, 12, 0, 100, 10), GrowthLimits{});
  CHECK(fibers.fibers.growing);
  CHECK(!fibers.fds.growing);
}

TEST_CASE("growth within the allowance passes") {
  // 18 s apart: 200 KiB/s is 3.6 MiB, under 8 MiB + 10%.
  CHECK(!judge_growth(curve(60, 50000, 200, 12, 0, 100, 0), GrowthLimits{}).rss.growing);
}

TEST_CASE("too few samples are not judged") {
  GrowthVerdict v = judge_growth(curve(7, 50000, 100000, 12, 100, 100, 100), GrowthLimits{});
  CHECK(!v.judged);
  CHECK(!v.any_growing());
  CHECK(judge_growth(curve(8, 50000, 0, 12, 0, 100, 0), GrowthLimits{}).judged);
}

}  // namespace
}  // namespace weft::soak
