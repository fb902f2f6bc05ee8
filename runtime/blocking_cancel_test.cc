// The blocking pool under cancellation of the waiting fiber: a queued call
// is dropped (never runs), a running run_blocking() call is waited for and
// its result returned, and a spawn_blocking() handle's try_join() gives up
// at once while the call runs on and its result is dropped.
//
// Each test's runtime has a pool whose default lane has one thread.
#include <doctest/doctest.h>
#include <unistd.h>

#include <atomic>
#include <memory>
#include <string>
#include <utility>

#include "runtime/blocking.h"
#include "runtime/runtime.h"
#include "tests/test_util.h"

namespace weft {
namespace {

using weft::testing::eventually;

uint64_t parks(const Runtime& rt) { return rt.stats().total(&WorkerStats::parks); }

BlockingLaneStats lane_stats(const Runtime& rt) { return rt.stats().blocking.lane(BlockingLane::kDefault); }

// A runtime whose pool's default lane has one thread.
std::unique_ptr<Runtime> one_thread_lane_runtime() {
  return *Runtime::create({.workers = 2, .blocking = {.max_threads = 1}});
}

// Gate: a flag that a blocking call waits on, shared by ownership so a
// call may outlive the test's frame.
struct Gate {
  std::atomic<bool> open{false};
  std::atomic<bool> entered{false};
  void wait() {
    entered.store(true);
    while (!open.load()) ::usleep(200);
  }
};

TEST_CASE("run_blocking: a queued call is dropped when the waiting fiber is cancelled") {
  auto rt = one_thread_lane_runtime();
  auto gate = std::make_shared<Gate>();
  // Occupy the lane's only thread.
  auto blocker = rt->block_on([gate] {
    return spawn_blocking([gate] {
      gate->wait();
      return 1;
    });
  });
  REQUIRE(eventually([&] { return gate->entered.load(); }));
  const BlockingLaneStats before = lane_stats(*rt);
  CHECK(before.queued == 0);
  CHECK(before.calls_served == 0);
  CHECK(before.calls_dropped == 0);
  std::atomic<int> ran{0};

  CancellationToken t;
  const uint64_t base = parks(*rt);
  auto status_fn = rt->spawn(
      [&] { return run_blocking([&] { ran.fetch_add(1); return absl::OkStatus(); }); }, {.token = t});
  auto status_or_fn = rt->spawn(
      [&] { return run_blocking([&]() -> absl::StatusOr<int> { ran.fetch_add(1); return 3; }).status(); },
      {.token = t});
  auto plain_fn = rt->spawn(
      [&] {
        try {
          (void)run_blocking([&] { ran.fetch_add(1); return 5; });
          return false;
        } catch (const WaitCancelled&) {
          return true;
        }
      },
      {.token = t});
  REQUIRE(eventually([&] { return parks(*rt) >= base + 3; }));
  CHECK(lane_stats(*rt).queued == 3);
  const absl::Time start = absl::Now();
  t.cancel();
  CHECK(status_fn.join().code() == absl::StatusCode::kCancelled);
  CHECK(status_or_fn.join().code() == absl::StatusCode::kCancelled);
  CHECK(plain_fn.join());
  CHECK(absl::Now() - start < absl::Seconds(5));  // the lane is still blocked

  // Already cancelled: the call is queued and dropped at once.
  CHECK(rt->block_on([&] {
          this_fiber::cancellation().cancel();
          return run_blocking([&] { ran.fetch_add(1); return absl::OkStatus(); });
        }).code() == absl::StatusCode::kCancelled);

  gate->open.store(true);
  CHECK(blocker.join() == 1);
  REQUIRE(eventually([&] { return lane_stats(*rt).calls_dropped == 4; }));
  CHECK(lane_stats(*rt).queued == 0);
  CHECK(ran.load() == 0);  // no dropped call ever ran
  CHECK(lane_stats(*rt).calls_served == 1);  // the blocker
}

TEST_CASE("run_blocking: a running call finishes and its result is returned to the cancelled fiber") {
  auto rt = one_thread_lane_runtime();
  Gate gate;
  CancellationToken t;
  auto h = rt->spawn(
      [&] {
        absl::StatusOr<std::string> r = run_blocking([&]() -> absl::StatusOr<std::string> {
          gate.wait();  // uses the caller's frame: it must outlive the call
          return std::string("done");
        });
        return std::make_pair(std::move(r), this_fiber::cancelled());
      },
      {.token = t});
  REQUIRE(eventually([&] { return gate.entered.load(); }));
  t.cancel();
  ::usleep(30000);
  CHECK_FALSE(h.is_finished());  // waits for the running call
  gate.open.store(true);
  auto [r, cancelled] = h.join();
  REQUIRE(r.ok());
  CHECK(*r == "done");
  CHECK(cancelled);
}

// Result counts its live instances, so a result dropped with the call is
// seen to be destroyed exactly once.
struct Result {
  static std::atomic<int> live;
  std::string payload = std::string(512, 'r');
  Result() { live.fetch_add(1); }
  Result(const Result& o) : payload(o.payload) { live.fetch_add(1); }
  Result(Result&& o) noexcept : payload(std::move(o.payload)) { live.fetch_add(1); }
  ~Result() { live.fetch_sub(1); }
};
std::atomic<int> Result::live{0};

TEST_CASE("spawn_blocking: try_join of a cancelled fiber returns kCancelled at once; the call runs on, its result dropped") {
  auto rt = one_thread_lane_runtime();
  auto gate = std::make_shared<Gate>();
  std::atomic<int> finished{0};
  auto finished_ptr = &finished;
  CancellationToken t;
  auto h = rt->spawn(
      [&] {
        auto bh = spawn_blocking([gate, finished_ptr] {
          gate->wait();
          Result r;
          finished_ptr->fetch_add(1);
          return r;
        });
        absl::StatusOr<Result> got = bh.try_join();
        CHECK_FALSE(bh.joinable());
        return got.status().code();
      },
      {.token = t});
  REQUIRE(eventually([&] { return gate->entered.load(); }));
  t.cancel();
  CHECK(h.join() == absl::StatusCode::kCancelled);  // while the call still runs
  CHECK(finished.load() == 0);

  // join() of a cancelled fiber throws WaitCancelled, the same way.
  CancellationToken t2;
  auto h2 = rt->spawn(
      [&] {
        auto bh = spawn_blocking([gate] { gate->wait(); return Result(); });
        try {
          (void)bh.join();
          return false;
        } catch (const WaitCancelled&) {
          return true;
        }
      },
      {.token = t2});
  REQUIRE(eventually([&] { return parks(*rt) > 0 && lane_stats(*rt).queued == 1; }));
  t2.cancel();
  CHECK(h2.join());  // its call was still queued: dropped

  gate->open.store(true);
  REQUIRE(eventually([&] { return finished.load() == 1 && lane_stats(*rt).busy == 0 && lane_stats(*rt).queued == 0; }));
  REQUIRE(eventually([&] { return Result::live.load() == 0; }));
  CHECK(lane_stats(*rt).calls_served == 1);
  CHECK(lane_stats(*rt).calls_dropped == 1);
}

}  // namespace
}  // namespace weft
