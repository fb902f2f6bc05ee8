#include "lifecycle/scope.h"

#include <doctest/doctest.h>

#include <atomic>
#include <stdexcept>
#include <string>
#include <vector>

#include "runtime/runtime.h"
#include "sync/sync.h"

namespace weft {
namespace {

std::unique_ptr<Runtime> make_rt(int workers = 2) { return *Runtime::create({.workers = workers}); }

TEST_CASE("scoped() waits for every fiber and collects values in spawn order") {
  auto rt = make_rt();
  (*rt).block_on([] {
    std::vector<ScopeHandle<int>> hs;
    std::atomic<int> finished{0};
    absl::Status st = scoped([&](TaskScope& scope) {
      for (int i = 0; i < 20; ++i) {
        hs.push_back(scope.spawn([i, &finished] {
          (void)this_fiber::sleep_for(absl::Milliseconds(20 - i));
          finished.fetch_add(1);
          return i * i;
        }));
      }
    });
    CHECK(st.ok());
    CHECK(finished.load() == 20);  // none outlived the scope
    for (int i = 0; i < 20; ++i) CHECK(hs[static_cast<size_t>(i)].value() == i * i);
  });
}

TEST_CASE("the first failing status cancels the siblings and comes out of join()") {
  auto rt = make_rt();
  (*rt).block_on([] {
    std::atomic<int> cancelled{0}, started{0};
    TaskScope scope;
    for (int i = 0; i < 5; ++i) {
      scope.spawn([&]() -> absl::Status {
        started.fetch_add(1);
        absl::Status s = this_fiber::sleep_for(absl::Seconds(30));
        if (absl::IsCancelled(s)) cancelled.fetch_add(1);
        return s;
      });
    }
    // Fails once every sibling runs: a sibling cancelled before it starts
    // never runs (and would not count itself).
    scope.spawn([&]() -> absl::Status {
      while (started.load() < 5) (void)this_fiber::sleep_for(absl::Milliseconds(1));
      return absl::NotFoundError("row 7");
    });
    absl::Time start = absl::Now();
    absl::Status st = scope.join();
    CHECK(st.code() == absl::StatusCode::kNotFound);
    CHECK(st.message() == "row 7");
    CHECK(cancelled.load() == 5);
    CHECK(absl::Now() - start < absl::Seconds(10));
    CHECK(scope.running() == 0);
  });
}

TEST_CASE("a child's slot is released before join() can return") {
  // The slot holds what the child returned, which may share what it owns
  // with what join() returns (a status's message, whose reference count
  // lives in abseil, where TSan cannot see it). So the child's side drops
  // the slot before the scope counts the child finished: a release after
  // that could free the message on the child's worker after the joiner
  // had read it, unordered with those reads as far as TSan knows.
  struct Probe {
    TaskScope* scope = nullptr;
    std::atomic<int64_t>* running_at_release = nullptr;
    Probe(TaskScope* s, std::atomic<int64_t>* r) : scope(s), running_at_release(r) {}
    Probe(Probe&& o) noexcept
        : scope(std::exchange(o.scope, nullptr)), running_at_release(o.running_at_release) {}
    Probe& operator=(Probe&&) = delete;
    ~Probe() {
      if (scope != nullptr) running_at_release->store(scope->running());
    }
  };
  auto rt = make_rt();
  (*rt).block_on([] {
    for (int i = 0; i < 50; ++i) {
      std::atomic<int64_t> running_at_release{-1};
      std::atomic<bool> handle_gone{false};
      TaskScope scope;
      (void)scope.spawn([&] {
        while (!handle_gone.load()) this_fiber::yield();
        return Probe(&scope, &running_at_release);
      });
      handle_gone.store(true);  // the child's reference is the slot's last
      CHECK(scope.join().ok());
      CHECK(running_at_release.load() == 1);  // still counted: join() waited for the release
    }
    // A failing status comes out of join() whole.
    const std::string why(48, 'x');  // too long to be stored inline
    TaskScope scope;
    (void)scope.spawn([&]() -> absl::Status { return absl::NotFoundError(why); });
    absl::Status st = scope.join();
    CHECK(st.code() == absl::StatusCode::kNotFound);
    CHECK(st.message() == why);
  });
}

TEST_CASE("an exception in a child cancels the siblings and is rethrown by join()") {
  auto rt = make_rt();
  (*rt).block_on([] {
    std::atomic<int> cancelled{0};
    Event started;
    TaskScope scope;
    scope.spawn([&] {
      Channel<int> never(1);
      started.set();
      if (absl::IsCancelled(never.recv().status())) cancelled.fetch_add(1);
    });
    // Throws once the sibling runs: cancelled before it starts, it would
    // never run.
    scope.spawn([&] {
      (void)started.wait();
      throw std::runtime_error("boom");
    });
    CHECK_THROWS_WITH_AS((void)scope.join(), "boom", std::runtime_error);
    CHECK(cancelled.load() == 1);
  });
}

TEST_CASE("scoped(): the body's failing status comes first, even over a child's exception") {
  auto rt = *Runtime::create({.workers = 2});
  rt->block_on([] {
    bool threw = false;
    absl::Status st;
    try {
      st = scoped([](TaskScope& s) -> absl::Status {
        Event thrown;
        s.spawn([&thrown] {
          thrown.set();
          throw std::runtime_error("child");
        });
        (void)thrown.wait();
        (void)this_fiber::sleep_for(absl::Milliseconds(20));  // the child has failed the scope
        return absl::InternalError("body");
      });
    } catch (const std::runtime_error&) {
      threw = true;
    }
    CHECK_FALSE(threw);
    CHECK(st.code() == absl::StatusCode::kInternal);
    CHECK(st.message() == "body");
  });
}

TEST_CASE("scopes nest: cancelling the outer scope reaches the inner scope's fibers") {
  auto rt = make_rt();
  (*rt).block_on([] {
    std::atomic<int> inner_cancelled{0};
    TaskScope outer;
    WaitGroup started(3);
    outer.spawn([&]() -> absl::Status {
      return scoped([&](TaskScope& inner) {
        for (int i = 0; i < 3; ++i) {
          inner.spawn([&] {
            started.done();
            if (absl::IsCancelled(this_fiber::sleep_for(absl::Seconds(30)))) inner_cancelled.fetch_add(1);
          });
        }
      });
    });
    CHECK(started.wait().ok());
    outer.cancel();
    CHECK(absl::IsCancelled(outer.join()));
    CHECK(inner_cancelled.load() == 3);
  });
}

TEST_CASE("cancelling the fiber that owns a scope cancels its children; join() still waits for them") {
  auto rt = make_rt();
  std::atomic<int> child_done{0};
  CancellationToken stop;
  SpawnOptions opts;
  opts.token = stop;
  WaitGroup started(4);  // a child cancelled before it starts would never run
  auto h = rt->spawn(
      [&]() -> absl::Status {
        TaskScope scope;
        for (int i = 0; i < 4; ++i) {
          scope.spawn([&] {
            started.done();
            (void)this_fiber::sleep_for(absl::Seconds(30));
            // Still waits (shielded) after the cancellation: the scope must
            // not end before this runs.
            this_fiber::CancellationShield shield;
            (void)this_fiber::sleep_for(absl::Milliseconds(10));
            child_done.fetch_add(1);
          });
        }
        return scope.join();
      },
      opts);
  REQUIRE(started.wait().ok());
  stop.cancel();
  absl::Status st = h.join();
  CHECK(absl::IsCancelled(st));
  CHECK(child_done.load() == 4);
}

TEST_CASE("a fiber spawned in a cancelled scope never runs") {
  auto rt = make_rt();
  (*rt).block_on([] {
    std::atomic<int> ran{0};
    TaskScope scope;
    scope.cancel();
    auto h = scope.spawn([&] {
      ran.fetch_add(1);
      return 1;
    });
    CHECK(absl::IsCancelled(scope.join()));
    CHECK(ran.load() == 0);
    CHECK_FALSE(h.has_value());
  });
}

TEST_CASE("race() returns the first result and cancels and waits for the rest") {
  auto rt = make_rt();
  (*rt).block_on([] {
    std::atomic<int> losers_cancelled{0};
    auto slow = [&]() -> absl::StatusOr<std::string> {
      absl::Status s = this_fiber::sleep_for(absl::Seconds(30));
      if (absl::IsCancelled(s)) losers_cancelled.fetch_add(1);
      return s;
    };
    auto fast = []() -> absl::StatusOr<std::string> {
      (void)this_fiber::sleep_for(absl::Milliseconds(5));
      return std::string("fast");
    };
    absl::StatusOr<std::string> r = race(slow, fast, slow);
    REQUIRE(r.ok());
    CHECK(*r == "fast");
    CHECK(losers_cancelled.load() == 2);  // finished before race() returned
  });
}

TEST_CASE("race() rethrows the first exception") {
  auto rt = make_rt();
  (*rt).block_on([] {
    auto thrower = []() -> int { throw std::logic_error("first"); };
    auto sleeper = []() -> int {
      (void)this_fiber::sleep_for(absl::Seconds(30));
      return 2;
    };
    CHECK_THROWS_WITH_AS(race(thrower, sleeper), "first", std::logic_error);
  });
}

TEST_CASE("all() returns every value in order, or the first failure") {
  auto rt = make_rt();
  (*rt).block_on([] {
    auto r = all([] { return 1; }, []() -> absl::StatusOr<std::string> { return std::string("two"); },
                  [] {}, []() -> absl::Status { return absl::OkStatus(); });
    REQUIRE(r.ok());
    CHECK(std::get<0>(*r) == 1);
    CHECK(std::get<1>(*r) == "two");

    std::atomic<int> cancelled{0};
    auto failed = all(
        [&]() -> absl::Status {
          absl::Status s = this_fiber::sleep_for(absl::Seconds(30));
          if (absl::IsCancelled(s)) cancelled.fetch_add(1);
          return s;
        },
        []() -> absl::StatusOr<int> {
          (void)this_fiber::sleep_for(absl::Milliseconds(5));  // the sleeper is parked by now
          return absl::PermissionDeniedError("no");
        });
    CHECK(failed.status().code() == absl::StatusCode::kPermissionDenied);
    CHECK(cancelled.load() == 1);
  });
}

}  // namespace
}  // namespace weft
