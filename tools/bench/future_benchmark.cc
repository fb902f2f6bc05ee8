// future: what a pending future costs and what a set_value -> callback hop
// costs, each next to a baseline measured in the same run.
//
// Memory: N promise/future pairs, each with one on_success callback
// attached and nothing set, for N = 100 and N = 100,000: heap bytes per
// pending future (this binary counts every operator new/delete), plus the
// handles, and RSS growth for the large N. Baselines: a std::promise /
// std::future pair (no callback: it cannot hold one) for heap bytes; a
// fiber parked in Oneshot::recv() (the way to wait for a value without a
// future) for RSS.
//
// Hop: on one worker, a fiber sets a promise whose then() callback adds 1,
// and get()s the result: a runner fiber spawned, the callback run, the
// getter woken. Baseline: the same without futures, a spawned fiber that
// sends on a Oneshot the first fiber receives from. Then the cost of one
// more then() in a chain (the same runner runs it, no spawn).
#include <malloc.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <future>
#include <new>
#include <vector>

#include "future/future.h"
#include "runtime/runtime.h"
#include "sync/oneshot.h"
#include "sync/wait_group.h"
#include "tools/bench/bench_util.h"

namespace {
// Live heap bytes, counted only while g_counting is set (the memory
// sections), so the timed sections pay for no counting.
std::atomic<int64_t> g_heap{0};
std::atomic<bool> g_counting{false};

void* counted_alloc(size_t n, size_t align) {
  void* p = align > alignof(std::max_align_t) ? std::aligned_alloc(align, (n + align - 1) / align * align)
                                              : std::malloc(n == 0 ? 1 : n);
  if (p == nullptr) throw std::bad_alloc();
  if (g_counting.load(std::memory_order_relaxed)) {
    g_heap.fetch_add(static_cast<int64_t>(malloc_usable_size(p)), std::memory_order_relaxed);
  }
  return p;
}
void counted_free(void* p) {
  if (p == nullptr) return;
  if (g_counting.load(std::memory_order_relaxed)) {
    g_heap.fetch_sub(static_cast<int64_t>(malloc_usable_size(p)), std::memory_order_relaxed);
  }
  std::free(p);
}
}  // namespace

void* operator new(size_t n) { return counted_alloc(n, 0); }
void* operator new[](size_t n) { return counted_alloc(n, 0); }
void* operator new(size_t n, std::align_val_t a) { return counted_alloc(n, static_cast<size_t>(a)); }
void* operator new[](size_t n, std::align_val_t a) { return counted_alloc(n, static_cast<size_t>(a)); }
void operator delete(void* p) noexcept { counted_free(p); }
void operator delete[](void* p) noexcept { counted_free(p); }
void operator delete(void* p, size_t) noexcept { counted_free(p); }
void operator delete[](void* p, size_t) noexcept { counted_free(p); }
void operator delete(void* p, std::align_val_t) noexcept { counted_free(p); }
void operator delete[](void* p, std::align_val_t) noexcept { counted_free(p); }
void operator delete(void* p, size_t, std::align_val_t) noexcept { counted_free(p); }
void operator delete[](void* p, size_t, std::align_val_t) noexcept { counted_free(p); }

