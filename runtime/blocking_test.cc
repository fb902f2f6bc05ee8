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

#include "runtime/internal/blocking_pool.h"
#include "runtime/internal/runtime_access.h"
#include "runtime/runtime.h"
#include "tests/test_util.h"

namespace weft {
namespace {

using Clock = std::chrono::steady_clock;

int64_t ms_since(Clock::time_point t) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - t).count();
}

// The counters of a runtime's pool, and of the fallback pool that threads
// with no runtime use.
BlockingLaneStats lane_stats(const Runtime& rt, BlockingLane l = BlockingLane::kDefault) {
  return rt.stats().blocking.lane(l);
}
BlockingLaneStats fallback_stats(BlockingLane l = BlockingLane::kDefault) {
  return internal::fallback_blocking_pool().stats().lane(l);
}
internal::BlockingPool* pool_of(const Runtime& rt) {
  return internal::RuntimeAccess::scheduler(rt)->blocking_pool();
}

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
  CHECK(lane_stats(*rt).calls_served == 3);
  // Move-only results, and calls from a plain thread (the fallback pool).
  auto p = run_blocking([] { return std::make_unique<int>(7); });
  CHECK(*p == 7);
  CHECK(lane_stats(*rt).calls_served == 3);
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
  BlockingLaneStats s = lane_stats(*rt);
  CHECK(s.calls_served == 64);
  CHECK(s.calls_dropped == 0);
  CHECK(s.queued == 0);
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
  // The call was served once, and the pool's thread has exited.
  BlockingLaneStats s = lane_stats(*rt);
  CHECK(s.calls_served == 1);
  CHECK(s.threads == 0);
  CHECK(s.threads_exited == s.threads_started);
  rt.reset();
  CHECK_THROWS_AS(h.join(), FiberCancelled);
}

TEST_CASE("shutdown drops a queued call that has not started") {
  // The runtime's default lane has one thread, held by a spawn_blocking()
  // call whose handle is outside the runtime; a fiber's run_blocking()
  // queues behind it. Shutdown drops the queued call (its waiter unwinds)
  // and waits for the running one, which a helper thread releases.
  auto rt = *Runtime::create({.workers = 1, .blocking = {.max_threads = 1}});
  std::atomic<bool> release{false};
  auto blocker = rt->block_on([&release] {
    return spawn_blocking([&release] {
      while (!release.load()) ::usleep(1000);
    });
  });
  REQUIRE(eventually([&] { return lane_stats(*rt).busy == 1; }));
  std::atomic<bool> queued_ran{false};
  auto h = rt->spawn([&] {
    int local = 1;
    run_blocking([&] { queued_ran.store(local == 1); });
  });
  REQUIRE(eventually([&] { return lane_stats(*rt).queued == 1; }));
  std::thread releaser([&] {
    ::usleep(100 * 1000);
    release.store(true);
  });
  auto t0 = Clock::now();
  rt->shutdown();
  CHECK(release.load());  // the running call was waited for
  CHECK(ms_since(t0) >= 50);
  releaser.join();
  CHECK_THROWS_AS(h.join(), FiberCancelled);
  blocker.join();
  BlockingLaneStats s = lane_stats(*rt);
  CHECK(s.calls_dropped == 1);
  CHECK(s.calls_served == 1);
  CHECK(s.queued == 0);
  CHECK(s.threads == 0);
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
  // fn's captures die on the pool thread before the call reads as
  // finished, not when the handle goes: a result sharing what a capture
  // owns is the waiter's alone once it wakes.
  auto held = std::make_shared<int>(7);
  auto c = spawn_blocking([held] { return *held; });
  REQUIRE(eventually([&] { return c.is_finished(); }));
  CHECK(held.use_count() == 1);
  CHECK(c.join() == 7);
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
  rt.reset();
  // The fiber let go of the call when it unwound; the pool's teardown ran
  // it to completion before the destructor returned.
  CHECK(fn_done.load());
  CHECK_THROWS_AS(h.join(), FiberCancelled);
}

