#include "runtime/internal/run_queue.h"

#include <doctest/doctest.h>

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
  items[1].next = &items[2];
  q.push_batch(&items[1], &items[2], 2);
  q.push(&items[3]);
  CHECK(q.len() == 4);
  size_t n = 0;
  Item* c = q.pop_batch(3, &n);
  CHECK(n == 3);
  CHECK(c->value == 0);
  CHECK(c->next->value == 1);
  CHECK(c->next->next->value == 2);
  CHECK(c->next->next->next == nullptr);
  c = q.pop_batch(10, &n);
  CHECK(n == 1);
  CHECK(c->value == 3);
  CHECK(q.pop_batch(10, &n) == nullptr);
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
