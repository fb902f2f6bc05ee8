// 1,000,000 fibers spawned and joined, in waves, from several spawners.
#include <doctest/doctest.h>

#include <atomic>
#include <vector>

#include "runtime/runtime.h"
#include "tests/stress_util.h"

namespace weft {
namespace {

TEST_CASE("a million fibers are spawned and joined exactly once each") {
  const int64_t kTotal = weft::testing::stress_size(1000000);
  const int64_t kSpawners = 4;
  const int64_t kWave = 1000;
  auto rt = *Runtime::create({.workers = 2});
  std::atomic<int64_t> ran{0};
  int64_t sum = rt->block_on([&] {
    std::vector<JoinHandle<int64_t>> spawners;
    for (int64_t s = 0; s < kSpawners; ++s) {
      spawners.push_back(spawn([&, s] {
        int64_t local = 0;
        std::vector<JoinHandle<int64_t>> wave;
        wave.reserve(kWave);
        for (int64_t i = s; i < kTotal; i += kSpawners) {
          wave.push_back(spawn([&, i] {
            ran.fetch_add(1, std::memory_order_relaxed);
            return i;
          }));
          if (static_cast<int64_t>(wave.size()) == kWave) {
            for (auto& h : wave) local += h.join();
            wave.clear();
          }
        }
        for (auto& h : wave) local += h.join();
        return local;
      }));
    }
    int64_t total = 0;
    for (auto& h : spawners) total += h.join();
    return total;
  });
  CHECK(ran.load() == kTotal);
  CHECK(sum == kTotal * (kTotal - 1) / 2);
  CHECK(weft::testing::eventually([&] { return rt->stats().live_fibers == 0; }));
  RuntimeStats st = rt->stats();
  CHECK(st.total(&WorkerStats::spawned) == static_cast<uint64_t>(kTotal + kSpawners));
  CHECK(st.total(&WorkerStats::completed) == static_cast<uint64_t>(kTotal + kSpawners + 1));
  CHECK(st.live_fibers == 0);
}

}  // namespace
}  // namespace weft
