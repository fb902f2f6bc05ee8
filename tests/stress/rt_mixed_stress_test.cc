// 100,000 fibers doing random yields, sleeps, mutex and channel work, with
// every count checked exactly.
#include <doctest/doctest.h>

#include <atomic>
#include <cstdint>
#include <mutex>
#include <random>
#include <vector>

#include "runtime/runtime.h"
#include "sync/sync.h"
#include "tests/stress_util.h"

namespace weft {
namespace {

TEST_CASE("mixed workload on 100,000 fibers keeps exact counts") {
  const int64_t kFibers = weft::testing::stress_fibers(100000);
  const int kOpsPerFiber = 8;
  weft::testing::for_each_worker_count({2, 4}, [&](int workers) {
    auto rt = *Runtime::create({.workers = workers, .seed = 42});
    struct Shared {
      Mutex mu;
      int64_t guarded = 0;  // plain: a broken mutex loses increments
      Channel<int64_t> ch{64};
      std::atomic<int64_t> sent_sum{0}, recv_sum{0}, yields{0}, sleeps{0};
    } sh;
    int64_t received = rt->block_on([&] {
      // Consumers drain the channel until it closes.
      std::vector<JoinHandle<int64_t>> consumers;
      for (int c = 0; c < 4; ++c) {
        consumers.push_back(spawn([&] {
          int64_t n = 0;
          for (;;) {
            auto v = sh.ch.recv();
            if (!v.ok()) return n;
            sh.recv_sum.fetch_add(*v, std::memory_order_relaxed);
            ++n;
          }
        }));
      }
      WaitGroup wg;
      for (int64_t i = 0; i < kFibers; ++i) {
        wg.add();
        spawn([&, i] {
          std::mt19937 rng(static_cast<uint32_t>(i));
          for (int op = 0; op < kOpsPerFiber; ++op) {
            switch (rng() % 4) {
              case 0:
                this_fiber::yield();
                sh.yields.fetch_add(1, std::memory_order_relaxed);
                break;
              case 1:
                if (rng() % 16 == 0) {
                  (void)this_fiber::sleep_for(absl::Milliseconds(rng() % 3));
                  sh.sleeps.fetch_add(1, std::memory_order_relaxed);
                } else {
                  this_fiber::yield();
                  sh.yields.fetch_add(1, std::memory_order_relaxed);
                }
                break;
              case 2: {
                std::lock_guard<Mutex> g(sh.mu);
                ++sh.guarded;
                break;
              }
              case 3: {
                int64_t v = i * kOpsPerFiber + op;
                REQUIRE(sh.ch.send(v).ok());
                sh.sent_sum.fetch_add(v, std::memory_order_relaxed);
                break;
              }
            }
          }
          wg.done();
        }).detach();
      }
      (void)wg.wait();
      sh.ch.close();
      int64_t n = 0;
      for (auto& c : consumers) n += c.join();
      return n;
    });
    ChannelStats cs = sh.ch.stats();
    const int64_t total_ops = sh.yields.load() + sh.sleeps.load() + sh.guarded +
                              static_cast<int64_t>(cs.sent);
    CHECK(total_ops == kFibers * kOpsPerFiber);
    CHECK(received == static_cast<int64_t>(cs.sent));
    CHECK(cs.received == cs.sent);
    CHECK(sh.recv_sum.load() == sh.sent_sum.load());
    // block_on() returns once the fiber's result is published; the fiber
    // itself exits a moment later.
    CHECK(weft::testing::eventually([&] { return rt->stats().live_fibers == 0; }));
    RuntimeStats st = rt->stats();
    CHECK(st.total(&WorkerStats::completed) == static_cast<uint64_t>(kFibers + 4 + 1));
  });
}

}  // namespace
}  // namespace weft
