#include "lifecycle/select.h"

#include <doctest/doctest.h>

#include <atomic>
#include <string>
#include <vector>

#include "runtime/runtime.h"
#include "sync/sync.h"

namespace weft {
namespace {

std::unique_ptr<Runtime> make_rt() { return *Runtime::create({.workers = 2}); }

TEST_CASE("select returns the ready case with its value") {
  auto rt = make_rt();
  (*rt).block_on([] {
    Channel<int> a(4);
    Channel<std::string> b(4);
    REQUIRE(b.send(std::string("hi")).ok());
    auto r = select(recv(a), recv(b));
    REQUIRE(r.ok());
    REQUIRE(r->index() == 1);
    CHECK(*std::get<1>(*r) == "hi");
    CHECK(a.size() == 0);
  });
}

TEST_CASE("select waits for the first case to become ready") {
  auto rt = make_rt();
  (*rt).block_on([] {
    Channel<int> a(1), b(1);
    auto sender = spawn([&] {
      (void)this_fiber::sleep_for(absl::Milliseconds(10));
      CHECK(b.send(7).ok());
    });
    auto r = select(recv(a), recv(b), after(absl::Seconds(10)));
    REQUIRE(r.ok());
    REQUIRE(r->index() == 1);
    CHECK(*std::get<1>(*r) == 7);
    sender.join();
  });
}

TEST_CASE("after() fires when nothing else is ready; nothing is taken from the channels") {
  auto rt = make_rt();
  (*rt).block_on([] {
    Channel<int> a(1);
    absl::Time start = absl::Now();
    auto r = select(recv(a), after(absl::Milliseconds(20)));
    REQUIRE(r.ok());
    CHECK(r->index() == 1);
    CHECK(absl::Now() - start >= absl::Milliseconds(19));
    CHECK(a.send(1).ok());  // the channel still works and holds only this value
    CHECK(a.size() == 1);
  });
}

TEST_CASE("send cases: a full channel waits, a receiver takes the value") {
  auto rt = make_rt();
  (*rt).block_on([] {
    Channel<int> full(1);
    REQUIRE(full.send(1).ok());
    Channel<int> other(1);
    auto receiver = spawn([&] {
      (void)this_fiber::sleep_for(absl::Milliseconds(10));
      return *full.recv();
    });
    auto r = select(send(full, 2), recv(other));
    REQUIRE(r.ok());
    REQUIRE(r->index() == 0);
    CHECK(std::get<0>(*r).ok());
    CHECK(receiver.join() == 1);
    CHECK(*full.recv() == 2);  // the select's value went in after the receiver made room
  });
}

TEST_CASE("closed channels: recv yields kOutOfRange, send yields kFailedPrecondition") {
  auto rt = make_rt();
  (*rt).block_on([] {
    Channel<int> a(1);
    a.close();
    auto r = select(recv(a));
    REQUIRE(r.ok());
    CHECK(absl::IsOutOfRange(std::get<0>(*r).status()));
    auto s = select(send(a, 3));
    REQUIRE(s.ok());
    CHECK(absl::IsFailedPrecondition(std::get<0>(*s)));
    // Closing while the select waits wakes it.
    Channel<int> b(1);
    auto closer = spawn([&] {
      (void)this_fiber::sleep_for(absl::Milliseconds(5));
      b.close();
    });
    auto t = select(recv(b), after(absl::Seconds(10)));
    REQUIRE(t.ok());
    CHECK(t->index() == 0);
    CHECK(absl::IsOutOfRange(std::get<0>(*t).status()));
    closer.join();
  });
}

TEST_CASE("cancelled(token), finished(handle) and is_set(event) cases") {
  auto rt = make_rt();
  (*rt).block_on([] {
    CancellationToken stop;
    Channel<int> never(1);
    auto canceller = spawn([&] {
      (void)this_fiber::sleep_for(absl::Milliseconds(5));
      stop.cancel();
    });
    auto r = select(recv(never), cancelled(stop));
    REQUIRE(r.ok());
    CHECK(r->index() == 1);
    canceller.join();

    auto worker = spawn([] {
      (void)this_fiber::sleep_for(absl::Milliseconds(5));
      return 5;
    });
    auto f = select(recv(never), finished(worker));
    REQUIRE(f.ok());
    CHECK(f->index() == 1);
    CHECK(worker.join() == 5);

    Event ev;
    auto setter = spawn([&] {
      (void)this_fiber::sleep_for(absl::Milliseconds(5));
      ev.set();
    });
    auto e = select(recv(never), is_set(ev));
    REQUIRE(e.ok());
    CHECK(e->index() == 1);
    setter.join();
  });
}

TEST_CASE("the calling fiber's cancellation ends a select with kCancelled") {
  auto rt = make_rt();
  CancellationToken stop;
  SpawnOptions opts;
  opts.token = stop;
  Channel<int> never(1);
  Event started;  // cancelled before it starts, the fiber would never run
  auto h = rt->spawn(
      [&] {
        started.set();
        return select(recv(never), after(absl::Seconds(30))).status();
      },
      opts);
  REQUIRE(started.wait().ok());
  stop.cancel();
  CHECK(absl::IsCancelled(h.join()));
  CHECK(never.size() == 0);
}

TEST_CASE("fair choice among cases ready at once") {
  auto rt = make_rt();
  (*rt).block_on([] {
    Channel<int> a(Channel<int>::kUnbounded), b(Channel<int>::kUnbounded);
    constexpr int kRounds = 4000;
    for (int i = 0; i < kRounds; ++i) {
      REQUIRE(a.send(i).ok());
      REQUIRE(b.send(i).ok());
    }
    int picks[2] = {0, 0};
    for (int i = 0; i < kRounds; ++i) {
      auto r = select(recv(a), recv(b));
      REQUIRE(r.ok());
      ++picks[r->index()];
    }
    // Each is ~2000; a biased choice would take one side far more often.
    CHECK(picks[0] > kRounds / 2 - 400);
    CHECK(picks[1] > kRounds / 2 - 400);
    // Nothing lost: what is left plus what was taken is everything sent.
    CHECK(a.size() + b.size() + kRounds == 2 * kRounds);
  });
}

TEST_CASE("fair choice among the ready cases when some cases are not ready") {
  auto rt = make_rt();
  (*rt).block_on([] {
    // a and b are always ready, idle never: each of a and b must win about
    // half the time, whatever the position of the case that is not ready.
    Channel<int> a(Channel<int>::kUnbounded), b(Channel<int>::kUnbounded), idle(1);
    constexpr int kRounds = 6000;
    for (int i = 0; i < kRounds; ++i) {
      REQUIRE(a.send(i).ok());
      REQUIRE(b.send(i).ok());
    }
    int picks[3] = {0, 0, 0};
    for (int i = 0; i < kRounds; ++i) {
      auto r = select(recv(a), recv(b), recv(idle));
      REQUIRE(r.ok());
      ++picks[r->index()];
    }
    CAPTURE(picks[0]);
    CAPTURE(picks[1]);
    // Fair: ~3000 each (sd ~40). Polling from a random start and wrapping
    // around gives the case after the idle one 2/3 of the picks (~4000).
    CHECK(picks[0] > kRounds / 2 - 300);
    CHECK(picks[1] > kRounds / 2 - 300);
    CHECK(picks[2] == 0);
  });
}

TEST_CASE("storm: selects on two channels against senders, exact counts, no value lost") {
  auto rt = make_rt();
  (*rt).block_on([] {
    Channel<int> a(2), b(2);
    constexpr int kPerSender = 3000;
    std::atomic<int64_t> sum_sent{0};
    std::vector<JoinHandle<void>> senders;
    for (int s = 0; s < 4; ++s) {
      senders.push_back(spawn([&, s] {
        Channel<int>& ch = s % 2 == 0 ? a : b;
        for (int i = 1; i <= kPerSender; ++i) {
          REQUIRE(ch.send(i).ok());
          sum_sent.fetch_add(i);
        }
      }));
    }
    std::atomic<int64_t> received{0}, sum_received{0}, timeouts{0};
    std::vector<JoinHandle<void>> receivers;
    for (int r = 0; r < 3; ++r) {
      receivers.push_back(spawn([&] {
        while (received.load() < 4 * kPerSender) {
          auto res = select(recv(a), recv(b), after(absl::Milliseconds(1)));
          REQUIRE(res.ok());
          if (res->index() == 2) {
            timeouts.fetch_add(1);
            continue;
          }
          int v = res->index() == 0 ? *std::get<0>(*res) : *std::get<1>(*res);
          sum_received.fetch_add(v);
          received.fetch_add(1);
        }
      }));
    }
    for (auto& h : senders) h.join();
    for (auto& h : receivers) h.join();
    CHECK(received.load() == 4 * kPerSender);
    CHECK(sum_received.load() == sum_sent.load());
    CHECK(a.size() + b.size() == 0);
  });
}

}  // namespace
}  // namespace weft
