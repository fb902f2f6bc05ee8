#include "sync/event.h"

#include <doctest/doctest.h>

#include <atomic>
#include <vector>

#include "runtime/runtime.h"
#include "tests/test_util.h"

namespace weft {
namespace {

TEST_CASE("set releases every waiter, reset re-arms") {
  weft::testing::for_each_worker_count({1, 2}, [](int workers) {
    auto rt = *Runtime::create({.workers = workers});
    rt->block_on([] {
      Event e;
      std::atomic<int> released{0};
      std::vector<JoinHandle<void>> hs;
      for (int i = 0; i < 100; ++i) {
        hs.push_back(spawn([&] {
          (void)e.wait();
          released.fetch_add(1);
        }));
      }
      this_fiber::yield();
      CHECK(released.load() == 0);
      e.set();
      for (auto& h : hs) h.join();
      CHECK(released.load() == 100);
      CHECK(e.is_set());
      (void)e.wait();  // already set: returns at once
      e.reset();
      CHECK_FALSE(e.is_set());
      CHECK(absl::IsDeadlineExceeded(e.wait_for(absl::Milliseconds(3))));
    });
  });
}

TEST_CASE("a wakeup storm loses no waiter") {
  // Many rounds of: N fibers wait on a fresh event, a fiber on another
  // worker sets it. A lost wakeup would hang the join (the test times out).
  auto rt = *Runtime::create({.workers = 2});
  const int kRounds = 300 * static_cast<int>(weft::testing::scale());
  int64_t woken = rt->block_on([&] {
    int64_t total = 0;
    for (int r = 0; r < kRounds; ++r) {
      Event e;
      std::atomic<int> n{0};
      std::vector<JoinHandle<void>> hs;
      for (int i = 0; i < 20; ++i) {
        hs.push_back(spawn([&] {
          (void)e.wait();
          n.fetch_add(1);
        }));
      }
      auto setter = spawn([&] { e.set(); });
      setter.join();
      for (auto& h : hs) h.join();
      total += n.load();
    }
    return total;
  });
  CHECK(woken == int64_t{kRounds} * 20);
}

}  // namespace
}  // namespace weft
