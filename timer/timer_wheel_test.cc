// timer/timer_wheel_test.cc
//
// Tests of TimerWheel (exact-tick firing on every level, cancel and
// re-insert from callbacks, next_deadline(), a differential test against a
// std::multimap model) and of the clocks. Time is driven by ticks and
// ManualClock only; nothing sleeps.
#include "timer/timer_wheel.h"

#include <doctest/doctest.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <iterator>
#include <limits>
#include <map>
#include <optional>
#include <random>
#include <stdexcept>
#include <thread>
#include <vector>

#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "tests/test_util.h"
#include "timer/clock.h"
#include "timer/manual_clock.h"

namespace weft::internal {
namespace {

constexpr uint64_t kMax = std::numeric_limits<uint64_t>::max();
constexpr uint64_t kRange = TimerWheel::kRange;

// A timer with a record of its firing.
struct Rec {
  Rec() { e.owner = this; }
  TimerEntry e;
  int fires = 0;
  uint64_t fired_at = 0;      // the now_tick passed to the advance() that fired it
  uint64_t now_at_fire = 0;   // TimerWheel::now() inside the callback
};

Rec* rec_of(TimerEntry* e) { return static_cast<Rec*>(e->owner); }

// Advances w to `to`, recording each firing.
size_t advance_recording(TimerWheel& w, uint64_t to) {
  return w.advance(to, [&](TimerEntry* e) {
    Rec* r = rec_of(e);
    ++r->fires;
    r->fired_at = to;
    r->now_at_fire = w.now();
  });
}

// Advances w one tick at a time up to `to`.
void step_to(TimerWheel& w, uint64_t to) {
  while (w.now() < to) advance_recording(w, w.now() + 1);
}

uint64_t saturating_add(uint64_t a, uint64_t b) { return b > kMax - a ? kMax : a + b; }

TEST_CASE("entries fire at exactly their deadline on every level") {
  const uint64_t offsets[] = {1,
                              2,
                              63,
                              64,
                              65,
                              127,
                              128,
                              4095,
                              4096,
                              4097,
                              262143,
                              262144,
                              (uint64_t{1} << 30) + 17,  // 64^5 + 17: the top level
                              kRange - 1,
                              kRange,  // 64^6 and beyond: the overflow list
                              kRange + 5,
                              3 * kRange + 12345,
                              (uint64_t{1} << 50) + 999};
  const uint64_t starts[] = {0, 0x123456789, kRange - 3, kMax - (uint64_t{1} << 52)};
  for (uint64_t start : starts) {
    for (uint64_t off : offsets) {
      const uint64_t d = start + off;
      CAPTURE(start);
      CAPTURE(d);
      {
        // One big jump to just before, then one past the deadline.
        TimerWheel w(start);
        Rec r;
        w.insert(&r.e, d);
        CHECK(w.size() == 1);
        CHECK(advance_recording(w, d - 1) == 0);
        CHECK(r.fires == 0);
        CHECK(r.e.linked());
        CHECK(advance_recording(w, saturating_add(d, 1000)) == 1);
        CHECK(r.fires == 1);
        CHECK(r.now_at_fire == d);
        CHECK_FALSE(r.e.linked());
        CHECK(w.size() == 0);
        CHECK(w.now() == saturating_add(d, 1000));
      }
      {
        // One jump from the start straight past the deadline.
        TimerWheel w(start);
        Rec r;
        w.insert(&r.e, d);
        CHECK(advance_recording(w, saturating_add(d, off)) == 1);
        CHECK(r.now_at_fire == d);
      }
      for (uint64_t before : {uint64_t{1}, uint64_t{3}, uint64_t{70}, uint64_t{5000}}) {
        // A jump to near the deadline, then single ticks: nothing early,
        // and the advance() that reaches the deadline fires it.
        if (before >= off) continue;
        CAPTURE(before);
        TimerWheel w(start);
        Rec r;
        w.insert(&r.e, d);
        advance_recording(w, d - before);
        CHECK(r.fires == 0);
        step_to(w, saturating_add(d, 2));
        CHECK(r.fires == 1);
        CHECK(r.fired_at == d);
        CHECK(r.now_at_fire == d);
      }
    }
  }
}

TEST_CASE("many entries on the same and neighboring ticks fire in deadline order") {
  TimerWheel w(1000);
  std::vector<Rec> recs(600);
  for (size_t i = 0; i < recs.size(); ++i) w.insert(&recs[i].e, 1000 + 60 + (i % 12) * 3);
  CHECK(w.size() == recs.size());
  std::vector<uint64_t> seen;
  size_t n = w.advance(5000, [&](TimerEntry* e) {
    CHECK(w.now() == e->deadline());
    seen.push_back(e->deadline());
  });
  CHECK(n == recs.size());
  CHECK(std::is_sorted(seen.begin(), seen.end()));
  CHECK(w.size() == 0);
}

TEST_CASE("cancel") {
  TimerWheel w(0);
  Rec a, b, c, d, e;
  Rec never;

  SUBCASE("before firing, on every kind of list") {
    w.insert(&a.e, 5);               // level 0
    w.insert(&b.e, 5000);            // level 2
    w.insert(&c.e, 3 * kRange);      // overflow
    w.insert(&d.e, 0);               // due
    w.insert(&e.e, (1ull << 33) + 1);  // level 5
    CHECK(w.size() == 5);
    CHECK(w.cancel(&a.e));
    CHECK(w.cancel(&b.e));
    CHECK(w.cancel(&c.e));
    CHECK(w.cancel(&d.e));
    CHECK(w.size() == 1);
    CHECK_FALSE(a.e.linked());
    CHECK_FALSE(w.cancel(&a.e));  // twice
    CHECK(advance_recording(w, 4 * kRange) == 1);
    CHECK(e.fires == 1);
    CHECK(a.fires + b.fires + c.fires + d.fires == 0);
    CHECK_FALSE(w.next_deadline().has_value());
  }

  SUBCASE("of an entry that was never inserted or already fired") {
    CHECK_FALSE(w.cancel(&never.e));
    w.insert(&a.e, 3);
    advance_recording(w, 3);
    CHECK_FALSE(w.cancel(&a.e));
    CHECK(w.size() == 0);
  }

  SUBCASE("from the callback of another entry on the same tick") {
    w.insert(&a.e, 10);
    w.insert(&b.e, 10);
    int fired = 0;
    w.advance(20, [&](TimerEntry* x) {
      ++fired;
      CHECK(w.cancel(x == &a.e ? &b.e : &a.e));
      CHECK_FALSE(w.cancel(x));  // already unlinked
    });
    CHECK(fired == 1);
    CHECK(w.size() == 0);
  }

  SUBCASE("from a callback, of entries due later in the same advance()") {
    w.insert(&a.e, 10);
    w.insert(&b.e, 11);           // next level-0 slot
    w.insert(&c.e, 700);          // level 1
    w.insert(&d.e, kRange + 1);   // overflow
    w.insert(&e.e, 800);
    std::vector<TimerEntry*> order;
    size_t n = w.advance(2 * kRange, [&](TimerEntry* x) {
      order.push_back(x);
      if (x == &a.e) {
        CHECK(w.cancel(&b.e));
        CHECK(w.cancel(&c.e));
        CHECK(w.cancel(&d.e));
      }
    });
    CHECK(n == 2);
    CHECK(order == std::vector<TimerEntry*>{&a.e, &e.e});
  }
}

TEST_CASE("re-inserting from a callback") {
  TimerWheel w(0);
  Rec a, b;

  SUBCASE("a later deadline within the same advance() fires in it") {
    w.insert(&a.e, 10);
    std::vector<uint64_t> ticks;
    size_t n = w.advance(100, [&](TimerEntry* e) {
      ticks.push_back(w.now());
      w.insert(e, w.now() + 5);
    });
    CHECK(n == 19);  // 10, 15, ..., 100
    CHECK(ticks.front() == 10);
    CHECK(ticks.back() == 100);
    CHECK(a.e.linked());
    CHECK(a.e.deadline() == 105);
  }

  SUBCASE("a deadline not after now() waits for the next advance()") {
    w.insert(&a.e, 10);
    w.insert(&b.e, 10);
    int calls = 0;
    auto requeue = [&](TimerEntry* e) {
      ++calls;
      w.insert(e, e == &a.e ? w.now() : w.now() - 3);
    };
    CHECK(w.advance(50, requeue) == 2);
    CHECK(calls == 2);
    CHECK(w.size() == 2);
    CHECK(w.next_deadline() == std::optional<uint64_t>(50));
    CHECK(w.advance(50, requeue) == 2);
    CHECK(w.advance(40, requeue) == 2);  // an earlier tick is now()
    CHECK(w.now() == 50);
    CHECK(calls == 6);
  }

  SUBCASE("another entry, far away") {
    w.insert(&a.e, 10);
    w.advance(20, [&](TimerEntry*) { w.insert(&b.e, 5 * kRange + 3); });
    CHECK(b.e.linked());
    CHECK(advance_recording(w, 5 * kRange + 2) == 0);
    CHECK(advance_recording(w, 5 * kRange + 3) == 1);
    CHECK(b.now_at_fire == 5 * kRange + 3);
  }
}

TEST_CASE("a deadline not after now() fires on the next advance()") {
  TimerWheel w(50);
  Rec a, b, c, later;
  w.insert(&a.e, 50);
  w.insert(&b.e, 3);
  w.insert(&c.e, 0);
  w.insert(&later.e, 60);
  CHECK(w.next_deadline() == std::optional<uint64_t>(50));

  SUBCASE("advance(now())") {
    CHECK(advance_recording(w, 50) == 3);
    CHECK(w.size() == 1);
  }
  SUBCASE("advance() to an earlier tick") {
    CHECK(advance_recording(w, 7) == 3);
    CHECK(w.now() == 50);
  }
  SUBCASE("advance() past other deadlines: due entries fire first") {
    std::vector<TimerEntry*> order;
    CHECK(w.advance(100, [&](TimerEntry* e) { order.push_back(e); }) == 4);
    REQUIRE(order.size() == 4);
    CHECK(order.back() == &later.e);
  }
  for (Rec* r : {&a, &b, &c}) {
    CHECK(r->fires <= 1);
    if (r->fires == 1) CHECK(r->now_at_fire == 50);
  }
}

TEST_CASE("next_deadline") {
  TimerWheel w(100);
  CHECK_FALSE(w.next_deadline().has_value());

  SUBCASE("is the exact tick on level 0 and a slot's start above") {
    Rec a, b;
    w.insert(&a.e, 110);
    CHECK(w.next_deadline() == std::optional<uint64_t>(110));
    w.insert(&b.e, 100 + 4096 + 7);  // level 2 from 100: its slot starts at 4096
    CHECK(w.cancel(&a.e));
    CHECK(w.next_deadline() == std::optional<uint64_t>(4096));
    CHECK(w.cancel(&b.e));
    CHECK_FALSE(w.next_deadline().has_value());
  }

  SUBCASE("leads to every entry, each fired at its deadline") {
    std::mt19937_64 rng(7);
    std::vector<Rec> recs(400);
    uint64_t earliest = kMax;
    for (Rec& r : recs) {
      uint64_t d = 100 + (rng() % (uint64_t{1} << (rng() % 44)));
      w.insert(&r.e, d);
      earliest = std::min(earliest, d);
    }
    REQUIRE(w.next_deadline().has_value());
    CHECK(*w.next_deadline() <= earliest);
    size_t loops = 0;
    while (std::optional<uint64_t> next = w.next_deadline()) {
      CHECK(*next >= w.now());
      advance_recording(w, *next);
      ++loops;
    }
    for (Rec& r : recs) {
      CHECK(r.fires == 1);
      CHECK(r.fired_at == r.e.deadline());
    }
    // Each entry cascades at most once per level, plus overflow refiles.
    CHECK(loops <= recs.size() * (TimerWheel::kLevels + 1));
  }

  SUBCASE("skips straight to a far deadline") {
    Rec r;
    const uint64_t d = (uint64_t{1} << 62) + 12345;
    w.insert(&r.e, d);
    size_t loops = 0;
    while (std::optional<uint64_t> next = w.next_deadline()) {
      advance_recording(w, *next);
      ++loops;
    }
    CHECK(r.fired_at == d);
    CHECK(loops <= TimerWheel::kLevels + 1);
  }
}

TEST_CASE("large jumps cost nothing per tick") {
  TimerWheel w(0);
  CHECK(w.advance(1000000000, [](TimerEntry*) {}) == 0);
  CHECK(w.now() == 1000000000);
  Rec near, far, never;
  w.insert(&near.e, w.now() + 1000000000);
  w.insert(&far.e, uint64_t{1} << 61);
  w.insert(&never.e, kMax);
  CHECK(advance_recording(w, uint64_t{1} << 62) == 2);
  CHECK(near.now_at_fire == 2000000000);
  CHECK(far.now_at_fire == uint64_t{1} << 61);
  CHECK(advance_recording(w, kMax - 1) == 0);
  CHECK(advance_recording(w, kMax) == 1);
  CHECK(never.now_at_fire == kMax);
}

TEST_CASE("the destructor unlinks entries") {
  Rec a, b, c, d;
  {
    TimerWheel w(0);
    w.insert(&a.e, 0);
    w.insert(&b.e, 17);
    w.insert(&c.e, 1 << 20);
    w.insert(&d.e, 2 * kRange);
  }
  for (Rec* r : {&a, &b, &c, &d}) {
    CHECK_FALSE(r->e.linked());
    CHECK(r->fires == 0);
  }
  TimerWheel w2(0);
  w2.insert(&a.e, 5);  // reusable in another wheel
  CHECK(advance_recording(w2, 5) == 1);
}

TEST_CASE("a throwing callback leaves the wheel consistent") {
  TimerWheel w(0);
  std::vector<Rec> recs(4);
  w.insert(&recs[0].e, 0);
  w.insert(&recs[1].e, 10);
  w.insert(&recs[2].e, 10);
  w.insert(&recs[3].e, 20);
  int calls = 0;
  auto throw_at_10 = [&](TimerEntry* e) {
    ++calls;
    if (w.now() == 10) throw std::runtime_error("boom");
  };
  CHECK_THROWS_AS(w.advance(30, throw_at_10), std::runtime_error);
  CHECK(calls == 2);
  CHECK(w.now() == 10);
  CHECK(w.size() == 2);
  CHECK(w.next_deadline() == std::optional<uint64_t>(10));
  CHECK(advance_recording(w, 30) == 2);
  CHECK(recs[3].now_at_fire == 20);
  CHECK(w.size() == 0);
}

TEST_CASE("TimerEntry copies are unlinked") {
  Rec a;
  TimerEntry copy = a.e;
  CHECK(copy.owner == &a);
  CHECK_FALSE(copy.linked());
  TimerEntry assigned;
  assigned = copy;
  CHECK(assigned.owner == &a);
}

TEST_CASE("misuse is caught") {
  weft::testing::expect_death(
      [] {
        TimerWheel w(0);
        Rec a;
        w.insert(&a.e, 5);
        w.insert(&a.e, 6);
      },
      "already linked");
  weft::testing::expect_death(
      [] {
        TimerWheel w(0);
        Rec a;
        w.insert(&a.e, 5);
        w.advance(5, [&](TimerEntry*) { w.advance(6, [](TimerEntry*) {}); });
      },
      "called from a timer callback");
}

// A timer of the differential test, with its place in the model.
struct DRec {
  DRec() { e.owner = this; }
  TimerEntry e;
  std::multimap<uint64_t, DRec*>::iterator it;
  bool in_model = false;
  // Inserted by a callback with a deadline not after the tick being
  // processed: must not fire before the next advance().
  bool deferred = false;
};

// Random inserts, cancels and advances (small steps, big jumps, to
// next_deadline(), backwards), with callbacks that cancel and insert too,
// checked against a std::multimap of deadlines: every firing is checked as
// it happens (right entry, right tick, nothing skipped), and what is left
// after each advance().
void run_differential(uint64_t seed, uint64_t start, int64_t ops) {
  CAPTURE(seed);
  CAPTURE(start);
  std::mt19937_64 rng(seed);
  std::vector<DRec> pool(300);
  TimerWheel w(start);
  std::multimap<uint64_t, DRec*> model;
  std::vector<DRec*> deferred;

  auto model_erase = [&](DRec* r) {
    model.erase(r->it);
    r->in_model = false;
    r->deferred = false;
  };
  auto do_insert = [&](DRec* r, uint64_t d, bool in_callback) {
    REQUIRE_FALSE(r->in_model);
    w.insert(&r->e, d);
    r->it = model.emplace(d, r);
    r->in_model = true;
    if (in_callback && d <= w.now()) {
      r->deferred = true;
      deferred.push_back(r);
    }
  };
  auto do_cancel = [&](DRec* r) {
    const bool was = r->in_model;
    CHECK(w.cancel(&r->e) == was);
    CHECK_FALSE(r->e.linked());
    if (was) model_erase(r);
  };
  auto pick_deadline = [&](uint64_t now) -> uint64_t {
    switch (rng() % 12) {
      case 0:
        return now - std::min<uint64_t>(now, rng() % 100);
      case 1:
        return now;
      case 2:
      case 3:
      case 4:
        return now + rng() % 70;
      case 5:
      case 6:
        return now + rng() % 5000;
      case 7:
      case 8:
        return now + rng() % (uint64_t{2} << (rng() % 40));
      case 9:
        return now + (1 + rng() % 3) * kRange + rng() % kRange;
      case 10:
        return now + 1 + rng() % 3;
      default:
        return kMax - rng() % 1000;  // practically never
    }
  };
  auto check_next_deadline = [&] {
    std::optional<uint64_t> next = w.next_deadline();
    CHECK(w.size() == model.size());
    if (model.empty()) {
      CHECK_FALSE(next.has_value());
      return;
    }
    REQUIRE(next.has_value());
    const uint64_t earliest = model.begin()->first;
    CHECK(*next >= w.now());
    CHECK(*next <= std::max(earliest, w.now()));
    if (earliest <= w.now()) CHECK(*next == w.now());
  };

  for (int64_t op = 0; op < ops; ++op) {
    const int kind = static_cast<int>(rng() % 20);
    DRec* r = &pool[rng() % pool.size()];
    CHECK(r->e.linked() == r->in_model);
    if (kind < 9) {
      if (r->in_model) do_cancel(r);
      do_insert(r, pick_deadline(w.now()), false);
    } else if (kind < 12) {
      do_cancel(r);
    } else {
      const uint64_t now = w.now();
      uint64_t target;
      switch (rng() % 10) {
        case 0:
          target = now - std::min<uint64_t>(now, rng() % 3);
          break;
        case 1:
        case 2:
          target = now + rng() % 4;
          break;
        case 3:
          target = now + rng() % 100;
          break;
        case 4:
        case 5:
          target = w.next_deadline().value_or(now + 1);
          break;
        case 6:
          target = now + rng() % 5000;
          break;
        case 7:
        case 8:
          target = now + rng() % (uint64_t{2} << (rng() % 38));
          break;
        default:
          target = now + rng() % (2 * kRange);
          break;
      }
      CAPTURE(now);
      CAPTURE(target);
      size_t fired = 0;
      uint64_t last_tick = now;
      const size_t n = w.advance(target, [&](TimerEntry* e) {
        DRec* x = static_cast<DRec*>(e->owner);
        const uint64_t t = w.now();
        CHECK_FALSE(e->linked());
        REQUIRE(x->in_model);
        CHECK_FALSE(x->deferred);
        const uint64_t d = x->it->first;
        CHECK(e->deadline() == d);
        CHECK(t >= last_tick);
        last_tick = t;
        if (d <= now) {
          CHECK(t == now);  // already due: fired first
        } else {
          CHECK(t == d);
          CHECK(d <= target);
          // Nothing earlier was skipped.
          for (auto it = model.begin(); it != model.end() && it->first < t; ++it) {
            CHECK(it->second->deferred);
          }
        }
        model_erase(x);
        ++fired;
        switch (rng() % 16) {
          case 0:
          case 1:
            do_insert(x, t - std::min<uint64_t>(t, rng() % 2) + rng() % 4, true);
            break;
          case 2: {
            DRec* y = &pool[rng() % pool.size()];
            do_cancel(y);
            break;
          }
          case 3: {
            DRec* y = &pool[rng() % pool.size()];
            if (!y->in_model) do_insert(y, pick_deadline(t), true);
            break;
          }
          default:
            break;
        }
      });
      CHECK(n == fired);
      CHECK(w.now() == std::max(now, target));
      for (auto it = model.begin(); it != model.end() && it->first <= w.now(); ++it) {
        CHECK(it->second->deferred);  // everything else due has fired
      }
      for (DRec* x : deferred) x->deferred = false;
      deferred.clear();
    }
    check_next_deadline();
  }
  // Drain everything left through next_deadline().
  while (std::optional<uint64_t> next = w.next_deadline()) {
    w.advance(*next, [&](TimerEntry* e) {
      DRec* x = static_cast<DRec*>(e->owner);
      REQUIRE(x->in_model);
      CHECK(std::max(x->it->first, *next) == w.now());
      model_erase(x);
    });
  }
  CHECK(model.empty());
  CHECK(w.size() == 0);
}

TEST_CASE("differential test against a std::multimap model") {
  const int64_t ops = 20000 * weft::testing::scale();
  SUBCASE("from tick 0") { run_differential(12345, 0, ops); }
  SUBCASE("across a 64^6 block boundary") { run_differential(777, kRange - 3000, ops); }
  SUBCASE("from an unaligned tick") { run_differential(4242, 0x0123456789abcull, ops); }
}

TEST_CASE("a ManualClock drives the wheel in 1 ms ticks") {
  ManualClock clock(absl::FromUnixSeconds(1700000000));
  const absl::Time epoch = clock.now();
  // The runtime's conversion: a deadline rounds up to a tick, now rounds
  // down, so a timer never fires early.
  auto now_tick = [&] { return static_cast<uint64_t>(absl::ToInt64Milliseconds(clock.now() - epoch)); };
  auto deadline_tick = [&](absl::Time t) {
    return static_cast<uint64_t>(absl::ToInt64Milliseconds(absl::Ceil(t - epoch, absl::Milliseconds(1))));
  };
  TimerWheel w(now_tick());
  const absl::Duration timeouts[] = {absl::Microseconds(1500), absl::Milliseconds(250),
                                     absl::Seconds(10),        absl::Hours(1),
                                     absl::Hours(24 * 30),     absl::Hours(24 * 1000)};
  std::vector<Rec> recs(std::size(timeouts));
  std::vector<absl::Time> fired_at(recs.size());
  for (size_t i = 0; i < recs.size(); ++i) w.insert(&recs[i].e, deadline_tick(epoch + timeouts[i]));

  // Sleep until the next deadline, as a worker would, waking a little late.
  std::mt19937_64 rng(3);
  while (std::optional<uint64_t> next = w.next_deadline()) {
    clock.set(std::max(clock.now(), epoch + absl::Milliseconds(static_cast<int64_t>(*next)) +
                                        absl::Microseconds(static_cast<int64_t>(rng() % 900))));
    w.advance(now_tick(), [&](TimerEntry* e) {
      fired_at[static_cast<size_t>(rec_of(e) - recs.data())] = clock.now();
    });
  }
  for (size_t i = 0; i < recs.size(); ++i) {
    CAPTURE(i);
    CHECK(fired_at[i] >= epoch + timeouts[i]);
    CHECK(fired_at[i] < epoch + timeouts[i] + absl::Milliseconds(2));
  }

  clock.set(epoch + absl::Seconds(10));
  CHECK(now_tick() == 10000);
  clock.advance(absl::Milliseconds(-1));
  CHECK(now_tick() == 9999);
}

TEST_CASE("ManualClock is thread-safe") {
  ManualClock clock;
  std::atomic<bool> done{false};
  bool monotonic = true;
  std::thread reader([&] {
    absl::Time last = clock.now();
    while (!done.load(std::memory_order_acquire)) {
      absl::Time t = clock.now();
      if (t < last) monotonic = false;
      last = t;
    }
  });
  std::vector<std::thread> writers;
  for (int i = 0; i < 2; ++i) {
    writers.emplace_back([&] {
      for (int j = 0; j < 1000; ++j) clock.advance(absl::Milliseconds(1));
    });
  }
  for (std::thread& t : writers) t.join();
  done.store(true, std::memory_order_release);
  reader.join();
  CHECK(monotonic);
  CHECK(clock.now() == absl::UnixEpoch() + absl::Seconds(2));
}

TEST_CASE("SystemClock and monotonic_nanos") {
  SystemClock sys;
  const Clock& clock = sys;
  CHECK(absl::AbsDuration(clock.now() - absl::Now()) < absl::Seconds(5));
  uint64_t a = monotonic_nanos();
  uint64_t b = monotonic_nanos();
  CHECK(a > 0);
  CHECK(b >= a);
}

}  // namespace
}  // namespace weft::internal
