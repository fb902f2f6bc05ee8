#include "signal/signal.h"

#include <doctest/doctest.h>
#include <pthread.h>
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <set>
#include <thread>

#include "runtime/runtime.h"
#include "sync/sync.h"
#include "tests/stress_util.h"

namespace weft::signal {
namespace {

// Most tests open their sets on the main thread before the runtime starts,
// as signal.h's step 2 asks, so every thread blocks the signals and they
// reach the signalfd. Signals go to the process (kill), never to a thread
// (signal.h, Limits).
void send(int sig) { REQUIRE(::kill(::getpid(), sig) == 0); }

bool blocked_here(int sig) {
  sigset_t cur;
  pthread_sigmask(SIG_BLOCK, nullptr, &cur);
  return sigismember(&cur, sig) == 1;
}

std::unique_ptr<Runtime> make_runtime() { return *Runtime::create({.workers = 2}); }

TEST_CASE("kill(getpid()) reaches a fiber parked in recv()") {
  auto set = SignalSet::open({SIGUSR1});
  REQUIRE(set.ok());
  CHECK(blocked_here(SIGUSR1));
  auto rt = make_runtime();
  int got = rt->block_on([&] {
    auto sender = spawn([] {
      CHECK(this_fiber::sleep_for(absl::Milliseconds(20)).ok());  // the receiver parks first
      send(SIGUSR1);
    });
    auto sig = set->recv();
    sender.join();
    return sig.ok() ? *sig : -1;
  });
  CHECK(got == SIGUSR1);
  set->close();
  CHECK(!blocked_here(SIGUSR1));
}

TEST_CASE("a signal sent before recv() waits for it; try_recv() works off the runtime") {
  auto set = SignalSet::open({SIGUSR1, SIGUSR2});
  REQUIRE(set.ok());
  CHECK(set->try_recv().status().code() == absl::StatusCode::kUnavailable);
  send(SIGUSR1);  // no fiber, no runtime yet: it stays pending
  auto rt = make_runtime();
  int got = rt->block_on([&] {
    auto sig = set->recv();
    return sig.ok() ? *sig : -1;
  });
  CHECK(got == SIGUSR1);
  send(SIGUSR2);
  auto sig = set->try_recv();  // any thread
  REQUIRE(sig.ok());
  CHECK(*sig == SIGUSR2);
}

TEST_CASE("two signals, both received") {
  auto set = SignalSet::open({SIGUSR1, SIGUSR2});
  REQUIRE(set.ok());
  CHECK(set->contains(SIGUSR2));
  CHECK(!set->contains(SIGTERM));
  auto rt = make_runtime();
  std::set<int> got = rt->block_on([&] {
    send(SIGUSR1);
    send(SIGUSR2);
    std::set<int> s;
    for (int i = 0; i < 2; ++i) {
      auto sig = set->recv_for(absl::Seconds(10));
      if (sig.ok()) s.insert(*sig);
    }
    return s;
  });
  CHECK(got == std::set<int>{SIGUSR1, SIGUSR2});
}

TEST_CASE("recv_for() times out; close() wakes a parked recv() with kCancelled") {
  auto set = SignalSet::open({SIGUSR1});
  REQUIRE(set.ok());
  auto rt = make_runtime();
  rt->block_on([&] {
    CHECK(set->recv_for(absl::Milliseconds(20)).status().code() == absl::StatusCode::kDeadlineExceeded);
    auto waiter = spawn([&] { return set->recv().status().code(); });
    CHECK(this_fiber::sleep_for(absl::Milliseconds(20)).ok());
    set->close();
    CHECK(waiter.join() == absl::StatusCode::kCancelled);
    CHECK(set->recv().status().code() == absl::StatusCode::kCancelled);
    CHECK(!set->is_open());
  });
  CHECK(blocked_here(SIGUSR1));  // closed on a fiber: main still holds it
  set->close();                  // on the opening thread: released here
  CHECK(!blocked_here(SIGUSR1));
  SignalSet empty;
  CHECK(empty.try_recv().status().code() == absl::StatusCode::kFailedPrecondition);
}

TEST_CASE("recv_for() with an infinite or far timeout waits like recv()") {
  // The timeout becomes a deadline of now + timeout in nanoseconds, which
  // must not overflow (UBSan flags it) or come out in the past.
  auto set = SignalSet::open({SIGUSR1});
  REQUIRE(set.ok());
  auto rt = make_runtime();
  rt->block_on([&] {
    for (absl::Duration timeout : {absl::InfiniteDuration(), absl::Hours(24 * 365 * 1000)}) {
      auto sender = spawn([] {
        CHECK(this_fiber::sleep_for(absl::Milliseconds(20)).ok());
        send(SIGUSR1);
      });
      auto sig = set->recv_for(timeout);
      sender.join();
      // (No CAPTURE: doctest keeps it in a thread_local, and this fiber may
      // resume on another worker.)
      REQUIRE_MESSAGE(sig.ok(), absl::FormatDuration(timeout), ": ", sig.status().ToString());
      CHECK(*sig == SIGUSR1);
    }
  });
  set->close();
}

TEST_CASE("a parked recv() observes the fiber's cancellation (kCancelled); the set stays open") {
  auto set = SignalSet::open({SIGUSR1});
  REQUIRE(set.ok());
  auto rt = make_runtime();
  rt->block_on([&] {
    CancellationToken stop;
    auto waiter = spawn({.token = stop}, [&] { return set->recv().status().code(); });
    CHECK(this_fiber::sleep_for(absl::Milliseconds(20)).ok());  // the receiver parks first
    stop.cancel();
    CHECK(waiter.join() == absl::StatusCode::kCancelled);
    CHECK(set->is_open());
    send(SIGUSR1);
    auto sig = set->recv_for(absl::Seconds(10));
    CHECK((sig.ok() && *sig == SIGUSR1));
  });
  set->close();
}

TEST_CASE("open() refuses what cannot be received") {
  for (int sig : {0, SIGKILL, SIGSTOP, SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGABRT, 32, 65}) {
    auto set = SignalSet::open({sig});
    CHECK(set.status().code() == absl::StatusCode::kInvalidArgument);
  }
  CHECK(SignalSet::open(std::span<const int>()).status().code() == absl::StatusCode::kInvalidArgument);
  CHECK(!blocked_here(SIGUSR1));
}

std::atomic<int> g_usr2_handled{0};
void count_usr2(int) { g_usr2_handled.fetch_add(1); }

TEST_CASE("the original disposition comes back when the last set closes") {
  struct sigaction mine = {}, old = {};
  mine.sa_handler = count_usr2;
  sigemptyset(&mine.sa_mask);
  REQUIRE(::sigaction(SIGUSR2, &mine, &old) == 0);
  g_usr2_handled = 0;
  {
    auto set = SignalSet::open({SIGUSR2});
    REQUIRE(set.ok());
    auto rt = make_runtime();
    int got = rt->block_on([&] {
      send(SIGUSR2);
      auto sig = set->recv();
      return sig.ok() ? *sig : -1;
    });
    CHECK(got == SIGUSR2);
    CHECK(g_usr2_handled.load() == 0);  // the set took it, not the handler
    send(SIGUSR2);                      // pending when the set closes: discarded
  }  // the set, then the runtime
  struct sigaction now = {};
  REQUIRE(::sigaction(SIGUSR2, nullptr, &now) == 0);
  CHECK((now.sa_handler == &count_usr2));
  CHECK(!blocked_here(SIGUSR2));
  CHECK(g_usr2_handled.load() == 0);
  send(SIGUSR2);
  for (int i = 0; i < 5000 && g_usr2_handled.load() == 0; ++i) ::usleep(1000);
  CHECK(g_usr2_handled.load() == 1);
  REQUIRE(::sigaction(SIGUSR2, &old, nullptr) == 0);
}

TEST_CASE("a signal that lands on a thread that does not block it is forwarded") {
  auto set = SignalSet::open({SIGUSR1});
  REQUIRE(set.ok());
  auto rt = make_runtime();
  rt->block_on([&] {
    // A plain thread that unblocks the signal and aims it at itself: the
    // forwarding handler runs there (signal.h, step 4).
    std::thread t([] {
      sigset_t one;
      sigemptyset(&one);
      sigaddset(&one, SIGUSR1);
      pthread_sigmask(SIG_UNBLOCK, &one, nullptr);
      ::raise(SIGUSR1);
      for (int i = 0; i < 10; ++i) ::usleep(100);  // TSan runs deferred handlers at its interceptors
    });
    auto sig = set->recv_for(absl::Seconds(10));
    CHECK((sig.ok() && *sig == SIGUSR1));
    t.join();
  });
}

TEST_CASE("wait() on a fiber; two sets for one signal: each signal goes to one of them") {
  // `guard` keeps SIGUSR1 reserved and blocked in main throughout, so a
  // signal sent before wait() opened its own set is not lost.
  auto guard = SignalSet::open({SIGUSR1});
  REQUIRE(guard.ok());
  auto rt = make_runtime();
  rt->block_on([&] {
    auto sender = spawn([] {
      CHECK(this_fiber::sleep_for(absl::Milliseconds(10)).ok());
      send(SIGUSR1);
    });
    auto sig = wait({SIGUSR1});  // guard never reads, so wait() gets it
    CHECK((sig.ok() && *sig == SIGUSR1));
    sender.join();

    auto second = SignalSet::open({SIGUSR1});
    REQUIRE(second.ok());
    std::atomic<int> received{0};
    WaitGroup wg;
    wg.add(2);
    SignalSet* sets[2] = {&*guard, &*second};
    for (SignalSet* s : sets) {
      spawn([&, s] {
        while (s->recv().ok()) received.fetch_add(1);
        wg.done();
      }).detach();
    }
    for (int i = 1; i <= 3; ++i) {
      send(SIGUSR1);
      for (int n = 0; n < 10000 && received.load() < i; ++n) {
        REQUIRE(this_fiber::sleep_for(absl::Milliseconds(1)).ok());
      }
      CHECK(received.load() == i);
    }
    CHECK(this_fiber::sleep_for(absl::Milliseconds(20)).ok());
    CHECK(received.load() == 3);  // no signal was received twice
    guard->close();
    second->close();
    CHECK(wg.wait().ok());
  });
}

TEST_CASE("stress: every signal sent from a plain thread is counted") {
  const int n = static_cast<int>(weft::testing::stress_size(2000)) / 2 * 2;
  auto set = SignalSet::open({SIGUSR1, SIGUSR2});
  REQUIRE(set.ok());
  auto rt = make_runtime();
  std::atomic<int> counted{0};
  std::atomic<int> usr2{0};
  rt->block_on([&] {
    auto counter = spawn([&] {
      while (counted.load() < n) {
        auto sig = set->recv();
        if (!sig.ok()) break;
        if (*sig == SIGUSR2) usr2.fetch_add(1);
        counted.fetch_add(1);
      }
    });
    // The sender waits for each ack before the next send: signals of one
    // number coalesce in the kernel, so exact counts need it. Every other
    // signal is sent by a thread that does not block it (forwarded).
    std::thread sender([&] {
      sigset_t one;
      sigemptyset(&one);
      sigaddset(&one, SIGUSR2);
      pthread_sigmask(SIG_UNBLOCK, &one, nullptr);
      for (int i = 0; i < n; ++i) {
        ::kill(::getpid(), i % 2 == 0 ? SIGUSR1 : SIGUSR2);
        for (int spins = 0; counted.load() < i + 1 && spins < 500'000; ++spins) ::usleep(20);
      }
    });
    counter.join();
    sender.join();
  });
  CHECK(counted.load() == n);
  CHECK(usr2.load() == n / 2);
}

}  // namespace
}  // namespace weft::signal
