// Timed parks keep one timer entry per fiber, left linked between parks
// (runtime/internal/park.cc, "Timed parks"). These tests drive each step
// through the public waits: a deadline is never cut short by an entry an
// earlier park left behind, never stretched by one, a left-over entry
// never wakes a later park, and a fiber that ends with its entry linked
// leaves nothing for a timer to touch (ASan would catch the use).
#include <doctest/doctest.h>

#include <atomic>
#include <cstdint>
#include <optional>
#include <vector>

#include "absl/time/clock.h"
#include "runtime/runtime.h"
#include "sync/event.h"
#include "tests/test_util.h"

namespace weft {
namespace {

// Parks the calling fiber on a timed wait that another fiber ends early;
// the fiber's timer entry stays linked, due at about now + timeout. False
// if the setter did not run within the timeout (a very slow host).
bool wait_woken_early(absl::Duration timeout) {
  Event e;
  auto setter = spawn([&] { e.set(); });
  bool woken = e.wait_for(timeout).ok();
  setter.join();
  return woken;
}

// Waits `timeout` on an event nobody sets; checks that the wait timed out
// and returns how long it took.
absl::Duration time_out_after(absl::Duration timeout) {
  Event never;
  absl::Time t0 = absl::Now();
  absl::Status s = never.wait_for(timeout);
  absl::Duration waited = absl::Now() - t0;
  CHECK(absl::IsDeadlineExceeded(s));
  return waited;
}

TEST_CASE("a later deadline after a park woken early: the whole deadline, not the old one") {
  weft::testing::for_each_worker_count({1, 2}, [](int workers) {
    auto rt = *Runtime::create({.workers = workers});
    rt->block_on([] {
      CHECK(wait_woken_early(absl::Milliseconds(40)));
      // The entry left by the first wait fires at about 40 ms; it must move
      // itself to this wait's deadline (step 2), not end the wait.
      absl::Duration waited = time_out_after(absl::Milliseconds(150));
      CHECK(waited >= absl::Milliseconds(150));
      CHECK(waited < absl::Seconds(5));
    });
  });
}

TEST_CASE("an earlier deadline after a park woken early: it times out at its own deadline") {
  weft::testing::for_each_worker_count({1, 2}, [](int workers) {
    auto rt = *Runtime::create({.workers = workers});
    rt->block_on([] {
      CHECK(wait_woken_early(absl::Seconds(30)));  // the entry left fires far too late
      absl::Duration waited = time_out_after(absl::Milliseconds(20));
      CHECK(waited >= absl::Milliseconds(20));
      CHECK(waited < absl::Seconds(10));  // step 1 filed it anew
    });
  });
}

TEST_CASE("a left-over timer does not wake a later park without a deadline") {
  weft::testing::for_each_worker_count({1, 2}, [](int workers) {
    auto rt = *Runtime::create({.workers = workers});
    rt->block_on([] {
      Event go;
      std::atomic<bool> returned{false};
      absl::Status status;
      auto waiter = spawn([&] {
        CHECK(wait_woken_early(absl::Milliseconds(50)));
        status = go.wait();  // no deadline; the entry left fires at ~50 ms
        returned.store(true);
      });
      (void)this_fiber::sleep_for(absl::Milliseconds(200));
      CHECK_FALSE(returned.load());  // step 3: the stale claim failed
      go.set();
      waiter.join();
      CHECK(returned.load());
      CHECK(status.ok());
    });
  });
}

TEST_CASE("fibers that end with their timers linked leave nothing for the wheel to touch") {
  // Each fiber ends right after a timed park that was woken early, so its
  // entry is linked when it ends (step 5 takes it off). The entries would
  // fire at 200-215 ms; the runtime outlives that and reuses the blocks.
  weft::testing::for_each_worker_count({1, 2}, [](int workers) {
    auto rt = *Runtime::create({.workers = workers});
    const int kFibers = 500 * static_cast<int>(weft::testing::scale());
    std::atomic<int> done{0}, woken_early{0};
    rt->block_on([&] {
      for (int round = 0; round < 2; ++round) {
        std::vector<JoinHandle<void>> hs;
        for (int i = 0; i < kFibers; ++i) {
          hs.push_back(spawn([&, i] {
            if (wait_woken_early(absl::Milliseconds(200 + i % 16))) woken_early.fetch_add(1);
            done.fetch_add(1);
          }));
        }
        for (auto& h : hs) h.join();
        (void)this_fiber::sleep_for(absl::Milliseconds(300));  // past every deadline
      }
    });
    CHECK(done.load() == 2 * kFibers);
    CHECK(woken_early.load() > 0);  // else no fiber ended with its entry linked
  });
}

TEST_CASE("stress: timed waits that are woken, time out, or race the deadline, counted exactly") {
  // Each of kFibers fibers makes kRounds timed waits of 0-3 ms on its own
  // Event; a peer sets the event after 0-4 yields or 1 ms, or never. Every
  // wait either sees the set (OK) or times out no earlier than its
  // timeout, and the two counts add up. With 2 workers the fibers move,
  // so entries are reused on other workers' wheels (step 1).
  auto rt = *Runtime::create({.workers = 2});
  const int kFibers = 40;
  const int kRounds = 200 * static_cast<int>(weft::testing::scale());
  std::atomic<int64_t> woken{0}, timed_out{0}, early{0}, sets{0};
  rt->block_on([&] {
    std::vector<JoinHandle<void>> hs;
    for (int f = 0; f < kFibers; ++f) {
      hs.push_back(spawn([&, f] {
        uint64_t rng = 0x9E3779B97F4A7C15ull * static_cast<uint64_t>(f + 1);
        auto next = [&rng] {
          rng ^= rng >> 12;
          rng ^= rng << 25;
          rng ^= rng >> 27;
          return rng * 0x2545F4914F6CDD1Dull;
        };
        for (int r = 0; r < kRounds; ++r) {
          Event e;
          const uint64_t x = next();
          const absl::Duration timeout = absl::Microseconds(static_cast<int64_t>(x % 3000));
          const int how = static_cast<int>((x >> 20) % 4);  // 0-1: yields, 2: 1 ms, 3: never
          std::optional<JoinHandle<void>> setter;
          const bool has_setter = how != 3;
          if (has_setter) {
            setter.emplace(spawn([&e, &sets, how, x] {
              if (how == 2) {
                (void)this_fiber::sleep_for(absl::Milliseconds(1));
              } else {
                for (uint64_t i = 0; i < ((x >> 30) % 5); ++i) this_fiber::yield();
              }
              e.set();
              sets.fetch_add(1);
            }));
          }
          absl::Time t0 = absl::Now();
          absl::Status s = e.wait_for(timeout);
          absl::Duration waited = absl::Now() - t0;
          if (s.ok()) {
            woken.fetch_add(1);
          } else {
            CHECK(absl::IsDeadlineExceeded(s));
            timed_out.fetch_add(1);
            if (waited < timeout) early.fetch_add(1);
          }
          if (setter.has_value()) setter->join();
          CHECK((!s.ok() || has_setter));  // OK only after a set
        }
      }));
    }
    for (auto& h : hs) h.join();
  });
  CHECK(woken.load() + timed_out.load() == int64_t{kFibers} * kRounds);
  CHECK(early.load() == 0);
  CHECK(woken.load() <= sets.load());
  CHECK(woken.load() > 0);
  CHECK(timed_out.load() > 0);
}

}  // namespace
}  // namespace weft