TEST_CASE("the pool grows to its limit and shrinks after keep_alive") {
  auto rt = *Runtime::create({.workers = 2, .blocking = {.max_threads = 4, .keep_alive = absl::Milliseconds(50)}});
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
  BlockingLaneStats during = lane_stats(*rt);
  CHECK(during.max_threads == 4);
  CHECK(during.threads_started >= 2);
  CHECK(during.threads_started <= 4);
  CHECK(during.calls_served == 16);
  REQUIRE(eventually([&] { return lane_stats(*rt).threads == 0; }));
  BlockingLaneStats after = lane_stats(*rt);
  CHECK(after.threads_exited == after.threads_started);
  CHECK(after.queued == 0);
  CHECK(after.busy == 0);
  // Lowering the limit at run time: 8 calls at once, never more than 2.
  REQUIRE(rt->configure_blocking({.max_threads = 2, .keep_alive = absl::Milliseconds(50)}).ok());
  CHECK(lane_stats(*rt).max_threads == 2);
  peak.store(0);
  rt->block_on([&] {
    std::vector<JoinHandle<void>> hs;
    for (int i = 0; i < 8; ++i) {
      hs.push_back(spawn([&] {
        run_blocking([&] {
          int c = concurrent.fetch_add(1) + 1;
          int p = peak.load();
          while (c > p && !peak.compare_exchange_weak(p, c)) {
          }
          ::usleep(10 * 1000);
          concurrent.fetch_sub(1);
        });
      }));
    }
    for (auto& h : hs) h.join();
  });
  CHECK(peak.load() <= 2);
  CHECK(lane_stats(*rt).calls_served == 24);
}

TEST_CASE("blocking pool options are validated, naming the field") {
  auto bad = [](BlockingPoolOptions o) { return Runtime::create({.workers = 1, .blocking = o}).status(); };
  absl::Status s = bad({.max_threads = 0});
  CHECK(s.code() == absl::StatusCode::kInvalidArgument);
  CHECK(s.message() == "RuntimeOptions::blocking.max_threads must be in 1..4096, got 0");
  s = bad({.max_resolve_threads = 5000});
  CHECK(s.code() == absl::StatusCode::kInvalidArgument);
  CHECK(s.message() == "RuntimeOptions::blocking.max_resolve_threads must be in 1..4096, got 5000");
  s = bad({.keep_alive = absl::ZeroDuration()});
  CHECK(s.code() == absl::StatusCode::kInvalidArgument);
  CHECK(s.message() == "RuntimeOptions::blocking.keep_alive must be at least 1 ms, got 0");
  CHECK(bad({.keep_alive = absl::Microseconds(999)}).code() == absl::StatusCode::kInvalidArgument);
  CHECK(Runtime::create({.workers = 1, .blocking = {.max_threads = 4096, .max_resolve_threads = 1,
                                                     .keep_alive = absl::Milliseconds(1)}})
            .ok());

  auto rt = *Runtime::create({.workers = 1, .blocking = {.max_threads = 3, .max_resolve_threads = 2}});
  CHECK(lane_stats(*rt).max_threads == 3);
  CHECK(lane_stats(*rt, BlockingLane::kResolve).max_threads == 2);
  s = rt->configure_blocking({.max_threads = 0});
  CHECK(s.code() == absl::StatusCode::kInvalidArgument);
  CHECK(s.message() == "Runtime::configure_blocking: options.max_threads must be in 1..4096, got 0");
  CHECK(rt->configure_blocking({.max_resolve_threads = 4097}).code() == absl::StatusCode::kInvalidArgument);
  CHECK(rt->configure_blocking({.keep_alive = absl::ZeroDuration()}).code() ==
        absl::StatusCode::kInvalidArgument);
  // Unchanged by the rejected calls.
  CHECK(lane_stats(*rt).max_threads == 3);
  CHECK(lane_stats(*rt, BlockingLane::kResolve).max_threads == 2);
  REQUIRE(rt->configure_blocking({}).ok());
  CHECK(lane_stats(*rt).max_threads == kDefaultBlockingThreads);
  CHECK(lane_stats(*rt, BlockingLane::kResolve).max_threads == kDefaultResolveThreads);
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
  auto rt = *Runtime::create({.workers = 1, .blocking = {.max_threads = 2}});
  std::atomic<bool> release{false};
  std::vector<BlockingHandle<void>> flood = rt->block_on([&release] {
    std::vector<BlockingHandle<void>> hs;
    for (int i = 0; i < 200; ++i) {
      hs.push_back(spawn_blocking([&release] {
        while (!release.load()) ::usleep(1000);
      }));
    }
    return hs;
  });
  REQUIRE(eventually([&] { return lane_stats(*rt).busy == 2; }));
  auto t0 = Clock::now();
  int v = rt->block_on([] { return run_blocking(BlockingLane::kResolve, [] { return 3; }); });
  CHECK(v == 3);
  CHECK(ms_since(t0) < 2000);
  CHECK(lane_stats(*rt).queued == 198);
  CHECK(lane_stats(*rt).calls_served == 0);
  release.store(true);
  for (auto& h : flood) h.join();
  CHECK(lane_stats(*rt).calls_served == 200);
  CHECK(lane_stats(*rt, BlockingLane::kResolve).calls_served == 1);
}

