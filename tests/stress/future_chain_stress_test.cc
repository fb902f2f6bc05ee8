// Many promise/future chains across 2 workers, with exact counts: values
// set from plain threads and from fibers, callbacks registered before and
// after completion, callbacks that yield, sleep and return futures,
// exceptions midway. A lost or doubled callback shows in the counts; a
// lost wakeup hangs the test (Bazel's timeout fails it).
#include <doctest/doctest.h>

#include <atomic>
#include <stdexcept>
#include <thread>
#include <vector>

#include "future/future.h"
#include "future/when.h"
#include "runtime/runtime.h"
#include "tests/stress_util.h"

namespace weft {
namespace {

constexpr int kSteps = 6;

TEST_CASE("chains of then() across 2 workers: every callback runs exactly once") {
  const int64_t kChains = weft::testing::stress_size(20000);
  auto rt = *Runtime::create({.workers = 2});
  std::atomic<int64_t> steps_run{0}, successes{0}, failures{0}, success_sum{0};

  // Chain i computes i + 0 + 1 + ... + (kSteps - 1). Step 2 of chains with
  // i % 5 == 0 returns a future; of the others, i % 7 == 3 throws there and
  // so skips steps 3.. and reaches on_failure.
  auto build = [&](Future<int64_t> f, int64_t i) {
    for (int s = 0; s < kSteps; ++s) {
      if (s == 2 && i % 5 == 0) {
        // A step that returns a future, completed by another fiber later.
        f = std::move(f).then([&, s, i](int64_t v) {
          steps_run.fetch_add(1);
          Promise<int64_t> inner;  // on a runner fiber: this runtime
          Future<int64_t> fi = inner.get_future();
          spawn([inner = std::move(inner), v, s, i]() mutable {
            if (i % 2 == 0) this_fiber::yield();
            inner.set_value(v + s);
          }).detach();
          return fi;
        });
        continue;
      }
      f = std::move(f).then([&, s, i](int64_t v) -> int64_t {
        steps_run.fetch_add(1);
        if (s == 2 && i % 7 == 3) throw std::runtime_error("step 2 failed");
        if (i % 11 == 0) this_fiber::yield();
        if (i % 97 == 0 && s == 4) CHECK(this_fiber::sleep_for(absl::Milliseconds(1)).ok());
        return v + s;
      });
    }
    return std::move(f)
        .on_success([&](const int64_t& v) {
          successes.fetch_add(1);
          success_sum.fetch_add(v);
        })
        .on_failure([&](const Failure& e) {
          CHECK(e.is_exception());
          failures.fetch_add(1);
        });
  };

  std::vector<Promise<int64_t>> ps;
  std::vector<Future<int64_t>> ends;
  ps.reserve(static_cast<size_t>(kChains));
  ends.reserve(static_cast<size_t>(kChains));
  for (int64_t i = 0; i < kChains; ++i) ps.emplace_back(*rt);

  // Even chains get their callbacks before any value is set; odd ones race
  // with the setters below.
  std::vector<Future<int64_t>> heads(static_cast<size_t>(kChains));
  for (int64_t i = 0; i < kChains; ++i) heads[static_cast<size_t>(i)] = ps[static_cast<size_t>(i)].get_future();
  std::vector<Future<int64_t>> end_of(static_cast<size_t>(kChains));
  for (int64_t i = 0; i < kChains; i += 2) {
    end_of[static_cast<size_t>(i)] = build(std::move(heads[static_cast<size_t>(i)]), i);
  }

  // Setters: two plain threads take i % 4 == 0, 1; fibers take the rest.
  std::thread t0([&] {
    for (int64_t i = 0; i < kChains; i += 4) ps[static_cast<size_t>(i)].set_value(i);
  });
  std::thread t1([&] {
    for (int64_t i = 1; i < kChains; i += 4) ps[static_cast<size_t>(i)].set_value(i);
  });
  auto fibers = rt->spawn([&] {
    std::vector<JoinHandle<void>> hs;
    for (int64_t start : {2, 3}) {
      hs.push_back(spawn([&, start] {
        for (int64_t i = start; i < kChains; i += 4) {
          ps[static_cast<size_t>(i)].set_value(i);
          if (i % 64 == start) this_fiber::yield();
        }
      }));
    }
    for (auto& h : hs) h.join();
  });
  for (int64_t i = 1; i < kChains; i += 2) {
    end_of[static_cast<size_t>(i)] = build(std::move(heads[static_cast<size_t>(i)]), i);
  }
  t0.join();
  t1.join();
  fibers.join();

  // Wait for every chain's end through when_all over batches (a failed
  // chain fails its batch, so wait for each end instead).
  int64_t expect_success = 0, expect_fail = 0, expect_sum = 0, expect_steps = 0;
  for (int64_t i = 0; i < kChains; ++i) {
    auto& f = end_of[static_cast<size_t>(i)];
    REQUIRE(f.wait().ok());
    REQUIRE(f.ready());
    if (i % 7 == 3 && i % 5 != 0) {
      ++expect_fail;
      expect_steps += 3;
      CHECK_THROWS_AS((void)f.get(), std::runtime_error);
    } else {
      ++expect_success;
      expect_steps += kSteps;
      int64_t v = i + kSteps * (kSteps - 1) / 2;
      expect_sum += v;
      auto r = f.get();
      REQUIRE(r.ok());
      CHECK(*r == v);
    }
  }
  // The observers ran before their ends completed.
  CHECK(successes.load() == expect_success);
  CHECK(failures.load() == expect_fail);
  CHECK(success_sum.load() == expect_sum);
  CHECK(steps_run.load() == expect_steps);
}

TEST_CASE("when_all over batches set from both workers and a thread: exact sums") {
  const int64_t kBatches = weft::testing::stress_size(400);
  constexpr int64_t kPerBatch = 50;
  auto rt = *Runtime::create({.workers = 2});
  std::vector<Promise<int64_t>> ps;
  ps.reserve(static_cast<size_t>(kBatches * kPerBatch));
  std::vector<Future<int64_t>> sums;
  for (int64_t b = 0; b < kBatches; ++b) {
    std::vector<Future<int64_t>> fs;
    for (int64_t k = 0; k < kPerBatch; ++k) {
      ps.emplace_back(*rt);
      fs.push_back(ps.back().get_future().then([](int64_t v) { return v * 2; }));
    }
    sums.push_back(when_all(std::move(fs)).then([](std::vector<int64_t> vs) {
      int64_t s = 0;
      for (int64_t v : vs) s += v;
      return s;
    }));
  }
  const int64_t n = static_cast<int64_t>(ps.size());
  std::thread t([&] {
    for (int64_t i = 0; i < n; i += 3) ps[static_cast<size_t>(i)].set_value(i);
  });
  auto h0 = rt->spawn_on(0, [&] {
    for (int64_t i = 1; i < n; i += 3) ps[static_cast<size_t>(i)].set_value(i);
  });
  auto h1 = rt->spawn_on(1, [&] {
    for (int64_t i = 2; i < n; i += 3) ps[static_cast<size_t>(i)].set_value(i);
  });
  t.join();
  h0.join();
  h1.join();
  int64_t total = 0;
  for (auto& f : sums) total += *f.get();
  CHECK(total == 2 * (n * (n - 1) / 2));
}

}  // namespace
}  // namespace weft
