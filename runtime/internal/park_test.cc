// The park/claim protocol on its own, without a runtime: every state a
// claim can meet (kParking, kParked, kNotified, a stale sequence), the race
// between the parking worker's publish and several wakers, and Waiter on
// plain threads.
#include "runtime/internal/park.h"

#include <atomic>
#include <chrono>
#include <thread>
#include <vector>

#include "doctest/doctest.h"
#include "runtime/internal/fiber.h"

namespace weft::internal {
namespace {

uint64_t state_of(const Fiber& f) { return f.wake_word.load() & 3; }
uint64_t seq_of(const Fiber& f) { return f.wake_word.load() >> 2; }

TEST_CASE("a claim of a parked fiber makes the waker schedule it") {
  Fiber f;
  uint64_t seq = prepare_park(&f);
  CHECK(seq == 1);
  CHECK(state_of(f) == kParking);
  CHECK(publish_parked(&f, seq));  // step 2: context saved
  CHECK(state_of(f) == kParked);
  CHECK(try_claim(&f, seq));  // step 3 on kParked: the waker schedules
  CHECK(state_of(f) == kNotified);
  CHECK(seq_of(f) == seq);
}

TEST_CASE("a claim while the fiber is still switching out leaves scheduling to the parker") {
  Fiber f;
  uint64_t seq = prepare_park(&f);
  CHECK_FALSE(try_claim(&f, seq));  // kParking: not the waker's job
  CHECK(state_of(f) == kNotified);
  CHECK_FALSE(publish_parked(&f, seq));  // the parker sees the claim and queues itself
  CHECK(state_of(f) == kNotified);
}

TEST_CASE("a second claim of the same park fails") {
  Fiber f;
  uint64_t seq = prepare_park(&f);
  REQUIRE(publish_parked(&f, seq));
  CHECK(try_claim(&f, seq));
  CHECK_FALSE(try_claim(&f, seq));
  CHECK(state_of(f) == kNotified);
}

TEST_CASE("a claim with a stale sequence fails in every state") {
  Fiber f;
  uint64_t old_seq = prepare_park(&f);
  REQUIRE(publish_parked(&f, old_seq));
  REQUIRE(try_claim(&f, old_seq));  // first park: woken
  uint64_t seq = prepare_park(&f);  // second park
  CHECK(seq == old_seq + 1);
  CHECK_FALSE(try_claim(&f, old_seq));  // kParking, stale
  REQUIRE(publish_parked(&f, seq));
  CHECK_FALSE(try_claim(&f, old_seq));  // kParked, stale
  CHECK(state_of(f) == kParked);
  CHECK(try_claim(&f, seq));
  CHECK_FALSE(try_claim(&f, old_seq));  // kNotified, stale
}

TEST_CASE("a timer and a waker racing for a park: exactly one schedules, every round") {
  // Thread P plays the parking worker (publish_parked); W1 and W2 play two
  // wakers (a notify and a timer). Exactly one party must end up
  // responsible for scheduling the fiber: P when its publish fails, or the
  // one waker whose claim returned true.
  constexpr int kRounds = 20000;
  Fiber f;
  std::atomic<int> round{0};
  std::atomic<int> arrived{0};
  std::vector<int> responsible(kRounds, 0);
  std::vector<int> claims(kRounds, 0);
  std::atomic<uint64_t> cur_seq{0};
  auto barrier = [&](int r) {
    arrived.fetch_add(1);
    while (arrived.load() < 3 * (r + 1)) std::this_thread::yield();
  };
  auto waker = [&] {
    for (int r = 0; r < kRounds; ++r) {
      while (round.load() != r) std::this_thread::yield();
      barrier(r);
      bool mine = try_claim(&f, cur_seq.load());
      if (mine) __atomic_fetch_add(&responsible[static_cast<size_t>(r)], 1, __ATOMIC_RELAXED);
      __atomic_fetch_add(&claims[static_cast<size_t>(r)], 1, __ATOMIC_RELAXED);
    }
  };
  std::thread w1(waker), w2(waker);
  for (int r = 0; r < kRounds; ++r) {
    cur_seq.store(prepare_park(&f));
    round.store(r);
    barrier(r);
    if (!publish_parked(&f, cur_seq.load())) {
      __atomic_fetch_add(&responsible[static_cast<size_t>(r)], 1, __ATOMIC_RELAXED);
    }
    while (__atomic_load_n(&claims[static_cast<size_t>(r)], __ATOMIC_ACQUIRE) < 2) std::this_thread::yield();
    REQUIRE(state_of(f) == kNotified);
  }
  w1.join();
  w2.join();
  int bad = 0;
  for (int r = 0; r < kRounds; ++r) bad += responsible[static_cast<size_t>(r)] != 1;
  CHECK(bad == 0);
}

TEST_CASE("Waiter on a plain thread: notify wakes it, the deadline ends it") {
  SpinLock lock;
  WaitList list;
  {
    Waiter w;
    CHECK_FALSE(w.on_fiber());
    lock.lock();
    list.push_back(&w);
    lock.unlock();
    int64_t start = monotonic_now();
    WakeReason r = w.wait(monotonic_now() + 20'000'000);
    CHECK(r == WakeReason::kTimeout);
    CHECK(monotonic_now() - start >= 20'000'000);
    CHECK(settle_wait(w, list, lock, r) != WakeReason::kNotified);
    CHECK(list.empty());
  }
  {
    Waiter w;
    lock.lock();
    list.push_back(&w);
    lock.unlock();
    std::thread waker([&] {
      WakeSet wake;
      std::lock_guard<SpinLock> g(lock);
      wake.add(list.pop_front());
    });
    WakeReason r = w.wait();
    CHECK(r == WakeReason::kNotified);
    CHECK(settle_wait(w, list, lock, r) == WakeReason::kNotified);
    waker.join();
  }
}

TEST_CASE("Waiter: a notify racing a deadline is honoured exactly once") {
  // Each round a thread waits with a short deadline while another notifies
  // it around the same time; the waiter either was notified (and the
  // notifier popped it) or timed out and removed itself: never both.
  constexpr int kRounds = 2000;
  SpinLock lock;
  WaitList list;
  int notified = 0, timed_out = 0, popped = 0;
  for (int r = 0; r < kRounds; ++r) {
    std::atomic<bool> queued{false};
    std::thread waker([&] {
      while (!queued.load()) std::this_thread::yield();
      WakeSet wake;
      std::lock_guard<SpinLock> g(lock);
      if (Waiter* w = list.pop_front()) {
        ++popped;
        wake.add(w);
      }
    });
    Waiter w;
    lock.lock();
    list.push_back(&w);
    lock.unlock();
    queued.store(true);
    WakeReason reason = w.wait(monotonic_now() + (r % 3) * 10'000);
    if (settle_wait(w, list, lock, reason) == WakeReason::kNotified) {
      ++notified;
    } else {
      ++timed_out;
    }
    waker.join();
    REQUIRE(list.empty());
  }
  CHECK(notified + timed_out == kRounds);
  CHECK(notified == popped);
}

// Waiter step 4 with a fiber waiter, made here as a select case's waiter
// (the only constructor that names a fiber without running on it). The
// test thread plays the waker, holding the primitive's lock; a second
// thread plays the woken fiber's return path.
TEST_CASE("a notified fiber that its waker did not claim returns only after the waker's unlock") {
  Fiber f;
  SelectGroup g(&f);
  Waiter w(&g, 0);
  REQUIRE(w.on_fiber());
  SpinLock lock;
  WaitList list;
  list.push_back(&w);
  // A timer (or the fiber's own worker, the park still kParking) claims
  // the park first: the fiber is back on a queue, and the waker will not
  // schedule it.
  REQUIRE_FALSE(try_claim(&f, g.seq));
  lock.lock();
  Waiter::Claim c = list.pop_front()->notify_locked();
  CHECK(c.fiber == nullptr);
  CHECK(w.notified());
  std::atomic<bool> returned{false};
  std::thread fiber_side([&] {
    CHECK(settle_wait(w, list, lock, WakeReason::kTimeout) == WakeReason::kNotified);
    returned.store(true);
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  // Still inside the waker's critical section: a return now would let the
  // caller destroy the primitive under the waker.
  CHECK_FALSE(returned.load());
  lock.unlock();
  fiber_side.join();
  CHECK(returned.load());
}

TEST_CASE("a notified fiber that its waker claimed returns without the lock") {
  Fiber f;
  SelectGroup g(&f);
  Waiter w(&g, 0);
  SpinLock lock;
  WaitList list;
  list.push_back(&w);
  REQUIRE(publish_parked(&f, g.seq));
  lock.lock();
  Waiter::Claim c = list.pop_front()->notify_locked();
  CHECK(c.fiber == &f);  // the waker schedules it, after its unlock
  std::atomic<bool> returned{false};
  std::thread fiber_side([&] {
    CHECK(settle_wait(w, list, lock, WakeReason::kNotified) == WakeReason::kNotified);
    returned.store(true);
  });
  for (int i = 0; i < 5000 && !returned.load(); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  CHECK(returned.load());  // it did not wait for the lock
  lock.unlock();
  fiber_side.join();
}

TEST_CASE("WaitList is FIFO and removes from any position") {
  Waiter a, b, c;
  WaitList l;
  l.push_back(&a);
  l.push_back(&b);
  l.push_back(&c);
  l.remove(&b);
  CHECK(l.pop_front() == &a);
  CHECK(l.pop_front() == &c);
  CHECK(l.empty());
  CHECK(l.pop_front() == nullptr);
}

}  // namespace
}  // namespace weft::internal
