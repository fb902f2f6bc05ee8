#include "future/future.h"

#include <doctest/doctest.h>

#include <atomic>
#include <chrono>
#include <memory>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "future/to_future.h"
#include "runtime/runtime.h"
#include "sync/channel.h"
#include "sync/wait_group.h"
#include "tests/test_util.h"

namespace weft {
namespace {

std::unique_ptr<Runtime> make(int workers) { return *Runtime::create({.workers = workers}); }

// Where a callback ran.
struct Place {
  bool on_fiber = false;
  int worker = -2;
  uint64_t fiber = 0;
  std::thread::id thread;
};
Place here() { return Place{this_fiber::on_fiber(), this_fiber::worker_id(), this_fiber::id(), std::this_thread::get_id()}; }

TEST_CASE("set_value from a plain thread: the callback runs on a fiber of the runtime, not on that thread") {
  auto rt = make(2);
  Promise<int> p(*rt);
  Channel<Place> ran(1);
  Channel<int> got(1);
  auto end = std::move(p.get_future()).on_success([&](const int& v) {
    (void)got.send(v);
    (void)ran.send(here());
  });
  std::thread setter([&] { p.set_value(7); });
  auto setter_id = setter.get_id();
  setter.join();
  CHECK(*got.recv() == 7);
  Place pl = *ran.recv();
  CHECK(end.wait().ok());  // the callback has returned: the channels may go
  CHECK(pl.on_fiber);
  CHECK(pl.worker >= 0);
  CHECK(pl.thread != setter_id);
}

TEST_CASE("set_value on a fiber: the callback runs on another fiber of that runtime") {
  auto rt = make(1);
  rt->block_on([] {
    Promise<int> p;  // the current runtime
    Channel<Place> ran(1);
    auto f = std::move(p.get_future()).then([&](int v) {
      (void)ran.send(here());
      return v + 1;
    });
    p.set_value(1);  // returns before the callback runs: one worker, and we have not suspended
    CHECK(!f.ready());
    CHECK(*f.get() == 2);  // parks this fiber; the runner fiber runs on the same worker
    Place pl = *ran.recv();
    CHECK(pl.on_fiber);
    CHECK(pl.fiber != this_fiber::id());
  });
}

TEST_CASE("then chains values, StatusOr, Status and Futures (flattened), with void in between") {
  auto rt = make(2);
  Promise<int> p(*rt);
  Future<std::string> f =
      std::move(p.get_future())
          .then([](int v) { return v * 2; })                                          // U
          .then([](int v) -> absl::StatusOr<long> { return static_cast<long>(v) + 1; })  // StatusOr<U>
          .then([](long v) { CHECK(v == 43); })                                       // void
          .then([]() -> absl::Status { return absl::OkStatus(); })                    // Status
          .then([&rt] {                                                               // Future<U>
            Promise<int> inner(*rt);
            auto fi = inner.get_future();
            std::thread([q = std::move(inner)]() mutable { q.set_value(5); }).detach();
            return fi;
          })
          .then([](int&& v) { return std::to_string(v); });
  p.set_value(21);
  auto r = f.get();
  REQUIRE(r.ok());
  CHECK(*r == "5");
  CHECK(!f.valid());
}

TEST_CASE("a move-only value moves down the chain") {
  auto rt = make(1);
  Promise<std::unique_ptr<int>> p(*rt);
  auto f = std::move(p.get_future())
               .on_success([](const std::unique_ptr<int>& v) { CHECK(*v == 3); })
               .then([](std::unique_ptr<int> v) { return v; });
  p.set_value(std::make_unique<int>(3));
  auto r = f.get();
  REQUIRE(r.ok());
  CHECK(**r == 3);
}

TEST_CASE("an exception thrown in then() fails the next future and skips later then()s") {
  auto rt = make(2);
  Promise<int> p(*rt);
  std::atomic<int> skipped{0};
  Channel<std::string> failure(1);
  auto f = std::move(p.get_future())
               .then([](int) -> int { throw std::runtime_error("boom"); })
               .then([&](int v) {
                 skipped.fetch_add(1);
                 return v;
               })
               .on_success([&](const int&) { skipped.fetch_add(1); })
               .on_failure([&](const Failure& e) {
                 CHECK(e.is_exception());
                 (void)failure.send(std::string(e.status().message()));
               });
  p.set_value(1);
  CHECK(*failure.recv() == "exception: boom");
  CHECK_THROWS_WITH_AS(f.get(), "boom", std::runtime_error);
  CHECK(skipped.load() == 0);
}

TEST_CASE("an error status travels to on_failure and get(); on_failure may take an absl::Status") {
  auto rt = make(2);
  Promise<int> p(*rt);
  Channel<absl::StatusCode> seen(2);
  auto f = std::move(p.get_future())
               .then([](int v) { return v; })
               .on_failure([&](const absl::Status& s) { (void)seen.send(s.code()); })
               .on_failure([&](const Failure& e) {
                 CHECK(!e.is_exception());
                 (void)seen.send(e.status().code());
               });
  p.set_error(absl::NotFoundError("no such key"));
  CHECK(*seen.recv() == absl::StatusCode::kNotFound);
  CHECK(*seen.recv() == absl::StatusCode::kNotFound);
  auto r = f.get();
  CHECK(r.status().code() == absl::StatusCode::kNotFound);
  CHECK(r.status().message() == "no such key");
}

TEST_CASE("then() returning an error StatusOr or Status fails the next future") {
  auto rt = make(1);
  Promise<int> p(*rt);
  auto f1 = std::move(p.get_future()).then([](int) -> absl::StatusOr<int> { return absl::AbortedError("a"); });
  p.set_value(0);
  CHECK(f1.get().status().code() == absl::StatusCode::kAborted);

  Promise<void> q(*rt);
  auto f2 = std::move(q.get_future()).then([] { return absl::UnavailableError("b"); });
  q.set_value();
  CHECK(f2.get().code() == absl::StatusCode::kUnavailable);
}

TEST_CASE("an exception set on the promise is rethrown by get()") {
  auto rt = make(1);
  Promise<void> p(*rt);
  auto f = p.get_future();
  p.set_exception(std::make_exception_ptr(std::logic_error("bad")));
  CHECK_THROWS_WITH_AS(f.get(), "bad", std::logic_error);
}

TEST_CASE("set_result takes a StatusOr or a Status") {
  auto rt = make(1);
  Promise<int> a(*rt), b(*rt);
  Promise<void> c(*rt);
  auto fa = a.get_future(), fb = b.get_future();
  auto fc = c.get_future();
  a.set_result(absl::StatusOr<int>(4));
  b.set_result(absl::StatusOr<int>(absl::InternalError("x")));
  c.set_result(absl::OkStatus());
  CHECK(*fa.get() == 4);
  CHECK(fb.get().status().code() == absl::StatusCode::kInternal);
  CHECK(fc.get().ok());
}

TEST_CASE("a callback may block: it parks its runner fiber only") {
  auto rt = make(1);
  Promise<int> p(*rt);
  Channel<int> ch(1);
  auto f = std::move(p.get_future()).then([&](int v) { return v + *ch.recv(); });
  p.set_value(1);
  // The one worker stays free while the callback waits: other fibers run.
  CHECK(rt->block_on([] { return 5; }) == 5);
  REQUIRE(ch.send(10).ok());
  CHECK(*f.get() == 11);
}

TEST_CASE("get() parks a fiber: the fiber that sets the value runs on the same single worker") {
  auto rt = make(1);
  int v = rt->block_on([] {
    Promise<int> p;
    auto f = p.get_future();
    auto h = spawn([p = std::move(p)]() mutable {
      CHECK(this_fiber::sleep_for(absl::Milliseconds(2)).ok());
      p.set_value(9);
    });
    int r = *f.get();
    h.join();
    return r;
  });
  CHECK(v == 9);
}

TEST_CASE("get_for() and get_until() time out with kDeadlineExceeded and leave the future valid") {
  auto rt = make(1);
  Promise<int> p(*rt);
  auto f = p.get_future();
  CHECK(f.get_for(absl::Milliseconds(5)).status().code() == absl::StatusCode::kDeadlineExceeded);
  CHECK(f.get_until(absl::Now() - absl::Seconds(1)).status().code() == absl::StatusCode::kDeadlineExceeded);
  CHECK(f.valid());
  CHECK(f.wait_for(absl::Milliseconds(1)).code() == absl::StatusCode::kDeadlineExceeded);
  CHECK(f.wait_until(absl::Now() - absl::Seconds(1)).code() == absl::StatusCode::kDeadlineExceeded);
  p.set_value(3);
  CHECK(f.wait_for(absl::Seconds(10)).ok());
  CHECK(f.ready());
  auto r = f.get_for(absl::Seconds(10));
  REQUIRE(r.ok());
  CHECK(*r == 3);
  CHECK(!f.valid());
  // On a fiber, too.
  rt->block_on([] {
    Promise<void> q;
    auto g = q.get_future();
    CHECK(g.get_for(absl::Milliseconds(3)).code() == absl::StatusCode::kDeadlineExceeded);
    q.set_value();
    CHECK(g.get_for(absl::Seconds(10)).ok());
  });
}

TEST_CASE("a future dropped with callbacks pending: the callbacks still run") {
  auto rt = make(2);
  Promise<int> p(*rt);
  // Shared with the callbacks, so it outlives the last done() (a thread
  // that returns from wait() may otherwise destroy it while done() still
  // holds its lock).
  auto ran = std::make_shared<WaitGroup>(2);
  {
    auto f = std::move(p.get_future())
                 .then([ran](int v) {
                   ran->done();
                   return v;
                 })
                 .on_success([ran](const int&) { ran->done(); });
    // f, the end of the chain, is dropped here, before the value exists.
  }
  p.set_value(1);
  CHECK(ran->wait().ok());
}

TEST_CASE("a promise dropped unfulfilled is a broken promise: kAborted to the future and its callbacks") {
  auto rt = make(2);
  Channel<absl::Status> seen(1);
  std::atomic<int> then_ran{0};
  Future<int> f;
  {
    Promise<int> p(*rt);
    f = std::move(p.get_future())
            .then([&](int v) {
              then_ran.fetch_add(1);
              return v;
            })
            .on_failure([&](const absl::Status& s) { (void)seen.send(s); });
  }
  absl::Status s = *seen.recv();
  CHECK(s.code() == absl::StatusCode::kAborted);
  CHECK(s.message() == "weft::Promise destroyed without a result (broken promise)");
  CHECK(f.get().status().code() == absl::StatusCode::kAborted);
  CHECK(then_ran.load() == 0);
  // A waiter that is already blocked wakes with it too.
  auto p2 = std::make_unique<Promise<void>>(*rt);
  auto f2 = p2->get_future();
  std::thread dropper([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
    p2.reset();
  });
  CHECK(f2.get().code() == absl::StatusCode::kAborted);
  dropper.join();
}

TEST_CASE("a callback registered after completion runs promptly") {
  auto rt = make(2);
  Promise<int> p(*rt);
  auto f = p.get_future();
  p.set_value(8);
  REQUIRE(f.ready());
  std::atomic<int> got{0};
  auto t0 = absl::Now();
  auto end = std::move(f).on_success([&](const int& v) { got = v; });
  CHECK(end.wait().ok());
  CHECK(got.load() == 8);
  CHECK(absl::Now() - t0 < absl::Seconds(1));
}

TEST_CASE("misuse aborts with a message that names it") {
  using weft::testing::expect_death;
  auto rt = make(1);
  Promise<int> p(*rt);
  auto f = p.get_future();
  p.set_value(1);
  expect_death([&] { p.set_value(2); }, "Promise::set_value(): the promise already has a result");
  expect_death([&] { p.set_error(absl::InternalError("x")); }, "Promise::set_error(): the promise already has a result");
  expect_death([&] { (void)p.get_future(); }, "Promise::get_future() called twice");
  expect_death([] { Promise<int> q; }, "weft::Promise() called outside a weft runtime");
  expect_death(
      [&] {
        Promise<int> q(*rt);
        q.set_error(absl::OkStatus());
      },
      "Promise::set_error() with an OK status");
  expect_death(
      [] {
        Future<int> g;
        (void)g.get();
      },
      "Future::get() on an invalid Future");
  CHECK(*f.get() == 1);
}

TEST_CASE("after the runtime stopped, callbacks are dropped and their futures fail with kAborted") {
  auto rt = make(1);
  Promise<int> p(*rt);
  std::atomic<int> ran{0};
  auto f = std::move(p.get_future()).then([&](int v) {
    ran.fetch_add(1);
    return v;
  });
  rt->shutdown();
  p.set_value(1);
  auto r = f.get();
  CHECK(r.status().code() == absl::StatusCode::kAborted);
  CHECK(ran.load() == 0);
}

TEST_CASE("a callback parked when the runtime stops is unwound; the rest of its chain fails with kAborted") {
  auto rt = make(2);
  Promise<int> p(*rt);
  Channel<int> never(1);
  Channel<int> entered(1);
  std::atomic<int> later{0};
  auto f = std::move(p.get_future())
               .then([&](int v) {
                 (void)entered.send(1);
                 return v + *never.recv();  // parks until shutdown unwinds it
               })
               .then([&](int v) {
                 later.fetch_add(1);
                 return v;
               })
               .on_failure([&](const absl::Status&) { later.fetch_add(1); });
  p.set_value(1);
  CHECK(*entered.recv() == 1);
  rt->shutdown();
  auto r = f.get();
  CHECK(r.status().code() == absl::StatusCode::kAborted);
  CHECK(r.status().message() == "future callback dropped: its runtime stopped (broken promise)");
  CHECK(later.load() == 0);
}

TEST_CASE("race: set_value and callback registration on different threads; every callback runs exactly once") {
  auto rt = make(2);
  const int kN = 2000;
  for (int round = 0; round < 5; ++round) {
    std::vector<Promise<int>> ps;
    std::vector<Future<int>> fs;
    for (int i = 0; i < kN; ++i) {
      ps.emplace_back(*rt);
      fs.push_back(ps.back().get_future());
    }
    std::vector<std::atomic<int>> hits(kN);
    std::atomic<int64_t> sum{0};
    auto done = std::make_shared<WaitGroup>(kN);  // outlives the callbacks' done()
    std::atomic<bool> go{false};
    std::thread setter([&] {
      while (!go.load()) {
      }
      for (int i = 0; i < kN; ++i) ps[static_cast<size_t>(i)].set_value(i);
    });
    std::thread registrar([&] {
      while (!go.load()) {
      }
      for (int i = 0; i < kN; ++i) {
        std::move(fs[static_cast<size_t>(i)]).on_success([&hits, &sum, done, i](const int& v) {
          hits[static_cast<size_t>(i)].fetch_add(1);
          sum.fetch_add(v);
          done->done();
        });
      }
    });
    go = true;
    setter.join();
    registrar.join();
    CHECK(done->wait().ok());
    int64_t expect = int64_t{kN} * (kN - 1) / 2;
    CHECK(sum.load() == expect);
    int wrong = 0;
    for (auto& h : hits) wrong += h.load() != 1;
    CHECK(wrong == 0);
  }
}

TEST_CASE("get() and wait() on a cancelled fiber return kCancelled and leave the future to be waited for") {
  auto rt = make(2);
  Promise<int> p(*rt);
  Future<int> f = p.get_future();
  CancellationToken stop;
  Channel<int> parked(1);
  // The fiber's cancellation ends each of its waits in turn: get(),
  // get_for(), wait(), wait_for(); none consumes the future.
  auto h = rt->spawn(
      [&] {
        (void)parked.send(1);
        std::vector<absl::StatusCode> codes;
        codes.push_back(f.get().status().code());
        codes.push_back(f.get_for(absl::Seconds(60)).status().code());
        codes.push_back(f.wait().code());
        codes.push_back(f.wait_for(absl::Seconds(60)).code());
        return codes;
      },
      {.token = stop});
  CHECK(*parked.recv() == 1);
  stop.cancel();
  auto codes = h.join();
  REQUIRE(codes.size() == 4);
  for (absl::StatusCode c : codes) CHECK(c == absl::StatusCode::kCancelled);
  CHECK(f.valid());
  CHECK(!f.ready());
  // A result already there is returned even to a cancelled fiber.
  p.set_value(5);
  CancellationToken self;
  auto got = rt->spawn(
                   [&] {
                     self.cancel();  // a fiber cancelled before it starts would never run
                     CHECK(this_fiber::cancelled());
                     return f.get();
                   },
                   {.token = self})
                 .join();
  REQUIRE(got.ok());
  CHECK(*got == 5);
  CHECK(!f.valid());
}

TEST_CASE("JoinHandle::abort() ends a fiber's get(); under a CancellationShield get() waits on") {
  auto rt = make(2);
  Promise<int> p(*rt), q(*rt);
  Future<int> f = p.get_future(), g = q.get_future();
  Channel<int> parked(2);
  auto plain = rt->spawn([&] {
    (void)parked.send(1);
    return f.get().status().code();
  });
  auto shielded = rt->spawn([&] {
    this_fiber::CancellationShield shield;
    (void)parked.send(2);
    return g.get();
  });
  CHECK(parked.recv().ok());
  CHECK(parked.recv().ok());
  plain.abort();
  shielded.abort();
  CHECK(plain.join() == absl::StatusCode::kCancelled);
  CHECK(f.valid());
  // The shielded fiber is still waiting: it gets the value set now.
  CHECK(shielded.join_for(absl::Milliseconds(20)).status().code() == absl::StatusCode::kDeadlineExceeded);
  q.set_value(7);
  auto got = shielded.join();
  REQUIRE(got.ok());
  CHECK(*got == 7);
  p.set_value(1);  // f's result, never consumed, is destroyed with it
}

TEST_CASE("to_future: a fiber's value, exception, or void") {
  auto rt = make(2);
  auto f = to_future(*rt, rt->spawn([] { return 6 * 7; }));
  CHECK(*f.get() == 42);
  auto g = to_future(*rt, rt->spawn([]() -> int { throw std::runtime_error("fiber failed"); }));
  CHECK_THROWS_WITH_AS(g.get(), "fiber failed", std::runtime_error);
  rt->block_on([] {
    std::atomic<int> n{0};
    auto h = to_future(spawn([&] { n = 1; })).then([&] { return n.load() + 1; });
    CHECK(*h.get() == 2);
  });
}

TEST_CASE("to_future: cancelling the joining fiber (shutdown(grace)) does not fail the future; it waits on") {
  auto rt = make(1);  // one worker: the joined fiber, then the joining one, run in spawn order
  Channel<int> started(1);
  auto f = to_future(*rt, rt->spawn([&] {
    this_fiber::CancellationShield shield;  // finishes although shutdown cancels it
    (void)started.send(1);
    (void)this_fiber::sleep_for(absl::Milliseconds(100));
    return 42;
  }));
  REQUIRE(started.recv().ok());
  std::this_thread::sleep_for(std::chrono::milliseconds(20));  // the joining fiber parks in join()
  ShutdownReport report = rt->shutdown(absl::Seconds(10));
  CHECK(report.left == 0);
  REQUIRE(f.ready());
  auto got = f.get();  // not WaitCancelled: the joined fiber's value
  REQUIRE(got.ok());
  CHECK(*got == 42);
}

}  // namespace
}  // namespace weft