namespace {

using namespace weft;

struct Pending {
  double heap_bytes;  // per future, including the two handles
  double rss_bytes;   // per future
};

Pending pending_futures(Runtime& rt, int64_t n) {
  std::vector<Promise<int>> ps;
  std::vector<Future<int>> fs;
  ps.reserve(static_cast<size_t>(n));
  fs.reserve(static_cast<size_t>(n));
  std::atomic<int64_t> ran{0};
  int64_t rss0 = bench::rss_bytes();
  g_counting = true;
  int64_t heap0 = g_heap.load();
  for (int64_t i = 0; i < n; ++i) {
    ps.emplace_back(rt);
    fs.push_back(ps.back().get_future().on_success([&ran](const int&) { ran.fetch_add(1); }));
  }
  int64_t heap1 = g_heap.load();
  g_counting = false;
  int64_t rss1 = bench::rss_bytes();
  for (auto& p : ps) p.set_value(1);
  for (auto& f : fs) (void)f.wait();  // a plain thread, no deadline: the wait ends OK
  if (ran.load() != n) {
    std::fprintf(stderr, "future_benchmark: %lld callbacks ran, expected %lld\n", static_cast<long long>(ran.load()),
                 static_cast<long long>(n));
    std::exit(1);
  }
  double handles = sizeof(Promise<int>) + sizeof(Future<int>);
  return {static_cast<double>(heap1 - heap0) / static_cast<double>(n) + handles,
          static_cast<double>(rss1 - rss0) / static_cast<double>(n)};
}

double std_future_heap(int64_t n) {
  std::vector<std::promise<int>> ps;
  std::vector<std::future<int>> fs;
  ps.reserve(static_cast<size_t>(n));
  fs.reserve(static_cast<size_t>(n));
  g_counting = true;
  int64_t heap0 = g_heap.load();
  for (int64_t i = 0; i < n; ++i) {
    ps.emplace_back();
    fs.push_back(ps.back().get_future());
  }
  int64_t heap1 = g_heap.load();
  g_counting = false;
  return static_cast<double>(heap1 - heap0) / static_cast<double>(n) + sizeof(std::promise<int>) +
         sizeof(std::future<int>);
}

double parked_oneshot_rss(Runtime& rt, int64_t n) {
  std::vector<OneshotSender<int>> txs;
  std::vector<JoinHandle<void>> hs;
  txs.reserve(static_cast<size_t>(n));
  hs.reserve(static_cast<size_t>(n));
  WaitGroup started(n);
  int64_t rss0 = bench::rss_bytes();
  for (int64_t i = 0; i < n; ++i) {
    auto [tx, rx] = make_oneshot<int>();
    txs.push_back(std::move(tx));
    hs.push_back(rt.spawn([&started, rx = std::move(rx)]() mutable {
      started.done();
      (void)rx.recv();
    }));
  }
  (void)started.wait();  // a plain thread, no deadline: the wait ends OK
  int64_t rss1 = bench::rss_bytes();
  for (auto& tx : txs) (void)tx.send(1);
  for (auto& h : hs) h.join();
  return static_cast<double>(rss1 - rss0) / static_cast<double>(n);
}

double future_hop_ns(Runtime& rt, int64_t n) {
  return rt.block_on([n] {
    int64_t t0 = bench::now_ns();
    for (int64_t i = 0; i < n; ++i) {
      Promise<int64_t> p;
      auto f = p.get_future().then([](int64_t v) { return v + 1; });
      p.set_value(i);
      if (*f.get() != i + 1) std::abort();
    }
    return static_cast<double>(bench::now_ns() - t0) / static_cast<double>(n);
  });
}

double oneshot_hop_ns(Runtime& rt, int64_t n) {
  return rt.block_on([n] {
    int64_t t0 = bench::now_ns();
    for (int64_t i = 0; i < n; ++i) {
      auto [tx, rx] = make_oneshot<int64_t>();
      spawn([tx = std::move(tx), i]() mutable { (void)tx.send(i + 1); }).detach();
      if (*rx.recv() != i + 1) std::abort();
    }
    return static_cast<double>(bench::now_ns() - t0) / static_cast<double>(n);
  });
}

// Per extra then() in a chain of `len`, the chain set `n / len` times.
double chain_step_ns(Runtime& rt, int64_t n, int len) {
  return rt.block_on([n, len] {
    int64_t rounds = n / len;
    int64_t t0 = bench::now_ns();
    for (int64_t r = 0; r < rounds; ++r) {
      Promise<int64_t> p;
      Future<int64_t> f = p.get_future();
      for (int k = 0; k < len; ++k) f = std::move(f).then([](int64_t v) { return v + 1; });
      p.set_value(0);
      if (*f.get() != len) std::abort();
    }
    return static_cast<double>(bench::now_ns() - t0) / static_cast<double>(rounds * len);
  });
}

}  // namespace

int main(int argc, char** argv) {
  const int64_t big = bench::flag(argc, argv, "futures", 100000);
  const int64_t hops = bench::flag(argc, argv, "hops", 200000);
  auto rt1 = *Runtime::create({.workers = 1});
  auto rt2 = *Runtime::create({.workers = 2});
  rt2->block_on([] {});  // warm up

  Pending small = pending_futures(*rt2, 100);
  double std_small = std_future_heap(100);
  bench::report("100 pending futures", small.heap_bytes, "B/fut", "std::promise+future pair", std_small, 0,
                "heap + handles; the baseline holds no callback");
  Pending large = pending_futures(*rt2, big);
  double std_large = std_future_heap(big);
  bench::report("100k pending futures (heap)", large.heap_bytes, "B/fut", "std::promise+future pair", std_large,
                0, "heap + handles");
  double parked = parked_oneshot_rss(*rt2, big);
  bench::report("100k pending futures (RSS)", large.rss_bytes, "B/fut", "fiber parked on Oneshot", parked, 0,
                "RSS growth");

  // Each timed section alternates with its baseline, three times; the
  // medians are reported (this machine is shared and noisy).
  auto alternate = [](auto weft_fn, auto base_fn) {
    double w[3], b[3];
    for (int r = 0; r < 3; ++r) {
      b[r] = base_fn();
      w[r] = weft_fn();
    }
    std::sort(w, w + 3);
    std::sort(b, b + 3);
    return std::pair<double, double>(w[1], b[1]);
  };
  (void)future_hop_ns(*rt1, hops / 10);  // warm up the stack cache
  auto [hop, base] = alternate([&] { return future_hop_ns(*rt1, hops); }, [&] { return oneshot_hop_ns(*rt1, hops); });
  bench::report("set_value->then->get, 1 wk", hop, "ns", "spawn+Oneshot send/recv", base, 0,
                "one runner fiber per completion");
  auto [step, base_s] =
      alternate([&] { return chain_step_ns(*rt1, hops, 16); }, [&] { return oneshot_hop_ns(*rt1, hops); });
  bench::report("one more then() in a chain", step, "ns", "spawn+Oneshot send/recv", base_s, 0,
                "same runner, no spawn");
  auto [hop2, base2] =
      alternate([&] { return future_hop_ns(*rt2, hops); }, [&] { return oneshot_hop_ns(*rt2, hops); });
  bench::report("set_value->then->get, 2 wk", hop2, "ns", "spawn+Oneshot send/recv", base2, 0, "");
  return 0;
}
