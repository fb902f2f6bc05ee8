#include "sync/channel.h"

#include <doctest/doctest.h>

#include <atomic>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "runtime/runtime.h"
#include "tests/test_util.h"

namespace weft {
namespace {

TEST_CASE("try_send/try_recv on a bounded channel") {
  Channel<int> ch(2);
  CHECK(ch.try_send(1).ok());
  CHECK(ch.try_send(2).ok());
  CHECK(ch.try_send(3).code() == absl::StatusCode::kResourceExhausted);
  CHECK(*ch.try_recv() == 1);
  CHECK(*ch.try_recv() == 2);
  CHECK(ch.try_recv().status().code() == absl::StatusCode::kUnavailable);
  ChannelStats s = ch.stats();
  CHECK(s.sent == 2);
  CHECK(s.received == 2);
}

TEST_CASE("full policies: fail and drop-oldest") {
  Channel<int> fail(1, FullPolicy::kFail);
  CHECK(fail.send(1).ok());
  CHECK(fail.send(2).code() == absl::StatusCode::kResourceExhausted);
  Channel<int> drop(2, FullPolicy::kDropOldest);
  for (int i = 1; i <= 5; ++i) CHECK(drop.send(i).ok());
  CHECK(*drop.try_recv() == 4);
  CHECK(*drop.try_recv() == 5);
  CHECK(drop.stats().dropped == 3);
  CHECK(drop.stats().sent == 5);
}

TEST_CASE("close: receivers drain then see end of stream; senders fail and keep values") {
  Channel<std::string> ch(Channel<std::string>::kUnbounded);
  CHECK(ch.send(std::string("a")).ok());
  ch.close();
  ch.close();
  std::string v = "kept";
  CHECK(ch.send(std::move(v)).code() == absl::StatusCode::kFailedPrecondition);
  CHECK(v == "kept");
  CHECK(*ch.recv() == "a");
  CHECK(ch.recv().status().code() == absl::StatusCode::kOutOfRange);
  CHECK(ch.is_closed());
}

TEST_CASE("close wakes parked receivers and senders") {
  auto rt = *Runtime::create({.workers = 2});
  rt->block_on([] {
    Channel<int> empty(1), full(1);
    CHECK(full.send(0).ok());
    auto r = spawn([&] { return empty.recv().status().code(); });
    auto s = spawn([&] { return full.send(1).code(); });
    (void)this_fiber::sleep_for(absl::Milliseconds(5));
    empty.close();
    full.close();
    CHECK(r.join() == absl::StatusCode::kOutOfRange);
    CHECK(s.join() == absl::StatusCode::kFailedPrecondition);
  });
}

TEST_CASE("timeouts on send and recv") {
  auto rt = *Runtime::create({.workers = 1});
  rt->block_on([] {
    Channel<int> ch(1);
    CHECK(ch.recv_for(absl::Milliseconds(3)).status().code() == absl::StatusCode::kDeadlineExceeded);
    CHECK(ch.send(1).ok());
    CHECK(ch.send_for(2, absl::Milliseconds(3)).code() == absl::StatusCode::kDeadlineExceeded);
    CHECK(ch.size() == 1);
    CHECK(*ch.recv() == 1);
  });
}

TEST_CASE("a waiting sender's value enters the buffer in order") {
  auto rt = *Runtime::create({.workers = 1});
  std::vector<int> got = rt->block_on([] {
    Channel<int> ch(1);
    auto p = spawn([&] {
      for (int i = 0; i < 5; ++i) CHECK(ch.send(i).ok());
    });
    std::vector<int> out;
    for (int i = 0; i < 5; ++i) out.push_back(*ch.recv());
    p.join();
    return out;
  });
  CHECK(got == std::vector<int>{0, 1, 2, 3, 4});
}

TEST_CASE("MPMC stress: every value is received exactly once") {
  weft::testing::for_each_worker_count({1, 2, 4}, [](int workers) {
    for (size_t cap : {size_t{1}, size_t{16}, Channel<int>::kUnbounded}) {
      CAPTURE(cap);
      auto rt = *Runtime::create({.workers = workers});
      const int kProducers = 8, kConsumers = 8;
      const int kPer = 2000 * static_cast<int>(weft::testing::scale());
      std::vector<std::atomic<int>> seen(static_cast<size_t>(kProducers * kPer));
      rt->block_on([&] {
        Channel<int> ch(cap);
        std::vector<JoinHandle<void>> ps, cs;
        for (int c = 0; c < kConsumers; ++c) {
          cs.push_back(spawn([&, c] {
            for (;;) {
              auto v = (c % 2) ? ch.recv() : ch.recv_for(absl::Seconds(30));
              if (!v.ok()) {
                CHECK(v.status().code() == absl::StatusCode::kOutOfRange);
                return;
              }
              seen[static_cast<size_t>(*v)].fetch_add(1);
            }
          }));
        }
        for (int p = 0; p < kProducers; ++p) {
          ps.push_back(spawn([&, p] {
            for (int i = 0; i < kPer; ++i) REQUIRE(ch.send(p * kPer + i).ok());
          }));
        }
        for (auto& h : ps) h.join();
        ch.close();
        for (auto& h : cs) h.join();
        ChannelStats st = ch.stats();
        CHECK(st.sent == static_cast<uint64_t>(kProducers * kPer));
        CHECK(st.received == st.sent);
      });
      int bad = 0;
      for (auto& s : seen) bad += s.load() != 1;
      CHECK(bad == 0);
    }
  });
}

TEST_CASE("plain threads and fibers share a channel") {
  auto rt = *Runtime::create({.workers = 2});
  Channel<int> ch(4);
  const int kN = 5000;
  auto consumer = rt->spawn([&] {
    int64_t s = 0;
    for (int i = 0; i < 2 * kN; ++i) s += *ch.recv();
    return s;
  });
  std::thread t1([&] {
    for (int i = 1; i <= kN; ++i) CHECK(ch.send(i).ok());
  });
  std::thread t2([&] {
    for (int i = 1; i <= kN; ++i) CHECK(ch.send(i).ok());
  });
  t1.join();
  t2.join();
  CHECK(consumer.join() == int64_t{kN} * (kN + 1));
}

}  // namespace
}  // namespace weft
