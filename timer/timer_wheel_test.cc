#include "timer/timer_wheel.h"

#include <doctest/doctest.h>

#include <map>
#include <memory>
#include <random>
#include <set>
#include <vector>

#include "tests/test_util.h"
#include "timer/manual_clock.h"

namespace weft {
namespace {

struct Rec {
  TimerEntry e;
  uint64_t fired_at = 0;
  int fires = 0;
};

// Advances one tick at a time from `from` to `to`, recording the tick at
// which each entry fires.
void step(TimerWheel& w, uint64_t to) {
  while (w.now() < to) {
    uint64_t t = w.now() + 1;
    w.advance(t, [&](TimerEntry* e) {
      auto* r = reinterpret_cast<Rec*>(e);
      r->fired_at = t;
      ++r->fires;
    });
  }
}

TEST_CASE("entries on every level fire at exactly their tick") {
  const uint64_t deadlines[] = {1,    63,     64,     65,    4095,
                                4096, 262143, 262144, (uint64_t{1} << 30) + 17};
  for (uint64_t d : deadlines) {
    CAPTURE(d);
    SUBCASE("one big jump") {
      TimerWheel w(0);
      Rec r;
      w.insert(&r.e, d);
      w.advance(d - 1, [&](TimerEntry*) { ++r.fires; });
      CHECK(r.fires == 0);
      CHECK(w.advance(d, [&](TimerEntry*) { ++r.fires; }) == 1);
      CHECK(r.fires == 1);
      CHECK_FALSE(r.e.linked());
      CHECK(w.size() == 0);
    }
    SUBCASE("tick by tick near the deadline") {
      TimerWheel w(0);
      Rec r;
      w.insert(&r.e, d);
      if (d > 3) w.advance(d - 3, [&](TimerEntry*) { ++r.fires; });
      CHECK(r.fires == 0);
      step(w, d + 2);
      CHECK(r.fires == 1);
      CHECK(r.fired_at == d);
    }
  }
}

TEST_CASE("deadlines beyond the wheel's range still fire on time") {
  TimerWheel w(5);
  Rec r;
  uint64_t d = TimerWheel::kRange * 3 + 12345;
  w.insert(&r.e, d);
  CHECK(w.next_deadline().has_value());
  CHECK(*w.next_deadline() <= d);
  w.advance(d - 1, [&](TimerEntry*) { ++r.fires; });
  CHECK(r.fires == 0);
  step(w, d + 1);
  CHECK(r.fires == 1);
  CHECK(r.fired_at == d);
}

TEST_CASE("cancel before firing; cancel of an unlinked entry") {
  TimerWheel w(0);
  Rec a, b;
  w.insert(&a.e, 100);
  w.insert(&b.e, 5000);
  CHECK(w.size() == 2);
  CHECK(w.cancel(&a.e));
  CHECK_FALSE(w.cancel(&a.e));
  CHECK(w.size() == 1);
  int fired = 0;
  w.advance(10000, [&](TimerEntry* e) {
    CHECK(e == &b.e);
    ++fired;
  });
  CHECK(fired == 1);
  CHECK_FALSE(w.cancel(&b.e));
}

TEST_CASE("a deadline not after now fires on the next advance") {
  TimerWheel w(50);
  Rec a, b;
  w.insert(&a.e, 50);
  w.insert(&b.e, 3);
  CHECK(w.next_deadline() == std::optional<uint64_t>(50));
  CHECK(w.advance(50, [](TimerEntry*) {}) == 2);
  CHECK(w.size() == 0);
}

TEST_CASE("callbacks may cancel and re-insert entries") {
  TimerWheel w(0);
  Rec a, b, c;
  w.insert(&a.e, 10);
  w.insert(&b.e, 10);
  w.insert(&c.e, 11);
  std::vector<TimerEntry*> order;
  size_t n = w.advance(20, [&](TimerEntry* e) {
    order.push_back(e);
    if (order.size() == 1) {
      // Whichever of a and b fires first cancels the other and c.
      w.cancel(e == &a.e ? &b.e : &a.e);
      w.cancel(&c.e);
      w.insert(e, 15);  // re-insert itself later within this advance
    }
  });
  CHECK(n == 2);
  REQUIRE(order.size() == 2);
  CHECK(order[0] == order[1]);
  CHECK(w.size() == 0);
}

TEST_CASE("next_deadline is a lower bound that leads to every entry") {
  std::vector<std::unique_ptr<Rec>> recs;  // outlives the wheel
  TimerWheel w(0);
  std::mt19937_64 rng(7);
  for (int i = 0; i < 300; ++i) {
    recs.push_back(std::make_unique<Rec>());
    uint64_t d = 1 + rng() % 5000000;
    w.insert(&recs.back()->e, d);
  }
  uint64_t earliest = ~uint64_t{0};
  for (auto& r : recs) earliest = std::min(earliest, r->e.deadline());
  CHECK(*w.next_deadline() <= earliest);
  int loops = 0;
  while (auto nd = w.next_deadline()) {
    uint64_t t = *nd;
    w.advance(t, [&](TimerEntry* e) {
      auto* r = reinterpret_cast<Rec*>(e);
      r->fired_at = t;
      ++r->fires;
    });
    ++loops;
  }
  for (auto& r : recs) {
    CHECK(r->fires == 1);
    CHECK(r->fired_at == r->e.deadline());
  }
  CHECK(loops < 300 * 8);
}

TEST_CASE("an empty wheel jumps a billion ticks at once") {
  TimerWheel w(0);
  CHECK_FALSE(w.next_deadline().has_value());
  CHECK(w.advance(1000000000, [](TimerEntry*) {}) == 0);
  CHECK(w.now() == 1000000000);
  Rec r;
  w.insert(&r.e, w.now() + 1000000000);
  CHECK(w.advance(w.now() + 1000000000, [&](TimerEntry*) { ++r.fires; }) == 1);
}

// Random inserts, cancels and advances checked against a multimap model.
TEST_CASE("differential test against a reference model") {
  std::mt19937_64 rng(12345);
  const int kOps = 20000 * static_cast<int>(weft::testing::Scale());
  std::vector<std::unique_ptr<Rec>> pool;  // outlives the wheel
  for (int i = 0; i < 512; ++i) pool.push_back(std::make_unique<Rec>());
  TimerWheel w(1000);
  std::multimap<uint64_t, Rec*> model;
  auto model_remove = [&](Rec* r) {
    for (auto it = model.begin(); it != model.end(); ++it) {
      if (it->second == r) {
        model.erase(it);
        return;
      }
    }
  };
  for (int op = 0; op < kOps; ++op) {
    int kind = static_cast<int>(rng() % 10);
    Rec* r = pool[rng() % pool.size()].get();
    if (kind < 5) {
      if (r->e.linked()) continue;
      uint64_t span = (rng() % 4 == 0) ? (uint64_t{1} << (rng() % 34)) : 200;
      uint64_t d = w.now() + rng() % span;
      w.insert(&r->e, d);
      model.emplace(d, r);
    } else if (kind < 7) {
      bool was = r->e.linked();
      CHECK(w.cancel(&r->e) == was);
      if (was) model_remove(r);
    } else {
      uint64_t to = w.now() + ((rng() % 8 == 0) ? rng() % (uint64_t{1} << 30) : rng() % 100);
      std::multiset<Rec*> expect;
      for (auto it = model.begin(); it != model.end() && it->first <= to;) {
        expect.insert(it->second);
        it = model.erase(it);
      }
      std::multiset<Rec*> got;
      w.advance(to, [&](TimerEntry* e) { got.insert(reinterpret_cast<Rec*>(e)); });
      CHECK(got == expect);
      CHECK(w.size() == model.size());
    }
  }
}

TEST_CASE("a manual clock drives the wheel in 1 ms ticks") {
  ManualClock clock(absl::FromUnixSeconds(1000));
  const absl::Time epoch = clock.now();
  auto tick = [&] { return static_cast<uint64_t>(absl::ToInt64Milliseconds(clock.now() - epoch)); };
  TimerWheel w(tick());
  Rec r;
  w.insert(&r.e, tick() + 250);
  clock.advance(absl::Milliseconds(249));
  w.advance(tick(), [&](TimerEntry*) { ++r.fires; });
  CHECK(r.fires == 0);
  clock.advance(absl::Milliseconds(1));
  w.advance(tick(), [&](TimerEntry*) { ++r.fires; });
  CHECK(r.fires == 1);
  clock.set(epoch + absl::Seconds(10));
  CHECK(tick() == 10000);
}

}  // namespace
}  // namespace weft
