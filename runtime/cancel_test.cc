// CancellationToken (children, deadlines, on_cancel registrations), a
// fiber's token (SpawnOptions::token, abort(), this_fiber::cancellation()),
// join and sleep under cancellation, CancellationShield, and
// Runtime::shutdown(grace).
#include "runtime/cancel.h"

#include <doctest/doctest.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "runtime/runtime.h"
#include "sync/sync.h"
#include "tests/stress_util.h"
#include "tests/test_util.h"

namespace weft {
namespace {

using weft::testing::for_each_worker_count;

std::unique_ptr<Runtime> make(int workers) {
  auto rt = Runtime::create({.workers = workers});
  REQUIRE(rt.ok());
  return std::move(*rt);
}

uint64_t parks(const Runtime& rt) { return rt.stats().total(&WorkerStats::parks); }

// await_parks() returns once the runtime has counted `n` parks more than
// `base`: the fibers that were to wait are parked (or just parking).
void await_parks(const Runtime& rt, uint64_t base, uint64_t n) {
  REQUIRE(weft::testing::eventually([&] { return parks(rt) >= base + n; }));
}

// --- CancellationToken --------------------------------------------------------

TEST_CASE("cancel is idempotent and copies share the cancellation") {
  CancellationToken t;
  CancellationToken copy = t;
  CHECK(copy == t);
  CHECK_FALSE(t.cancelled());
  CHECK_FALSE(t.deadline_exceeded());
  t.cancel();
  CHECK(t.cancelled());
  CHECK(copy.cancelled());
  t.cancel();
  copy.cancel();
  CHECK(t.cancelled());
  CHECK_FALSE(t.deadline_exceeded());
  CHECK_FALSE(CancellationToken() == t);
}

TEST_CASE("a child is cancelled with its parent, never the other way") {
  CancellationToken parent;
  CancellationToken a = parent.child();
  CancellationToken b = parent.child();
  CancellationToken grandchild = a.child();
  a.cancel();
  CHECK(a.cancelled());
  CHECK(grandchild.cancelled());
  CHECK_FALSE(parent.cancelled());
  CHECK_FALSE(b.cancelled());
  parent.cancel();
  CHECK(b.cancelled());
  // A child of a cancelled token is born cancelled.
  CHECK(parent.child().cancelled());
  CHECK_FALSE(parent.child().deadline_exceeded());
}

TEST_CASE("a child made on another thread while the parent is cancelled is cancelled or linked") {
  const int64_t kRounds = weft::testing::stress_size(2000);
  int64_t missed = 0;
  for (int64_t r = 0; r < kRounds; ++r) {
    CancellationToken parent;
    std::optional<CancellationToken> child;
    std::thread th([&] { child = parent.child(); });
    parent.cancel();
    th.join();
    missed += !child->cancelled();
  }
  CHECK(missed == 0);
}

TEST_CASE("with_deadline and with_timeout fire on time and report deadline_exceeded") {
  auto rt = make(2);
  rt->block_on([] {
    const absl::Time start = absl::Now();
    CancellationToken t = CancellationToken::with_timeout(absl::Milliseconds(30));
    CancellationToken d = CancellationToken::with_deadline(absl::Now() + absl::Milliseconds(60));
    CancellationToken child = t.child();
    CancellationToken child_deadline = CancellationToken().child(absl::Now() + absl::Milliseconds(40));
    CancellationToken early = CancellationToken::with_timeout(absl::Milliseconds(40));
    early.cancel();  // by hand, before its deadline
    CHECK_FALSE(t.cancelled());
    CHECK_FALSE(child.cancelled());
    while (!t.cancelled() && absl::Now() - start < absl::Seconds(10)) {
      CHECK(this_fiber::sleep_for(absl::Milliseconds(1)).ok());
    }
    const absl::Duration took = absl::Now() - start;
    CHECK(t.cancelled());
    CHECK(took >= absl::Milliseconds(29));
    CHECK(took < absl::Seconds(5));
    CHECK(t.deadline_exceeded());
    CHECK(child.cancelled());
    CHECK(child.deadline_exceeded());  // the parent's deadline
    while (!(d.cancelled() && child_deadline.cancelled()) && absl::Now() - start < absl::Seconds(10)) {
      CHECK(this_fiber::sleep_for(absl::Milliseconds(1)).ok());
    }
    CHECK(absl::Now() - start >= absl::Milliseconds(59));
    CHECK(d.deadline_exceeded());
    CHECK(child_deadline.deadline_exceeded());
    CHECK(early.cancelled());
    CHECK_FALSE(early.deadline_exceeded());  // cancelled first: the deadline does not overwrite it
    // A deadline token dropped before its deadline: the timer must not
    // touch it (ASan).
    { CancellationToken gone = CancellationToken::with_timeout(absl::Milliseconds(5)); }
    CHECK(this_fiber::sleep_for(absl::Milliseconds(20)).ok());
  });
}

TEST_CASE("on_cancel runs once, inline when already cancelled, never after its registration is gone") {
  CancellationToken t;
  int ran = 0, dropped_ran = 0;
  CancelRegistration reg = t.on_cancel([&] { ++ran; });
  CHECK(reg.active());
  {
    CancelRegistration gone = t.on_cancel([&] { ++dropped_ran; });
  }
  CancelRegistration reset = t.on_cancel([&] { ++dropped_ran; });
  reset.reset();
  CHECK_FALSE(reset.active());
  CHECK(ran == 0);
  t.cancel();
  t.cancel();
  CHECK(ran == 1);
  CHECK(dropped_ran == 0);
  CHECK_FALSE(reg.active());
  int late = 0;
  CancelRegistration after = t.on_cancel([&] { ++late; });
  CHECK(late == 1);  // ran inline, on the caller
  CHECK_FALSE(after.active());
  t.cancel();
  CHECK(ran == 1);
  CHECK(late == 1);

  // A child's cancellation runs the child's callbacks, not the parent's.
  CancellationToken p;
  CancellationToken c = p.child();
  int pr = 0, cr = 0;
  CancelRegistration pg = p.on_cancel([&] { ++pr; });
  CancelRegistration cg = c.on_cancel([&] { ++cr; });
  c.cancel();
  CHECK(cr == 1);
  CHECK(pr == 0);
  p.cancel();
  CHECK(pr == 1);
  CHECK(cr == 1);
}

TEST_CASE("a callback may destroy its own registration, and the others still run") {
  CancellationToken t;
  int first = 0, second = 0;
  std::optional<CancelRegistration> self;
  self.emplace(t.on_cancel([&] {
    ++first;
    self.reset();  // returns at once: this is the firing context
  }));
  CancelRegistration other = t.on_cancel([&] { ++second; });
  t.cancel();
  CHECK(first == 1);
  CHECK(second == 1);
  CHECK_FALSE(self.has_value());
}

TEST_CASE("a registration reset while another thread cancels: the callback ran 0 or 1 times, never after reset") {
  const int64_t kRounds = weft::testing::stress_size(4000);
  int64_t ran_total = 0, after_reset = 0, twice = 0;
  for (int64_t r = 0; r < kRounds; ++r) {
    CancellationToken t;
    std::atomic<int> ran{0};
    std::atomic<bool> reset_returned{false};
    std::atomic<int> late{0};
    CancelRegistration reg = t.on_cancel([&] {
      if (reset_returned.load()) late.fetch_add(1);
      ran.fetch_add(1);
      for (int i = 0; i < 50; ++i) std::atomic_signal_fence(std::memory_order_seq_cst);
      if (reset_returned.load()) late.fetch_add(1);
    });
    std::atomic<bool> go{false};
    std::thread th([&] {
      while (!go.load()) {
      }
      t.cancel();
    });
    go.store(true);
    if (r % 2 == 0) std::this_thread::yield();
    reg.reset();
    reset_returned.store(true);
    const int seen = ran.load();
    th.join();
    CHECK(ran.load() == seen);  // nothing ran once reset() returned
    ran_total += ran.load();
    twice += ran.load() > 1;
    after_reset += late.load();
  }
  CHECK(twice == 0);
  CHECK(after_reset == 0);
  CHECK(ran_total <= kRounds);
  MESSAGE("callbacks that ran: " << ran_total << " of " << kRounds);
}

TEST_CASE("deadline tokens and their registrations dropped on another thread around the deadline") {
  // Step 5 of the cancel protocol: a fired timer never touches a freed
  // state, and a registration reset on another thread never runs after.
  const int64_t kRounds = weft::testing::stress_size(2000);
  auto rt = make(2);
  std::atomic<int64_t> ran{0}, late{0};
  struct Entry {
    CancellationToken token;
    CancelRegistration reg;
    std::shared_ptr<std::atomic<bool>> reset_returned;
  };
  for (int64_t r = 0; r < kRounds; r += 64) {
    auto batch = rt->block_on([&] {
      std::vector<Entry> v;
      for (int64_t i = 0; i < 64; ++i) {
        auto flag = std::make_shared<std::atomic<bool>>(false);
        CancellationToken t = CancellationToken::with_timeout(absl::Microseconds(100 * (i % 20)));
        CancelRegistration reg = t.on_cancel([&ran, &late, flag] {
          if (flag->load()) late.fetch_add(1);
          ran.fetch_add(1);
        });
        v.push_back(Entry{t, std::move(reg), flag});
      }
      return v;
    });
    std::thread dropper([&batch, r] {
      for (size_t i = 0; i < batch.size(); ++i) {
        if ((static_cast<int64_t>(i) + r) % 3 == 0) std::this_thread::yield();
        batch[i].reg.reset();
        batch[i].reset_returned->store(true);
        if (i % 2 == 0) batch[i].token = CancellationToken();  // drop the last reference now
      }
      batch.clear();
    });
    dropper.join();
  }
  // Let any timer still armed fire on nothing.
  rt->block_on([] { CHECK(this_fiber::sleep_for(absl::Milliseconds(5)).ok()); });
  CHECK(late.load() == 0);
  CHECK(ran.load() <= kRounds + 63);
  MESSAGE("deadline callbacks that ran before their reset: " << ran.load());
}

// --- a fiber's token -----------------------------------------------------------

TEST_CASE("this_fiber::cancellation() is cancelled by JoinHandle::abort(), before the woken wait returns") {
  // Many rounds: abort() claims the parked fiber and cancels its token; the
  // fiber, woken with kCancelled, must already find the token cancelled.
  const int64_t kRounds = weft::testing::stress_size(300);
  for_each_worker_count({1, 2}, [&](int n) {
    auto rt = make(n);
    Event never;
    int64_t not_cancelled = 0, wrong_code = 0;
    for (int64_t r = 0; r < kRounds; ++r) {
      const uint64_t base = parks(*rt);
      auto h = rt->spawn([&] {
        CancellationToken mine = this_fiber::cancellation();
        bool same = mine == this_fiber::cancellation();
        bool fresh = !mine.cancelled();
        absl::Status s = never.wait();
        bool consistent = same && fresh && this_fiber::cancelled() && !mine.deadline_exceeded();
        return std::make_pair(s.code(), consistent && mine.cancelled());
      });
      await_parks(*rt, base, 1);
      h.abort();
      h.abort();  // idempotent
      auto [code, token_cancelled] = h.join();
      wrong_code += code != absl::StatusCode::kCancelled;
      not_cancelled += !token_cancelled;
    }
    CHECK(wrong_code == 0);
    CHECK(not_cancelled == 0);
  });
}

TEST_CASE("abort() before the fiber asks for its token: the token is born cancelled") {
  auto rt = make(2);
  std::atomic<bool> started{false}, go{false};
  auto h = rt->spawn([&] {
    started.store(true);
    while (!go.load()) this_fiber::yield();
    CHECK(this_fiber::cancelled());
    return this_fiber::cancellation().cancelled();
  });
  while (!started.load()) std::this_thread::yield();
  h.abort();
  go.store(true);
  CHECK(h.join());
}

TEST_CASE("spawn({.token}) fibers' waits return kCancelled after token.cancel()") {
  for_each_worker_count({1, 2, 4}, [](int n) {
    auto rt = make(n);
    CancellationToken t;
    Channel<int> ch(1);
    Semaphore sem(0);
    const int kFibers = 12;
    const uint64_t base = parks(*rt);
    std::vector<JoinHandle<absl::StatusCode>> hs;
    for (int i = 0; i < kFibers; ++i) {
      hs.push_back(rt->spawn(
          [&, i] {
            if (i % 3 == 0) return ch.recv().status().code();
            if (i % 3 == 1) return sem.acquire().code();
            return this_fiber::sleep_for(absl::Hours(1)).code();
          },
          {.token = t}));
    }
    await_parks(*rt, base, kFibers);
    const absl::Time start = absl::Now();
    t.cancel();
    for (auto& h : hs) CHECK(h.join() == absl::StatusCode::kCancelled);
    CHECK(absl::Now() - start < absl::Seconds(5));
    CHECK(sem.available() == 0);
    CHECK(ch.size() == 0);
  });
}

TEST_CASE("a fiber's token with a deadline ends its waits at the deadline") {
  auto rt = make(2);
  rt->block_on([] {
    CancellationToken t = CancellationToken::with_timeout(absl::Milliseconds(40));
    const absl::Time start = absl::Now();
    Channel<int> ch(1);
    auto h = spawn({.token = t}, [&] {
      absl::Status s = ch.recv().status();
      return std::make_pair(s.code(), this_fiber::cancellation().deadline_exceeded());
    });
    auto [code, deadline] = h.join();
    CHECK(code == absl::StatusCode::kCancelled);
    CHECK(deadline);
    CHECK(absl::Now() - start >= absl::Milliseconds(39));
    CHECK(absl::Now() - start < absl::Seconds(5));
  });
}

TEST_CASE("abort (or a cancelled token) before start: the fiber never runs") {
  auto rt = make(1);
  rt->block_on([] {
    std::atomic<int> ran{0};
    // One worker, and this fiber does not suspend before abort(): the
    // spawned fibers are still queued.
    auto a = spawn([&] { ran.fetch_add(1); return 1; });
    auto b = spawn([&] { ran.fetch_add(1); return 2; });
    CancellationToken t;
    auto c = spawn({.token = t}, [&] { ran.fetch_add(1); });
    a.abort();
    b.abort();
    t.cancel();
    CHECK_THROWS_AS(a.join(), FiberCancelled);
    absl::StatusOr<int> br = b.try_join();
    CHECK(br.status().code() == absl::StatusCode::kAborted);
    CHECK(c.try_join().code() == absl::StatusCode::kAborted);
    CancellationToken dead;
    dead.cancel();
    auto d = spawn({.token = dead}, [&] { ran.fetch_add(1); });
    CHECK_THROWS_AS(d.join(), FiberCancelled);
    CHECK(ran.load() == 0);
    // abort() on a finished fiber changes nothing.
    auto e = spawn([] { return 7; });
    CHECK(e.join_for(absl::Seconds(10)).value() == 7);
    auto f = spawn([] { return 8; });
    while (!f.is_finished()) this_fiber::yield();
    f.abort();
    CHECK(f.join() == 8);
  });
}

TEST_CASE("a cancelled joiner: join throws WaitCancelled, try_join is kCancelled, the handle stays joinable") {
  for_each_worker_count({1, 2}, [](int n) {
    auto rt = make(n);
    Event release;
    CancellationToken t;
    const uint64_t base = parks(*rt);
    auto outer = rt->spawn(
        [&] {
          auto inner = spawn([&] {
            CHECK(release.wait().ok());
            return 42;
          });
          bool threw = false;
          try {
            (void)inner.join();
          } catch (const WaitCancelled&) {
            threw = true;
          }
          CHECK(threw);
          CHECK(inner.joinable());
          CHECK(inner.try_join().status().code() == absl::StatusCode::kCancelled);  // at once
          CHECK(inner.join_for(absl::Seconds(30)).status().code() == absl::StatusCode::kCancelled);
          CHECK(inner.joinable());
          CHECK_FALSE(inner.is_finished());
          return inner;  // still joinable, by someone not cancelled
        },
        {.token = t});
    await_parks(*rt, base, 2);  // inner on the event, outer in join()
    t.cancel();
    JoinHandle<int> inner = outer.join();
    REQUIRE(inner.joinable());
    release.set();
    CHECK(inner.join() == 42);
  });
}

TEST_CASE("join_for and join_until time out with kDeadlineExceeded and keep the handle") {
  auto rt = make(2);
  rt->block_on([] {
    Event release;
    auto h = spawn([&] {
      CHECK(release.wait().ok());
      return 5;
    });
    const absl::Time start = absl::Now();
    absl::StatusOr<int> r = h.join_for(absl::Milliseconds(30));
    CHECK(r.status().code() == absl::StatusCode::kDeadlineExceeded);
    CHECK(absl::Now() - start >= absl::Milliseconds(29));
    CHECK(h.joinable());
    CHECK(h.join_until(absl::Now() + absl::Milliseconds(10)).status().code() ==
          absl::StatusCode::kDeadlineExceeded);
    CHECK(h.join_until(absl::Now() - absl::Seconds(1)).status().code() == absl::StatusCode::kDeadlineExceeded);
    CHECK(h.joinable());
    release.set();
    absl::StatusOr<int> ok = h.join_for(absl::Seconds(30));
    REQUIRE(ok.ok());
    CHECK(*ok == 5);
    CHECK_FALSE(h.joinable());

    // A void fiber: try_join is a plain Status.
    auto v = spawn([] {});
    CHECK(v.try_join().ok());
    // A fiber's exception is rethrown by try_join.
    auto x = spawn([]() -> int { throw std::runtime_error("boom"); });
    CHECK_THROWS_WITH_AS((void)x.try_join(), "boom", std::runtime_error);
  });
}

TEST_CASE("sleep_for returns kCancelled promptly, and at once when already cancelled") {
  auto rt = make(2);
  const uint64_t base = parks(*rt);
  auto h = rt->spawn([] {
    const absl::Time start = absl::Now();
    absl::Status s = this_fiber::sleep_for(absl::Seconds(30));
    return std::make_pair(s.code(), absl::Now() - start);
  });
  await_parks(*rt, base, 1);
  h.abort();
  auto [code, took] = h.join();
  CHECK(code == absl::StatusCode::kCancelled);
  CHECK(took < absl::Seconds(5));

  auto already = rt->spawn([] {
    this_fiber::cancellation().cancel();
    const absl::Time start = absl::Now();
    absl::Status a = this_fiber::sleep_for(absl::Seconds(30));
    absl::Status b = this_fiber::sleep_until(absl::Now() + absl::Seconds(30));
    absl::Status c = this_fiber::sleep_for(absl::ZeroDuration());
    absl::Status d = this_fiber::sleep_for(absl::InfiniteDuration());
    CHECK(absl::Now() - start < absl::Seconds(5));
    return a.code() == absl::StatusCode::kCancelled && b.code() == absl::StatusCode::kCancelled &&
           c.code() == absl::StatusCode::kCancelled && d.code() == absl::StatusCode::kCancelled;
  });
  CHECK(already.join());
  // Not cancelled, a sleep that runs out is OK.
  CHECK(rt->block_on([] { return this_fiber::sleep_for(absl::Milliseconds(2)); }).ok());
}

TEST_CASE("CancellationShield: waits ignore cancellation while it lives, nested") {
  auto rt = make(2);
  CancellationToken t;
  std::atomic<bool> started{false}, go{false};
  auto h = rt->spawn(
      [&] {
        std::vector<absl::StatusCode> codes;
        started.store(true);
        while (!go.load()) this_fiber::yield();
        CHECK(this_fiber::cancelled());
        {
          this_fiber::CancellationShield shield;
          CHECK_FALSE(this_fiber::cancelled());
          codes.push_back(this_fiber::sleep_for(absl::Milliseconds(20)).code());   // OK
          Channel<int> ch(1);
          codes.push_back(ch.recv_for(absl::Milliseconds(20)).status().code());    // kDeadlineExceeded
          {
            this_fiber::CancellationShield nested;
            Semaphore sem(0);
            codes.push_back(sem.acquire_for(absl::Milliseconds(10)).code());       // kDeadlineExceeded
          }
          CHECK_FALSE(this_fiber::cancelled());
          Event ev;
          codes.push_back(ev.wait_for(absl::Milliseconds(10)).code());             // kDeadlineExceeded
        }
        CHECK(this_fiber::cancelled());
        codes.push_back(this_fiber::sleep_for(absl::Seconds(30)).code());          // kCancelled
        return codes;
      },
      {.token = t});
  while (!started.load()) std::this_thread::yield();  // cancelled before it starts, it would never run
  t.cancel();
  go.store(true);
  std::vector<absl::StatusCode> codes = h.join();
  REQUIRE(codes.size() == 5);
  CHECK(codes[0] == absl::StatusCode::kOk);
  CHECK(codes[1] == absl::StatusCode::kDeadlineExceeded);
  CHECK(codes[2] == absl::StatusCode::kDeadlineExceeded);
  CHECK(codes[3] == absl::StatusCode::kDeadlineExceeded);
  CHECK(codes[4] == absl::StatusCode::kCancelled);
}

// --- Runtime::shutdown(grace) --------------------------------------------------

TEST_CASE("shutdown(grace): fibers blocked in recv and sleep finish within the grace") {
  const int kRounds = static_cast<int>(weft::testing::stress_size(20));
  for (int round = 0; round < kRounds; ++round) {
    Channel<int> ch(4);
    std::vector<JoinHandle<std::pair<absl::StatusCode, bool>>> hs;
    auto rt = make(2);
    const uint64_t base = parks(*rt);
    for (int i = 0; i < 10; ++i) {
      hs.push_back(rt->spawn([&, i] {
        CancellationToken mine = this_fiber::cancellation();
        absl::StatusCode code;
        if (i % 2 == 0) {
          for (;;) {
            auto v = ch.recv();
            if (!v.ok()) {
              code = v.status().code();
              break;
            }
          }
        } else {
          code = this_fiber::sleep_for(absl::Hours(1)).code();
        }
        // Woken by the drain, the fiber finds its token cancelled.
        return std::make_pair(code, mine.cancelled());
      }));
    }
    await_parks(*rt, base, 10);
    ShutdownReport report = rt->shutdown(absl::Seconds(20));
    CHECK(report.cancelled == 10);
    CHECK(report.left == 0);
    CHECK(report.left_fibers.empty());
    CHECK(report.took < absl::Seconds(10));
    for (auto& h : hs) {
      auto [code, token_cancelled] = h.join();
      CHECK(code == absl::StatusCode::kCancelled);
      CHECK(token_cancelled);
    }
    CHECK(rt->stats().live_fibers == 0);
  }
}

TEST_CASE("shutdown(absl::InfiniteDuration()) waits for a fiber that finishes late") {
  // The grace became a deadline by adding INT64_MAX nanoseconds to the
  // clock: an overflow (UB), which wrapped to a deadline in the past, so
  // the drain waited for nothing and reported the fiber left.
  auto rt = make(2);
  std::atomic<bool> finished{false};
  auto slow = rt->spawn([&] {
    this_fiber::CancellationShield s;
    (void)this_fiber::sleep_for(absl::Milliseconds(150));
    finished.store(true);
  });
  REQUIRE(weft::testing::eventually([&] { return parks(*rt) >= 1; }));
  ShutdownReport report = rt->shutdown(absl::InfiniteDuration());
  CHECK(report.left == 0);
  CHECK(finished.load());
  CHECK(report.took >= absl::Milliseconds(100));
  slow.join();
}

TEST_CASE("shutdown(grace): fibers that ignore cancellation are left, named, and unwound") {
  auto rt = make(2);
  std::atomic<bool> stop{false};
  std::atomic<int> unwound{0};
  struct Guard {
    std::atomic<int>* n;
    ~Guard() { n->fetch_add(1); }
  };
  std::atomic<bool> busy_started{false};
  const int busy_line = __LINE__ + 1;
  auto busy = rt->spawn([&] { Guard g{&unwound}; busy_started.store(true); while (!stop.load()) this_fiber::yield(); });
  const int shielded_line = __LINE__ + 1;
  auto shielded = rt->spawn([&] { Guard g{&unwound}; this_fiber::CancellationShield s; (void)this_fiber::sleep_for(absl::Hours(1)); });
  auto polite = rt->spawn([] { return this_fiber::sleep_for(absl::Hours(1)).code(); });
  // busy never parks: wait until it has started, or a loaded machine may
  // still hold it unstarted at the shutdown, which then drops it unrun.
  REQUIRE(weft::testing::eventually(
      [&] { return rt->stats().live_fibers == 3 && parks(*rt) >= 2 && busy_started.load(); }));
  ShutdownReport report = rt->shutdown(absl::Milliseconds(200));
  CHECK(report.cancelled == 3);
  CHECK(report.left == 2);
  CHECK(report.took >= absl::Milliseconds(200));
  REQUIRE(report.left_fibers.size() == 2);
  std::string all = report.left_fibers[0] + "\n" + report.left_fibers[1];
  CAPTURE(all);
  CHECK(all.find("cancel_test.cc:" + std::to_string(busy_line) + ")") != std::string::npos);
  CHECK(all.find("cancel_test.cc:" + std::to_string(shielded_line) + ")") != std::string::npos);
  CHECK(unwound.load() == 2);
  CHECK_THROWS_AS(busy.join(), FiberCancelled);
  CHECK_THROWS_AS(shielded.join(), FiberCancelled);
  CHECK(polite.join() == absl::StatusCode::kCancelled);
  CHECK(rt->stats().live_fibers == 0);
}

TEST_CASE("shutdown(grace): fibers that never started are counted, and cancelled before they run") {
  // One worker, held by a fiber that spawns 50 more and spins until the
  // drain cancels it: the 50 are queued, unstarted, and unregistered (only
  // started fibers are; Scheduler::start_registered).
  auto rt = make(1);
  std::atomic<bool> spawned{false};
  std::atomic<int> ran{0};
  std::atomic<int64_t> live_seen{-1};
  std::vector<JoinHandle<void>> children;
  Runtime* r = rt.get();
  auto holder = rt->spawn([&] {
    CancellationToken mine = this_fiber::cancellation();
    for (int i = 0; i < 50; ++i) children.push_back(spawn([&] { ran.fetch_add(1); }));
    live_seen.store(r->stats().live_fibers);
    spawned.store(true);
    while (!mine.cancelled()) {
    }
  });
  REQUIRE(weft::testing::eventually([&] { return spawned.load(); }));
  CHECK(live_seen.load() == 51);
  CHECK(rt->stats().live_fibers == 51);
  ShutdownReport report = rt->shutdown(absl::Seconds(20));
  CHECK(report.cancelled == 51);
  CHECK(report.left == 0);
  holder.join();
  for (auto& c : children) CHECK_THROWS_AS(c.join(), FiberCancelled);
  CHECK(ran.load() == 0);
  CHECK(rt->stats().live_fibers == 0);
}

TEST_CASE("shutdown(grace): a fiber running since it started, never suspended, is counted and sees the drain") {
  // The fiber neither suspends nor takes a token, so it is not in the
  // registry (Scheduler::register_running): the drain reaches it through
  // draining_, which its cancellation check reads.
  auto rt = make(2);
  std::atomic<bool> running{false};
  auto spinner = rt->spawn([&] {
    running.store(true);
    const auto give_up = std::chrono::steady_clock::now() + std::chrono::seconds(30);
    while (!this_fiber::cancelled()) {
      if (std::chrono::steady_clock::now() > give_up) return false;
    }
    return true;
  });
  REQUIRE(weft::testing::eventually([&] { return running.load(); }));
  CHECK(rt->stats().live_fibers == 1);
  ShutdownReport report = rt->shutdown(absl::Seconds(10));
  CHECK(report.cancelled == 1);
  CHECK(report.left == 0);
  CHECK(spinner.join());
  CHECK(rt->stats().live_fibers == 0);
}

TEST_CASE("shutdown(grace): a fiber that never suspends and ignores the drain is left and named") {
  auto rt = make(2);
  std::atomic<bool> running{false};
  const int line = __LINE__ + 1;
  auto hog = rt->spawn([&] {
    running.store(true);
    const auto until = std::chrono::steady_clock::now() + std::chrono::milliseconds(600);
    while (std::chrono::steady_clock::now() < until) {
    }
  });
  REQUIRE(weft::testing::eventually([&] { return running.load(); }));
  ShutdownReport report = rt->shutdown(absl::Milliseconds(100));
  CHECK(report.left == 1);
  REQUIRE(report.left_fibers.size() == 1);
  CAPTURE(report.left_fibers[0]);
  CHECK(report.left_fibers[0].find("cancel_test.cc:" + std::to_string(line) + ")") != std::string::npos);
  hog.join();  // it ran to its end: nothing could unwind it
  CHECK(rt->stats().live_fibers == 0);
}

TEST_CASE("after the drain starts, spawns are cancelled: from outside at once, from fibers before they run") {
  auto rt = make(2);
  std::atomic<bool> started{false}, draining{false}, inner_ran{false};
  std::atomic<int> inner_outcome{0};  // 1: FiberCancelled
  auto holder = rt->spawn([&] {
    CancellationToken mine = this_fiber::cancellation();
    this_fiber::CancellationShield shield;
    started.store(true);
    while (!mine.cancelled()) (void)this_fiber::sleep_for(absl::Milliseconds(1));
    // A fiber spawned by a fiber during the drain starts cancelled.
    auto child = spawn([&] { inner_ran.store(true); });
    try {
      child.join();
    } catch (const FiberCancelled&) {
      inner_outcome.store(1);
    }
    draining.store(true);
    (void)this_fiber::sleep_for(absl::Hours(1));  // shielded: left for the unwind
  });
  // Cancelled before it starts, the holder would never run.
  REQUIRE(weft::testing::eventually([&] { return started.load(); }));
  ShutdownReport report;
  std::thread stopper([&] { report = rt->shutdown(absl::Seconds(2)); });
  REQUIRE(weft::testing::eventually([&] { return draining.load(); }));
  std::atomic<bool> outside_ran{false};
  auto late = rt->spawn([&] { outside_ran.store(true); return 1; });
  CHECK_THROWS_AS(late.join(), FiberCancelled);
  stopper.join();
  CHECK_FALSE(outside_ran.load());
  CHECK_FALSE(inner_ran.load());
  CHECK(inner_outcome.load() == 1);
  CHECK(report.cancelled == 1);
  CHECK(report.left == 1);
  CHECK_THROWS_AS(holder.join(), FiberCancelled);
}

}  // namespace
}  // namespace weft
