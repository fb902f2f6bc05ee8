#include "sync/mutex.h"

#include <doctest/doctest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <mutex>
#include <thread>
#include <vector>

#include "runtime/runtime.h"
#include "tests/test_util.h"

namespace weft {
namespace {

TEST_CASE("try_lock fails while held and succeeds after unlock") {
  Mutex m;
  CHECK(m.try_lock());
  CHECK_FALSE(m.try_lock());
  m.unlock();
  CHECK(m.try_lock());
  m.unlock();
}

TEST_CASE("Mutex gives exact counts under contention from fibers and threads") {
  weft::testing::for_each_worker_count({1, 2, 4}, [](int workers) {
    auto rt = *Runtime::create({.workers = workers});
    Mutex m;
    int64_t counter = 0;  // guarded by m; a plain int, so races would lose updates
    const int kFibers = 64, kIters = 500 * static_cast<int>(weft::testing::scale());
    std::thread outsider([&] {
      for (int i = 0; i < kIters; ++i) {
        std::lock_guard<Mutex> g(m);
        ++counter;
      }
    });
    rt->block_on([&] {
      std::vector<JoinHandle<void>> hs;
      for (int f = 0; f < kFibers; ++f) {
        hs.push_back(spawn([&, f] {
          for (int i = 0; i < kIters; ++i) {
            std::lock_guard<Mutex> g(m);
            int64_t v = counter;
            if ((i + f) % 16 == 0) this_fiber::yield();  // hold it across a switch
            counter = v + 1;
          }
        }));
      }
      for (auto& h : hs) h.join();
    });
    outsider.join();
    CHECK(counter == int64_t{kFibers + 1} * kIters);
  });
}

TEST_CASE("a parked locker is handed the mutex in FIFO order") {
  auto rt = *Runtime::create({.workers = 1});
  std::vector<int> order = rt->block_on([] {
    Mutex m;
    std::vector<int> log;
    m.lock();
    std::vector<JoinHandle<void>> hs;
    for (int i = 0; i < 5; ++i) {
      hs.push_back(spawn([&, i] {
        std::lock_guard<Mutex> g(m);
        log.push_back(i);
      }));
    }
    for (int i = 0; i < 3; ++i) this_fiber::yield();  // let them all queue up
    m.unlock();
    for (auto& h : hs) h.join();
    return log;
  });
  CHECK(order == std::vector<int>{0, 1, 2, 3, 4});
}

TEST_CASE("unlock by a non-owner aborts with a message") {
  Mutex m;
  std::thread t([&] { m.lock(); });  // held by a thread that is gone
  t.join();
  weft::testing::expect_death([&] { m.unlock(); },
                             "Mutex::unlock() by a fiber or thread that does not hold the mutex");
}

TEST_CASE("locking a mutex twice from the same fiber aborts") {
  Mutex m;
  m.lock();
  weft::testing::expect_death([&] { m.lock(); }, "already holds it");
  m.unlock();
}

}  // namespace
}  // namespace weft
