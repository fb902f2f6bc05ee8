#include "runtime/internal/run_queue.h"

#include <doctest/doctest.h>

#include <algorithm>
#include <atomic>
#include <thread>
#include <vector>

#include "runtime/internal/inject_queue.h"
#include "runtime/internal/mpsc_inbox.h"
#include "tests/test_util.h"

namespace weft::internal {
namespace {

struct Item {
  int value = 0;
  Item* next = nullptr;
  std::atomic<Item*> inbox_next{nullptr};
};

TEST_CASE("RunQueue is FIFO for its owner and reports full") {
  RunQueue<Item, 4> q;
  Item items[5];
  for (int i = 0; i < 4; ++i) {
    items[i].value = i;
    CHECK(q.push(&items[i]));
  }
  CHECK_FALSE(q.push(&items[4]));
  CHECK(q.size() == 4);
  for (int i = 0; i < 4; ++i) CHECK(q.pop()->value == i);
  CHECK(q.pop() == nullptr);
}

TEST_CASE("take_half moves the older half of a full queue") {
  RunQueue<Item, 8> q;
  Item items[8];
  for (int i = 0; i < 8; ++i) {
    items[i].value = i;
    REQUIRE(q.push(&items[i]));
  }
  std::vector<int> moved;
  CHECK(q.take_half([&](Item* x) { moved.push_back(x->value); }) == 4);
  CHECK(moved == std::vector<int>{0, 1, 2, 3});
  CHECK(q.size() == 4);
  CHECK(q.pop()->value == 4);
  RunQueue<Item, 8> notfull;
  notfull.push(&items[0]);
  CHECK(notfull.take_half([](Item*) {}) == 0);
}

TEST_CASE("steal_into takes half, rounded up, and returns one to run") {
  RunQueue<Item, 16> victim, thief;
  Item items[5];
  for (int i = 0; i < 5; ++i) {
    items[i].value = i;
    victim.push(&items[i]);
  }
  uint32_t n = 0;
  Item* got = victim.steal_into(thief, &n);
  REQUIRE(got != nullptr);
  CHECK(n == 3);
  CHECK(got->value == 2);
  CHECK(thief.size() == 2);
  CHECK(thief.pop()->value == 0);
  CHECK(thief.pop()->value == 1);
  CHECK(victim.size() == 2);
  RunQueue<Item, 16> empty;
  CHECK(empty.steal_into(thief, &n) == nullptr);
  CHECK(n == 0);
}

// The owner pushes and pops while thieves steal: every item must be taken
// exactly once.
TEST_CASE("RunQueue under concurrent stealers loses and duplicates nothing") {
  const int kItems = 200000 * static_cast<int>(weft::testing::scale());
  const int kThieves = 3;
  std::vector<Item> items(static_cast<size_t>(kItems));
  std::vector<std::atomic<int>> seen(static_cast<size_t>(kItems));
  RunQueue<Item, 64> owner;
  std::atomic<bool> done{false};
  std::atomic<long> taken{0};
  auto take = [&](Item* x) {
    seen[static_cast<size_t>(x->value)].fetch_add(1);
    taken.fetch_add(1);
  };
  std::vector<std::thread> thieves;
  for (int t = 0; t < kThieves; ++t) {
    thieves.emplace_back([&] {
      RunQueue<Item, 64> mine;
      while (!done.load() || !owner.empty()) {
        uint32_t n = 0;
        if (Item* x = owner.steal_into(mine, &n)) {
          take(x);
          while (Item* y = mine.pop()) take(y);
        }
      }
    });
  }
  for (int i = 0; i < kItems; ++i) {
    items[static_cast<size_t>(i)].value = i;
    while (!owner.push(&items[static_cast<size_t>(i)])) {
      if (Item* x = owner.pop()) take(x);
    }
    if (i % 7 == 0) {
      if (Item* x = owner.pop()) take(x);
    }
  }
  while (Item* x = owner.pop()) take(x);
  done.store(true);
  for (auto& t : thieves) t.join();
  CHECK(taken.load() == kItems);
  int bad = 0;
  for (auto& s : seen) bad += s.load() != 1;
  CHECK(bad == 0);
}

TEST_CASE("InjectQueue keeps FIFO order across batches") {
  InjectQueue<Item> q;
  Item items[6];
  for (int i = 0; i < 6; ++i) items[i].value = i;
  q.push(&items[0]);
  Item* two[] = {&items[1], &items[2]};
  q.push_batch(two, 2);
  q.push(&items[3]);
  CHECK(q.len() == 4);
  Item* out[10] = {};
  CHECK(q.pop_batch(out, 3) == 3);
  CHECK(out[0]->value == 0);
  CHECK(out[1]->value == 1);
  CHECK(out[2]->value == 2);
  CHECK(q.pop_batch(out, 10) == 1);
  CHECK(out[0]->value == 3);
  CHECK(q.pop_batch(out, 10) == 0);
  CHECK(q.len() == 0);
}

TEST_CASE("InjectQueue keeps FIFO order across node boundaries and reuses nodes") {
  using Q = InjectQueue<Item>;
  const size_t kN = Q::kNodeItems * 5 + 17;
  std::vector<Item> items(kN);
  std::vector<Item*> ptrs(kN);
  for (size_t i = 0; i < kN; ++i) {
    items[i].value = static_cast<int>(i);
    ptrs[i] = &items[i];
  }
  Q q;
  for (int round = 0; round < 3; ++round) {
    // Batches that straddle nodes, singles, then pops of odd sizes.
    size_t pushed = 0;
    q.push_batch(ptrs.data(), Q::kNodeItems - 3);
    pushed += Q::kNodeItems - 3;
    for (int i = 0; i < 10; ++i) q.push(ptrs[pushed++]);
    q.push_batch(ptrs.data() + pushed, kN - pushed);
    CHECK(q.len() == kN);
    std::vector<Item*> out(kN);
    size_t got = 0;
    size_t step = 1;
    while (size_t n = q.pop_batch(out.data() + got, std::min(step, kN - got))) {
      got += n;
      step = step * 3 + 1;
      if (got == kN) break;
    }
    CHECK(got == kN);
    int bad = 0;
    for (size_t i = 0; i < kN; ++i) bad += out[i]->value != static_cast<int>(i);
    CHECK(bad == 0);
    CHECK(q.len() == 0);
    Item* none[1];
    CHECK(q.pop_batch(none, 1) == 0);
  }
}

TEST_CASE("InjectQueue stress: many producers and consumers, every item exactly once") {
  using Q = InjectQueue<Item>;
  constexpr int kProducers = 3, kConsumers = 3;
  const int kPer = 60000 * static_cast<int>(weft::testing::scale());
  std::vector<Item> items(static_cast<size_t>(kPer * kProducers));
  std::vector<std::atomic<int>> seen(items.size());
  Q q;
  std::atomic<int> producers_done{0};
  std::atomic<long> taken{0};
  std::vector<std::thread> threads;
  for (int p = 0; p < kProducers; ++p) {
    threads.emplace_back([&, p] {
      Item* batch[200];
      int i = 0;
      while (i < kPer) {
        int n = std::min(kPer - i, 1 + (i % 200));
        for (int k = 0; k < n; ++k) batch[k] = &items[static_cast<size_t>(p * kPer + i + k)];
        if (n == 1) {
          q.push(batch[0]);
        } else {
          q.push_batch(batch, static_cast<size_t>(n));
        }
        i += n;
      }
      producers_done.fetch_add(1);
    });
  }
  for (int c = 0; c < kConsumers; ++c) {
    threads.emplace_back([&, c] {
      Item* out[64];
      for (;;) {
        size_t n = q.pop_batch(out, static_cast<size_t>(1 + c * 31));
        for (size_t k = 0; k < n; ++k) seen[static_cast<size_t>(out[k] - items.data())].fetch_add(1);
        taken.fetch_add(static_cast<long>(n));
        if (n == 0 && producers_done.load() == kProducers && q.len() == 0) break;
      }
    });
  }
  for (auto& t : threads) t.join();
  CHECK(taken.load() == static_cast<long>(items.size()));
  int bad = 0;
  for (auto& s : seen) bad += s.load() != 1;
  CHECK(bad == 0);
}

TEST_CASE("MpscInbox delivers every message from many producers") {
  const int kPerProducer = 50000 * static_cast<int>(weft::testing::scale());
  const int kProducers = 4;
  std::vector<Item> items(static_cast<size_t>(kPerProducer * kProducers));
  MpscInbox<Item> inbox;
  std::vector<std::thread> producers;
  for (int p = 0; p < kProducers; ++p) {
    producers.emplace_back([&, p] {
      for (int i = 0; i < kPerProducer; ++i) {
        Item& it = items[static_cast<size_t>(p * kPerProducer + i)];
        it.value = i;
        inbox.push(&it);
      }
    });
  }
  std::vector<int> last(kProducers, -1);
  long got = 0;
  bool in_order = true;
  while (got < static_cast<long>(items.size())) {
    if (Item* x = inbox.pop()) {
      int p = static_cast<int>((x - items.data()) / kPerProducer);
      in_order = in_order && x->value == last[static_cast<size_t>(p)] + 1;
      last[static_cast<size_t>(p)] = x->value;
      ++got;
    }
  }
  for (auto& t : producers) t.join();
  CHECK(in_order);
  CHECK(inbox.pop() == nullptr);
  CHECK(inbox.empty());
}

}  // namespace
}  // namespace weft::internal
