// tools/soak/workloads.cc
//
// The soak workloads. Each runs rounds until ctx.stopping(); a round does a
// random mix of its operations and ends with exact accounting (every value
// sent was received once, every byte echoed, every fiber joined), so a
// round that passes leaves nothing behind. A failed check ends the process
// (SOAK_CHECK). Randomness comes from ctx.seed(); the interleavings do not
// repeat between runs, the choices of sizes and counts do.
//
// To add a workload: write `void run_NAME(WorkloadContext& ctx)` with the
// same shape (setup, rounds, teardown with final checks) and add it to the
// registry at the bottom of this file.
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <condition_variable>
#include <exception>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <random>
#include <stdexcept>
#include <string>
#include <thread>
#include <tuple>
#include <unordered_map>
#include <utility>
#include <variant>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "fs/file.h"
#include "fs/fs.h"
#include "future/future.h"
#include "future/to_future.h"
#include "future/when.h"
#include "lifecycle/scope.h"
#include "lifecycle/select.h"
#include "lifecycle/timeout.h"
#include "net/address.h"
#include "net/tcp.h"
#include "net/udp.h"
#include "process/process.h"
#include "runtime/blocking.h"
#include "runtime/cancel.h"
#include "runtime/runtime.h"
#include "sync/sync.h"
#include "tools/soak/soak.h"

