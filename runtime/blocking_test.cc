#include "runtime/blocking.h"

#include <doctest/doctest.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <memory>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "runtime/runtime.h"

namespace weft {
namespace {

using Clock = std::chrono::steady_clock;

int64_t ms_since(Clock::time_point t) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - t).count();
}

// Restores the pool's default limits when a test that changed them ends.
struct PoolDefaults {
  ~PoolDefaults() { CHECK(configure_blocking_pool(BlockingPoolOptions{}).ok()); }
};

// Waits (polling, plain thread) until pred() or 10 s.
template <class Pred>
bool eventually(Pred pred) {
  for (int i = 0; i < 10000; ++i) {
    if (pred()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  return pred();
}

TEST_CASE("run_blocking returns the value and rethrows exceptions") {
  auto rt = *Runtime::create({.workers = 2});
  int v = rt->block_on([] { return run_blocking([] { return 41 + 1; }); });
  CHECK(v == 42);
  bool thrown = rt->block_on([] {
    try {
      run_blocking([]() -> int { throw std::runtime_error("boom"); });
    } catch (const std::runtime_error& e) {
      return std::string(e.what()) == "boom";
    }
    return false;
  });
  CHECK(thrown);
  int calls = 0;
  rt->block_on([&] { run_blocking([&] { ++calls; }); });
  CHECK(calls == 1);
  // Move-only results, and calls from a plain thread.
  auto p = run_blocking([] { return std::make_unique<int>(7); });
  CHECK(*p == 7);
}

TEST_CASE("a blocking call parks its fiber, not the worker") {
  // One worker: while a fiber waits for a call that blocks its pool thread
  // until released, another fiber on the same worker keeps running.
  auto rt = *Runtime::create({.workers = 1});
  std::atomic<bool> release{false};
  std::atomic<int> progress{0};
  rt->block_on([&] {
    auto blocked = spawn([&] {
      return run_blocking([&] {
        while (!release.load()) ::usleep(100);
        return progress.load();
      });
    });
    for (int i = 0; i < 100; ++i) {
      progress.fetch_add(1);
      this_fiber::yield();
    }
    release.store(true);
    CHECK(blocked.join() == 100);
  });
}

TEST_CASE("run_blocking runs many calls, exactly once each") {
  auto rt = *Runtime::create({.workers = 2});
  std::atomic<int> ran{0};
  uint64_t served_before = blocking_pool_stats().lane(BlockingLane::kDefault).calls_served;
  rt->block_on([&] {
    std::vector<JoinHandle<int>> hs;
    for (int i = 0; i < 64; ++i) {
      hs.push_back(spawn([&, i] {
        return run_blocking([&, i] {
          ::usleep(1000);
          ran.fetch_add(1);
          return i;
        });
      }));
    }
    int sum = 0;
    for (auto& h : hs) sum += h.join();
    CHECK(sum == 63 * 64 / 2);
  });
  CHECK(ran.load() == 64);
  BlockingLaneStats s = blocking_pool_stats().lane(BlockingLane::kDefault);
  CHECK(s.calls_served - served_before == 64);
  CHECK(s.threads <= kDefaultBlockingThreads);
  CHECK(s.threads >= 1);
  CHECK(s.max_threads == kDefaultBlockingThreads);
}

// The lifecycle issue's crash: the runtime shuts down while a fiber waits in
// run_blocking() for a call that reads the fiber's locals. Shutdown must wait
// for the running call (its captures live on the fiber's stack) and the pool
// must not touch the call's waiter afterwards.
TEST_CASE("shutdown while a fiber waits in run_blocking waits for the running call") {
  std::atomic<bool> started{false};
  std::atomic<bool> fn_done{false};
  std::atomic<bool> saw_intact_local{false};
  std::atomic<bool> returned_normally{false};
  auto rt = *Runtime::create({.workers = 2});
  auto h = rt->spawn([&] {
    std::string local(4096, 'x');  // on the fiber's stack (and heap)
    int on_stack[256];
    for (int i = 0; i < 256; ++i) on_stack[i] = i;
    run_blocking([&] {
      started.store(true);
      ::usleep(300 * 1000);
      bool intact = local == std::string(4096, 'x');
      for (int i = 0; i < 256; ++i) intact = intact && on_stack[i] == i;
      saw_intact_local.store(intact);
      fn_done.store(true);
    });
    returned_normally.store(true);
    (void)this_fiber::sleep_for(absl::Seconds(30));  // cancelled here if not before
  });
  REQUIRE(eventually([&] { return started.load(); }));
  auto t0 = Clock::now();
  rt->shutdown();
  CHECK(fn_done.load());  // shutdown waited for the call
  CHECK(ms_since(t0) >= 200);
  CHECK(saw_intact_local.load());
  rt.reset();
  CHECK_THROWS_AS(h.join(), FiberCancelled);
  // The pool thread that ran the call is healthy and serves the next one.
  CHECK(run_blocking([] { return 5; }) == 5);
}

TEST_CASE("shutdown drops a queued call that has not started") {
  PoolDefaults restore;
  REQUIRE(configure_blocking_pool({.max_threads = 1}).ok());
  std::atomic<bool> release{false};
  auto blocker = spawn_blocking([&release] {
    while (!release.load()) ::usleep(1000);
  });
  REQUIRE(eventually([] { return blocking_pool_stats().lane(BlockingLane::kDefault).busy == 1; }));
  uint64_t dropped_before = blocking_pool_stats().lane(BlockingLane::kDefault).calls_dropped;
  std::atomic<bool> queued_ran{false};
  auto rt = *Runtime::create({.workers = 1});
  auto h = rt->spawn([&] {
    int local = 1;
    run_blocking([&] { queued_ran.store(local == 1); });
  });
  REQUIRE(eventually([] { return blocking_pool_stats().lane(BlockingLane::kDefault).queued == 1; }));
  auto t0 = Clock::now();
  rt->shutdown();
  CHECK(ms_since(t0) < 5000);  // did not wait for the blocker
  rt.reset();
  CHECK_THROWS_AS(h.join(), FiberCancelled);
  release.store(true);
  blocker.join();
  REQUIRE(eventually([&] {
    return blocking_pool_stats().lane(BlockingLane::kDefault).calls_dropped == dropped_before + 1;
  }));
  CHECK_FALSE(queued_ran.load());
}

TEST_CASE("shutdown during a resolve-lane call") {
  // net::resolve() runs getaddrinfo this way: the result is owned by the call.
  std::atomic<bool> started{false};
  auto rt = *Runtime::create({.workers = 1});
  auto h = rt->spawn([&] {
    std::vector<int> out;
    auto v = run_blocking(BlockingLane::kResolve, [&] {
      started.store(true);
      ::usleep(100 * 1000);
      out.push_back(1);
      return std::make_unique<std::string>("owned by the call");
    });
    (void)v;
  });
  REQUIRE(eventually([&] { return started.load(); }));
  rt.reset();  // the destructor shuts down
  // Cancelled or finished, depending on who won; never a crash or a leak.
  try {
    h.join();
  } catch (const FiberCancelled&) {
  }
}

TEST_CASE("spawn_blocking: join, exceptions, detach, move-only functions") {
  auto rt = *Runtime::create({.workers = 2});
  rt->block_on([] {
    auto p = std::make_unique<int>(20);
    auto h = spawn_blocking([p = std::move(p)] { return *p + 1; });
    CHECK(h.joinable());
    CHECK(h.join() == 21);
    CHECK_FALSE(h.joinable());
    auto e = spawn_blocking([]() -> int { throw std::runtime_error("bad"); });
    CHECK_THROWS_WITH_AS(e.join(), "bad", std::runtime_error);
    std::atomic<bool>* ran = new std::atomic<bool>(false);
    auto d = spawn_blocking([ran] { ran->store(true); });
    d.detach();
    CHECK_FALSE(d.joinable());
    while (!ran->load()) (void)this_fiber::sleep_for(absl::Milliseconds(1));
    delete ran;
    {
      auto dropped = spawn_blocking([] {
        ::usleep(20 * 1000);
        return std::string(100, 'y');  // freed with the call, nobody joins
      });
    }
    auto v = spawn_blocking([] {});
    v.join();
  });
  // From a plain thread.
  auto h = spawn_blocking([] { return std::string("plain"); });
  CHECK(h.join() == "plain");
  // is_finished()
  auto f = spawn_blocking([] { return 1; });
  CHECK(eventually([&] { return f.is_finished(); }));
  CHECK(f.join() == 1);
}

TEST_CASE("shutdown while a fiber joins a spawn_blocking handle") {
  std::atomic<bool> fn_done{false};
  std::atomic<bool> started{false};
  auto rt = *Runtime::create({.workers = 1});
  auto h = rt->spawn([&] {
    auto b = spawn_blocking([&started, &fn_done] {  // atomics outlive the call
      started.store(true);
      ::usleep(200 * 1000);
      fn_done.store(true);
      return std::string(64, 'z');
    });
    return b.join();
  });
  REQUIRE(eventually([&] { return started.load(); }));
  auto t0 = Clock::now();
  rt.reset();
  CHECK(ms_since(t0) < 150 + 1000);  // did not have to wait for fn (it owns its data)
  CHECK_THROWS_AS(h.join(), FiberCancelled);
  CHECK(eventually([&] { return fn_done.load(); }));
  // Let the pool finish with the call before the atomics go out of scope.
  CHECK(eventually([] { return blocking_pool_stats().lane(BlockingLane::kDefault).busy == 0; }));
}

TEST_CASE("the pool grows to its limit and shrinks after keep_alive") {
  PoolDefaults restore;
  REQUIRE(configure_blocking_pool({.max_threads = 4, .keep_alive = absl::Milliseconds(50)}).ok());
  // Let threads from earlier tests, now above the limit or idle, exit.
  REQUIRE(eventually([] { return blocking_pool_stats().lane(BlockingLane::kDefault).threads == 0; }));
  BlockingLaneStats before = blocking_pool_stats().lane(BlockingLane::kDefault);
  auto rt = *Runtime::create({.workers = 2});
  std::atomic<int> concurrent{0};
  std::atomic<int> peak{0};
  rt->block_on([&] {
    std::vector<JoinHandle<void>> hs;
    for (int i = 0; i < 16; ++i) {
      hs.push_back(spawn([&] {
        run_blocking([&] {
          int c = concurrent.fetch_add(1) + 1;
          int p = peak.load();
          while (c > p && !peak.compare_exchange_weak(p, c)) {
          }
          ::usleep(20 * 1000);
          concurrent.fetch_sub(1);
        });
      }));
    }
    for (auto& h : hs) h.join();
  });
  CHECK(peak.load() <= 4);
  CHECK(peak.load() >= 2);
  BlockingLaneStats during = blocking_pool_stats().lane(BlockingLane::kDefault);
  CHECK(during.threads_started - before.threads_started >= 2);
  CHECK(during.threads_started - before.threads_started <= 4);
  CHECK(during.calls_served - before.calls_served == 16);
  REQUIRE(eventually([] { return blocking_pool_stats().lane(BlockingLane::kDefault).threads == 0; }));
  BlockingLaneStats after = blocking_pool_stats().lane(BlockingLane::kDefault);
  CHECK(after.threads_exited - before.threads_exited ==
        after.threads_started - before.threads_started);
  CHECK(after.queued == 0);
  CHECK(after.busy == 0);
}

TEST_CASE("configure_blocking_pool rejects bad limits") {
  BlockingPoolOptions o;
  o.max_threads = 0;
  CHECK(configure_blocking_pool(o).code() == absl::StatusCode::kInvalidArgument);
  o = {};
  o.max_resolve_threads = 5000;
  CHECK(configure_blocking_pool(o).code() == absl::StatusCode::kInvalidArgument);
  o = {};
  o.keep_alive = absl::ZeroDuration();
  CHECK(configure_blocking_pool(o).code() == absl::StatusCode::kInvalidArgument);
  CHECK(blocking_pool_options().max_threads == kDefaultBlockingThreads);
}

// A ticker fiber keeps ticking through 10,000 blocking calls of 1 ms each
// (10 s of blocking in total). Were the calls run on the worker, the one
// worker would stall for about a second per storm fiber (1,000 calls in a
// row); the bound, a 500 ms gap at most, cannot be met that way.
TEST_CASE("a ticker keeps ticking through a storm of 10,000 blocking calls") {
  auto rt = *Runtime::create({.workers = 1});
  constexpr int kFibers = 10;
  constexpr int kCallsPerFiber = 1000;
  std::atomic<int> calls{0};
  int64_t max_gap_ms = 0;
  int ticks = 0;
  rt->block_on([&] {
    std::atomic<bool> stop{false};
    auto ticker = spawn([&] {
      auto last = Clock::now();
      while (!stop.load()) {
        (void)this_fiber::sleep_for(absl::Milliseconds(1));
        max_gap_ms = std::max<int64_t>(max_gap_ms, ms_since(last));
        last = Clock::now();
        ++ticks;
      }
    });
    std::vector<JoinHandle<void>> storm;
    for (int f = 0; f < kFibers; ++f) {
      storm.push_back(spawn([&] {
        for (int i = 0; i < kCallsPerFiber; ++i) {
          run_blocking([&] {
            ::usleep(1000);
            calls.fetch_add(1, std::memory_order_relaxed);
          });
        }
      }));
    }
    for (auto& h : storm) h.join();
    stop.store(true);
    ticker.join();
  });
  CHECK(calls.load() == kFibers * kCallsPerFiber);
  CHECK(max_gap_ms < 500);
  CHECK(ticks > 0);
  MESSAGE("ticks: " << ticks << ", longest gap: " << max_gap_ms << " ms");
}

// DNS is not starved by a flood of file calls: the resolve lane has its
// own threads.
TEST_CASE("the resolve lane runs while the default lane is flooded") {
  PoolDefaults restore;
  REQUIRE(configure_blocking_pool({.max_threads = 2}).ok());
  std::atomic<bool> release{false};
  std::vector<BlockingHandle<void>> flood;
  for (int i = 0; i < 200; ++i) {
    flood.push_back(spawn_blocking([&release] {
      while (!release.load()) ::usleep(1000);
    }));
  }
  REQUIRE(eventually([] { return blocking_pool_stats().lane(BlockingLane::kDefault).busy == 2; }));
  auto rt = *Runtime::create({.workers = 1});
  auto t0 = Clock::now();
  int v = rt->block_on([] { return run_blocking(BlockingLane::kResolve, [] { return 3; }); });
  CHECK(v == 3);
  CHECK(ms_since(t0) < 2000);
  CHECK(blocking_pool_stats().lane(BlockingLane::kDefault).queued >= 190);
  release.store(true);
  for (auto& h : flood) h.join();
  CHECK(blocking_pool_stats().lane(BlockingLane::kResolve).calls_served >= 1);
}

}  // namespace
}  // namespace weft
