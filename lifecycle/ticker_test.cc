#include "lifecycle/ticker.h"

#include <doctest/doctest.h>

#include "lifecycle/select.h"
#include "runtime/runtime.h"
#include "sync/sync.h"

namespace weft {
namespace {

TEST_CASE("ticks fall on the grid and missed ticks are skipped, not burst") {
  auto rt = *Runtime::create({.workers = 1});
  rt->block_on([] {
    absl::Time start = absl::Now();
    Ticker t(absl::Milliseconds(10));
    for (int i = 1; i <= 5; ++i) {
      auto n = t.tick();
      REQUIRE(n.ok());
      CHECK(*n >= 1);
      CHECK(absl::Now() >= start + absl::Milliseconds(10) * i - absl::Milliseconds(1));
    }
    // Late by ~4.5 periods: one tick reports them, the next waits for the grid.
    absl::Time grid_before = t.next_tick();
    absl::SleepFor(absl::Milliseconds(45));  // blocks this worker on purpose
    auto late = t.tick();
    REQUIRE(late.ok());
    CHECK(*late >= 4);
    CHECK(t.next_tick() > absl::Now());
    CHECK((t.next_tick() - grid_before) % absl::Milliseconds(10) == absl::ZeroDuration());
    absl::Time before_next = absl::Now();
    REQUIRE(t.tick().ok());
    CHECK(absl::Now() - before_next >= absl::Milliseconds(1));  // waited: no burst
    CHECK(t.ticks() >= 10);
  });
}

TEST_CASE("a cancelled fiber's tick() returns kCancelled at once") {
  auto rt = *Runtime::create({.workers = 1});
  CancellationToken stop;
  SpawnOptions opts;
  opts.token = stop;
  Event started;  // cancelled before it starts, the fiber would never run
  auto h = rt->spawn(
      [&] {
        started.set();
        Ticker t(absl::Seconds(30));
        return t.tick().status();
      },
      opts);
  REQUIRE(started.wait().ok());
  stop.cancel();
  CHECK(absl::IsCancelled(h.join()));
}

TEST_CASE("a ticker in a select through at(next_tick())") {
  auto rt = *Runtime::create({.workers = 1});
  rt->block_on([] {
    Ticker t(absl::Milliseconds(5));
    Channel<int> never(1);
    auto r = select(recv(never), at(t.next_tick()));
    REQUIRE(r.ok());
    CHECK(r->index() == 1);
    absl::Time before = absl::Now();
    auto n = t.tick();
    REQUIRE(n.ok());
    CHECK(absl::Now() - before < absl::Milliseconds(5));  // already due
  });
}

}  // namespace
}  // namespace weft
