// Stress: scopes, timeouts, aborts and selects, with every fiber accounted
// for. Sized by --scale (stress_util.h).
#include <doctest/doctest.h>

#include <atomic>
#include <cstdio>
#include <random>
#include <stdexcept>
#include <vector>

#include "lifecycle/scope.h"
#include "lifecycle/select.h"
#include "lifecycle/timeout.h"
#include "runtime/runtime.h"
#include "sync/sync.h"
#include "tests/stress_util.h"

namespace weft {
namespace {

struct InjectedError : std::runtime_error {
  InjectedError() : std::runtime_error("injected") {}
};

// Counts a child from spawn until its function object dies (whether or not
// it ever ran): a scope whose count is not zero after join() let a child
// outlive it.
struct Tracked {
  std::atomic<int64_t>* pending;
  explicit Tracked(std::atomic<int64_t>* p) : pending(p) { pending->fetch_add(1); }
  Tracked(Tracked&& o) noexcept : pending(std::exchange(o.pending, nullptr)) {}
  ~Tracked() {
    if (pending != nullptr) pending->fetch_sub(1);
  }
};

struct Totals {
  std::atomic<int64_t> scopes{0}, children{0}, ran{0}, failed_status{0}, failed_exception{0};
  std::atomic<int64_t> joined_ok{0}, joined_failed{0}, joined_cancelled{0}, joined_deadline{0};
  std::atomic<int64_t> outlived{0}, aborts{0}, abort_observed{0}, joiner_cancelled{0};
};

absl::Status run_scope(Totals& t, std::mt19937_64& rng, int depth);

absl::Status child_body(Totals& t, uint64_t seed, int depth) {
  t.ran.fetch_add(1);
  std::mt19937_64 rng(seed);
  switch (rng() % 8) {
    case 0:
      t.failed_status.fetch_add(1);
      return absl::InternalError("injected");
    case 1:
      if (rng() % 2 == 0) {
        t.failed_exception.fetch_add(1);
        throw InjectedError();
      }
      return absl::OkStatus();
    case 2:
    case 3:
      if (depth < 3) return run_scope(t, rng, depth + 1);
      return absl::OkStatus();
    case 4: {
      absl::Status s = with_timeout(absl::Microseconds(static_cast<int64_t>(rng() % 3000)),
                                    [] { return this_fiber::sleep_for(absl::Milliseconds(2)); });
      // Finished in time, timed out, or cancelled with the scope: all fine,
      // but nothing else.
      if (!s.ok() && !absl::IsDeadlineExceeded(s) && !absl::IsCancelled(s)) return absl::DataLossError(s.ToString());
      return absl::OkStatus();
    }
    case 5: {
      // A plain fiber aborted by this one: join reports it, whatever its state.
      auto h = spawn([] {
        Channel<int> never(1);
        return never.recv().status();
      });
      this_fiber::yield();
      h.abort();
      t.aborts.fetch_add(1);
      auto r = h.try_join();
      // kCancelled: the fiber saw the abort in its recv (or this fiber's
      // own scope was cancelled while it joined); kAborted: it never ran.
      if (absl::IsCancelled(r) || absl::IsAborted(r)) {
        t.abort_observed.fetch_add(1);
      } else {
        std::fprintf(stderr, "unexpected join result: %s\n", r.ToString().c_str());
      }
      return absl::OkStatus();
    }
    default:
      return this_fiber::sleep_for(absl::Microseconds(static_cast<int64_t>(rng() % 1500)));
  }
}

absl::Status run_scope(Totals& t, std::mt19937_64& rng, int depth) {
  t.scopes.fetch_add(1);
  std::atomic<int64_t> pending{0};
  absl::Status st;
  try {
    TaskScope scope;
    const int n = 1 + static_cast<int>(rng() % 4);
    for (int i = 0; i < n; ++i) {
      t.children.fetch_add(1);
      uint64_t seed = rng();
      scope.spawn([&t, seed, depth, tracked = Tracked(&pending)] { return child_body(t, seed, depth); });
    }
    if (rng() % 10 == 0) scope.cancel();
    st = scope.join();
  } catch (const InjectedError&) {
    st = absl::AbortedError("exception");
  }
  if (pending.load() != 0) t.outlived.fetch_add(1);
  if (st.ok()) {
    t.joined_ok.fetch_add(1);
  } else if (absl::IsCancelled(st)) {
    t.joined_cancelled.fetch_add(1);
  } else if (absl::IsDeadlineExceeded(st)) {
    t.joined_deadline.fetch_add(1);
  } else {
    t.joined_failed.fetch_add(1);
  }
  return st;
}

TEST_CASE("nested scopes with random failures, aborts, timeouts and cancellations") {
  auto rt = *Runtime::create({.workers = 2});
  const int64_t kScopes = testing::stress_size(10000);
  constexpr int kDrivers = 8;
  Totals t;
  std::atomic<int64_t> top{0};
  rt->block_on([&] {
    std::vector<JoinHandle<void>> drivers;
    for (int d = 0; d < kDrivers; ++d) {
      drivers.push_back(spawn([&, d] {
        std::mt19937_64 rng(1234 + d);
        while (top.fetch_add(1) < kScopes) {
          if (rng() % 5 == 0) {
            (void)with_timeout(absl::Microseconds(static_cast<int64_t>(rng() % 2000)),
                               [&] { return run_scope(t, rng, 0); });
          } else {
            (void)run_scope(t, rng, 0);
          }
        }
      }));
    }
    for (auto& h : drivers) h.join();
  });
  MESSAGE("scopes " << t.scopes.load() << ", children " << t.children.load() << ", ran " << t.ran.load()
                    << ", ok " << t.joined_ok.load() << ", failed " << t.joined_failed.load() << ", cancelled "
                    << t.joined_cancelled.load() << ", deadline " << t.joined_deadline.load());
  CHECK(t.outlived.load() == 0);
  CHECK(t.scopes.load() >= kScopes);
  CHECK(t.joined_ok.load() + t.joined_failed.load() + t.joined_cancelled.load() + t.joined_deadline.load() ==
        t.scopes.load());
  CHECK(t.ran.load() <= t.children.load());
  CHECK(t.abort_observed.load() == t.aborts.load());
  CHECK(t.joined_failed.load() > 0);     // the failures were exercised
  CHECK(t.joined_cancelled.load() > 0);  // and the cancellations
  // Aborted fibers whose joiner was cancelled finish on their own, detached.
  for (int i = 0; i < 5000 && rt->stats().live_fibers != 0; ++i) absl::SleepFor(absl::Milliseconds(1));
  CHECK(rt->stats().live_fibers == 0);
}

TEST_CASE("select storm across 2 workers: send and recv cases, timeouts and cancellations; nothing lost") {
  auto rt = *Runtime::create({.workers = 2});
  const int64_t kPerProducer = testing::stress_size(20000);
  constexpr int kProducers = 4, kConsumers = 4;
  Channel<int64_t> a(3), b(3), out(Channel<int64_t>::kUnbounded);
  std::atomic<int64_t> produced{0}, produced_sum{0}, consumed{0}, consumed_sum{0}, timeouts{0};
  std::atomic<int64_t> cancelled_selects{0};
  rt->block_on([&] {
    std::vector<JoinHandle<void>> hs;
    for (int p = 0; p < kProducers; ++p) {
      hs.push_back(spawn([&, p] {
        for (int64_t i = 1; i <= kPerProducer; ++i) {
          int64_t v = i * kProducers + p;
          for (;;) {
            auto r = select(send(a, v), send(b, v), after(absl::Milliseconds(1)));
            REQUIRE(r.ok());
            if (r->index() == 2) {
              timeouts.fetch_add(1);
              continue;  // not sent: v is still ours, try again
            }
            const absl::Status& sent = r->index() == 0 ? std::get<0>(*r) : std::get<1>(*r);
            REQUIRE(sent.ok());
            break;
          }
          produced.fetch_add(1);
          produced_sum.fetch_add(v);
        }
      }));
    }
    CancellationToken consumers_stop;
    std::vector<JoinHandle<void>> cs;
    for (int c = 0; c < kConsumers; ++c) {
      SpawnOptions opts;
      opts.token = consumers_stop;
      cs.push_back(spawn(opts, [&] {
        for (;;) {
          // A child token cancelled now and then: the select may end with
          // kCancelled, but a value it took is never dropped.
          auto r = with_timeout(absl::Microseconds(300), [&] { return select(recv(a), recv(b)); });
          if (!r.ok()) {
            if (consumers_stop.cancelled()) return;
            cancelled_selects.fetch_add(1);
            continue;
          }
          int64_t v = r->index() == 0 ? *std::get<0>(*r) : *std::get<1>(*r);
          consumed.fetch_add(1);
          consumed_sum.fetch_add(v);
        }
      }));
    }
    for (auto& h : hs) h.join();
    while (consumed.load() < produced.load()) (void)this_fiber::sleep_for(absl::Milliseconds(1));
    consumers_stop.cancel();
    for (auto& h : cs) h.join();
  });
  MESSAGE("produced " << produced.load() << ", send timeouts " << timeouts.load() << ", cancelled selects "
                      << cancelled_selects.load());
  CHECK(produced.load() == kPerProducer * kProducers);
  CHECK(consumed.load() == produced.load());
  CHECK(consumed_sum.load() == produced_sum.load());
  CHECK(a.size() + b.size() == 0);
}

}  // namespace
}  // namespace weft