namespace weft::soak {
namespace {

using Rng = std::mt19937_64;
using SteadyClock = std::chrono::steady_clock;

// uniform(rng, lo, hi) is in [lo, hi].
int64_t uniform(Rng& rng, int64_t lo, int64_t hi) {
  return lo + static_cast<int64_t>(rng() % static_cast<uint64_t>(hi - lo + 1));
}

// status_text(s).c_str() goes into a SOAK_CHECK message; the temporary
// lives until the check has printed it.
std::string status_text(const absl::Status& s) { return s.ToString(); }
template <class T>
std::string status_text(const absl::StatusOr<T>& s) {
  return s.status().ToString();
}

int64_t micros_since(SteadyClock::time_point t0) {
  return std::chrono::duration_cast<std::chrono::microseconds>(SteadyClock::now() - t0).count();
}

// The byte at offset i of a stream keyed by `key`: senders write it,
// receivers check it, with nothing stored.
char pattern_byte(uint64_t key, uint64_t i) {
  uint64_t x = (key + i) * 0x9E3779B97F4A7C15ull;
  return static_cast<char>(x >> 56);
}

// ---------------------------------------------------------------------------
// spawn: trees of nested spawns joined bottom-up, spawn_on every worker,
// an exception through join(), detached fibers counted by a WaitGroup.

struct SpawnCounters {
  std::atomic<int64_t> started{0}, finished{0};
};

// spawn_tree() returns the number of fibers in its subtree (itself
// included); children are spawned, then joined, at each level.
int64_t spawn_tree(int depth, uint64_t seed, SpawnCounters* c) {
  c->started.fetch_add(1, std::memory_order_relaxed);
  Rng rng(seed);
  int64_t n = 1;
  if (depth > 0) {
    std::vector<JoinHandle<int64_t>> kids;
    const int64_t k = uniform(rng, 0, 4);
    for (int64_t i = 0; i < k; ++i) {
      uint64_t s = rng();
      kids.push_back(spawn([depth, s, c] { return spawn_tree(depth - 1, s, c); }));
    }
    if (rng() % 4 == 0) this_fiber::yield();
    for (auto& h : kids) n += h.join();
  }
  c->finished.fetch_add(1, std::memory_order_relaxed);
  return n;
}

void run_spawn(WorkloadContext& ctx) {
  Rng rng(ctx.seed());
  while (!ctx.stopping()) {
    SpawnCounters c;
    // Trees: roots on chosen workers, nested to depth 3.
    const int64_t roots = uniform(rng, 4, 32);
    std::vector<JoinHandle<int64_t>> hs;
    for (int64_t i = 0; i < roots; ++i) {
      uint64_t s = rng();
      int depth = static_cast<int>(uniform(rng, 0, 3));
      int worker = static_cast<int>(uniform(rng, 0, ctx.workers() - 1));
      hs.push_back(ctx.runtime()->spawn_on(worker, [depth, s, &c] { return spawn_tree(depth, s, &c); }));
    }
    int64_t joined = 0;
    for (auto& h : hs) joined += h.join();
    int64_t expected = c.started.load();
    if (ctx.inject_check_failure() && ctx.rounds() == 2) ++expected;  // test-only miscount
    SOAK_CHECK(ctx, joined == expected, "spawn trees: joined %lld fibers, %lld started",
               static_cast<long long>(joined), static_cast<long long>(expected));
    SOAK_CHECK(ctx, c.finished.load() == c.started.load(), "spawn trees: %lld finished, %lld started",
               static_cast<long long>(c.finished.load()), static_cast<long long>(c.started.load()));

    // An exception crosses join().
    auto thrower = spawn([]() -> int { throw std::runtime_error("soak: thrown on purpose"); });
    bool caught = false;
    try {
      (void)thrower.join();
    } catch (const std::runtime_error& e) {
      caught = std::string(e.what()) == "soak: thrown on purpose";
    }
    SOAK_CHECK(ctx, caught, "join() did not rethrow the fiber's exception");

    // Detached fibers, counted by a WaitGroup.
    const int64_t detached = uniform(rng, 1, 64);
    WaitGroup wg;
    std::atomic<int64_t> ran{0};
    for (int64_t i = 0; i < detached; ++i) {
      wg.add();
      bool sleep = rng() % 8 == 0;
      spawn([&ctx, &wg, &ran, sleep] {
        if (sleep) {
          absl::Status s = this_fiber::sleep_for(absl::Milliseconds(1));
          SOAK_CHECK(ctx, s.ok(), "detached fiber sleep: %s", status_text(s).c_str());
        } else {
          this_fiber::yield();
        }
        ran.fetch_add(1, std::memory_order_relaxed);
        wg.done();
      }).detach();
    }
    absl::Status waited = wg.wait_for(absl::Seconds(60));
    SOAK_CHECK(ctx, waited.ok(), "detached fibers: %lld of %lld done after 60 s: %s",
               static_cast<long long>(ran.load()), static_cast<long long>(detached), status_text(waited).c_str());
    SOAK_CHECK(ctx, ran.load() == detached, "detached fibers: %lld ran, %lld spawned",
               static_cast<long long>(ran.load()), static_cast<long long>(detached));
    ctx.count(static_cast<uint64_t>(joined + 1 + detached));
    ctx.round_done();
  }
}

// ---------------------------------------------------------------------------
// channel: producers and consumers on a bounded or unbounded channel with
// every kind of send and recv, then close; drop-oldest and fail policies;
// the statuses of a closed and of an empty channel.

struct Tally {
  int64_t count = 0;
  uint64_t sum = 0;
};

void run_channel(WorkloadContext& ctx) {
  Rng rng(ctx.seed());
  using Ch = Channel<uint64_t>;
  while (!ctx.stopping()) {
    const bool bounded = rng() % 2 == 0;
    const size_t cap = bounded ? static_cast<size_t>(uniform(rng, 1, 64)) : Ch::kUnbounded;
    Ch ch(cap);
    const int64_t producers = uniform(rng, 1, 4), consumers = uniform(rng, 1, 4);
    const int64_t per_producer = uniform(rng, 1, 500);
    std::vector<JoinHandle<uint64_t>> ps;
    for (int64_t p = 0; p < producers; ++p) {
      ps.push_back(spawn([&ctx, &ch, p, per_producer] {
        uint64_t sum = 0;
        for (int64_t i = 0; i < per_producer; ++i) {
          uint64_t v = (static_cast<uint64_t>(p) << 32) | static_cast<uint64_t>(i);
          absl::Status s;
          switch (i % 3) {
            case 0:  // try_send, yielding while full
              while ((s = ch.try_send(v)).code() == absl::StatusCode::kResourceExhausted) this_fiber::yield();
              break;
            case 1:  // send_for, retrying on timeout
              while ((s = ch.send_for(uint64_t{v}, absl::Milliseconds(2))).code() ==
                     absl::StatusCode::kDeadlineExceeded) {
              }
              break;
            default:
              s = ch.send(v);
          }
          SOAK_CHECK(ctx, s.ok(), "send: %s", status_text(s).c_str());
          sum += v;
        }
        return sum;
      }));
    }
    std::vector<JoinHandle<Tally>> cs;
    for (int64_t c = 0; c < consumers; ++c) {
      bool timed = rng() % 2 == 0;
      cs.push_back(spawn([&ctx, &ch, timed] {
        Tally t;
        for (;;) {
          absl::StatusOr<uint64_t> v = timed ? ch.recv_for(absl::Milliseconds(1)) : ch.recv();
          if (v.status().code() == absl::StatusCode::kDeadlineExceeded) continue;
          if (v.status().code() == absl::StatusCode::kOutOfRange) return t;
          SOAK_CHECK(ctx, v.ok(), "recv: %s", status_text(v).c_str());
          ++t.count;
          t.sum += *v;
        }
      }));
    }
    uint64_t sent_sum = 0;
    for (auto& h : ps) sent_sum += h.join();
    ch.close();
    Tally got;
    for (auto& h : cs) {
      Tally t = h.join();
      got.count += t.count;
      got.sum += t.sum;
    }
    const int64_t sent = producers * per_producer;
    SOAK_CHECK(ctx, got.count == sent && got.sum == sent_sum,
               "%s channel: received %lld values (sum %llu), sent %lld (sum %llu)",
               bounded ? "bounded" : "unbounded", static_cast<long long>(got.count),
               static_cast<unsigned long long>(got.sum), static_cast<long long>(sent),
               static_cast<unsigned long long>(sent_sum));
    ChannelStats st = ch.stats();
    SOAK_CHECK(ctx, st.sent == static_cast<uint64_t>(sent) && st.received == st.sent && st.size == 0 && st.closed,
               "channel stats: sent %llu received %llu size %zu closed %d",
               static_cast<unsigned long long>(st.sent), static_cast<unsigned long long>(st.received),
               st.size, st.closed);
    absl::Status after = ch.send(1);
    SOAK_CHECK(ctx, after.code() == absl::StatusCode::kFailedPrecondition, "send after close: %s",
               status_text(after).c_str());
    SOAK_CHECK(ctx, ch.recv().status().code() == absl::StatusCode::kOutOfRange, "recv after close and drain");

    // Drop-oldest keeps the newest `cap` values, in order.
    {
      const int64_t k = uniform(rng, 1, 16), n = uniform(rng, 1, 64);
      Ch d(static_cast<size_t>(k), FullPolicy::kDropOldest);
      for (int64_t i = 0; i < n; ++i) SOAK_CHECK(ctx, d.send(static_cast<uint64_t>(i)).ok(), "drop-oldest send");
      d.close();
      int64_t next = n > k ? n - k : 0;
      for (auto v = d.recv(); v.ok(); v = d.recv()) {
        SOAK_CHECK(ctx, *v == static_cast<uint64_t>(next), "drop-oldest: got %llu, expected %lld",
                   static_cast<unsigned long long>(*v), static_cast<long long>(next));
        ++next;
      }
      SOAK_CHECK(ctx, next == n && d.stats().dropped == static_cast<uint64_t>(n > k ? n - k : 0),
                 "drop-oldest: drained to %lld of %lld, dropped %llu", static_cast<long long>(next),
                 static_cast<long long>(n), static_cast<unsigned long long>(d.stats().dropped));
    }
    // kFail refuses the value past capacity; an empty channel times out.
    {
      const int64_t k = uniform(rng, 1, 8);
      Ch f(static_cast<size_t>(k), FullPolicy::kFail);
      for (int64_t i = 0; i < k; ++i) SOAK_CHECK(ctx, f.send(1).ok(), "fail-policy send within capacity");
      SOAK_CHECK(ctx, f.send(1).code() == absl::StatusCode::kResourceExhausted, "fail-policy send past capacity");
      Ch e(4);
      SOAK_CHECK(ctx, e.try_recv().status().code() == absl::StatusCode::kUnavailable, "try_recv on empty");
      SOAK_CHECK(ctx, e.recv_for(absl::Milliseconds(1)).status().code() == absl::StatusCode::kDeadlineExceeded,
                 "recv_for on empty");
    }
    ctx.count(static_cast<uint64_t>(sent));
    ctx.round_done();
  }
}

// ---------------------------------------------------------------------------
// sync: Mutex, Semaphore, ConditionVariable, Event, WaitGroup and Oneshot,
// each with timed waits that must time out and timed waits that must not.

void run_sync(WorkloadContext& ctx) {
  Rng rng(ctx.seed());
  while (!ctx.stopping()) {
    uint64_t ops = 0;
    // Mutex: a plain counter loses increments if exclusion breaks.
    {
      Mutex mu;
      int64_t guarded = 0;
      const int64_t fibers = uniform(rng, 2, 16), each = uniform(rng, 1, 200);
      std::vector<JoinHandle<void>> hs;
      for (int64_t f = 0; f < fibers; ++f) {
        bool use_try = f % 2 == 0;
        hs.push_back(spawn([&mu, &guarded, each, use_try] {
          for (int64_t i = 0; i < each; ++i) {
            if (use_try) {
              while (!mu.try_lock()) this_fiber::yield();
            } else {
              mu.lock();
            }
            int64_t v = guarded;
            if (i % 16 == 0) this_fiber::yield();  // hold the lock across a switch
            guarded = v + 1;
            mu.unlock();
          }
        }));
      }
      for (auto& h : hs) h.join();
      SOAK_CHECK(ctx, guarded == fibers * each, "mutex: counter %lld, expected %lld",
                 static_cast<long long>(guarded), static_cast<long long>(fibers * each));
      ops += static_cast<uint64_t>(fibers * each);
    }
    // Semaphore: never more holders than permits; all permits come back.
    {
      const int64_t permits = uniform(rng, 1, 4), fibers = uniform(rng, 2, 16);
      Semaphore sem(permits);
      std::atomic<int64_t> inside{0}, most{0};
      std::vector<JoinHandle<void>> hs;
      for (int64_t f = 0; f < fibers; ++f) {
        bool timed = f % 2 == 0;
        hs.push_back(spawn([&, timed] {
          for (int i = 0; i < 8; ++i) {
            absl::Status s;
            if (timed) {
              while (absl::IsDeadlineExceeded(s = sem.acquire_for(absl::Microseconds(500)))) {
              }
            } else {
              s = sem.acquire();
            }
            SOAK_CHECK(ctx, s.ok(), "semaphore acquire: %s", status_text(s).c_str());
            int64_t now = inside.fetch_add(1) + 1;
            int64_t m = most.load();
            while (now > m && !most.compare_exchange_weak(m, now)) {
            }
            this_fiber::yield();
            inside.fetch_sub(1);
            sem.release();
          }
        }));
      }
      for (auto& h : hs) h.join();
      SOAK_CHECK(ctx, most.load() <= permits, "semaphore: %lld holders at once, %lld permits",
                 static_cast<long long>(most.load()), static_cast<long long>(permits));
      SOAK_CHECK(ctx, sem.available() == permits, "semaphore: %lld available after, %lld permits",
                 static_cast<long long>(sem.available()), static_cast<long long>(permits));
      Semaphore none(0);
      SOAK_CHECK(ctx, !none.try_acquire() && absl::IsDeadlineExceeded(none.acquire_for(absl::Milliseconds(1))),
                 "semaphore without permits was acquired");
      ops += static_cast<uint64_t>(fibers * 8);
    }
    // ConditionVariable: a bounded queue with timed waits on both sides.
    {
      Mutex mu;
      ConditionVariable not_empty, not_full;
      std::vector<int64_t> q;
      const size_t cap = static_cast<size_t>(uniform(rng, 1, 8));
      const int64_t n = uniform(rng, 1, 300);
      auto producer = spawn([&] {
        for (int64_t i = 1; i <= n; ++i) {
          std::unique_lock<Mutex> l(mu);
          absl::Status s;
          while (absl::IsDeadlineExceeded(s = not_full.wait_for(l, absl::Milliseconds(1),
                                                                 [&] { return q.size() < cap; }))) {
          }
          SOAK_CHECK(ctx, s.ok(), "condvar producer wait: %s", status_text(s).c_str());
          q.push_back(i);
          if (i % 2 == 0) {
            not_empty.notify_one();
          } else {
            not_empty.notify_all();
          }
        }
      });
      int64_t sum = 0, got = 0;
      while (got < n) {
        std::unique_lock<Mutex> l(mu);
        absl::Status s = not_empty.wait_for(l, absl::Milliseconds(1), [&] { return !q.empty(); });
        if (absl::IsDeadlineExceeded(s)) continue;
        SOAK_CHECK(ctx, s.ok(), "condvar consumer wait: %s", status_text(s).c_str());
        sum += q.front();
        q.erase(q.begin());
        ++got;
        not_full.notify_one();
      }
      producer.join();
      SOAK_CHECK(ctx, sum == n * (n + 1) / 2 && q.empty(), "condvar queue: sum %lld, expected %lld",
                 static_cast<long long>(sum), static_cast<long long>(n * (n + 1) / 2));
      std::unique_lock<Mutex> l(mu);
      SOAK_CHECK(ctx, absl::IsDeadlineExceeded(not_empty.wait_for(l, absl::Milliseconds(1))),
                 "condvar wait_for without a notify did not time out");
      ops += static_cast<uint64_t>(n);
    }
    // Event: waiters released by set(); an unset event times out.
    {
      Event ev;
      const int64_t waiters = uniform(rng, 1, 16);
      std::atomic<int64_t> released{0};
      std::vector<JoinHandle<void>> hs;
      for (int64_t w = 0; w < waiters; ++w) {
        hs.push_back(spawn([&] {
          if (ev.wait_for(absl::Seconds(60)).ok()) released.fetch_add(1);
        }));
      }
      if (rng() % 2 == 0) {
        absl::Status s = this_fiber::sleep_for(absl::Milliseconds(1));
        SOAK_CHECK(ctx, s.ok(), "event setter sleep: %s", status_text(s).c_str());
      }
      ev.set();
      for (auto& h : hs) h.join();
      SOAK_CHECK(ctx, released.load() == waiters, "event: %lld of %lld waiters released",
                 static_cast<long long>(released.load()), static_cast<long long>(waiters));
      ev.reset();
      SOAK_CHECK(ctx, !ev.is_set() && absl::IsDeadlineExceeded(ev.wait_for(absl::Milliseconds(1))),
                 "reset event did not time out");
      ops += static_cast<uint64_t>(waiters);
    }
    // WaitGroup: a timed wait before the count reaches zero fails, after succeeds.
    {
      WaitGroup wg(1);
      SOAK_CHECK(ctx, absl::IsDeadlineExceeded(wg.wait_for(absl::Milliseconds(1))),
                 "wait group with count 1 did not time out");
      auto h = spawn([&wg] { wg.done(); });
      absl::Status s = wg.wait_for(absl::Seconds(60));
      SOAK_CHECK(ctx, s.ok() && wg.count() == 0, "wait group did not reach zero: %s", status_text(s).c_str());
      h.join();
      ops += 1;
    }
    // Oneshot: a value from another fiber; a dropped sender; a timeout;
    // a send to a receiver that is gone.
    {
      auto [tx, rx] = make_oneshot<uint64_t>();
      uint64_t v = rng();
      auto h = spawn([tx = std::move(tx), v]() mutable { return tx.send(v); });
      absl::StatusOr<uint64_t> got = rx.recv();
      SOAK_CHECK(ctx, got.ok() && *got == v, "oneshot recv: %s", status_text(got).c_str());
      absl::Status sent = h.join();
      SOAK_CHECK(ctx, sent.ok(), "oneshot send: %s", status_text(sent).c_str());

      auto [tx2, rx2] = make_oneshot<uint64_t>();
      SOAK_CHECK(ctx, rx2.recv_for(absl::Milliseconds(1)).status().code() == absl::StatusCode::kDeadlineExceeded,
                 "oneshot recv_for without a send did not time out");
      spawn([tx2 = std::move(tx2)]() mutable { this_fiber::yield(); }).join();  // dropped unsent
      SOAK_CHECK(ctx, rx2.recv().status().code() == absl::StatusCode::kAborted,
                 "oneshot with a dropped sender is not kAborted");

      auto [tx3, rx3] = make_oneshot<uint64_t>();
      { auto gone = std::move(rx3); }
      SOAK_CHECK(ctx, tx3.send(1).code() == absl::StatusCode::kCancelled, "oneshot send to a dropped receiver");
      ops += 3;
    }
    ctx.count(ops);
    ctx.round_done();
  }
}

// ---------------------------------------------------------------------------
// tcp: a loopback echo server (accepted sockets placed round-robin, each
// echo fiber moving its socket between workers now and then) and clients
// that write and read full duplex while a third fiber keeps migrating the
// client socket. Bytes echoed == bytes sent, per connection and per round.

void run_tcp(WorkloadContext& ctx) {
  Rng rng(ctx.seed());
  auto listener = net::TcpListener::bind(net::SocketAddress::loopback_v4(0),
                                         {.placement = net::AcceptPlacement::kRoundRobin});
  SOAK_CHECK(ctx, listener.ok(), "bind: %s", status_text(listener).c_str());
  auto addr = listener->local_address();
  SOAK_CHECK(ctx, addr.ok(), "local_address: %s", status_text(addr).c_str());
  Channel<uint64_t> echoed(Channel<uint64_t>::kUnbounded);  // bytes, one value per finished connection
  std::atomic<int64_t> servers{0};
  const int workers = ctx.workers();
  auto acceptor = spawn([&] {
    Rng arng(ctx.seed() ^ 0xacce);
    for (;;) {
      auto conn = listener->accept();
      if (conn.status().code() == absl::StatusCode::kCancelled) return;
      SOAK_CHECK(ctx, conn.ok(), "accept: %s", status_text(conn).c_str());
      servers.fetch_add(1);
      uint64_t seed = arng();
      spawn([&ctx, &echoed, workers, seed, s = std::move(conn->stream)]() mutable {
        Rng srng(seed);
        char buf[16384];
        uint64_t n = 0;
        for (;;) {
          auto r = s.read(buf);
          SOAK_CHECK(ctx, r.ok(), "server read: %s", status_text(r).c_str());
          if (*r == 0) break;
          absl::Status w = s.write_all(std::string_view(buf, *r));
          SOAK_CHECK(ctx, w.ok(), "server write: %s", status_text(w).c_str());
          n += *r;
          if (srng() % 16 == 0) {
            absl::Status m = s.migrate_to(static_cast<int>(srng() % static_cast<uint64_t>(workers)));
            SOAK_CHECK(ctx, m.ok(), "server migrate_to: %s", status_text(m).c_str());
          }
        }
        (void)s.close();
        SOAK_CHECK(ctx, echoed.send(n).ok(), "echoed channel closed");
      }).detach();
    }
  });

  int64_t connections = 0;
  while (!ctx.stopping()) {
    if (rng() % 4 == 0) {
      absl::Status m = listener->migrate_to(static_cast<int>(uniform(rng, 0, workers - 1)));
      SOAK_CHECK(ctx, m.ok(), "listener migrate_to: %s", status_text(m).c_str());
    }
    const int64_t clients = uniform(rng, 1, 8);
    std::vector<JoinHandle<uint64_t>> hs;
    for (int64_t c = 0; c < clients; ++c) {
      uint64_t seed = rng();
      hs.push_back(spawn([&ctx, &addr, workers, seed] {
        Rng crng(seed);
        auto s = net::TcpStream::connect(*addr, absl::Seconds(30));
        SOAK_CHECK(ctx, s.ok(), "connect: %s", status_text(s).c_str());
        if (crng() % 2 == 0) (void)s->set_nodelay(true);
        if (crng() % 8 == 0) {  // a read with nothing to read times out, and the stream stays usable
          s->set_read_timeout(absl::Milliseconds(2));
          char b;
          auto r = s->read({&b, 1});
          SOAK_CHECK(ctx, r.status().code() == absl::StatusCode::kDeadlineExceeded,
                     "read with nothing sent did not time out: %s", status_text(r).c_str());
          s->set_read_timeout(absl::InfiniteDuration());
        }
        const int64_t messages = uniform(crng, 1, 20);
        std::vector<size_t> sizes;
        uint64_t total = 0;
        for (int64_t i = 0; i < messages; ++i) {
          sizes.push_back(static_cast<size_t>(uniform(crng, 1, 64 * 1024)));
          total += sizes.back();
        }
        std::atomic<bool> done{false};
        // The migrator moves the socket while the writer and reader use it.
        auto migrator = spawn([&ctx, &s, &done, workers, mseed = crng()] {
          Rng mrng(mseed);
          uint64_t moves = 0;
          while (!done.load()) {
            absl::Status sl = this_fiber::sleep_for(absl::Milliseconds(static_cast<int64_t>(mrng() % 4)));
            SOAK_CHECK(ctx, sl.ok(), "migrator sleep: %s", status_text(sl).c_str());
            absl::Status m = s->migrate_to(static_cast<int>(mrng() % static_cast<uint64_t>(workers)));
            SOAK_CHECK(ctx, m.ok(), "client migrate_to: %s", status_text(m).c_str());
            ++moves;
          }
          return moves;
        });
        auto writer = spawn([&ctx, &s, &sizes, seed] {
          std::string msg;
          uint64_t off = 0;
          for (size_t size : sizes) {
            msg.resize(size);
            for (size_t i = 0; i < size; ++i) msg[i] = pattern_byte(seed, off + i);
            absl::Status w = s->write_all(msg);
            SOAK_CHECK(ctx, w.ok(), "client write: %s", status_text(w).c_str());
            off += size;
          }
          absl::Status sh = s->shutdown(net::Shutdown::kWrite);
          SOAK_CHECK(ctx, sh.ok(), "client shutdown: %s", status_text(sh).c_str());
          return off;
        });
        char buf[16384];
        uint64_t got = 0;
        for (;;) {
          auto r = s->read(buf);
          SOAK_CHECK(ctx, r.ok(), "client read: %s", status_text(r).c_str());
          if (*r == 0) break;
          for (size_t i = 0; i < *r; ++i) {
            SOAK_CHECK(ctx, buf[i] == pattern_byte(seed, got + i), "echo differs at byte %llu of %llu",
                       static_cast<unsigned long long>(got + i), static_cast<unsigned long long>(total));
          }
          got += *r;
        }
        uint64_t wrote = writer.join();
        done.store(true);
        (void)migrator.join();
        SOAK_CHECK(ctx, wrote == total && got == total, "client: wrote %llu, read back %llu, meant %llu",
                   static_cast<unsigned long long>(wrote), static_cast<unsigned long long>(got),
                   static_cast<unsigned long long>(total));
        (void)s->close();
        return total;
      }));
    }
    uint64_t sent = 0;
    for (auto& h : hs) sent += h.join();
    uint64_t server_bytes = 0;
    for (int64_t c = 0; c < clients; ++c) {
      auto n = echoed.recv_for(absl::Seconds(60));
      SOAK_CHECK(ctx, n.ok(), "server %lld of %lld did not report: %s", static_cast<long long>(c + 1),
                 static_cast<long long>(clients), status_text(n).c_str());
      server_bytes += *n;
    }
    connections += clients;
    SOAK_CHECK(ctx, server_bytes == sent, "servers echoed %llu bytes, clients sent %llu",
               static_cast<unsigned long long>(server_bytes), static_cast<unsigned long long>(sent));
    SOAK_CHECK(ctx, servers.load() == connections, "accepted %lld connections, made %lld",
               static_cast<long long>(servers.load()), static_cast<long long>(connections));
    ctx.count(static_cast<uint64_t>(clients));
    ctx.round_done();
  }
  acceptor.abort();  // not close(): see run_udp
  acceptor.join();
  (void)listener->close();
  echoed.close();
  SOAK_CHECK(ctx, echoed.size() == 0, "servers reported more connections than clients made");
}

// ---------------------------------------------------------------------------
// udp: datagrams of up to 8 KiB echoed between two loopback sockets, one in
// flight at a time (loopback does not drop those); both sockets migrate.

void run_udp(WorkloadContext& ctx) {
  Rng rng(ctx.seed());
  auto a = net::UdpSocket::bind(net::SocketAddress::loopback_v4(0));
  auto b = net::UdpSocket::bind(net::SocketAddress::loopback_v4(0));
  SOAK_CHECK(ctx, a.ok() && b.ok(), "udp bind: %s %s", status_text(a).c_str(), status_text(b).c_str());
  auto b_addr = b->local_address();
  SOAK_CHECK(ctx, b_addr.ok(), "udp local_address: %s", status_text(b_addr).c_str());
  const int workers = ctx.workers();
  auto echo = spawn([&] {
    Rng erng(ctx.seed() ^ 0xec40);
    uint64_t n = 0;
    std::vector<char> buf(9000);
    for (;;) {
      auto d = b->recv_from(buf);
      if (d.status().code() == absl::StatusCode::kCancelled) return n;
      SOAK_CHECK(ctx, d.ok(), "udp echo recv_from: %s", status_text(d).c_str());
      SOAK_CHECK(ctx, !d->truncated, "udp echo: datagram truncated");
      auto w = b->send_to(std::string_view(buf.data(), d->size), d->from);
      SOAK_CHECK(ctx, w.ok() && *w == d->size, "udp echo send_to: %s", status_text(w).c_str());
      ++n;
      if (erng() % 16 == 0) {
        absl::Status m = b->migrate_to(static_cast<int>(erng() % static_cast<uint64_t>(workers)));
        if (m.code() == absl::StatusCode::kCancelled) return n;
        SOAK_CHECK(ctx, m.ok(), "udp echo migrate_to: %s", status_text(m).c_str());
      }
    }
  });
  uint64_t sent = 0;
  std::string msg;
  std::vector<char> buf(9000);
  while (!ctx.stopping()) {
    // Nothing in flight: a read times out.
    a->set_read_timeout(absl::Milliseconds(1));
    auto idle = a->recv_from(buf);
    SOAK_CHECK(ctx, idle.status().code() == absl::StatusCode::kDeadlineExceeded,
               "udp recv with nothing sent did not time out: %s", status_text(idle).c_str());
    a->set_read_timeout(absl::Seconds(30));
    const int64_t n = uniform(rng, 1, 100);
    for (int64_t i = 0; i < n; ++i) {
      const uint64_t key = rng();
      msg.resize(static_cast<size_t>(uniform(rng, 1, 8192)));
      for (size_t j = 0; j < msg.size(); ++j) msg[j] = pattern_byte(key, j);
      auto w = a->send_to(msg, *b_addr);
      SOAK_CHECK(ctx, w.ok() && *w == msg.size(), "udp send_to: %s", status_text(w).c_str());
      ++sent;
      auto d = a->recv_from(buf);
      SOAK_CHECK(ctx, d.ok(), "udp datagram %llu not echoed: %s", static_cast<unsigned long long>(sent),
                 status_text(d).c_str());
      SOAK_CHECK(ctx, d->size == msg.size() && std::string_view(buf.data(), d->size) == msg,
                 "udp echo differs: %zu bytes back, %zu sent", d->size, msg.size());
      if (rng() % 16 == 0) {
        absl::Status m = a->migrate_to(static_cast<int>(uniform(rng, 0, workers - 1)));
        SOAK_CHECK(ctx, m.ok(), "udp migrate_to: %s", status_text(m).c_str());
      }
    }
    ctx.count(static_cast<uint64_t>(n));
    ctx.round_done();
  }
  // Cancelled, not closed: a close lands wherever the echo fiber is, and
  // if that is between two reads its next read finds the socket closed.
  // A cancellation is sticky, so the next (or current) wait returns it.
  echo.abort();
  uint64_t echoed = echo.join();
  (void)b->close();
  SOAK_CHECK(ctx, echoed == sent, "udp: %llu datagrams echoed, %llu sent", static_cast<unsigned long long>(echoed),
             static_cast<unsigned long long>(sent));
  (void)a->close();
}

// ---------------------------------------------------------------------------
// timers: sleeps, channel and event timeouts of random lengths; none may
// end early. The time is measured on the monotonic clock.

void run_timers(WorkloadContext& ctx) {
  Rng rng(ctx.seed());
  while (!ctx.stopping()) {
    const int64_t fibers = uniform(rng, 1, 32);
    std::vector<JoinHandle<void>> hs;
    for (int64_t f = 0; f < fibers; ++f) {
      const int kind = static_cast<int>(rng() % 4);
      const int64_t us = uniform(rng, 0, 20000);
      hs.push_back(spawn([&ctx, kind, us] {
        const absl::Duration d = absl::Microseconds(us);
        auto t0 = SteadyClock::now();
        switch (kind) {
          case 0:
          case 1: {
            absl::Status s = kind == 0 ? this_fiber::sleep_for(d) : this_fiber::sleep_until(absl::Now() + d);
            SOAK_CHECK(ctx, s.ok(), "timer kind %d: %s", kind, status_text(s).c_str());
            break;
          }
          case 2: {
            Channel<int> empty(1);
            auto r = empty.recv_for(d);
            SOAK_CHECK(ctx, r.status().code() == absl::StatusCode::kDeadlineExceeded,
                       "recv_for on an empty channel: %s", status_text(r).c_str());
            break;
          }
          default: {  // an event set at a random moment, against the timeout
            Event ev;
            const int64_t set_after = static_cast<int64_t>(static_cast<uint64_t>(us) * 7 % 20000);
            auto setter = spawn([&ctx, &ev, set_after] {
              absl::Status s = this_fiber::sleep_for(absl::Microseconds(set_after));
              SOAK_CHECK(ctx, s.ok(), "event setter sleep: %s", status_text(s).c_str());
              ev.set();
            });
            absl::Status waited = ev.wait_for(d);
            int64_t el = micros_since(t0);
            setter.join();
            SOAK_CHECK(ctx, waited.ok() || absl::IsDeadlineExceeded(waited), "event wait_for: %s",
                       status_text(waited).c_str());
            const bool set = waited.ok();
            SOAK_CHECK(ctx, set || el >= us, "event wait_for(%lld us) gave up after %lld us",
                       static_cast<long long>(us), static_cast<long long>(el));
            return;
          }
        }
        int64_t el = micros_since(t0);
        // sleep_until() takes the realtime clock; a sleep ends at or after its time.
        SOAK_CHECK(ctx, el >= us || kind == 1, "timer kind %d for %lld us ended after %lld us", kind,
                   static_cast<long long>(us), static_cast<long long>(el));
      }));
    }
    for (auto& h : hs) h.join();
    ctx.count(static_cast<uint64_t>(fibers));
    ctx.round_done();
  }
}

// ---------------------------------------------------------------------------
// blocking: run_blocking and spawn_blocking with results checked, and files
// written, read back, appended, stat'ed and removed in a temporary
// directory, which must be empty after each round.

// file_through_handle(): a file written, patched, read back, truncated
// and closed through fs::File (pwrite, size, seek, read, pread, truncate),
// then removed. Every call is a blocking-pool call that parks the fiber.
void file_through_handle(WorkloadContext& ctx, const std::string& path, uint64_t key, size_t size, uint64_t seed) {
  Rng rng(seed);
  std::string data(size, '\0');
  for (size_t i = 0; i < size; ++i) data[i] = pattern_byte(key, i);
  const bool created = rng() % 2 == 0;  // write-only: reopened for reading below
  auto f = created ? fs::File::create(path)
                   : fs::File::open(path, {.read = true, .write = true, .create = true, .truncate = true});
  SOAK_CHECK(ctx, f.ok(), "File::open %s: %s", path.c_str(), status_text(f).c_str());
  absl::Status w = f->write_all(data);
  SOAK_CHECK(ctx, w.ok(), "File::write_all: %s", status_text(w).c_str());
  // A patch inside the data or past its end (a hole of zeros before it).
  const std::string patch = absl::StrCat("patch", key % 1000);
  const size_t at = static_cast<size_t>(uniform(rng, 0, static_cast<int64_t>(size) + 64));
  absl::Status pw = f->pwrite(patch, at);
  SOAK_CHECK(ctx, pw.ok(), "File::pwrite: %s", status_text(pw).c_str());
  if (data.size() < at + patch.size()) data.resize(at + patch.size(), '\0');
  data.replace(at, patch.size(), patch);
  auto sz = f->size();
  SOAK_CHECK(ctx, sz.ok() && *sz == data.size(), "File::size: %s, %llu, expected %zu", status_text(sz).c_str(),
             sz.ok() ? static_cast<unsigned long long>(*sz) : 0ull, data.size());
  if (created) {
    absl::Status c = f->close();
    SOAK_CHECK(ctx, c.ok(), "File::close: %s", status_text(c).c_str());
    f = fs::File::open(path, {.read = true, .write = true});
    SOAK_CHECK(ctx, f.ok(), "File::open %s again: %s", path.c_str(), status_text(f).c_str());
  }
  if (rng() % 2 == 0) {  // read it all back through the file offset
    auto off = f->seek(0);
    SOAK_CHECK(ctx, off.ok() && *off == 0, "File::seek: %s", status_text(off).c_str());
    std::string back;
    std::vector<char> buf(8192);
    for (;;) {
      auto r = f->read(buf);
      SOAK_CHECK(ctx, r.ok(), "File::read: %s", status_text(r).c_str());
      if (*r == 0) break;
      back.append(buf.data(), *r);
    }
    SOAK_CHECK(ctx, back == data, "File::read gave %zu bytes, not the %zu written", back.size(), data.size());
  } else {  // only the patch, at its offset
    std::vector<char> buf(patch.size());
    auto r = f->pread(buf, at);
    SOAK_CHECK(ctx, r.ok() && *r == patch.size() && std::string_view(buf.data(), *r) == patch,
               "File::pread of the patch: %s", status_text(r).c_str());
  }
  const uint64_t cut = static_cast<uint64_t>(uniform(rng, 0, static_cast<int64_t>(data.size())));
  absl::Status t = f->truncate(cut);
  sz = f->size();
  SOAK_CHECK(ctx, t.ok() && sz.ok() && *sz == cut, "File::truncate(%llu): %s, size %llu",
             static_cast<unsigned long long>(cut), status_text(t).c_str(),
             sz.ok() ? static_cast<unsigned long long>(*sz) : 0ull);
  absl::Status c = f->close();
  SOAK_CHECK(ctx, c.ok() && f->close().ok() && !f->is_open(), "File::close: %s", status_text(c).c_str());
  std::vector<char> one(1);
  SOAK_CHECK(ctx, f->read(one).status().code() == absl::StatusCode::kFailedPrecondition, "File::read after close");
  auto st = fs::stat(path);
  SOAK_CHECK(ctx, st.ok() && st->size == cut, "stat %s after truncate: %s", path.c_str(), status_text(st).c_str());
  absl::Status rm = fs::remove(path);
  SOAK_CHECK(ctx, rm.ok(), "remove: %s", status_text(rm).c_str());
}

void run_blocking_calls(WorkloadContext& ctx) {
  Rng rng(ctx.seed());
  const char* tmp = std::getenv("TEST_TMPDIR");
  const std::string dir = absl::StrCat(tmp != nullptr ? tmp : "/tmp", "/weft_soak.", ::getpid(), ".", rng() % 1000000);
  absl::Status made = fs::create_dirs(dir);
  SOAK_CHECK(ctx, made.ok(), "create_dirs: %s", status_text(made).c_str());
  uint64_t round = 0;
  while (!ctx.stopping()) {
    ++round;
    const int64_t n = uniform(rng, 1, 100000);
    int64_t sum = run_blocking([n] {
      int64_t s = 0;
      for (int64_t i = 1; i <= n; ++i) s += i;
      return s;
    });
    SOAK_CHECK(ctx, sum == n * (n + 1) / 2, "run_blocking: sum %lld", static_cast<long long>(sum));
    const int64_t calls = uniform(rng, 1, 16);
    std::vector<BlockingHandle<int64_t>> bs;
    for (int64_t i = 0; i < calls; ++i) {
      useconds_t nap = static_cast<useconds_t>(rng() % 1000);
      bs.push_back(spawn_blocking([i, nap] {
        ::usleep(nap);
        return i * i;
      }));
    }
    for (int64_t i = 0; i < calls; ++i) {
      int64_t v = bs[static_cast<size_t>(i)].join();
      SOAK_CHECK(ctx, v == i * i, "spawn_blocking %lld returned %lld", static_cast<long long>(i),
                 static_cast<long long>(v));
    }
    const int64_t files = uniform(rng, 1, 8);
    std::vector<JoinHandle<void>> hs;
    for (int64_t f = 0; f < files; ++f) {
      const uint64_t key = rng();
      const size_t size = static_cast<size_t>(uniform(rng, 0, 64 * 1024));
      const bool atomic = rng() % 4 == 0;
      const bool handle = rng() % 2 == 0;
      const uint64_t seed = rng();
      std::string path = absl::StrCat(dir, "/r", round, "_", f);
      hs.push_back(spawn([&ctx, key, size, atomic, handle, seed, path] {
        if (handle) {
          file_through_handle(ctx, path, key, size, seed);
          return;
        }
        std::string data(size, '\0');
        for (size_t i = 0; i < size; ++i) data[i] = pattern_byte(key, i);
        absl::Status w = fs::write_file(path, data, {.atomic = atomic});
        SOAK_CHECK(ctx, w.ok(), "write_file: %s", status_text(w).c_str());
        auto r = fs::read_file_to_string(path);
        SOAK_CHECK(ctx, r.ok() && *r == data, "read_file_to_string %s: %s, %zu bytes, wrote %zu", path.c_str(),
                   status_text(r).c_str(), r.ok() ? r->size() : 0, size);
        absl::Status a = fs::append_file(path, "tail");
        SOAK_CHECK(ctx, a.ok(), "append_file: %s", status_text(a).c_str());
        auto st = fs::stat(path);
        SOAK_CHECK(ctx, st.ok() && st->size == size + 4, "stat %s: %s, size %llu, expected %zu", path.c_str(),
                   status_text(st).c_str(), st.ok() ? static_cast<unsigned long long>(st->size) : 0ull, size + 4);
        absl::Status rm = fs::remove(path);
        SOAK_CHECK(ctx, rm.ok(), "remove: %s", status_text(rm).c_str());
      }));
    }
    for (auto& h : hs) h.join();
    auto left = fs::read_dir(dir);
    SOAK_CHECK(ctx, left.ok() && left->empty(), "after round %llu the directory holds %zu entries (%s)",
               static_cast<unsigned long long>(round), left.ok() ? left->size() : 0, status_text(left).c_str());
    ctx.count(static_cast<uint64_t>(1 + calls + files));
    ctx.round_done();
  }
  auto removed = fs::remove_all(dir);
  SOAK_CHECK(ctx, removed.ok(), "remove_all: %s", status_text(removed).c_str());
}

// ---------------------------------------------------------------------------
// cancel: fibers spawned with SpawnOptions::token park on a bounded channel
// (senders and receivers), in long sleeps and on a semaphore; their tokens
// (their own, a shared parent's, or one with a deadline) are cancelled and
// their handles aborted in a random order, some before the fiber starts.
// Every fiber is accounted for (it ran and ended on kCancelled, or was
// cancelled before it started), and every value sent was received or is
// still buffered: cancellation loses nothing.

enum class CancelKind { kSender, kReceiver, kSleeper, kAcquirer };

struct CancelOutcome {
  int64_t n = 0;     // values sent or received, permits acquired
  uint64_t sum = 0;  // of the values
  absl::StatusCode end = absl::StatusCode::kOk;
  bool saw_cancelled = false;  // this_fiber::cancelled() after the last wait
};

void run_cancel(WorkloadContext& ctx) {
  Rng rng(ctx.seed());
  while (!ctx.stopping()) {
    Channel<uint64_t> ch(static_cast<size_t>(uniform(rng, 1, 16)));
    Semaphore sem(0);
    std::atomic<int64_t> started{0};
    const int64_t fibers = uniform(rng, 4, 48);
    CancellationToken group;  // the parent of some fibers' tokens
    std::vector<CancellationToken> tokens;
    std::vector<JoinHandle<CancelOutcome>> hs;
    std::vector<CancelKind> kinds;
    for (int64_t f = 0; f < fibers; ++f) {
      const auto kind = static_cast<CancelKind>(rng() % 4);
      const int token_kind = static_cast<int>(rng() % 4);
      CancellationToken t = token_kind == 0   ? group.child()
                            : token_kind == 1 ? CancellationToken::with_timeout(absl::Milliseconds(uniform(rng, 1, 20)))
                                              : CancellationToken();
      tokens.push_back(t);
      kinds.push_back(kind);
      const uint64_t limit = static_cast<uint64_t>(uniform(rng, 0, 2000));  // values a sender sends
      hs.push_back(spawn({.token = t}, [&ctx, &ch, &sem, &started, kind, f, limit] {
        started.fetch_add(1, std::memory_order_relaxed);
        CancelOutcome out;
        absl::Status st;
        // A send or recv that need not wait completes even on a cancelled
        // fiber, so a cancelled sender and receiver could feed each other
        // for ever: they also stop when they see the cancellation.
        const absl::Status noticed = absl::CancelledError("soak: the fiber saw its cancellation");
        switch (kind) {
          case CancelKind::kSender:
            for (uint64_t i = 0;; ++i) {
              const uint64_t v = (static_cast<uint64_t>(f) << 32) | i;
              if (this_fiber::cancelled()) {
                st = noticed;
                break;
              }
              if (i == limit) {  // done sending: wait for the cancellation
                st = this_fiber::sleep_for(absl::Seconds(60));
                if (st.ok()) st = absl::InternalError("a 60 s sleep was not cancelled");
                break;
              }
              if (!(st = ch.send(v)).ok()) break;
              ++out.n;
              out.sum += v;
            }
            break;
          case CancelKind::kReceiver:
            for (;;) {
              if (this_fiber::cancelled()) {
                st = noticed;
                break;
              }
              absl::StatusOr<uint64_t> v = ch.recv();
              if (!v.ok()) {
                st = v.status();
                break;
              }
              ++out.n;
              out.sum += *v;
            }
            break;
          case CancelKind::kSleeper:
            // Short sleeps that end in time, until one is cut short.
            while ((st = this_fiber::sleep_for(absl::Milliseconds(f % 3 == 0 ? 60000 : 1))).ok()) ++out.n;
            break;
          case CancelKind::kAcquirer:
            while ((st = sem.acquire()).ok()) ++out.n;
            break;
        }
        out.end = st.code();
        out.saw_cancelled = this_fiber::cancelled();
        SOAK_CHECK(ctx, st.code() == absl::StatusCode::kCancelled, "cancel: fiber %lld (kind %d) ended on %s",
                   static_cast<long long>(f), static_cast<int>(kind), status_text(st).c_str());
        return out;
      }));
    }
    // Release some permits while the acquirers run, then cancel everything
    // in a random order: a token, the group, or abort() on a handle.
    int64_t released = 0;
    std::vector<size_t> order(static_cast<size_t>(fibers));
    for (size_t i = 0; i < order.size(); ++i) order[i] = i;
    std::shuffle(order.begin(), order.end(), rng);
    for (size_t i : order) {
      switch (rng() % 8) {
        case 0:
          this_fiber::yield();
          break;
        case 1: {
          absl::Status s = this_fiber::sleep_for(absl::Microseconds(uniform(rng, 0, 2000)));
          SOAK_CHECK(ctx, s.ok(), "cancel: driver sleep: %s", status_text(s).c_str());
          break;
        }
        case 2: {
          const int64_t n = uniform(rng, 1, 4);
          sem.release(n);
          released += n;
          break;
        }
        default:
          break;
      }
      switch (rng() % 4) {
        case 0:
          hs[i].abort();
          break;
        case 1:
          group.cancel();
          [[fallthrough]];
        default:
          tokens[i].cancel();
      }
    }
    int64_t sent = 0, received = 0, acquired = 0, ran = 0, never_ran = 0;
    uint64_t sent_sum = 0, received_sum = 0;
    for (size_t i = 0; i < hs.size(); ++i) {
      absl::StatusOr<CancelOutcome> r = hs[i].try_join();
      if (r.status().code() == absl::StatusCode::kAborted) {
        ++never_ran;  // cancelled before it started
        continue;
      }
      SOAK_CHECK(ctx, r.ok(), "cancel: join of fiber %zu: %s", i, status_text(r).c_str());
      SOAK_CHECK(ctx, r->saw_cancelled, "cancel: fiber %zu ended on kCancelled but is not cancelled", i);
      ++ran;
      switch (kinds[i]) {
        case CancelKind::kSender:
          sent += r->n;
          sent_sum += r->sum;
          break;
        case CancelKind::kReceiver:
          received += r->n;
          received_sum += r->sum;
          break;
        case CancelKind::kAcquirer:
          acquired += r->n;
          break;
        case CancelKind::kSleeper:
          break;
      }
    }
    SOAK_CHECK(ctx, ran + never_ran == fibers && ran == started.load(),
               "cancel: %lld fibers ran, %lld never started, %lld spawned, %lld started", static_cast<long long>(ran),
               static_cast<long long>(never_ran), static_cast<long long>(fibers),
               static_cast<long long>(started.load()));
    // What the receivers did not take is still buffered.
    int64_t buffered = 0;
    uint64_t buffered_sum = 0;
    for (auto v = ch.try_recv(); v.ok(); v = ch.try_recv()) {
      ++buffered;
      buffered_sum += *v;
    }
    SOAK_CHECK(ctx, sent == received + buffered && sent_sum == received_sum + buffered_sum,
               "cancel: sent %lld values (sum %llu), received %lld (sum %llu), %lld (sum %llu) left buffered",
               static_cast<long long>(sent), static_cast<unsigned long long>(sent_sum),
               static_cast<long long>(received), static_cast<unsigned long long>(received_sum),
               static_cast<long long>(buffered), static_cast<unsigned long long>(buffered_sum));
    ChannelStats st = ch.stats();
    SOAK_CHECK(ctx, st.sent == static_cast<uint64_t>(sent) && st.received == static_cast<uint64_t>(received + buffered),
               "cancel: channel stats sent %llu received %llu, counted %lld and %lld",
               static_cast<unsigned long long>(st.sent), static_cast<unsigned long long>(st.received),
               static_cast<long long>(sent), static_cast<long long>(received + buffered));
    SOAK_CHECK(ctx, acquired + sem.available() == released,
               "cancel: %lld permits acquired + %lld left != %lld released", static_cast<long long>(acquired),
               static_cast<long long>(sem.available()), static_cast<long long>(released));
    // The workload's own fiber was never cancelled: it still waits.
    SOAK_CHECK(ctx, !this_fiber::cancelled(), "cancel: the driver fiber is cancelled");
    ctx.count(static_cast<uint64_t>(fibers));
    ctx.round_done();
  }
}

// ---------------------------------------------------------------------------
// scope: trees of weft::scoped() whose children succeed, fail with a
// status, throw, block until the scope is cancelled, cancel the scope, or
// open a nested scope; race() and all(). No fiber outlives its scope: each
// scope counts its live children, and the count is 0 when scoped()
// returns. A scope reports OK exactly when nothing in it failed or
// cancelled.

// Live: a scope's count of running children; a child holds a Member while
// it runs.
struct Live {
  std::atomic<int64_t> n{0};
  struct Member {
    explicit Member(Live* l) : live(l) { live->n.fetch_add(1, std::memory_order_relaxed); }
    ~Member() { live->n.fetch_sub(1, std::memory_order_release); }
    Member(const Member&) = delete;
    Member& operator=(const Member&) = delete;
    Live* live;
  };
};

struct ScopeCounters {
  std::atomic<int64_t> scopes{0}, children{0};
};

// run_scope() runs one scope and returns what scoped() returned (an
// exception becomes kUnknown "thrown"); *troubled says whether anything
// in it failed, threw or cancelled, which makes a non-OK result expected.
absl::Status run_scope(WorkloadContext& ctx, int depth, uint64_t seed, ScopeCounters* c, bool* troubled) {
  Rng rng(seed);
  Live live;
  const int64_t kids = uniform(rng, 1, 6);
  struct Plan {
    int kind;
    int64_t us;
    uint64_t seed;
  };
  std::vector<Plan> plans;
  bool trouble = false, blocker = false;
  for (int64_t k = 0; k < kids; ++k) {
    int kind = static_cast<int>(rng() % 16);
    if (kind >= 6) kind = 0;                 // mostly plain successes
    if (kind == 5 && depth == 0) kind = 0;  // no nesting below the leaves
    plans.push_back({kind, uniform(rng, 0, 2000), rng()});
    trouble |= kind == 1 || kind == 2 || kind == 4;
    blocker |= kind == 3;
  }
  // A blocker ends only when its scope is cancelled: make sure it is.
  if (blocker && !trouble) {
    plans.push_back({4, uniform(rng, 0, 2000), rng()});
    trouble = true;
  }
  std::atomic<bool> nested_trouble{false};
  absl::Status st;
  try {
    st = scoped([&](TaskScope& scope) {
      c->scopes.fetch_add(1, std::memory_order_relaxed);
      for (const Plan& p : plans) {
        scope.spawn([&ctx, &live, &scope, &nested_trouble, c, p, depth]() -> absl::Status {
          Live::Member m(&live);
          c->children.fetch_add(1, std::memory_order_relaxed);
          absl::Status slept = this_fiber::sleep_for(absl::Microseconds(p.us));
          switch (p.kind) {
            case 0:  // succeeds, unless a sibling's failure cut its sleep short
              return slept;
            case 1:
              return absl::InternalError("soak: planned failure");
            case 2:
              throw std::runtime_error("soak: planned throw");
            case 3: {  // blocks until the scope is cancelled
              Channel<int> never(1);
              absl::StatusOr<int> v = never.recv();
              SOAK_CHECK(ctx, v.status().code() == absl::StatusCode::kCancelled, "scope: blocker woke with %s",
                         status_text(v).c_str());
              return v.status();
            }
            case 4:
              scope.cancel();
              return absl::OkStatus();
            default: {  // a nested scope, under this child's token
              bool t = false;
              absl::Status inner = run_scope(ctx, depth - 1, p.seed, c, &t);
              if (t) nested_trouble.store(true);
              return inner;
            }
          }
        });
      }
    });
  } catch (const std::runtime_error& e) {
    SOAK_CHECK(ctx, std::string(e.what()) == "soak: planned throw", "scope: unexpected exception %s", e.what());
    st = absl::UnknownError("thrown");
  }
  SOAK_CHECK(ctx, live.n.load(std::memory_order_acquire) == 0, "scope: %lld children still running after scoped()",
             static_cast<long long>(live.n.load()));
  *troubled = trouble || nested_trouble.load();
  return st;
}

void run_scope_workload(WorkloadContext& ctx) {
  Rng rng(ctx.seed());
  while (!ctx.stopping()) {
    ScopeCounters c;
    // Trees of scopes.
    const int64_t trees = uniform(rng, 1, 8);
    for (int64_t t = 0; t < trees; ++t) {
      bool troubled = false;
      absl::Status st = run_scope(ctx, static_cast<int>(uniform(rng, 0, 3)), rng(), &c, &troubled);
      SOAK_CHECK(ctx, st.ok() != troubled, "scope tree: %s, %s planned", status_text(st).c_str(),
                 troubled ? "a failure or cancel" : "nothing");
      SOAK_CHECK(ctx, st.ok() || st.code() == absl::StatusCode::kInternal || st.code() == absl::StatusCode::kUnknown ||
                          st.code() == absl::StatusCode::kCancelled,
                 "scope tree ended on %s", status_text(st).c_str());
    }
    // race(): the first to finish wins, the rest are cancelled (one of
    // them blocks until it is) and all have ended when race() returns.
    {
      Live live;
      const int64_t a = uniform(rng, 0, 3000), b = uniform(rng, 0, 3000);
      auto sleeper = [&live](int64_t us, int id) {
        return [&live, us, id]() -> absl::StatusOr<int> {
          Live::Member m(&live);
          absl::Status s = this_fiber::sleep_for(absl::Microseconds(us));
          if (!s.ok()) return s;
          return id;
        };
      };
      absl::StatusOr<int> won = race(sleeper(a, 1), sleeper(b, 2), [&live]() -> absl::StatusOr<int> {
        Live::Member m(&live);
        Channel<int> never(1);
        return never.recv();
      });
      SOAK_CHECK(ctx, won.ok() && (*won == 1 || *won == 2), "race: %s", status_text(won).c_str());
      SOAK_CHECK(ctx, live.n.load(std::memory_order_acquire) == 0, "race: %lld fns still running after race()",
                 static_cast<long long>(live.n.load()));
    }
    // all(): every value in order, or the planned failure.
    {
      Live live;
      const bool fail = rng() % 3 == 0;
      const int64_t us = uniform(rng, 0, 2000);
      auto r = all(
          [&live, us]() -> absl::StatusOr<int> {
            Live::Member m(&live);
            absl::Status s = this_fiber::sleep_for(absl::Microseconds(us));
            if (!s.ok()) return s;
            return 7;
          },
          [&live, fail]() -> absl::Status {
            Live::Member m(&live);
            this_fiber::yield();
            return fail ? absl::InternalError("soak: planned failure") : absl::OkStatus();
          },
          [&live] {
            Live::Member m(&live);
            return std::string("x");
          });
      SOAK_CHECK(ctx, live.n.load(std::memory_order_acquire) == 0, "all: %lld fns still running after all()",
                 static_cast<long long>(live.n.load()));
      if (fail) {
        SOAK_CHECK(ctx, r.status().code() == absl::StatusCode::kInternal, "all with a failure: %s",
                   status_text(r).c_str());
      } else {
        SOAK_CHECK(ctx, r.ok() && std::get<0>(*r) == 7 && std::get<2>(*r) == "x", "all: %s",
                   status_text(r).c_str());
      }
    }
    SOAK_CHECK(ctx, !this_fiber::cancelled(), "scope: the driver fiber is cancelled");
    ctx.count(static_cast<uint64_t>(c.children.load() + 2));
    ctx.round_done();
  }
}

// ---------------------------------------------------------------------------
// timeout: with_timeout() around channel receives and sleeps that finish in
// time, that cannot finish, and that finish close to the deadline; nested
// deadlines; a scope under a deadline. Every value sent is received through
// with_timeout() or still buffered afterwards, a timeout never ends early,
// and the deadline does not outlive the call.

void run_timeout(WorkloadContext& ctx) {
  Rng rng(ctx.seed());
  while (!ctx.stopping()) {
    uint64_t ops = 0;
    // Channel receives under a deadline, against a sender at a random moment.
    {
      Channel<uint64_t> ch(Channel<uint64_t>::kUnbounded);
      const int64_t n = uniform(rng, 1, 16);
      int64_t received = 0, buffered = 0, timed_out = 0;
      for (int64_t i = 0; i < n; ++i) {
        const int mode = static_cast<int>(rng() % 3);  // 0: in time, 1: never sent, 2: close to the deadline
        const int64_t deadline_us = mode == 0 ? 2'000'000 : uniform(rng, 500, 5000);
        const int64_t send_us = mode == 0 ? uniform(rng, 0, 1000) : uniform(rng, 0, 2 * deadline_us);
        JoinHandle<void> sender;
        if (mode != 1) {
          sender = spawn([&ctx, &ch, send_us, i] {
            absl::Status s = this_fiber::sleep_for(absl::Microseconds(send_us));
            SOAK_CHECK(ctx, s.ok(), "timeout: sender sleep: %s", status_text(s).c_str());
            s = ch.send(static_cast<uint64_t>(i));
            SOAK_CHECK(ctx, s.ok(), "timeout: send: %s", status_text(s).c_str());
          });
        }
        auto t0 = SteadyClock::now();
        absl::StatusOr<uint64_t> v = with_timeout(absl::Microseconds(deadline_us), [&] { return ch.recv(); });
        const int64_t el = micros_since(t0);
        if (v.ok()) {
          SOAK_CHECK(ctx, mode != 1 && *v == static_cast<uint64_t>(i), "timeout: received %llu in step %lld (mode %d)",
                     static_cast<unsigned long long>(*v), static_cast<long long>(i), mode);
          ++received;
        } else {
          SOAK_CHECK(ctx, absl::IsDeadlineExceeded(v.status()) && mode != 0, "timeout: recv mode %d: %s", mode,
                     status_text(v).c_str());
          // 1 ms timer resolution: the deadline may fire up to a tick early
          // against the monotonic clock read here.
          SOAK_CHECK(ctx, el + 1000 >= deadline_us, "timeout: gave up after %lld us, deadline %lld us",
                     static_cast<long long>(el), static_cast<long long>(deadline_us));
          ++timed_out;
        }
        if (sender.joinable()) sender.join();
        // A value that came too late is in the channel: take it now.
        if (auto late = ch.try_recv(); late.ok()) {
          SOAK_CHECK(ctx, !v.ok() && *late == static_cast<uint64_t>(i), "timeout: late value %llu in step %lld",
                     static_cast<unsigned long long>(*late), static_cast<long long>(i));
          ++buffered;
        }
        // The deadline ended with the call.
        absl::Status after = this_fiber::sleep_for(absl::Microseconds(100));
        SOAK_CHECK(ctx, after.ok() && !this_fiber::cancelled(), "timeout: the deadline outlived with_timeout: %s",
                   status_text(after).c_str());
      }
      ChannelStats st = ch.stats();
      SOAK_CHECK(ctx, static_cast<int64_t>(st.sent) == received + buffered && st.size == 0,
                 "timeout: %llu values sent, %lld received in time, %lld late (%lld timeouts)",
                 static_cast<unsigned long long>(st.sent), static_cast<long long>(received),
                 static_cast<long long>(buffered), static_cast<long long>(timed_out));
      ops += static_cast<uint64_t>(n);
    }
    // Sleeps: one that ends in time, one that cannot.
    {
      const absl::Duration nap = absl::Microseconds(uniform(rng, 0, 1000));
      absl::Status ok = with_timeout(absl::Seconds(2), [nap] { return this_fiber::sleep_for(nap); });
      SOAK_CHECK(ctx, ok.ok(), "timeout: a short sleep under a long deadline: %s", status_text(ok).c_str());
      const int64_t d_us = uniform(rng, 500, 5000);
      auto t0 = SteadyClock::now();
      absl::Status late =
          with_timeout(absl::Microseconds(d_us), [] { return this_fiber::sleep_for(absl::Seconds(60)); });
      const int64_t el = micros_since(t0);
      SOAK_CHECK(ctx, absl::IsDeadlineExceeded(late) && el + 1000 >= d_us && el < 30'000'000,
                 "timeout: a long sleep under a %lld us deadline: %s after %lld us", static_cast<long long>(d_us),
                 status_text(late).c_str(), static_cast<long long>(el));
      ops += 2;
    }
    // Nested: the shorter, outer deadline wins over the inner one.
    {
      absl::Status st = with_timeout(absl::Microseconds(uniform(rng, 500, 3000)), [] {
        return with_timeout(absl::Seconds(60), [] { return this_fiber::sleep_for(absl::Seconds(60)); });
      });
      SOAK_CHECK(ctx, absl::IsDeadlineExceeded(st), "timeout: nested deadlines: %s", status_text(st).c_str());
      ops += 1;
    }
    // A scope under a deadline: its blocked children are cancelled and
    // joined before with_timeout() returns.
    {
      Live live;
      const int64_t kids = uniform(rng, 1, 8);
      absl::Status st = with_timeout(absl::Microseconds(uniform(rng, 500, 3000)), [&] {
        return scoped([&](TaskScope& scope) {
          for (int64_t k = 0; k < kids; ++k) {
            scope.spawn([&live] {
              Live::Member m(&live);
              return this_fiber::sleep_for(absl::Seconds(60));
            });
          }
        });
      });
      SOAK_CHECK(ctx, absl::IsDeadlineExceeded(st), "timeout: a scope under a deadline: %s", status_text(st).c_str());
      SOAK_CHECK(ctx, live.n.load(std::memory_order_acquire) == 0,
                 "timeout: %lld scope children still running after with_timeout()",
                 static_cast<long long>(live.n.load()));
      ops += static_cast<uint64_t>(kids);
    }
    ctx.count(ops);
    ctx.round_done();
  }
}

// ---------------------------------------------------------------------------
// select: fibers that select over four channels at once. Senders offer one
// value to two channels (send cases) against a timer (after or at) and a
// token cancelled at random (cancelled); receivers take from all four
// channels (recv cases) against a timer, the round's stop event (is_set),
// a token cancelled at random, a fiber's end (finished) and, for some, the
// cancellation of their own fiber. Plain senders feed the channels too.
// The round ends with the stop event (values left buffered) or by closing
// the channels (receivers drain them to kOutOfRange). Every value sent is
// received exactly once or left buffered: the sorted values match, and
// each channel's stats match the values counted into and out of it, so a
// case that did not win had no effect.

constexpr int kSelectChannels = 4;

struct SelectTally {
  std::vector<uint64_t> values;                        // sent or received, each unique
  std::array<int64_t, kSelectChannels> per_channel{};  // values into / out of each channel
  int64_t selects = 0, timers = 0, cancels = 0, finished = 0;
};

// check_select_timer(): a timer case won no earlier than its time (the
// deadline is taken on the realtime clock and converted: a little slack).
void check_select_timer(WorkloadContext& ctx, SteadyClock::time_point t0, int64_t us, const char* who) {
  const int64_t el = micros_since(t0);
  SOAK_CHECK(ctx, el + 1000 >= us, "select: %s timer case of %lld us won after %lld us", who,
             static_cast<long long>(us), static_cast<long long>(el));
}

// recv_case_result() is the result of recv case i (0-3) of a receiver's
// select.
template <class V>
const absl::StatusOr<uint64_t>& recv_case_result(const V& res, size_t i) {
  switch (i) {
    case 0:
      return std::get<0>(res);
    case 1:
      return std::get<1>(res);
    case 2:
      return std::get<2>(res);
    default:
      return std::get<3>(res);
  }
}

// select_timer(): an after() or an at() case, us from now.
select_case::After select_timer(Rng& rng, int64_t us) {
  return rng() % 2 == 0 ? weft::after(absl::Microseconds(us)) : weft::at(absl::Now() + absl::Microseconds(us));
}

void run_select(WorkloadContext& ctx) {
  Rng rng(ctx.seed());
  using Ch = Channel<uint64_t>;
  while (!ctx.stopping()) {
    std::unique_ptr<Ch> chs[kSelectChannels];
    for (auto& c : chs) {
      c = std::make_unique<Ch>(rng() % 4 == 0 ? Ch::kUnbounded : static_cast<size_t>(uniform(rng, 1, 8)));
    }
    Event stop;
    const bool close_at_end = rng() % 2 == 0;
    // A fiber whose end some receivers select on.
    const int64_t side_us = uniform(rng, 0, 3000);
    JoinHandle<int> side = spawn([&ctx, side_us] {
      absl::Status s = this_fiber::sleep_for(absl::Microseconds(side_us));
      SOAK_CHECK(ctx, s.ok(), "select: side fiber sleep: %s", status_text(s).c_str());
      return 42;
    });
    // Case tokens, cancelled at random by the canceller (some never, some
    // by their own deadline); fiber tokens cancel a receiver's fiber.
    std::vector<CancellationToken> to_cancel;

    // Select senders: value (id << 32 | i), offered to two channels.
    const int64_t senders = uniform(rng, 1, 4);
    std::vector<JoinHandle<SelectTally>> sh;
    for (int64_t s = 0; s < senders; ++s) {
      const int64_t n = uniform(rng, 1, 300);
      CancellationToken tok = rng() % 4 == 0 ? CancellationToken::with_timeout(absl::Milliseconds(uniform(rng, 1, 10)))
                                             : CancellationToken();
      if (rng() % 3 == 0) to_cancel.push_back(tok);
      sh.push_back(spawn([&ctx, &chs, tok, n, id = static_cast<uint64_t>(s + 1), seed = rng()] {
        Rng srng(seed);
        SelectTally t;
        for (int64_t i = 0; i < n;) {
          if (srng() % 16 == 0) {  // a pause: the receivers park
            absl::Status sl = this_fiber::sleep_for(absl::Microseconds(uniform(srng, 0, 1500)));
            SOAK_CHECK(ctx, sl.ok(), "select: sender pause: %s", status_text(sl).c_str());
          }
          const uint64_t v = (id << 32) | static_cast<uint64_t>(i);
          const int a = static_cast<int>(srng() % kSelectChannels);
          const int b = (a + 1 + static_cast<int>(srng() % (kSelectChannels - 1))) % kSelectChannels;
          const int64_t us = uniform(srng, 0, 2000);
          auto t0 = SteadyClock::now();
          auto r = weft::select(weft::send(*chs[a], v), weft::send(*chs[b], v), select_timer(srng, us),
                                weft::cancelled(tok));
          SOAK_CHECK(ctx, r.ok(), "select: sender %llu: %s", static_cast<unsigned long long>(id),
                     status_text(r).c_str());
          ++t.selects;
          switch (r->index()) {
            case 0:
            case 1: {
              const absl::Status& st = r->index() == 0 ? std::get<0>(*r) : std::get<1>(*r);
              SOAK_CHECK(ctx, st.ok(), "select: send case on an open channel: %s", status_text(st).c_str());
              t.values.push_back(v);
              ++t.per_channel[static_cast<size_t>(r->index() == 0 ? a : b)];
              ++i;
              break;
            }
            case 2:
              check_select_timer(ctx, t0, us, "sender");
              ++t.timers;
              break;
            default:
              SOAK_CHECK(ctx, tok.cancelled(), "select: cancelled case won, token not cancelled");
              ++t.cancels;
              return t;  // told to stop sending
          }
        }
        return t;
      }));
    }
    // Plain senders: send() on one channel, against the selects.
    const int64_t plain = uniform(rng, 0, 2);
    std::vector<JoinHandle<SelectTally>> ph;
    for (int64_t p = 0; p < plain; ++p) {
      const int64_t n = uniform(rng, 1, 200);
      const int k = static_cast<int>(rng() % kSelectChannels);
      ph.push_back(spawn([&ctx, &chs, n, k, id = static_cast<uint64_t>(100 + p)] {
        SelectTally t;
        for (int64_t i = 0; i < n; ++i) {
          const uint64_t v = (id << 32) | static_cast<uint64_t>(i);
          absl::Status st = chs[k]->send(v);
          SOAK_CHECK(ctx, st.ok(), "select: plain send: %s", status_text(st).c_str());
          t.values.push_back(v);
          ++t.per_channel[static_cast<size_t>(k)];
        }
        return t;
      }));
    }
    // Select receivers. Receiver 0 is never cancelled, so every send
    // completes; the others have a case token, and some a fiber token.
    const int64_t receivers = uniform(rng, 1, 4);
    std::vector<JoinHandle<SelectTally>> rh;
    std::vector<bool> fiber_cancellable;
    for (int64_t r = 0; r < receivers; ++r) {
      CancellationToken tok = r > 0 && rng() % 4 == 0
                                  ? CancellationToken::with_timeout(absl::Milliseconds(uniform(rng, 1, 10)))
                                  : CancellationToken();
      if (r > 0 && rng() % 3 == 0) to_cancel.push_back(tok);
      const bool watch_side = rng() % 2 == 0;
      SpawnOptions opts;
      if (r > 0 && rng() % 3 == 0) {
        CancellationToken ft;
        to_cancel.push_back(ft);
        opts.token = ft;
      }
      fiber_cancellable.push_back(opts.token.has_value());
      rh.push_back(spawn(
          [&ctx, &chs, &stop, &side, tok, watch_side, r, seed = rng()] {
            Rng rrng(seed);
            SelectTally t;
            unsigned drained = 0;  // channels that said kOutOfRange (closed and empty)
            bool side_done = !watch_side;
            for (;;) {
              if (rrng() % 32 == 0) {  // a pause: the senders park on full channels
                absl::Status sl = this_fiber::sleep_for(absl::Microseconds(uniform(rrng, 0, 1000)));
                SOAK_CHECK(ctx, sl.ok() || this_fiber::cancelled(), "select: receiver pause: %s",
                           status_text(sl).c_str());
              }
              const int64_t us = uniform(rrng, 0, 2000);
              auto t0 = SteadyClock::now();
              // Case indices: 0-3 recv, 4 timer, 5 stop, 6 cancelled, 7 finished.
              auto on = [&](auto& res) -> bool {  // false: the receiver is done
                if (!res.ok()) {
                  SOAK_CHECK(ctx, res.status().code() == absl::StatusCode::kCancelled && this_fiber::cancelled(),
                             "select: receiver %lld: %s", static_cast<long long>(r), status_text(res).c_str());
                  return false;
                }
                ++t.selects;
                const size_t i = res->index();
                if (i < kSelectChannels) {
                  const absl::StatusOr<uint64_t>& got = recv_case_result(*res, i);
                  if (got.ok()) {
                    t.values.push_back(*got);
                    ++t.per_channel[i];
                    return true;
                  }
                  SOAK_CHECK(ctx, absl::IsOutOfRange(got.status()), "select: recv case: %s", status_text(got).c_str());
                  drained |= 1u << i;
                  return drained != (1u << kSelectChannels) - 1;
                }
                switch (i) {
                  case 4:
                    check_select_timer(ctx, t0, us, "receiver");
                    ++t.timers;
                    return true;
                  case 5:
                    SOAK_CHECK(ctx, stop.is_set(), "select: is_set case won, event not set");
                    return false;
                  case 6:
                    SOAK_CHECK(ctx, tok.cancelled(), "select: cancelled case won, token not cancelled");
                    ++t.cancels;
                    return false;
                  default:
                    SOAK_CHECK(ctx, side.is_finished(), "select: finished case won, fiber not finished");
                    ++t.finished;
                    side_done = true;
                    return true;
                }
              };
              bool more;
              if (!side_done) {
                auto res = weft::select(weft::recv(*chs[0]), weft::recv(*chs[1]), weft::recv(*chs[2]),
                                        weft::recv(*chs[3]), select_timer(rrng, us), weft::is_set(stop),
                                        weft::cancelled(tok), weft::finished(side));
                more = on(res);
              } else {
                auto res =
                    weft::select(weft::recv(*chs[0]), weft::recv(*chs[1]), weft::recv(*chs[2]), weft::recv(*chs[3]),
                                 select_timer(rrng, us), weft::is_set(stop), weft::cancelled(tok));
                more = on(res);
              }
              if (!more) return t;
            }
          },
          opts));
    }
    // The canceller: each token at a random moment, or not at all.
    std::shuffle(to_cancel.begin(), to_cancel.end(), rng);
    auto canceller = spawn([&ctx, to_cancel, seed = rng()] {
      Rng crng(seed);
      for (const CancellationToken& t : to_cancel) {
        if (crng() % 2 == 0) {
          absl::Status s = this_fiber::sleep_for(absl::Microseconds(uniform(crng, 0, 1500)));
          SOAK_CHECK(ctx, s.ok(), "select: canceller sleep: %s", status_text(s).c_str());
        } else {
          this_fiber::yield();
        }
        if (crng() % 4 != 0) t.cancel();
      }
    });

    SelectTally in, out;
    auto add = [](SelectTally* into, SelectTally&& t) {
      into->values.insert(into->values.end(), t.values.begin(), t.values.end());
      for (size_t k = 0; k < kSelectChannels; ++k) into->per_channel[k] += t.per_channel[k];
      into->selects += t.selects;
      into->timers += t.timers;
      into->cancels += t.cancels;
      into->finished += t.finished;
    };
    for (auto& h : sh) add(&in, h.join());
    for (auto& h : ph) add(&in, h.join());
    if (close_at_end) {
      for (auto& c : chs) c->close();
    } else {
      stop.set();
    }
    for (size_t r = 0; r < rh.size(); ++r) {
      absl::StatusOr<SelectTally> t = rh[r].try_join();
      if (fiber_cancellable[r] && t.status().code() == absl::StatusCode::kAborted) {
        continue;  // its fiber was cancelled before it started: it took nothing
      }
      SOAK_CHECK(ctx, t.ok(), "select: join of receiver %zu: %s", r, status_text(t).c_str());
      add(&out, *std::move(t));
    }
    canceller.join();
    SOAK_CHECK(ctx, side.join() == 42, "select: side fiber result");
    // What no receiver took is still buffered.
    SelectTally buffered;
    for (int k = 0; k < kSelectChannels; ++k) {
      for (auto v = chs[k]->try_recv(); v.ok(); v = chs[k]->try_recv()) {
        buffered.values.push_back(*v);
        ++buffered.per_channel[static_cast<size_t>(k)];
      }
      ChannelStats st = chs[k]->stats();
      const int64_t into = in.per_channel[static_cast<size_t>(k)];
      const int64_t taken = out.per_channel[static_cast<size_t>(k)] + buffered.per_channel[static_cast<size_t>(k)];
      SOAK_CHECK(ctx,
                 static_cast<int64_t>(st.sent) == into && static_cast<int64_t>(st.received) == taken && into == taken &&
                     st.size == 0,
                 "select: channel %d: stats sent %llu received %llu; counted %lld sent, %lld received by selects, "
                 "%lld left buffered",
                 k, static_cast<unsigned long long>(st.sent), static_cast<unsigned long long>(st.received),
                 static_cast<long long>(into), static_cast<long long>(out.per_channel[static_cast<size_t>(k)]),
                 static_cast<long long>(buffered.per_channel[static_cast<size_t>(k)]));
      if (close_at_end) {
        SOAK_CHECK(ctx, buffered.per_channel[static_cast<size_t>(k)] == 0,
                   "select: channel %d closed, yet %lld values left after the receivers drained it", k,
                   static_cast<long long>(buffered.per_channel[static_cast<size_t>(k)]));
        // A send case on a closed channel reports it and puts nothing in.
        auto r = weft::select(weft::send(*chs[k], uint64_t{1}));
        SOAK_CHECK(ctx, r.ok() && absl::IsFailedPrecondition(std::get<0>(*r)) && chs[k]->stats().sent == st.sent,
                   "select: send case on a closed channel: %s", r.ok() ? status_text(std::get<0>(*r)).c_str() : "");
      }
    }
    // Exactly once: the values sent are the values received plus those
    // left buffered. (Counted in a hash map: std::sort's recursion does
    // not fit a 64 KiB fiber stack under ASan.)
    std::unordered_map<uint64_t, int> owed;  // value -> sent and not yet taken
    owed.reserve(in.values.size());
    for (uint64_t v : in.values) {
      SOAK_CHECK(ctx, ++owed[v] == 1, "select: value %llu:%llu sent twice", static_cast<unsigned long long>(v >> 32),
                 static_cast<unsigned long long>(v & 0xffffffffu));
    }
    for (const std::vector<uint64_t>* taken : {&out.values, &buffered.values}) {
      for (uint64_t v : *taken) {
        auto it = owed.find(v);
        SOAK_CHECK(ctx, it != owed.end() && it->second == 1, "select: value %llu:%llu %s, never sent or taken twice",
                   static_cast<unsigned long long>(v >> 32), static_cast<unsigned long long>(v & 0xffffffffu),
                   taken == &out.values ? "received" : "left buffered");
        it->second = 0;
      }
    }
    SOAK_CHECK(ctx, out.values.size() + buffered.values.size() == in.values.size(),
               "select: %zu values sent, %zu received by selects, %zu left buffered", in.values.size(),
               out.values.size(), buffered.values.size());

    // Cases that lose have no effect: a timer against a recv on an empty
    // channel and a send to a full one; a cancelled token against a value.
    {
      Ch empty(1), full(1);
      SOAK_CHECK(ctx, full.send(uint64_t{7}).ok(), "select: fill");
      const int64_t us = uniform(rng, 0, 1000);
      auto t0 = SteadyClock::now();
      auto r = weft::select(weft::recv(empty), weft::send(full, uint64_t{8}), select_timer(rng, us));
      SOAK_CHECK(ctx, r.ok() && r->index() == 2, "select: timer against nothing ready: %s, case %zu",
                 status_text(r).c_str(), r.ok() ? r->index() : 0);
      check_select_timer(ctx, t0, us, "lone");
      auto kept = full.try_recv();
      SOAK_CHECK(
          ctx,
          kept.ok() && *kept == 7 && full.stats().sent == 1 && empty.stats().sent == 0 && empty.stats().received == 0,
          "select: a losing case had an effect: full channel gave %s", status_text(kept).c_str());
      CancellationToken gone;
      gone.cancel();
      Ch one(1);
      SOAK_CHECK(ctx, one.send(uint64_t{9}).ok(), "select: fill");
      auto c = weft::select(weft::recv(one), weft::cancelled(gone));
      SOAK_CHECK(ctx, c.ok(), "select: two ready cases: %s", status_text(c).c_str());
      if (c->index() == 0) {
        SOAK_CHECK(ctx, std::get<0>(*c).ok() && *std::get<0>(*c) == 9 && one.size() == 0, "select: recv case value");
      } else {
        SOAK_CHECK(ctx, one.size() == 1 && one.stats().received == 0, "select: cancelled won but the value was taken");
        (void)one.try_recv();
      }
    }
    SOAK_CHECK(ctx, !this_fiber::cancelled(), "select: the driver fiber is cancelled");
    ctx.count(static_cast<uint64_t>(in.selects + out.selects + 2));
    ctx.round_done();
  }
}

// ---------------------------------------------------------------------------
// future: chains of then(), on_success() and on_failure() on promises set
// from the driver, from fibers and from a plain std::thread, with values,
// error statuses, exceptions and broken promises (dropped unset), random
// failures and throws along the chains, Futures returned by callbacks
// (from a promise or to_future()), callbacks that block; when_all() and
// when_any() over such promises. Chain ends are taken with get() or
// get_for() on the driver or get() on the thread, or dropped with their
// callbacks pending. Every end delivers the outcome worked out in advance,
// every callback that should run runs exactly once (counted), and once
// the round has settled no value and no callback is left alive.

// FutVal: a future's value. It holds a reference to the round's `alive`
// marker, so a value never destroyed (a result a dropped future or a
// when_any() loser kept) shows at the end of the round.
struct FutVal {
  int64_t v = 0;
  std::shared_ptr<const int> alive;
};

enum class FutFate { kValue, kError, kException, kBroken };

// What a future must deliver: a value, an error status, or an exception
// (a std::runtime_error whose what() is msg).
struct FutExpect {
  bool ok = true;
  int64_t v = 0;
  bool exception = false;
  absl::StatusCode code = absl::StatusCode::kOk;
  std::string msg;