// Two runtimes, two pools: runtime A's default lane, one thread, flooded
// with calls that wait; a call in runtime B runs at once.
TEST_CASE("two runtimes have separate pools") {
  auto a = *Runtime::create({.workers = 1, .blocking = {.max_threads = 1}});
  auto b = *Runtime::create({.workers = 1, .blocking = {.max_threads = 1}});
  CHECK(pool_of(*a) != pool_of(*b));
  std::atomic<bool> release{false};
  std::vector<BlockingHandle<int>> flood = a->block_on([&release] {
    std::vector<BlockingHandle<int>> hs;
    for (int i = 0; i < 50; ++i) {
      hs.push_back(spawn_blocking([&release, i] {
        while (!release.load()) ::usleep(1000);
        return i;
      }));
    }
    return hs;
  });
  REQUIRE(eventually([&] { return lane_stats(*a).busy == 1 && lane_stats(*a).queued == 49; }));
  auto t0 = Clock::now();
  internal::BlockingPool* ran_on = nullptr;
  int v = b->block_on([&] {
    return run_blocking([&] {
      ran_on = internal::BlockingPool::of_this_thread();
      return 7;
    });
  });
  CHECK(v == 7);
  CHECK(ms_since(t0) < 2000);
  CHECK(ran_on == pool_of(*b));
  CHECK(lane_stats(*b).calls_served == 1);
  CHECK(lane_stats(*b).threads_started == 1);
  CHECK(lane_stats(*a).calls_served == 0);
  CHECK(lane_stats(*a).queued == 49);
  release.store(true);
  int sum = 0;
  for (auto& h : flood) sum += h.join();
  CHECK(sum == 49 * 50 / 2);
  CHECK(lane_stats(*a).calls_served == 50);
  CHECK(lane_stats(*a).threads_started == 1);
  CHECK(lane_stats(*b).calls_served == 1);
}

TEST_CASE("Runtime::stats() carries the pool's counters") {
  auto rt = *Runtime::create({.workers = 2, .blocking = {.max_threads = 5, .max_resolve_threads = 3}});
  RuntimeStats st = rt->stats();
  for (BlockingLane l : {BlockingLane::kDefault, BlockingLane::kResolve}) {
    const BlockingLaneStats& s = st.blocking.lane(l);
    CHECK(s.queued == 0);
    CHECK(s.threads == 0);
    CHECK(s.busy == 0);
    CHECK(s.threads_started == 0);
    CHECK(s.calls_served == 0);
  }
  CHECK(st.blocking.lane(BlockingLane::kDefault).max_threads == 5);
  CHECK(st.blocking.lane(BlockingLane::kResolve).max_threads == 3);
  std::atomic<bool> entered{false};
  std::atomic<bool> release{false};
  auto h = rt->spawn([&] {
    run_blocking([&] {
      entered.store(true);
      while (!release.load()) ::usleep(500);
    });
    run_blocking(BlockingLane::kResolve, [] {});
  });
  REQUIRE(eventually([&] { return entered.load(); }));
  st = rt->stats();
  CHECK(st.blocking.lane(BlockingLane::kDefault).busy == 1);
  CHECK(st.blocking.lane(BlockingLane::kDefault).threads == 1);
  CHECK(st.blocking.lane(BlockingLane::kDefault).threads_started == 1);
  CHECK(st.blocking.lane(BlockingLane::kDefault).calls_served == 0);
  release.store(true);
  h.join();
  st = rt->stats();
  CHECK(st.blocking.lane(BlockingLane::kDefault).busy == 0);
  CHECK(st.blocking.lane(BlockingLane::kDefault).calls_served == 1);
  CHECK(st.blocking.lane(BlockingLane::kResolve).calls_served == 1);
  CHECK(st.blocking.lane(BlockingLane::kResolve).threads_started == 1);
  CHECK(st.blocking.lane(BlockingLane::kDefault).calls_dropped == 0);
}

// Counts live instances, so a test sees a call's function and result
// destroyed.
struct Tracked {
  static std::atomic<int> live;
  Tracked() { live.fetch_add(1); }
  Tracked(const Tracked&) { live.fetch_add(1); }
  Tracked(Tracked&&) noexcept { live.fetch_add(1); }
  ~Tracked() { live.fetch_sub(1); }
};
std::atomic<int> Tracked::live{0};

