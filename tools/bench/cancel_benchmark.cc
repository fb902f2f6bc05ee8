// cancel: what cancellation costs per wait, each figure next to a baseline
// measured in the same run.
//
// Baseline: two fibers on one worker bounce a value through two
// capacity-1 channels (a round trip is two sends, two receives, two
// parks), spawned without a token. Then the same round trip:
//   token:        both fibers spawned with SpawnOptions::token (every park
//                 publishes cancel_park and reads the token's state)
//   with_timeout: both loops inside with_timeout(1h, ...) (a pushed child
//                 token with a deadline on the wheel)
// The three alternate --reps times (default 5); medians are printed, and
// the extra cost per wait (two parks per round trip).
//
// Then, each in ns per operation:
//   abort:        a fiber parked in recv() on an empty channel; another
//                 fiber calls JoinHandle::abort() and join()s it: from the
//                 abort until the join has returned (the parked fiber woke
//                 with kCancelled and ended)
//   token.cancel: the same with the parked fiber spawned with a token of
//                 its own that the other fiber cancels
//   child token:  CancellationToken::child() and its destruction
//   on_cancel:    on_cancel() registration and reset()
#include <algorithm>
#include <cstdio>
#include <vector>

#include "absl/time/time.h"
#include "lifecycle/timeout.h"
#include "runtime/cancel.h"
#include "runtime/runtime.h"
#include "sync/channel.h"
#include "tools/bench/bench_util.h"

namespace {

using namespace weft;

enum class Mode { kPlain, kToken, kTimeout };

// One ping-pong of n round trips on worker 0; ns per round trip.
double pingpong(Runtime& rt, int64_t n, Mode mode) {
  Channel<int64_t> ping(1), pong(1);
  auto a_loop = [&] {
    for (int64_t i = 0; i < n; ++i) {
      (void)ping.send(i);
      (void)pong.recv();
    }
  };
  auto b_loop = [&] {
    for (int64_t i = 0; i < n; ++i) (void)pong.send(*ping.recv());
  };
  CancellationToken token;
  SpawnOptions opts;
  if (mode == Mode::kToken) opts.token = token;
  int64_t t0 = bench::now_ns();
  JoinHandle<void> a, b;
  if (mode == Mode::kTimeout) {
    a = rt.spawn_on(0, [&] { (void)with_timeout(absl::Hours(1), a_loop); });
    b = rt.spawn_on(0, [&] { (void)with_timeout(absl::Hours(1), b_loop); });
  } else {
    a = rt.spawn_on(0, a_loop, opts);
    b = rt.spawn_on(0, b_loop, opts);
  }
  a.join();
  b.join();
  return static_cast<double>(bench::now_ns() - t0) / static_cast<double>(n);
}

// n cancel round trips: spawn a fiber that parks in recv(), let it park,
// then cancel it (abort() or its token) and join it. Times only the
// cancel + join, in ns per cancel.
double cancel_round_trips(Runtime& rt, int64_t n, bool by_token) {
  return rt.block_on([&] {
    Channel<int> never(1);
    int64_t total = 0;
    for (int64_t i = 0; i < n; ++i) {
      CancellationToken token;
      SpawnOptions opts;
      if (by_token) opts.token = token;
      auto h = spawn(opts, [&] { (void)never.recv(); });
      this_fiber::yield();  // one worker: the new fiber runs and parks
      int64_t t0 = bench::now_ns();
      if (by_token) {
        token.cancel();
      } else {
        h.abort();
      }
      h.join();
      total += bench::now_ns() - t0;
    }
    return static_cast<double>(total) / static_cast<double>(n);
  });
}

double child_tokens(Runtime& rt, int64_t n) {
  return rt.block_on([&] {
    CancellationToken parent;
    int64_t t0 = bench::now_ns();
    for (int64_t i = 0; i < n; ++i) {
      CancellationToken c = parent.child();
      (void)c.cancelled();
    }
    return static_cast<double>(bench::now_ns() - t0) / static_cast<double>(n);
  });
}

double registrations(Runtime& rt, int64_t n) {
  return rt.block_on([&] {
    CancellationToken token;
    int64_t fired = 0;
    int64_t t0 = bench::now_ns();
    for (int64_t i = 0; i < n; ++i) {
      CancelRegistration r = token.on_cancel([&fired] { ++fired; });
      r.reset();
    }
    double ns = static_cast<double>(bench::now_ns() - t0) / static_cast<double>(n);
    if (fired != 0) std::fprintf(stderr, "cancel bench: a callback ran\n");
    return ns;
  });
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

}  // namespace

int main(int argc, char** argv) {
  const int64_t rounds = bench::flag(argc, argv, "rounds", 500000);
  const int64_t cancels = bench::flag(argc, argv, "cancels", 100000);
  const int64_t ops = bench::flag(argc, argv, "ops", 1000000);
  const int reps = static_cast<int>(bench::flag(argc, argv, "reps", 5));
  auto rt = *Runtime::create({.workers = 1});

  std::vector<double> plain, token, timeout;
  for (int r = 0; r < reps; ++r) {
    plain.push_back(pingpong(*rt, rounds, Mode::kPlain));
    token.push_back(pingpong(*rt, rounds, Mode::kToken));
    timeout.push_back(pingpong(*rt, rounds, Mode::kTimeout));
  }
  const double base = median(plain);
  const std::string bname = "ping-pong, no token";
  std::printf("medians of %d alternating runs, %lld round trips each, 1 worker\n", reps,
              static_cast<long long>(rounds));
  bench::report("ping-pong, no token", base, "ns", bname, base, 0, "");
  bench::report("ping-pong, spawn token", median(token), "ns", bname, base, 0, "");
  bench::report("ping-pong, with_timeout", median(timeout), "ns", bname, base, 0, "");
  std::printf("  per wait (2 per round trip): token %+.1f ns, with_timeout %+.1f ns\n",
              (median(token) - base) / 2, (median(timeout) - base) / 2);

  bench::report("cancel: abort()+join", cancel_round_trips(*rt, cancels, false), "ns", bname, base, 0,
                "");
  bench::report("cancel: token.cancel()+join", cancel_round_trips(*rt, cancels, true), "ns", bname, base, 0,
                "");
  bench::report("child token make+destroy", child_tokens(*rt, ops), "ns", bname, base, 0, "");
  bench::report("on_cancel register+reset", registrations(*rt, ops), "ns", bname, base, 0, "");
  return 0;
}