  void fail_status(absl::StatusCode c, std::string m) {
    ok = false;
    exception = false;
    code = c;
    msg = std::move(m);
  }
  void fail_exception(std::string m) {
    ok = false;
    exception = true;
    code = absl::StatusCode::kUnknown;
    msg = std::move(m);
  }
  // The status an on_failure(absl::Status) callback sees.
  absl::Status status() const { return exception ? absl::UnknownError("exception: " + msg) : absl::Status(code, msg); }
};

constexpr const char* kBrokenPromise = "weft::Promise destroyed without a result (broken promise)";

// The round's state, shared with every callback: a dropped future's
// callbacks may still run after the driver moved on.
struct FutRound {
  explicit FutRound(WorkloadContext* c) : ctx(c) {}
  WorkloadContext* ctx;
  std::atomic<int64_t> callbacks{0};
  WaitGroup ends;  // dropped chain ends with a last callback that checks them
};

bool failure_is(const Failure& f, const FutExpect& e) {
  if (e.ok || f.is_exception() != e.exception) return false;
  if (!e.exception) return f.status().code() == e.code && f.status().message() == e.msg;
  try {
    f.rethrow_if_exception();
  } catch (const std::runtime_error& x) {
    return e.msg == x.what();
  } catch (...) {
  }
  return false;
}

// A get() outcome: the result, or the what() of the exception it threw.
template <class R>
struct FutGot {
  R r;
  bool threw = false;
  std::string what;
};
template <class F>
auto future_get(F&& get) -> FutGot<decltype(get())> {
  FutGot<decltype(get())> g{absl::UnknownError("unset"), false, ""};
  try {
    g.r = get();
  } catch (const std::runtime_error& x) {
    g.threw = true;
    g.what = x.what();
  }
  return g;
}

// Whether a failed get() (status or exception) is the failure expected.
template <class R>
bool got_failure(const FutGot<R>& g, const FutExpect& e) {
  if (e.ok) return false;
  if (e.exception) return g.threw && g.what == e.msg;
  return !g.threw && !g.r.ok() && g.r.status().code() == e.code && g.r.status().message() == e.msg;
}

template <class R>
std::string got_text(const FutGot<R>& g) {
  if (g.threw) return "threw " + g.what;
  return g.r.ok() ? "a value" : g.r.status().ToString();
}

// check_got(): a chain end's get() delivered what was expected.
template <class R>
void check_got(WorkloadContext& ctx, const FutGot<R>& g, const FutExpect& e, const char* where) {
  if (e.ok) {
    SOAK_CHECK(ctx, !g.threw && g.r.ok() && g.r->v == e.v, "future: chain end (%s) gave %s, expected the value %lld",
               where, got_text(g).c_str(), static_cast<long long>(e.v));
  } else {
    SOAK_CHECK(ctx, got_failure(g, e), "future: chain end (%s) gave %s, expected %s%s", where, got_text(g).c_str(),
               e.exception ? "the exception " : "", e.exception ? e.msg.c_str() : e.status().ToString().c_str());
  }
}

// A promise to settle, and how.
struct FutSettle {
  Promise<FutVal> p;
  FutFate fate = FutFate::kValue;
  FutVal val;
  absl::StatusCode code = absl::StatusCode::kOk;
  std::string msg;

