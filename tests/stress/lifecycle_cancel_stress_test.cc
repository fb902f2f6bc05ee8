// Cancellation storms with exact accounting: producers and consumers on
// channels cancelled and respawned at random across two workers (every
// value is received once or still buffered, none lost or duplicated), and
// fibers blocked on every kind of wait aborted at random while others are
// completed (every fiber, permit and value accounted for).
#include <doctest/doctest.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <random>
#include <thread>
#include <utility>
#include <vector>

#include "runtime/runtime.h"
#include "sync/sync.h"
#include "tests/stress_util.h"

namespace weft {
namespace {

using Value = std::unique_ptr<int64_t>;

TEST_CASE("cancel-vs-send storm: sent == received + buffered, each value exactly once") {
  const int kChannels = 4, kProducers = 8, kReceivers = 8;
  const int64_t kPerProducer = weft::testing::stress_size(4000);
  const int64_t kCancels = weft::testing::stress_size(6000);
  const int64_t kTotal = kProducers * kPerProducer;
  auto rt = *Runtime::create({.workers = 2, .seed = 7});
  std::vector<std::unique_ptr<Channel<Value>>> chans;
  for (int i = 0; i < kChannels; ++i) chans.push_back(std::make_unique<Channel<Value>>(2));

  // A producer sends its ids from `next` on; cancelled, it returns the id
  // it still holds (the failed send left the value in its hands).
  struct ProducerResult {
    int64_t next;
    int64_t lost_in_hand;  // a cancelled send that consumed its argument
  };
  auto spawn_producer = [&](int p, int64_t next, const CancellationToken& t) {
    return rt->spawn(
        [&, p, next]() mutable {
          ProducerResult r{next, 0};
          while (r.next < kPerProducer) {
            const int64_t id = p * kPerProducer + r.next;
            Value v = std::make_unique<int64_t>(id);
            absl::Status s = chans[static_cast<size_t>(id % kChannels)]->send(std::move(v));
            if (!s.ok()) {
              REQUIRE(s.code() == absl::StatusCode::kCancelled);
              r.lost_in_hand += v == nullptr || *v != id;
              return r;
            }
            ++r.next;
          }
          return r;
        },
        {.token = t});
  };
  auto spawn_receiver = [&](int c, const CancellationToken& t) {
    return rt->spawn(
        [&, c] {
          std::vector<int64_t> got;
          for (;;) {
            auto v = chans[static_cast<size_t>(c % kChannels)]->recv();
            if (!v.ok()) {
              REQUIRE(v.status().code() == absl::StatusCode::kCancelled);
              return got;
            }
            got.push_back(**v);
          }
        },
        {.token = t});
  };

  std::vector<uint8_t> seen(static_cast<size_t>(kTotal), 0);
  int64_t received = 0, duplicates = 0, lost_in_hand = 0, never_ran = 0;
  auto record = [&](const std::vector<int64_t>& ids) {
    for (int64_t id : ids) {
      REQUIRE(id >= 0);
      REQUIRE(id < kTotal);
      duplicates += seen[static_cast<size_t>(id)]++ != 0;
      ++received;
    }
  };

  std::vector<int64_t> next(kProducers, 0);
  std::vector<CancellationToken> ptok(kProducers), rtok(kReceivers);
  std::vector<JoinHandle<ProducerResult>> producers;
  std::vector<JoinHandle<std::vector<int64_t>>> receivers;
  for (int p = 0; p < kProducers; ++p) producers.push_back(spawn_producer(p, 0, ptok[p]));
  for (int c = 0; c < kReceivers; ++c) receivers.push_back(spawn_receiver(c, rtok[c]));

  auto finish_producer = [&](int p) {
    absl::StatusOr<ProducerResult> r = producers[p].try_join();
    if (!r.ok()) {
      REQUIRE(r.status().code() == absl::StatusCode::kAborted);
      ++never_ran;
      return;
    }
    REQUIRE(r->next >= next[p]);
    next[p] = r->next;
    lost_in_hand += r->lost_in_hand;
  };
  auto finish_receiver = [&](int c) {
    absl::StatusOr<std::vector<int64_t>> r = receivers[c].try_join();
    if (!r.ok()) {
      REQUIRE(r.status().code() == absl::StatusCode::kAborted);
      ++never_ran;
      return;
    }
    record(*r);
  };

  std::mt19937_64 rng(12345);
  for (int64_t i = 0; i < kCancels; ++i) {
    for (int64_t s = static_cast<int64_t>(rng() % 64); s > 0; --s) std::this_thread::yield();
    const bool producer = rng() % 2 == 0;
    if (producer) {
      const int p = static_cast<int>(rng() % kProducers);
      if (rng() % 2 == 0) {
        ptok[p].cancel();
      } else {
        producers[p].abort();
      }
      finish_producer(p);
      ptok[p] = CancellationToken();
      producers[p] = spawn_producer(p, next[p], ptok[p]);
    } else {
      const int c = static_cast<int>(rng() % kReceivers);
      if (rng() % 2 == 0) {
        rtok[c].cancel();
      } else {
        receivers[c].abort();
      }
      finish_receiver(c);
      rtok[c] = CancellationToken();
      receivers[c] = spawn_receiver(c, rtok[c]);
    }
  }
  // The producers finish undisturbed (the receivers keep draining), then
  // the receivers are cancelled and what is buffered is counted.
  for (int p = 0; p < kProducers; ++p) {
    finish_producer(p);
    REQUIRE(next[p] == kPerProducer);
  }
  for (int c = 0; c < kReceivers; ++c) {
    rtok[c].cancel();
    finish_receiver(c);
  }
  int64_t buffered = 0;
  uint64_t chan_sent = 0, chan_received = 0;
  for (auto& ch : chans) {
    ChannelStats st = ch->stats();
    chan_sent += st.sent;
    chan_received += st.received;
    for (auto v = ch->try_recv(); v.ok(); v = ch->try_recv()) {
      ++buffered;
      duplicates += seen[static_cast<size_t>(**v)]++ != 0;
    }
  }
  int64_t missing = 0;
  for (uint8_t s : seen) missing += s == 0;
  MESSAGE("received " << received << ", buffered " << buffered << ", fibers cancelled before they ran "
                      << never_ran);
  CHECK(lost_in_hand == 0);
  CHECK(duplicates == 0);
  CHECK(missing == 0);
  CHECK(received + buffered == kTotal);
  CHECK(chan_sent == static_cast<uint64_t>(kTotal));
  CHECK(chan_received == static_cast<uint64_t>(received));
}

// One fiber's wait and everything it needs: the fiber waits on its own
// primitive, so completing or aborting it touches nobody else.
enum class Kind { kRecv, kAcquire, kEvent, kCondVar, kSleep, kOneshot, kJoin, kWaitGroup, kCount };

struct Slot {
  Kind kind;
  int action;  // 0: abort only, 1: complete only, 2: both (a race)
  Channel<int64_t> ch{1};
  Semaphore sem{0};
  Event ev;
  Mutex m;
  ConditionVariable cv;
  bool flag = false;
  OneshotSender<int64_t> tx;
  OneshotReceiver<int64_t> rx;
  WaitGroup wg{1};
  Event child_gate;
  JoinHandle<int64_t> child;     // kJoin: the fiber this slot's fiber joins
  JoinHandle<int> fiber;
};

// The fiber's body: 1 if its wait completed, 0 if it was cancelled.
int wait_on(Slot* s) {
  switch (s->kind) {
    case Kind::kRecv: {
      auto v = s->ch.recv();
      return v.ok() ? (*v == 42 ? 1 : -1) : (v.status().code() == absl::StatusCode::kCancelled ? 0 : -1);
    }
    case Kind::kAcquire: {
      absl::Status st = s->sem.acquire();
      return st.ok() ? 1 : (st.code() == absl::StatusCode::kCancelled ? 0 : -1);
    }
    case Kind::kEvent: {
      absl::Status st = s->ev.wait();
      return st.ok() ? 1 : (st.code() == absl::StatusCode::kCancelled ? 0 : -1);
    }
    case Kind::kCondVar: {
      std::unique_lock<Mutex> lk(s->m);
      absl::Status st = s->cv.wait(lk, [&] { return s->flag; });
      if (!lk.owns_lock()) return -1;
      return st.ok() ? 1 : (st.code() == absl::StatusCode::kCancelled && !s->flag ? 0 : -1);
    }
    case Kind::kSleep: {
      absl::Status st = this_fiber::sleep_for(s->action == 0 ? absl::Hours(1) : absl::Milliseconds(2));
      return st.ok() ? 1 : (st.code() == absl::StatusCode::kCancelled ? 0 : -1);
    }
    case Kind::kOneshot: {
      auto v = s->rx.recv();
      return v.ok() ? (*v == 42 ? 1 : -1) : (v.status().code() == absl::StatusCode::kCancelled ? 0 : -1);
    }
    case Kind::kJoin: {
      absl::StatusOr<int64_t> v = s->child.try_join();
      return v.ok() ? (*v == 42 ? 1 : -1) : (v.status().code() == absl::StatusCode::kCancelled ? 0 : -1);
    }
    case Kind::kWaitGroup: {
      absl::Status st = s->wg.wait();
      return st.ok() ? 1 : (st.code() == absl::StatusCode::kCancelled ? 0 : -1);
    }
    case Kind::kCount:
      break;
  }
  return -1;
}

// complete() does what ends the slot's wait.
void complete(Slot* s) {
  switch (s->kind) {
    case Kind::kRecv: REQUIRE(s->ch.send(42).ok()); break;
    case Kind::kAcquire: s->sem.release(1); break;
    case Kind::kEvent: s->ev.set(); break;
    case Kind::kCondVar: {
      {
        std::lock_guard<Mutex> g(s->m);
        s->flag = true;
      }
      s->cv.notify_all();
      break;
    }
    case Kind::kSleep: break;  // it wakes by itself
    case Kind::kOneshot: REQUIRE(s->tx.send(42).ok()); break;
    case Kind::kJoin: s->child_gate.set(); break;
    case Kind::kWaitGroup: s->wg.done(); break;
    case Kind::kCount: break;
  }
}

TEST_CASE("abort storm: fibers blocked on every kind of wait, aborted at random while others complete") {
  const int64_t kFibers = weft::testing::stress_size(4000);
  auto rt = *Runtime::create({.workers = 2, .seed = 11});
  std::mt19937_64 rng(99);
  std::vector<std::unique_ptr<Slot>> slots;
  for (int64_t i = 0; i < kFibers; ++i) {
    auto s = std::make_unique<Slot>();
    s->kind = static_cast<Kind>(i % static_cast<int64_t>(Kind::kCount));
    s->action = static_cast<int>(rng() % 3);
    auto [tx, rx] = make_oneshot<int64_t>();
    s->tx = std::move(tx);
    s->rx = std::move(rx);
    Slot* p = s.get();
    if (s->kind == Kind::kJoin) {
      s->child = rt->spawn([p]() -> int64_t {
        this_fiber::CancellationShield shield;  // the child is never cancelled
        REQUIRE(p->child_gate.wait().ok());
        return 42;
      });
    }
    slots.push_back(std::move(s));
  }
  // Spawn in batches and act on each batch while its fibers are still
  // starting, parking or parked.
  const size_t kBatch = 64;
  for (size_t b = 0; b < slots.size(); b += kBatch) {
    const size_t e = std::min(slots.size(), b + kBatch);
    for (size_t i = b; i < e; ++i) {
      Slot* p = slots[i].get();
      p->fiber = rt->spawn([p] { return wait_on(p); });
    }
    std::vector<size_t> order;
    for (size_t i = b; i < e; ++i) order.push_back(i);
    std::shuffle(order.begin(), order.end(), rng);
    for (size_t i : order) {
      Slot* p = slots[i].get();
      if (rng() % 4 == 0) std::this_thread::yield();
      if (p->action == 0) {
        p->fiber.abort();
      } else if (p->action == 1) {
        complete(p);
      } else if (rng() % 2 == 0) {
        p->fiber.abort();
        complete(p);
      } else {
        complete(p);
        p->fiber.abort();
      }
    }
  }

  int64_t completed = 0, cancelled = 0, never_ran = 0, wrong = 0, unaccounted = 0;
  for (auto& sp : slots) {
    Slot* s = sp.get();
    int outcome = -2;  // never ran
    try {
      outcome = s->fiber.join();
    } catch (const FiberCancelled&) {
      ++never_ran;
    }
    if (outcome == 1) ++completed;
    if (outcome == 0) ++cancelled;
    if (outcome == -1) ++wrong;
    // A fiber that was only completed must have completed; one that was
    // only aborted must not have (its wait had nothing to end it).
    if (s->action == 1) wrong += outcome != 1;
    if (s->action == 0) wrong += outcome == 1;
    // Nothing that was handed over is lost: what the fiber did not take
    // is still there.
    const bool handed = s->action != 0;
    switch (s->kind) {
      case Kind::kRecv:
        unaccounted += static_cast<int64_t>(outcome == 1) + static_cast<int64_t>(s->ch.size()) !=
                       static_cast<int64_t>(handed);
        break;
      case Kind::kAcquire:
        unaccounted += static_cast<int64_t>(outcome == 1) + s->sem.available() != static_cast<int64_t>(handed);
        break;
      case Kind::kOneshot: {
        auto left = s->rx.try_recv();
        const bool still = left.ok() && *left == 42;
        unaccounted += static_cast<int64_t>(outcome == 1) + static_cast<int64_t>(still) !=
                       static_cast<int64_t>(handed);
        break;
      }
      case Kind::kJoin:
        if (outcome != 1) {
          // The joiner gave up; the child is still joinable by us.
          s->child_gate.set();
          unaccounted += s->child.join() != 42;
        }
        break;
      default:
        break;
    }
  }
  MESSAGE("completed " << completed << ", cancelled " << cancelled << ", never ran " << never_ran);
  CHECK(wrong == 0);
  CHECK(unaccounted == 0);
  CHECK(completed + cancelled + never_ran == kFibers);
  // A joined fiber leaves the registry just after its joiner wakes.
  for (int i = 0; i < 5000 && rt->stats().live_fibers != 0; ++i) absl::SleepFor(absl::Milliseconds(1));
  CHECK(rt->stats().live_fibers == 0);
}

}  // namespace
}  // namespace weft
