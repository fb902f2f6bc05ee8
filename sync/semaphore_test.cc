#include "sync/semaphore.h"

#include <doctest/doctest.h>

#include <atomic>
#include <vector>

#include "runtime/runtime.h"
#include "tests/test_util.h"

namespace weft {
namespace {

TEST_CASE("try_acquire and release count permits") {
  Semaphore s(2);
  CHECK(s.try_acquire());
  CHECK(s.try_acquire());
  CHECK_FALSE(s.try_acquire());
  s.release(2);
  CHECK(s.available() == 2);
}

TEST_CASE("acquire_for times out, then succeeds after a release") {
  auto rt = *Runtime::create({.workers = 2});
  rt->block_on([] {
    Semaphore s(0);
    CHECK(absl::IsDeadlineExceeded(s.acquire_for(absl::Milliseconds(5))));
    auto h = spawn([&] {
      (void)this_fiber::sleep_for(absl::Milliseconds(5));
      s.release();
    });
    CHECK(s.acquire_for(absl::Seconds(10)).ok());
    h.join();
    CHECK(s.available() == 0);
  });
}

TEST_CASE("a semaphore bounds concurrency exactly") {
  weft::testing::for_each_worker_count({1, 2, 4}, [](int workers) {
    auto rt = *Runtime::create({.workers = workers});
    const int kLimit = 3;
    const int kFibers = 200 * static_cast<int>(weft::testing::scale());
    std::atomic<int> inside{0}, max_inside{0}, done{0};
    rt->block_on([&] {
      Semaphore s(kLimit);
      std::vector<JoinHandle<void>> hs;
      for (int i = 0; i < kFibers; ++i) {
        hs.push_back(spawn([&, i] {
          if (i % 2 == 0) {
            CHECK(s.acquire().ok());
          } else {
            while (!s.acquire_for(absl::Milliseconds(1)).ok()) {
            }
          }
          int now = inside.fetch_add(1) + 1;
          int m = max_inside.load();
          while (now > m && !max_inside.compare_exchange_weak(m, now)) {
          }
          this_fiber::yield();
          inside.fetch_sub(1);
          done.fetch_add(1);
          s.release();
        }));
      }
      for (auto& h : hs) h.join();
      CHECK(s.available() == kLimit);
    });
    CHECK(done.load() == kFibers);
    CHECK(max_inside.load() <= kLimit);
    CHECK(max_inside.load() >= 1);
  });
}

}  // namespace
}  // namespace weft