  // run() settles the promise and lets it go: a promise holds its
  // future's result (and so its value) until it is destroyed.
  void run() {
    Promise<FutVal> q = std::move(p);
    switch (fate) {
      case FutFate::kValue:
        q.set_value(std::move(val));
        break;
      case FutFate::kError:
        q.set_error(absl::Status(code, msg));
        break;
      case FutFate::kException: {
        // make_exception_ptr() copies the runtime_error, and the copy shares
        // its message with the temporary. The temporary must be gone before
        // the hand-off: the consumer may drop the exception at once, and
        // ThreadSanitizer cannot see the message's reference count (it lives
        // in libstdc++), so a later release here would look like a race.
        // (future/future.h, "Handing a result on".)
        std::exception_ptr e = std::make_exception_ptr(std::runtime_error(msg));
        q.set_exception(std::move(e));
        break;
      }
      case FutFate::kBroken:
        break;  // destroyed unset
    }
  }
  FutExpect expect() const {
    FutExpect e;
    switch (fate) {
      case FutFate::kValue:
        e.v = val.v;
        break;
      case FutFate::kError:
        e.fail_status(code, msg);
        break;
      case FutFate::kException:
        e.fail_exception(msg);
        break;
      case FutFate::kBroken:
        e.fail_status(absl::StatusCode::kAborted, kBrokenPromise);
        break;
    }
    return e;
  }
};

// The plain thread's share of a round: promises to settle, then chain ends
// to get() (blocking the thread).
struct FutThreadWork {
  std::vector<std::pair<useconds_t, FutSettle>> settles;
  std::vector<std::pair<Future<FutVal>, FutExpect>> gets;
};

// Where a promise is settled.
struct FutSetters {
  std::vector<FutSettle> later;          // by the driver, once everything is built
  std::vector<JoinHandle<void>> fibers;  // by fibers of their own
  FutThreadWork* thread;
};

void place_settle(WorkloadContext& ctx, Rng& rng, FutSettle s, FutSetters* where) {
  switch (rng() % 4) {
    case 0:  // now: the callbacks are registered on a complete future
      s.run();
      break;
    case 1:
      where->later.push_back(std::move(s));
      break;
    case 2:
      where->fibers.push_back(spawn([&ctx, s = std::move(s), us = uniform(rng, 0, 1000)]() mutable {
        absl::Status sl = this_fiber::sleep_for(absl::Microseconds(us));
        SOAK_CHECK(ctx, sl.ok(), "future: setter sleep: %s", status_text(sl).c_str());
        s.run();
      }));
      break;
    default:
      where->thread->settles.emplace_back(static_cast<useconds_t>(uniform(rng, 0, 300)), std::move(s));
  }
}

// new_settle(): a promise (on the given runtime, or the current one) with a
// random fate.
FutSettle new_settle(WorkloadContext& ctx, Rng& rng, const std::shared_ptr<const int>& alive, absl::StatusCode code,
                     const std::string& what) {
  // Promise(Runtime&), or Promise() for the current runtime (a fiber's).
  FutSettle s{rng() % 2 == 0 ? Promise<FutVal>(*ctx.runtime()) : Promise<FutVal>(), FutFate::kValue, FutVal{}, code,
              ""};
  const uint64_t f = rng() % 8;
  s.fate = f < 5 ? FutFate::kValue : f == 5 ? FutFate::kError : f == 6 ? FutFate::kException : FutFate::kBroken;
  s.val = FutVal{uniform(rng, 0, 1000), s.fate == FutFate::kValue ? alive : nullptr};  // a value only if set
  s.msg = what + (s.fate == FutFate::kException ? " exception" : " error");
  return s;
}

// add_steps(): 0-6 random steps on a chain, updating what its end must
// deliver and how many callbacks must run.
Future<FutVal> add_steps(Future<FutVal> f, Rng& rng, const std::shared_ptr<FutRound>& rs, FutExpect& e,
                         int64_t& expected) {
  const int64_t steps = uniform(rng, 0, 6);
  for (int64_t s = 0; s < steps; ++s) {
    const int64_t add = uniform(rng, 1, 9);
    const bool runs_on_success = e.ok;
    bool success_callback = true;  // a then() or on_success() callback: runs on success only
    switch (rng() % 11) {
      case 0:  // a value
        f = std::move(f).then([rs, add](FutVal x) {
          rs->callbacks.fetch_add(1);
          x.v += add;
          return x;
        });
        if (runs_on_success) e.v += add;
        break;
      case 1:  // a StatusOr with a value
        f = std::move(f).then([rs, add](FutVal x) -> absl::StatusOr<FutVal> {
          rs->callbacks.fetch_add(1);
          x.v += add;
          return x;
        });
        if (runs_on_success) e.v += add;
        break;
      case 2: {  // a StatusOr with an error
        std::string msg = absl::StrCat("soak: step ", s, " error");
        f = std::move(f).then([rs, msg](FutVal) -> absl::StatusOr<FutVal> {
          rs->callbacks.fetch_add(1);
          return absl::FailedPreconditionError(msg);
        });
        if (runs_on_success) e.fail_status(absl::StatusCode::kFailedPrecondition, msg);
        break;
      }
      case 3: {  // a throw
        std::string msg = absl::StrCat("soak: step ", s, " throw");
        f = std::move(f).then([rs, msg](FutVal) -> FutVal {
          rs->callbacks.fetch_add(1);
          throw std::runtime_error(msg);
        });
        if (runs_on_success) e.fail_exception(msg);
        break;
      }
      case 4:  // a Future from a promise that a fiber sets
        f = std::move(f).then([rs, add](FutVal x) {
          rs->callbacks.fetch_add(1);
          Promise<FutVal> q;  // the runner fiber's runtime
          Future<FutVal> g = q.get_future();
          x.v += add;
          spawn([q = std::move(q), x = std::move(x)]() mutable {
            this_fiber::yield();
            q.set_value(std::move(x));
          }).detach();
          return g;
        });
        if (runs_on_success) e.v += add;
        break;
      case 5: {  // a Future of a fiber (to_future), which may throw
        const bool throws = rng() % 4 == 0;
        std::string msg = absl::StrCat("soak: step ", s, " fiber throw");
        f = std::move(f).then([rs, add, throws, msg](FutVal x) {
          rs->callbacks.fetch_add(1);
          return to_future(spawn([x = std::move(x), add, throws, msg]() mutable -> FutVal {
            if (throws) throw std::runtime_error(msg);
            x.v += add;
            return std::move(x);
          }));
        });
        if (runs_on_success) {
          if (throws) {
            e.fail_exception(msg);
          } else {
            e.v += add;
          }
        }
        break;
      }
      case 6: {  // a callback that blocks its runner fiber
        const int64_t us = uniform(rng, 0, 300);
        f = std::move(f).then([rs, add, us](FutVal x) {
          rs->callbacks.fetch_add(1);
          absl::Status sl = this_fiber::sleep_for(absl::Microseconds(us));
          SOAK_CHECK(*rs->ctx, sl.ok(), "future: callback sleep: %s", status_text(sl).c_str());
          x.v += add;
          return x;
        });
        if (runs_on_success) e.v += add;
        break;
      }
      case 7:  // an on_success observer
        f = std::move(f).on_success([rs, want = e.v](const FutVal& x) {
          rs->callbacks.fetch_add(1);
          SOAK_CHECK(*rs->ctx, x.v == want, "future: on_success saw %lld, expected %lld", static_cast<long long>(x.v),
                     static_cast<long long>(want));
        });
        break;
      case 8:  // an on_failure observer of the Failure
        f = std::move(f).on_failure([rs, e](const Failure& fl) {
          rs->callbacks.fetch_add(1);
          SOAK_CHECK(*rs->ctx, failure_is(fl, e), "future: on_failure saw %s (exception %d), expected %s",
                     status_text(fl.status()).c_str(), fl.is_exception(), status_text(e.status()).c_str());
        });
        success_callback = false;
        if (!e.ok) ++expected;
        break;
      case 9:  // an on_failure observer of the status
        f = std::move(f).on_failure([rs, want = e.status()](const absl::Status& st) {
          rs->callbacks.fetch_add(1);
          SOAK_CHECK(*rs->ctx, st == want, "future: on_failure(Status) saw %s, expected %s", status_text(st).c_str(),
                     status_text(want).c_str());
        });
        success_callback = false;
        if (!e.ok) ++expected;
        break;
      default: {  // an on_success observer that throws
        std::string msg = absl::StrCat("soak: step ", s, " observer throw");
        f = std::move(f).on_success([rs, msg](const FutVal&) {
          rs->callbacks.fetch_add(1);
          throw std::runtime_error(msg);
        });
        if (runs_on_success) e.fail_exception(msg);
        break;
      }
    }
    if (success_callback && runs_on_success) ++expected;
  }
  return f;
}

// FutThread: the future workload's plain thread, one for the whole run
// (ASan keeps about 5 KiB for every thread ever created, so a thread per
// round would grow the resident set of an ASan soak for ever). Each round
// hands it one job, and its end is sent on done().
class FutThread {
 public:
  FutThread() : th_([this] { loop(); }) {}
  FutThread(const FutThread&) = delete;
  FutThread& operator=(const FutThread&) = delete;

