// Cancellation reaches every wait of sync/: each wait returns kCancelled
// when the waiting fiber is cancelled while it waits, or at once when it
// already is; a call that need not wait still succeeds; Mutex::lock()
// ignores cancellation. Races of a hand-over with a cancellation lose and
// duplicate nothing (exact counts).
#include <doctest/doctest.h>

#include <atomic>
#include <memory>
#include <mutex>
#include <thread>
#include <utility>
#include <vector>

#include "runtime/runtime.h"
#include "sync/sync.h"
#include "tests/stress_util.h"
#include "tests/test_util.h"

namespace weft {
namespace {

using weft::testing::for_each_worker_count;

uint64_t parks(const Runtime& rt) { return rt.stats().total(&WorkerStats::parks); }

// cancel_while_waiting() runs wait() on a fiber spawned with a token,
// cancels the token once the fiber has parked, and returns wait()'s
// status, which must come back promptly.
template <class F>
absl::Status cancel_while_waiting(Runtime& rt, F wait) {
  CancellationToken t;
  const uint64_t base = parks(rt);
  auto h = rt.spawn([&]() -> absl::Status { return wait(); }, {.token = t});
  REQUIRE(weft::testing::eventually([&] { return parks(rt) > base; }));
  const absl::Time start = absl::Now();
  t.cancel();
  absl::Status s = h.join();
  CHECK(absl::Now() - start < absl::Seconds(5));
  return s;
}

// wait_when_cancelled() runs wait() on a fiber that has cancelled its own
// token first: it must return at once.
template <class F>
absl::Status wait_when_cancelled(Runtime& rt, F wait) {
  return rt.block_on([&]() -> absl::Status {
    this_fiber::cancellation().cancel();
    const absl::Time start = absl::Now();
    absl::Status s = wait();
    CHECK(absl::Now() - start < absl::Seconds(5));
    return s;
  });
}

// Both ways of being cancelled, for one wait.
template <class F>
void check_cancellable(Runtime& rt, F wait) {
  CHECK(cancel_while_waiting(rt, wait).code() == absl::StatusCode::kCancelled);
  CHECK(wait_when_cancelled(rt, wait).code() == absl::StatusCode::kCancelled);
}

constexpr absl::Duration kLong = absl::Seconds(30);

TEST_CASE("Channel: send on a full channel, recv on an empty one, and their timed forms") {
  for_each_worker_count({1, 2}, [](int n) {
    auto rt = *Runtime::create({.workers = n});
    Channel<std::unique_ptr<int>> full(1);
    REQUIRE(full.try_send(std::make_unique<int>(1)).ok());
    auto check_send = [&](auto send) {
      check_cancellable(*rt, [&] {
        auto p = std::make_unique<int>(2);
        absl::Status s = send(p);
        // A send that fails leaves its argument untouched.
        if (p == nullptr || *p != 2) return absl::InternalError("the value left the sender");
        return s;
      });
    };
    check_send([&](std::unique_ptr<int>& p) { return full.send(std::move(p)); });
    check_send([&](std::unique_ptr<int>& p) { return full.send_for(std::move(p), kLong); });
    check_send([&](std::unique_ptr<int>& p) { return full.send_until(std::move(p), absl::Now() + kLong); });
    CHECK(full.size() == 1);
    CHECK(full.stats().sent == 1);

    Channel<int> empty(4);
    check_cancellable(*rt, [&] { return empty.recv().status(); });
    check_cancellable(*rt, [&] { return empty.recv_for(kLong).status(); });
    check_cancellable(*rt, [&] { return empty.recv_until(absl::Now() + kLong).status(); });
    // No cancelled receiver was left behind to swallow a value.
    REQUIRE(empty.try_send(5).ok());
    CHECK(empty.size() == 1);
    CHECK(*empty.try_recv() == 5);

    // Calls that need not wait succeed on a cancelled fiber.
    rt->block_on([&] {
      this_fiber::cancellation().cancel();
      auto v = full.recv();  // buffered: no wait
      REQUIRE(v.ok());
      CHECK(**v == 1);
      CHECK(empty.send(6).ok());  // room: no wait
      CHECK(*empty.recv() == 6);
      CHECK(empty.try_send(7).ok());
      CHECK(empty.try_recv().ok());
      Channel<int> closed(1);
      closed.close();
      CHECK(closed.recv().status().code() == absl::StatusCode::kOutOfRange);
      CHECK(closed.send(1).code() == absl::StatusCode::kFailedPrecondition);
    });
  });
}

TEST_CASE("Semaphore: acquire and its timed forms; no permit is taken or lost") {
  for_each_worker_count({1, 2}, [](int n) {
    auto rt = *Runtime::create({.workers = n});
    Semaphore sem(0);
    check_cancellable(*rt, [&] { return sem.acquire(); });
    check_cancellable(*rt, [&] { return sem.acquire_for(kLong); });
    check_cancellable(*rt, [&] { return sem.acquire_until(absl::Now() + kLong); });
    CHECK(sem.available() == 0);
    sem.release(1);
    CHECK(sem.available() == 1);  // no cancelled waiter took it
    rt->block_on([&] {
      this_fiber::cancellation().cancel();
      CHECK(sem.acquire().ok());  // free permit: no wait
      CHECK(sem.acquire_for(absl::Milliseconds(1)).code() == absl::StatusCode::kCancelled);
    });
    CHECK(sem.available() == 0);
  });
}

TEST_CASE("ConditionVariable: every wait form; the mutex is held again on return") {
  for_each_worker_count({1, 2}, [](int n) {
    auto rt = *Runtime::create({.workers = n});
    Mutex m;
    ConditionVariable cv;
    bool flag = false;
    // Runs one wait with the lock held and checks the lock is held after.
    auto held_after = [&](auto wait) {
      return [&, wait]() -> absl::Status {
        std::unique_lock<Mutex> lk(m);
        absl::Status s = wait(lk);
        if (!lk.owns_lock()) return absl::InternalError("lock released");
        if (m.try_lock()) return absl::InternalError("mutex free after the wait");
        return s;
      };
    };
    check_cancellable(*rt, held_after([&](std::unique_lock<Mutex>& lk) { return cv.wait(lk); }));
    check_cancellable(*rt, held_after([&](std::unique_lock<Mutex>& lk) { return cv.wait_for(lk, kLong); }));
    check_cancellable(*rt, held_after([&](std::unique_lock<Mutex>& lk) {
      return cv.wait_until(lk, absl::Now() + kLong);
    }));
    check_cancellable(*rt, held_after([&](std::unique_lock<Mutex>& lk) {
      return cv.wait(lk, [&] { return flag; });
    }));
    check_cancellable(*rt, held_after([&](std::unique_lock<Mutex>& lk) {
      return cv.wait_for(lk, kLong, [&] { return flag; });
    }));
    check_cancellable(*rt, held_after([&](std::unique_lock<Mutex>& lk) {
      return cv.wait_until(lk, absl::Now() + kLong, [&] { return flag; });
    }));
    // No cancelled waiter was left in the list to swallow a notify_one().
    const uint64_t base = parks(*rt);
    auto waiter = rt->spawn([&] {
      std::unique_lock<Mutex> lk(m);
      return cv.wait(lk, [&] { return flag; });
    });
    REQUIRE(weft::testing::eventually([&] { return parks(*rt) > base; }));
    {
      std::lock_guard<Mutex> g(m);
      flag = true;
    }
    cv.notify_one();
    CHECK(waiter.join().ok());
    // The predicate already holds: no wait, OK on a cancelled fiber.
    CHECK(wait_when_cancelled(*rt, held_after([&](std::unique_lock<Mutex>& lk) {
            return cv.wait(lk, [&] { return flag; });
          })).ok());
    CHECK(wait_when_cancelled(*rt, held_after([&](std::unique_lock<Mutex>& lk) {
            return cv.wait_for(lk, kLong, [&] { return flag; });
          })).ok());
  });
}

TEST_CASE("Event and WaitGroup: every wait form") {
  for_each_worker_count({1, 2}, [](int n) {
    auto rt = *Runtime::create({.workers = n});
    Event ev;
    check_cancellable(*rt, [&] { return ev.wait(); });
    check_cancellable(*rt, [&] { return ev.wait_for(kLong); });
    check_cancellable(*rt, [&] { return ev.wait_until(absl::Now() + kLong); });
    WaitGroup wg(1);
    check_cancellable(*rt, [&] { return wg.wait(); });
    check_cancellable(*rt, [&] { return wg.wait_for(kLong); });
    check_cancellable(*rt, [&] { return wg.wait_until(absl::Now() + kLong); });
    CHECK(wg.count() == 1);
    ev.set();
    wg.done();
    CHECK(wait_when_cancelled(*rt, [&] { return ev.wait(); }).ok());
    CHECK(wait_when_cancelled(*rt, [&] { return ev.wait_for(kLong); }).ok());
    CHECK(wait_when_cancelled(*rt, [&] { return wg.wait(); }).ok());
    CHECK(wait_when_cancelled(*rt, [&] { return wg.wait_until(absl::Now() + kLong); }).ok());
  });
}

TEST_CASE("Oneshot: recv and its timed forms; the value sent later is still received") {
  for_each_worker_count({1, 2}, [](int n) {
    auto rt = *Runtime::create({.workers = n});
    auto [tx, rx] = make_oneshot<int>();
    check_cancellable(*rt, [&] { return rx.recv().status(); });
    check_cancellable(*rt, [&] { return rx.recv_for(kLong).status(); });
    check_cancellable(*rt, [&] { return rx.recv_until(absl::Now() + kLong).status(); });
    REQUIRE(tx.send(7).ok());
    // Sent: recv need not wait, so a cancelled fiber gets the value.
    CHECK(wait_when_cancelled(*rt, [&] {
            auto v = rx.recv();
            return v.ok() && *v == 7 ? absl::OkStatus() : absl::InternalError("value not received");
          }).ok());
    CHECK(rx.try_recv().status().code() == absl::StatusCode::kFailedPrecondition);

    auto [tx2, rx2] = make_oneshot<int>();
    check_cancellable(*rt, [&] { return rx2.recv().status(); });
    REQUIRE(tx2.send(9).ok());
    auto got = rx2.recv();  // a plain thread, not cancelled
    REQUIRE(got.ok());
    CHECK(*got == 9);
  });
}

TEST_CASE("Mutex::lock ignores cancellation: the cancelled waiter still acquires") {
  for_each_worker_count({1, 2}, [](int n) {
    auto rt = *Runtime::create({.workers = n});
    Mutex m;
    std::atomic<bool> got{false};
    CancellationToken t;
    m.lock();  // this thread holds it
    const uint64_t base = parks(*rt);
    auto h = rt->spawn(
        [&] {
          m.lock();
          got.store(true);
          bool cancelled = this_fiber::cancelled();
          m.unlock();
          return cancelled;
        },
        {.token = t});
    REQUIRE(weft::testing::eventually([&] { return parks(*rt) > base; }));
    t.cancel();
    ::usleep(30000);
    CHECK_FALSE(got.load());  // still waiting
    m.unlock();
    CHECK(h.join());  // acquired, and cancelled all along
    CHECK(got.load());

    // Already cancelled: lock() on a held mutex still waits for it.
    got.store(false);
    m.lock();
    std::atomic<bool> started{false};
    auto h2 = rt->spawn([&] {
      this_fiber::cancellation().cancel();
      started.store(true);
      m.lock();
      got.store(true);
      m.unlock();
    });
    REQUIRE(weft::testing::eventually([&] { return started.load(); }));
    ::usleep(30000);
    CHECK_FALSE(got.load());
    m.unlock();
    h2.join();
    CHECK(got.load());
  });
}

// --- races: a hand-over racing a cancellation -------------------------------

// spin() burns a few hundred nanoseconds per unit, to vary which side of a
// race comes first.
void spin(int64_t units) {
  for (int64_t i = 0; i < units * 64; ++i) std::atomic_signal_fence(std::memory_order_seq_cst);
}

TEST_CASE("a value sent to a receiver being cancelled is received or stays buffered, never lost or duplicated") {
  const int64_t kRounds = weft::testing::stress_size(20000);
  auto rt = *Runtime::create({.workers = 2});
  Channel<int64_t> ch(1);
  int64_t received = 0, buffered = 0, never_ran = 0, lost = 0, wrong = 0;
  for (int64_t r = 0; r < kRounds; ++r) {
    CancellationToken t;
    auto rx = rt->spawn([&] { return ch.recv(); }, {.token = t});
    auto tx = rt->spawn([&, r] {
      spin(r % 7);
      return ch.send(r);
    });
    spin(r % 5);
    t.cancel();
    REQUIRE(tx.join().ok());
    absl::StatusOr<int64_t> got = rx.try_join();  // flattened: the receiver's own result
    if (absl::IsAborted(got.status())) {
      ++never_ran;  // cancelled before it ran
    } else if (got.ok()) {
      ++received;
      wrong += *got != r;
      lost += ch.size() != 0;  // nothing may be left (and nothing duplicated)
      continue;
    } else {
      REQUIRE(got.status().code() == absl::StatusCode::kCancelled);
    }
    auto left = ch.try_recv();
    if (left.ok()) {
      ++buffered;
      wrong += *left != r;
    } else {
      ++lost;
    }
  }
  MESSAGE("received " << received << ", buffered " << buffered << " (receiver never ran: " << never_ran << ")");
  CHECK(lost == 0);
  CHECK(wrong == 0);
  CHECK(received + buffered == kRounds);
  ChannelStats st = ch.stats();
  CHECK(st.sent == static_cast<uint64_t>(kRounds));
  CHECK(st.received == static_cast<uint64_t>(kRounds));
  CHECK(st.size == 0);
}

TEST_CASE("permits released while acquirers are cancelled: available + held == released") {
  const int64_t kRounds = weft::testing::stress_size(5000);
  const int kAcquirers = 4;
  auto rt = *Runtime::create({.workers = 2});
  int64_t bad = 0, held_total = 0;
  for (int64_t r = 0; r < kRounds; ++r) {
    Semaphore sem(0);
    CancellationToken t;
    const uint64_t base = parks(*rt);
    std::vector<JoinHandle<bool>> hs;
    for (int i = 0; i < kAcquirers; ++i) {
      hs.push_back(rt->spawn([&] { return sem.acquire().ok(); }, {.token = i % 2 == 0 ? t : t.child()}));
    }
    const int64_t released = 1 + r % 3;
    // Every other round the acquirers are parked before the race starts.
    if (r % 2 == 0) {
      REQUIRE(weft::testing::eventually([&] { return parks(*rt) >= base + kAcquirers; }));
    }
    auto rel = rt->spawn([&, released] {
      spin(r % 5);
      for (int64_t k = 0; k < released; ++k) sem.release(1);
    });
    spin(r % 7);
    t.cancel();
    rel.join();
    int64_t held = 0;
    for (auto& h : hs) {
      absl::StatusOr<bool> ok = h.try_join();
      held += ok.ok() && *ok;
    }
    held_total += held;
    bad += sem.available() + held != released;
  }
  MESSAGE("permits kept by acquirers: " << held_total);
  CHECK(bad == 0);
}

TEST_CASE("oneshot send racing the receiver's cancellation: received, or received by the next recv") {
  const int64_t kRounds = weft::testing::stress_size(20000);
  auto rt = *Runtime::create({.workers = 2});
  int64_t first = 0, second = 0, lost = 0, wrong = 0;
  for (int64_t r = 0; r < kRounds; ++r) {
    auto [tx, rx] = make_oneshot<int64_t>();
    CancellationToken t;
    auto rh = rt->spawn([&] { return rx.recv(); }, {.token = t});
    auto sh = rt->spawn([&, r] {
      spin(r % 7);
      return tx.send(r);
    });
    spin(r % 5);
    t.cancel();
    REQUIRE(sh.join().ok());
    absl::StatusOr<int64_t> got = rh.try_join();  // flattened: the receiver's own result
    if (got.ok()) {
      ++first;
      wrong += *got != r;
      wrong += rx.try_recv().status().code() != absl::StatusCode::kFailedPrecondition;
      continue;
    }
    REQUIRE((absl::IsAborted(got.status()) || absl::IsCancelled(got.status())));
    auto again = rx.recv();  // this thread: not cancelled
    if (again.ok()) {
      ++second;
      wrong += *again != r;
    } else {
      ++lost;
    }
  }
  MESSAGE("received by the racing recv " << first << ", by the next recv " << second);
  CHECK(lost == 0);
  CHECK(wrong == 0);
  CHECK(first + second == kRounds);
}

}  // namespace
}  // namespace weft
