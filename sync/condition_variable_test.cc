#include "sync/condition_variable.h"

#include <doctest/doctest.h>

#include <deque>
#include <mutex>
#include <thread>
#include <vector>

#include "runtime/runtime.h"
#include "tests/test_util.h"

namespace weft {
namespace {

TEST_CASE("wait_for times out without a notification") {
  auto rt = *Runtime::create({.workers = 2});
  rt->block_on([] {
    Mutex m;
    ConditionVariable cv;
    std::unique_lock<Mutex> lk(m);
    absl::Time t0 = absl::Now();
    CHECK(absl::IsDeadlineExceeded(cv.wait_for(lk, absl::Milliseconds(15))));
    CHECK(absl::Now() - t0 >= absl::Milliseconds(15));
    CHECK(lk.owns_lock());
    CHECK(absl::IsDeadlineExceeded(cv.wait_for(lk, absl::Milliseconds(1), [] { return false; })));
  });
}

TEST_CASE("producer/consumer over a condition variable delivers every item once") {
  weft::testing::for_each_worker_count({1, 2, 4}, [](int workers) {
    auto rt = *Runtime::create({.workers = workers});
    const int kProducers = 8, kConsumers = 8;
    const int kPer = 2000 * static_cast<int>(weft::testing::scale());
    int64_t sum = rt->block_on([&] {
      Mutex m;
      ConditionVariable not_empty;
      std::deque<int> q;
      int producers_left = kProducers;
      std::vector<JoinHandle<int64_t>> consumers;
      for (int c = 0; c < kConsumers; ++c) {
        consumers.push_back(spawn([&] {
          int64_t s = 0;
          std::unique_lock<Mutex> lk(m);
          for (;;) {
            (void)not_empty.wait(lk, [&] { return !q.empty() || producers_left == 0; });
            if (q.empty()) return s;
            s += q.front();
            q.pop_front();
          }
        }));
      }
      std::vector<JoinHandle<void>> producers;
      for (int p = 0; p < kProducers; ++p) {
        producers.push_back(spawn([&] {
          for (int i = 1; i <= kPer; ++i) {
            {
              std::lock_guard<Mutex> g(m);
              q.push_back(i);
            }
            not_empty.notify_one();
          }
          std::lock_guard<Mutex> g(m);
          if (--producers_left == 0) not_empty.notify_all();
        }));
      }
      for (auto& p : producers) p.join();
      int64_t total = 0;
      for (auto& c : consumers) total += c.join();
      return total;
    });
    CHECK(sum == int64_t{kProducers} * kPer * (kPer + 1) / 2);
  });
}

TEST_CASE("a plain thread can wait for a fiber's notification") {
  auto rt = *Runtime::create({.workers = 1});
  Mutex m;
  ConditionVariable cv;
  bool ready = false;
  auto h = rt->spawn([&] {
    (void)this_fiber::sleep_for(absl::Milliseconds(5));
    std::lock_guard<Mutex> g(m);
    ready = true;
    cv.notify_all();
  });
  std::unique_lock<Mutex> lk(m);
  CHECK(cv.wait_for(lk, absl::Seconds(10), [&] { return ready; }).ok());
  lk.unlock();
  h.join();
}

TEST_CASE("destroying a condition variable that a fiber waits on aborts with a message") {
#if !defined(__SANITIZE_THREAD__)  // the child starts threads after fork
  weft::testing::expect_death(
      [] {
        auto rt = *Runtime::create({.workers = 1});
        Mutex m;
        auto* cv = new ConditionVariable;
        bool waiting = false;
        rt->spawn([&] {
            std::unique_lock<Mutex> lk(m);
            waiting = true;
            (void)cv->wait(lk);  // queued before it releases m
          }).detach();
        for (;;) {
          std::lock_guard<Mutex> g(m);
          if (waiting) break;
        }
        delete cv;
      },
      "ConditionVariable destroyed while fibers wait on it");
#endif
}

}  // namespace
}  // namespace weft