// Teardown runs detached calls to completion: one running when the
// destructor starts, one queued behind it (the lane has one thread), and a
// call that the running one makes on the resolve lane, which has no thread
// yet, while teardown is under way. Their functions and results are gone
// when the destructor returns (and ASan sees no leak).
TEST_CASE("teardown runs detached spawn_blocking calls to completion") {
  auto rt = *Runtime::create({.workers = 1, .blocking = {.max_threads = 1}});
  auto ran = std::make_shared<std::atomic<int>>(0);
  auto nested = std::make_shared<std::atomic<int>>(0);
  auto gate = std::make_shared<std::atomic<int>>(0);  // 1: entered, 2: open
  rt->block_on([&] {
    spawn_blocking([ran, nested, gate, t = Tracked()] {
      gate->store(1);
      while (gate->load() != 2) ::usleep(500);
      nested->store(run_blocking(BlockingLane::kResolve, [] { return 11; }));
      ran->fetch_add(1);
      return std::vector<Tracked>(3);
    }).detach();
    spawn_blocking([ran, t = Tracked()] {
      ran->fetch_add(1);
      return Tracked();
    }).detach();
  });
  REQUIRE(eventually([&] { return gate->load() == 1; }));
  CHECK(lane_stats(*rt).queued == 1);
  CHECK(lane_stats(*rt).busy == 1);
  CHECK(Tracked::live.load() == 2);
  std::thread opener([&] {
    ::usleep(100 * 1000);  // the destructor is waiting by now
    gate->store(2);
  });
  auto t0 = Clock::now();
  rt.reset();
  CHECK(ms_since(t0) >= 50);
  opener.join();
  CHECK(ran->load() == 2);
  CHECK(nested->load() == 11);
  CHECK(Tracked::live.load() == 0);
  CHECK(ran.use_count() == 1);
  CHECK(gate.use_count() == 1);
}

TEST_CASE("a call made on a pool thread stays in that thread's pool") {
  auto rt = *Runtime::create({.workers = 1});
  const uint64_t fallback_before = fallback_stats().calls_served;
  const uint64_t fallback_resolve_before = fallback_stats(BlockingLane::kResolve).calls_served;
  internal::BlockingPool* outer = nullptr;
  internal::BlockingPool* inner = nullptr;
  internal::BlockingPool* inner_resolve = nullptr;
  int v = rt->block_on([&] {
    return run_blocking([&] {
      outer = internal::BlockingPool::of_this_thread();
      int a = run_blocking([&] {
        inner = internal::BlockingPool::of_this_thread();
        return 20;
      });
      int b = spawn_blocking(BlockingLane::kResolve, [&inner_resolve] {
                inner_resolve = internal::BlockingPool::of_this_thread();
                return 22;
              }).join();
      return a + b;
    });
  });
  CHECK(v == 42);
  CHECK(outer == pool_of(*rt));
  CHECK(inner == pool_of(*rt));
  CHECK(inner_resolve == pool_of(*rt));
  CHECK(lane_stats(*rt).calls_served == 2);
  CHECK(lane_stats(*rt).threads_started == 2);  // the outer call holds one
  CHECK(lane_stats(*rt, BlockingLane::kResolve).calls_served == 1);
  CHECK(fallback_stats().calls_served == fallback_before);
  CHECK(fallback_stats(BlockingLane::kResolve).calls_served == fallback_resolve_before);
}

TEST_CASE("a thread with no runtime uses the fallback pool") {
  auto rt = *Runtime::create({.workers = 1});
  const uint64_t before = fallback_stats().calls_served;
  internal::BlockingPool* ran_on = nullptr;
  internal::BlockingPool* nested_on = nullptr;
  std::thread t([&] {
    CHECK(run_blocking([&] {
            ran_on = internal::BlockingPool::of_this_thread();
            return run_blocking([&] {
              nested_on = internal::BlockingPool::of_this_thread();
              return 1;
            });
          }) == 1);
    CHECK(spawn_blocking([] { return 2; }).join() == 2);
  });
  t.join();
  CHECK(ran_on == &internal::fallback_blocking_pool());
  CHECK(nested_on == &internal::fallback_blocking_pool());
  CHECK(fallback_stats().calls_served == before + 3);
  CHECK(fallback_stats().max_threads == kDefaultBlockingThreads);
  CHECK(fallback_stats(BlockingLane::kResolve).max_threads == kDefaultResolveThreads);
  CHECK(lane_stats(*rt).calls_served == 0);
  CHECK(lane_stats(*rt).threads_started == 0);
}

#if !defined(__SANITIZE_THREAD__)  // the child would start threads after fork
TEST_CASE("shutting a runtime down from its own pool thread fails loudly") {
  weft::testing::expect_death(
      [] {
        auto rt = *Runtime::create({.workers = 1});
        Runtime* raw = rt.get();
        rt->block_on([raw] { run_blocking([raw] { raw->shutdown(); }); });
      },
      "Runtime::shutdown() called from one of the runtime's own blocking-pool threads");
}
#endif

}  // namespace
}  // namespace weft
