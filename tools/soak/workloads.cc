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
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <mutex>
#include <random>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "fs/fs.h"
#include "lifecycle/scope.h"
#include "lifecycle/timeout.h"
#include "net/address.h"
#include "net/tcp.h"
#include "net/udp.h"
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
      std::string path = absl::StrCat(dir, "/r", round, "_", f);
      hs.push_back(spawn([&ctx, key, size, atomic, path] {
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
      // Not in the API yet: select. When it lands, add a workload here
      // (over channels and timeouts, every value received exactly once).
  };
  return kWorkloads;
}

}  // namespace weft::soak
