#include "sync/wait_group.h"

#include <doctest/doctest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <thread>

#include "runtime/runtime.h"
#include "tests/stress_util.h"

namespace weft {
namespace {

TEST_CASE("wait returns once every fiber called done") {
  weft::testing::for_each_worker_count({1, 2, 4}, [](int workers) {
    auto rt = *Runtime::create({.workers = workers});
    const int kFibers = static_cast<int>(weft::testing::stress_fibers(10000));
    std::atomic<int> ran{0};
    rt->block_on([&] {
      WaitGroup wg;
      for (int i = 0; i < kFibers; ++i) {
        wg.add();
        spawn([&] {
          ran.fetch_add(1);
          wg.done();
        }).detach();
      }
      (void)wg.wait();
      CHECK(ran.load() == kFibers);
      CHECK(wg.count() == 0);
    });
  });
}

TEST_CASE("wait_for times out while work is outstanding; a thread can wait") {
  auto rt = *Runtime::create({.workers = 1});
  WaitGroup wg(1);
  CHECK(absl::IsDeadlineExceeded(wg.wait_for(absl::Milliseconds(5))));
  auto h = rt->spawn([&] {
    (void)this_fiber::sleep_for(absl::Milliseconds(5));
    wg.done();
  });
  (void)wg.wait();  // plain thread
  CHECK(wg.count() == 0);
  h.join();
}

TEST_CASE("a negative count aborts") {
  weft::testing::expect_death(
      [] {
        WaitGroup wg;
        wg.done();
      },
      "WaitGroup count went negative");
}

}  // namespace
}  // namespace weft