  void hand(std::function<void()> job) {
    {
      std::lock_guard<std::mutex> g(mu_);
      job_ = std::move(job);
    }
    cv_.notify_one();
  }
  Channel<int>& done() { return done_; }
  // quit() ends the thread; join it (on the blocking pool: a fiber must
  // not block its worker).
  void quit() {
    {
      std::lock_guard<std::mutex> g(mu_);
      quit_ = true;
    }
    cv_.notify_one();
  }
  std::thread& thread() { return th_; }

 private:
  void loop() {
    for (;;) {
      std::function<void()> job;
      {
        std::unique_lock<std::mutex> l(mu_);
        cv_.wait(l, [this] { return quit_ || job_ != nullptr; });
        if (job_ == nullptr) return;
        job = std::exchange(job_, nullptr);
      }
      job();
      (void)done_.send(1);
    }
  }

  std::mutex mu_;
  std::condition_variable cv_;
  std::function<void()> job_;
  bool quit_ = false;
  Channel<int> done_{1};
  std::thread th_;  // last: it starts with the members above in place
};

void run_future(WorkloadContext& ctx) {
  Rng rng(ctx.seed());
  FutThread thread;
  while (!ctx.stopping()) {
    auto rs = std::make_shared<FutRound>(&ctx);
    auto alive = std::make_shared<const int>(0);
    int64_t expected = 0;  // callbacks that must run
    int64_t settled = 0;   // promises set or broken
    FutThreadWork thread_work;
    FutSetters setters{{}, {}, &thread_work};
    struct End {
      Future<FutVal> f;
      FutExpect e;
      bool timed;  // get_for() until it is there
    };
    std::vector<End> ends;

    // Chains.
    const int64_t chains = uniform(rng, 1, 16);
    for (int64_t c = 0; c < chains; ++c) {
      FutSettle src = new_settle(ctx, rng, alive, absl::StatusCode::kDataLoss, absl::StrCat("soak: chain ", c));
      FutExpect e = src.expect();
      Future<FutVal> f = src.p.get_future();
      place_settle(ctx, rng, std::move(src), &setters);
      ++settled;
      f = add_steps(std::move(f), rng, rs, e, expected);
      switch (rng() % 5) {
        case 0:
        case 1:
          ends.push_back({std::move(f), e, rng() % 2 == 0});
          break;
        case 2:
          thread_work.gets.emplace_back(std::move(f), e);
          break;
        case 3: {  // dropped, with a last callback that checks the outcome
          rs->ends.add();
          ++expected;
          auto end = std::move(f)
                         .on_success([rs, e](const FutVal& x) {
                           rs->callbacks.fetch_add(1);
                           SOAK_CHECK(*rs->ctx, e.ok && x.v == e.v, "future: dropped chain ended on %lld, expected %s",
                                      static_cast<long long>(x.v), status_text(e.status()).c_str());
                           rs->ends.done();
                         })
                         .on_failure([rs, e](const Failure& fl) {
                           rs->callbacks.fetch_add(1);
                           SOAK_CHECK(*rs->ctx, failure_is(fl, e), "future: dropped chain failed with %s, expected %s",
                                      status_text(fl.status()).c_str(), status_text(e.status()).c_str());
                           rs->ends.done();
                         });
          break;  // `end` is dropped here, most likely before the result exists
        }
        default:  // dropped as it is: its callbacks run all the same
          break;
      }
    }

    // when_all() and when_any() over promises and fibers (to_future).
    auto gather = [&](const char* what, std::vector<FutExpect>* fates) {
      const int64_t m = uniform(rng, 1, 6);
      std::vector<Future<FutVal>> fs;
      for (int64_t i = 0; i < m; ++i) {
        if (rng() % 4 == 0) {
          const int64_t v = uniform(rng, 0, 1000);
          fs.push_back(to_future(spawn([v, alive] { return FutVal{v, alive}; })));
          FutExpect e;
          e.v = v;
          fates->push_back(e);
          continue;
        }
        FutSettle s = new_settle(ctx, rng, alive, absl::StatusCode::kInternal, absl::StrCat("soak: ", what, " ", i));
        fates->push_back(s.expect());
        fs.push_back(s.p.get_future());
        place_settle(ctx, rng, std::move(s), &setters);
        ++settled;
      }
      return fs;
    };
    auto one_of = [](const Failure& fl, const std::vector<FutExpect>& fates) {
      for (const FutExpect& e : fates) {
        if (failure_is(fl, e)) return true;
      }
      return false;
    };
    auto all_values = [](const std::vector<FutVal>& got, const std::vector<FutExpect>& fates) {
      if (got.size() != fates.size()) return false;
      for (size_t i = 0; i < got.size(); ++i) {
        if (!fates[i].ok || got[i].v != fates[i].v) return false;
      }
      return true;
    };
    auto any_value = [](const WhenAnyResult<FutVal>& got, const std::vector<FutExpect>& fates) {
      return got.index < fates.size() && fates[got.index].ok && got.value.v == fates[got.index].v;
    };

    std::vector<FutExpect> all_fates;
    Future<std::vector<FutVal>> all = when_all(gather("when_all", &all_fates));
    bool all_ok = true;
    for (const FutExpect& e : all_fates) all_ok &= e.ok;
    const bool all_dropped = rng() % 4 == 0;
    if (all_ok) ++expected;
    all = std::move(all).then([rs](std::vector<FutVal> v) {
      rs->callbacks.fetch_add(1);
      return v;
    });
    if (all_dropped) {
      rs->ends.add();
      ++expected;
      auto end = std::move(all)
                     .on_success([rs, all_fates, all_values](const std::vector<FutVal>& v) {
                       rs->callbacks.fetch_add(1);
                       SOAK_CHECK(*rs->ctx, all_values(v, all_fates), "future: dropped when_all: wrong values");
                       rs->ends.done();
                     })
                     .on_failure([rs, all_fates, one_of](const Failure& fl) {
                       rs->callbacks.fetch_add(1);
                       SOAK_CHECK(*rs->ctx, one_of(fl, all_fates), "future: dropped when_all failed with %s",
                                  status_text(fl.status()).c_str());
                       rs->ends.done();
                     });
    }

    std::vector<FutExpect> any_fates;
    Future<WhenAnyResult<FutVal>> any = when_any(gather("when_any", &any_fates));
    const bool any_dropped = rng() % 4 == 0;
    if (any_dropped) {
      rs->ends.add();
      ++expected;
      auto end = std::move(any)
                     .on_success([rs, any_fates, any_value](const WhenAnyResult<FutVal>& r) {
                       rs->callbacks.fetch_add(1);
                       SOAK_CHECK(*rs->ctx, any_value(r, any_fates), "future: dropped when_any: index %zu value %lld",
                                  r.index, static_cast<long long>(r.value.v));
                       rs->ends.done();
                     })
                     .on_failure([rs, any_fates, one_of](const Failure& fl) {
                       rs->callbacks.fetch_add(1);
                       SOAK_CHECK(*rs->ctx, one_of(fl, any_fates), "future: dropped when_any failed with %s",
                                  status_text(fl.status()).c_str());
                       rs->ends.done();
                     });
    } else {
      // Runs exactly when when_any() succeeds: counted after get().
      any = std::move(any).on_success([rs](const WhenAnyResult<FutVal>&) { rs->callbacks.fetch_add(1); });
    }

    // The variadic when_all() of a fiber's value and a Future<void>.
    Promise<void> pv = rng() % 2 == 0 ? Promise<void>(*ctx.runtime()) : Promise<void>();
    const int64_t bv = uniform(rng, 0, 1000);
    auto both = when_all(to_future(spawn([bv, alive] { return FutVal{bv, alive}; })), pv.get_future());
    std::optional<Promise<void>> pv_later;
    if (rng() % 2 == 0) {
      setters.fibers.push_back(spawn([pv = std::move(pv)]() mutable { pv.set_value(); }));
    } else {
      pv_later.emplace(std::move(pv));
    }

    // Run: the plain thread settles its promises and then gets its chain
    // ends; the driver settles its own, then gets its ends.
    const bool thread_busy = !thread_work.settles.empty() || !thread_work.gets.empty();
    if (thread_busy) {
      thread.hand([&ctx, &thread_work] {
        for (auto& [us, s] : thread_work.settles) {
          if (us > 0) ::usleep(us);
          s.run();
        }
        for (auto& [f, e] : thread_work.gets) check_got(ctx, future_get([&f = f] { return f.get(); }), e, "thread");
      });
    }
    for (FutSettle& s : setters.later) s.run();
    if (pv_later) pv_later->set_value();
    for (End& end : ends) {
      if (!end.timed) {
        check_got(ctx, future_get([&] { return end.f.get(); }), end.e, "get");
        continue;
      }
      for (;;) {
        const int64_t us = uniform(rng, 0, 2000);
        auto g = future_get([&] { return end.f.get_for(absl::Microseconds(us)); });
        if (!g.threw && absl::IsDeadlineExceeded(g.r.status())) {
          SOAK_CHECK(ctx, end.f.valid(), "future: get_for() timed out and consumed the future");
          continue;
        }
        check_got(ctx, g, end.e, "get_for");
        break;
      }
    }
    if (!all_dropped) {
      auto g = future_get([&] { return all.get(); });
      if (all_ok) {
        SOAK_CHECK(ctx, !g.threw && g.r.ok() && all_values(*g.r, all_fates), "future: when_all of values gave %s",
                   got_text(g).c_str());
      } else {
        bool one = false;
        for (const FutExpect& e : all_fates) one |= got_failure(g, e);
        SOAK_CHECK(ctx, one, "future: when_all with a failure gave %s, none of the failures", got_text(g).c_str());
      }
    }
    if (!any_dropped) {
      auto g = future_get([&] { return any.get(); });
      if (!g.threw && g.r.ok()) {
        SOAK_CHECK(ctx, any_value(*g.r, any_fates), "future: when_any gave index %zu value %lld", g.r->index,
                   static_cast<long long>(g.r->value.v));
        ++expected;  // its on_success ran
      } else {
        bool one = false;
        for (const FutExpect& e : any_fates) one |= got_failure(g, e);
        SOAK_CHECK(ctx, one, "future: when_any gave %s, none of the failures", got_text(g).c_str());
      }
    }
    {
      auto r = both.get();
      SOAK_CHECK(ctx, r.ok() && std::get<0>(*r).v == bv, "future: when_all(value, void): %s", status_text(r).c_str());
    }
    if (thread_busy) {
      auto d = thread.done().recv_for(absl::Seconds(60));
      SOAK_CHECK(ctx, d.ok(), "future: the plain thread's share of the round did not end in 60 s: %s",
                 status_text(d).c_str());
    }
    for (auto& h : setters.fibers) h.join();

    // Settled: the dropped ends have run their last callback; then every
    // callback and value is gone (each holds a reference to rs or alive).
    absl::Status done = rs->ends.wait_for(absl::Seconds(60));
    SOAK_CHECK(ctx, done.ok(), "future: %lld dropped chain ends did not finish in 60 s: %s",
               static_cast<long long>(rs->ends.count()), status_text(done).c_str());
    const absl::Time give_up = absl::Now() + absl::Seconds(60);
    while ((rs.use_count() > 1 || alive.use_count() > 1) && absl::Now() < give_up) {
      absl::Status sl = this_fiber::sleep_for(absl::Microseconds(100));
      SOAK_CHECK(ctx, sl.ok(), "future: settle sleep: %s", status_text(sl).c_str());
    }
    SOAK_CHECK(ctx, rs.use_count() == 1 && alive.use_count() == 1,
               "future: 60 s after the round, %ld callbacks and %ld values are still alive", rs.use_count() - 1,
               alive.use_count() - 1);
    SOAK_CHECK(ctx, rs->callbacks.load() == expected, "future: %lld callbacks ran, %lld expected",
               static_cast<long long>(rs->callbacks.load()), static_cast<long long>(expected));
    ctx.count(static_cast<uint64_t>(expected + settled));
    ctx.round_done();
  }
  thread.quit();
  run_blocking([&thread] { thread.thread().join(); });
}

// ---------------------------------------------------------------------------
// process: child processes. Each round runs output() of a shell that
// writes to stdout and stderr and exits with a chosen code; cat with piped
// stdin and stdout, written by one fiber and read by another; now and
// then a sleep that wait_for() outlasts and that is then killed; a program
// that does not exist. Every child is waited for, so none is left behind
// (no zombie). A child costs a fork and an exec, so rounds are spaced by a
// 20-80 ms pause: a few dozen children a second, not thousands.

void run_process(WorkloadContext& ctx) {
  Rng rng(ctx.seed());
  uint64_t round = 0;
  while (!ctx.stopping()) {
    ++round;
    uint64_t ops = 0;
    // output(): stdout, stderr and the exit code.
    {
      const int code = static_cast<int>(uniform(rng, 0, 7));
      const uint64_t key = rng() % 1000000;
      auto o = process::output({"sh", "-c", absl::StrCat("echo out ", key, "; echo err ", key, " >&2; exit ", code)});
      SOAK_CHECK(ctx, o.ok(), "process: output(sh): %s", status_text(o).c_str());
      SOAK_CHECK(ctx,
                 o->out == absl::StrCat("out ", key, "\n") && o->err == absl::StrCat("err ", key, "\n") &&
                     o->status.exited && o->status.code == code,
                 "process: sh gave out '%s' err '%s', %s; expected key %llu, exit code %d", o->out.c_str(),
                 o->err.c_str(), o->status.to_string().c_str(), static_cast<unsigned long long>(key), code);
      ++ops;
    }
    // cat: bytes written into its stdin by one fiber come back on its
    // stdout to another.
    {
      process::Options opts;
      opts.in = process::Stdio::pipe();
      opts.out = process::Stdio::pipe();
      auto c = process::spawn({"cat"}, opts);
      SOAK_CHECK(ctx, c.ok(), "process: spawn(cat): %s", status_text(c).c_str());
      const size_t size = static_cast<size_t>(uniform(rng, 0, 256 * 1024));
      const uint64_t key = rng();
      auto writer = spawn([&ctx, &c, size, key] {
        std::string chunk;
        for (size_t off = 0; off < size;) {
          chunk.resize(std::min<size_t>(size - off, 16384));
          for (size_t i = 0; i < chunk.size(); ++i) chunk[i] = pattern_byte(key, off + i);
          absl::Status w = c->stdin_pipe->write_all(chunk);
          SOAK_CHECK(ctx, w.ok(), "process: write to cat: %s", status_text(w).c_str());
          off += chunk.size();
        }
        absl::Status cl = c->stdin_pipe->close();
        SOAK_CHECK(ctx, cl.ok(), "process: close cat's stdin: %s", status_text(cl).c_str());
      });
      std::vector<char> buf(16384);
      size_t got = 0;
      for (;;) {
        auto r = c->stdout_pipe->read(buf);
        SOAK_CHECK(ctx, r.ok(), "process: read from cat: %s", status_text(r).c_str());
        if (*r == 0) break;
        for (size_t i = 0; i < *r; ++i) {
          SOAK_CHECK(ctx, buf[i] == pattern_byte(key, got + i), "process: cat's byte %zu of %zu differs", got + i,
                     size);
        }
        got += *r;
      }
      writer.join();
      auto st = c->wait();
      SOAK_CHECK(ctx, got == size && st.ok() && st->success(), "process: cat echoed %zu of %zu bytes, %s", got, size,
                 st.ok() ? st->to_string().c_str() : status_text(st).c_str());
      ops += 1;
    }
    // A child that outlives wait_for(), then killed.
    if (round % 4 == 0) {
      auto c = process::spawn({"sleep", "60"});
      SOAK_CHECK(ctx, c.ok(), "process: spawn(sleep): %s", status_text(c).c_str());
      const int64_t us = uniform(rng, 0, 3000);
      auto t0 = SteadyClock::now();
      auto w = c->wait_for(absl::Microseconds(us));
      const int64_t el = micros_since(t0);
      SOAK_CHECK(ctx, absl::IsDeadlineExceeded(w.status()) && el + 1000 >= us,
                 "process: wait_for(%lld us) on a 60 s sleep: %s after %lld us", static_cast<long long>(us),
                 status_text(w).c_str(), static_cast<long long>(el));
      auto tw = c->try_wait();
      SOAK_CHECK(ctx, tw.ok() && !tw->has_value(), "process: try_wait on a running child: %s", status_text(tw).c_str());
      absl::Status k = c->kill();
      SOAK_CHECK(ctx, k.ok(), "process: kill: %s", status_text(k).c_str());
      auto st = c->wait();
      SOAK_CHECK(ctx, st.ok() && !st->exited && st->signal == SIGKILL, "process: killed sleep: %s",
                 st.ok() ? st->to_string().c_str() : status_text(st).c_str());
      SOAK_CHECK(ctx, c->kill().code() == absl::StatusCode::kFailedPrecondition, "process: kill after wait");
      ops += 1;
    }
    // A program that does not exist is an error, not a child.
    {
      auto c = process::spawn({"/nonexistent/weft-soak-no-such-program"});
      SOAK_CHECK(ctx, !c.ok() && process::error_number(c.status()) == ENOENT, "process: spawn of a missing program: %s",
                 status_text(c).c_str());
      ops += 1;
    }
    // Every child was waited for: none is left a zombie.
    siginfo_t info{};
    const int rc = ::waitid(P_ALL, 0, &info, WEXITED | WNOHANG | WNOWAIT);
    SOAK_CHECK(ctx, (rc < 0 && errno == ECHILD) || (rc == 0 && info.si_pid == 0),
               "process: a child (pid %d) exited and was not reaped", static_cast<int>(info.si_pid));
    ctx.count(ops);
    ctx.round_done();
    absl::Status sl = this_fiber::sleep_for(absl::Milliseconds(uniform(rng, 20, 80)));
    SOAK_CHECK(ctx, sl.ok(), "process: pause: %s", status_text(sl).c_str());
  }
}

}  // namespace

const std::vector<Workload>& all_workloads() {
  static const std::vector<Workload> kWorkloads = {
      {"spawn", "nested spawn trees joined, spawn_on, join rethrows, detached fibers and a WaitGroup",
       run_spawn},
      {"channel", "bounded/unbounded MPMC channels with close, timeouts, drop-oldest and fail policies",
       run_channel},
      {"sync", "Mutex, Semaphore, ConditionVariable, Event, WaitGroup, Oneshot, with timed waits", run_sync},
      {"tcp", "loopback echo, full duplex, sockets migrating between workers during traffic", run_tcp},
      {"udp", "loopback datagram echo with read timeouts, sockets migrating", run_udp},
      {"timers", "sleep_for/sleep_until, recv_for and Event timeouts of random lengths", run_timers},
      {"blocking", "run_blocking, spawn_blocking, temp files written, read, appended, removed",
       run_blocking_calls},
      {"cancel", "tokens cancelled and handles aborted while fibers park on channels, sleeps, semaphores",
       run_cancel},
      {"scope", "nested scoped() trees with failures, throws and cancels; race(), all(); no fiber outlives its scope",
       run_scope_workload},
      {"timeout", "with_timeout() around recv and sleeps, in time and timed out, nested, over a scope", run_timeout},
      {"select", "select() over channel recv/send, after/at, cancelled, finished, is_set; every value once",
       run_select},
      {"future", "then() chains with errors and throws, when_all/when_any, set from fibers and a thread, broken",
       run_future},
      {"process", "child processes: output() of sh, cat through pipes, wait_for and kill, a missing program",
       run_process},
  };
  return kWorkloads;
}

}  // namespace weft::soak
