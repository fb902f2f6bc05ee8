#include "lifecycle/timeout.h"

#include <doctest/doctest.h>

#include <atomic>
#include <string>

#include "runtime/runtime.h"
#include "sync/sync.h"

namespace weft {
namespace {

std::unique_ptr<Runtime> make_rt() { return *Runtime::create({.workers = 2}); }

TEST_CASE("with_timeout cancels the work at the deadline and returns kDeadlineExceeded") {
  auto rt = make_rt();
  (*rt).block_on([] {
    Channel<int> never(1);
    absl::Time start = absl::Now();
    absl::StatusOr<int> r = with_timeout(absl::Milliseconds(30), [&] { return never.recv(); });
    absl::Duration took = absl::Now() - start;
    CHECK(r.status().code() == absl::StatusCode::kDeadlineExceeded);
    CHECK(took >= absl::Milliseconds(29));
    CHECK(took < absl::Seconds(5));
    // The fiber is not cancelled afterwards: its waits work again.
    CHECK(never.send(5).ok());
    CHECK(*never.recv_for(absl::Seconds(1)) == 5);
    CHECK(this_fiber::sleep_for(absl::Milliseconds(1)).ok());
  });
}

TEST_CASE("with_timeout returns fn's result when it finishes in time") {
  auto rt = make_rt();
  (*rt).block_on([] {
    absl::StatusOr<int> r = with_timeout(absl::Seconds(10), [] { return 42; });
    CHECK(*r == 42);
    absl::Status s = with_timeout(absl::Seconds(10), []() -> absl::Status { return absl::NotFoundError("x"); });
    CHECK(s.code() == absl::StatusCode::kNotFound);  // not a timeout: passed through
    absl::Status v = with_timeout(absl::Seconds(10), [] {});
    CHECK(v.ok());
  });
}

TEST_CASE("a plain-value fn cut short by the deadline reports kDeadlineExceeded") {
  auto rt = make_rt();
  (*rt).block_on([] {
    absl::StatusOr<int> r = with_timeout(absl::Milliseconds(10), [] {
      (void)this_fiber::sleep_for(absl::Seconds(30));
      return 7;
    });
    CHECK(absl::IsDeadlineExceeded(r.status()));
  });
}

TEST_CASE("an elapsed deadline cancels at the first wait") {
  auto rt = make_rt();
  (*rt).block_on([] {
    absl::Status s = with_deadline(absl::Now() - absl::Seconds(1),
                                   [] { return this_fiber::sleep_for(absl::Seconds(30)); });
    CHECK(absl::IsDeadlineExceeded(s));
  });
}

TEST_CASE("nested timeouts: the inner one fires first; the outer one still applies after") {
  auto rt = make_rt();
  (*rt).block_on([] {
    absl::Time start = absl::Now();
    absl::Status outer = with_timeout(absl::Milliseconds(80), [&]() -> absl::Status {
      absl::Status inner = with_timeout(absl::Milliseconds(10), [] { return this_fiber::sleep_for(absl::Seconds(30)); });
      CHECK(absl::IsDeadlineExceeded(inner));
      CHECK(absl::Now() - start < absl::Milliseconds(70));
      return this_fiber::sleep_for(absl::Seconds(30));  // ends at the outer deadline
    });
    CHECK(absl::IsDeadlineExceeded(outer));
    CHECK(absl::Now() - start >= absl::Milliseconds(79));
  });
}

TEST_CASE("the caller's own cancellation comes through as kCancelled, not a timeout") {
  auto rt = make_rt();
  CancellationToken stop;
  SpawnOptions opts;
  opts.token = stop;
  Event started;  // cancelled before it starts, the fiber would never run
  auto h = rt->spawn(
      [&] {
        started.set();
        return with_timeout(absl::Seconds(30), [] { return this_fiber::sleep_for(absl::Seconds(60)); });
      },
      opts);
  REQUIRE(started.wait().ok());
  stop.cancel();
  CHECK(absl::IsCancelled(h.join()));
}

TEST_CASE("fibers started in a scope inside with_timeout are finished when it returns") {
  auto rt = make_rt();
  (*rt).block_on([] {
    // A fiber the deadline cancels before it starts never runs (under load
    // 20 ms may pass first), so the check is that every fiber that started
    // has finished, not that all 8 did.
    std::atomic<int> started{0};
    std::atomic<int> finished{0};
    absl::Status s = with_timeout(absl::Milliseconds(20), [&] {
      return scoped([&](TaskScope& scope) {
        for (int i = 0; i < 8; ++i) {
          scope.spawn([&] {
            started.fetch_add(1);
            (void)this_fiber::sleep_for(absl::Seconds(30));
            finished.fetch_add(1);
          });
        }
      });
    });
    CHECK(absl::IsDeadlineExceeded(s));
    CHECK(finished.load() == started.load());
  });
}

}  // namespace
}  // namespace weft
