#include "runtime/internal/block_cache.h"

#include <atomic>
#include <cstring>
#include <deque>
#include <mutex>
#include <set>
#include <thread>
#include <vector>

#include <doctest/doctest.h>

#include "tests/test_util.h"

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/asan_interface.h>
#endif

namespace weft::internal {
namespace {

TEST_CASE("BlockCache size classes") {
  CHECK(BlockCache::class_of(1) == 1);
  CHECK(BlockCache::class_of(64) == 1);
  CHECK(BlockCache::class_of(65) == 2);
  CHECK(BlockCache::class_of(320) == 5);
  CHECK(BlockCache::class_of(BlockCache::kClasses * BlockCache::kGranule) == BlockCache::kClasses);
  CHECK(BlockCache::class_of(BlockCache::kClasses * BlockCache::kGranule + 1) == 0);
  CHECK(BlockCache::class_size(5) == 320);
}

TEST_CASE("BlockCache reuses its own blocks, last freed first, up to its cap") {
  BlockCache c(0, 2 * 128);
  c.set_peers({&c});
  void* a = c.alloc(2);
  void* b = c.alloc(2);
  void* d = c.alloc(2);
  CHECK(a != b);
  std::memset(a, 0xab, 128);  // the whole class size is usable
  c.free(a, 2, 0);
  c.free(b, 2, 0);
  CHECK(c.cached_bytes() == 256);
  c.free(d, 2, 0);  // over the cap: deleted
  CHECK(c.cached_bytes() == 256);
  CHECK(c.alloc(2) == b);
  CHECK(c.alloc(2) == a);
  CHECK(c.cached_bytes() == 0);
  // Another class does not take these.
  void* e = c.alloc(3);
  CHECK(e != a);
  CHECK(e != b);
  c.free(a, 2, 0);
  c.free(b, 2, 0);
  c.free(e, 3, 0);
}

#if defined(__SANITIZE_ADDRESS__)
TEST_CASE("BlockCache poisons a cached block past its link, so ASan sees a use after free") {
  BlockCache c(0, 1 << 20);
  c.set_peers({&c});
  auto* p = static_cast<char*>(c.alloc(3));
  CHECK_FALSE(__asan_address_is_poisoned(p + 100));
  c.free(p, 3, 0);
  CHECK(__asan_address_is_poisoned(p + 32));
  CHECK(__asan_address_is_poisoned(p + 191));
  CHECK(c.alloc(3) == p);
  CHECK_FALSE(__asan_address_is_poisoned(p + 32));
  CHECK_FALSE(__asan_address_is_poisoned(p + 191));
  c.free(p, 3, 0);
}
#endif

TEST_CASE("BlockCache sends blocks back to their origin in batches") {
  BlockCache a(0, 1 << 20), b(1, 1 << 20);
  a.set_peers({&a, &b});
  b.set_peers({&a, &b});
  std::vector<void*> blocks;
  for (uint32_t i = 0; i < BlockCache::kBatch + 1; ++i) blocks.push_back(a.alloc(4));
  std::set<void*> mine(blocks.begin(), blocks.end());
  // Fewer than a batch freed on b: a does not see them yet.
  for (uint32_t i = 0; i + 1 < BlockCache::kBatch; ++i) b.free(blocks[i], 4, 0);
  void* fresh = a.alloc(4);
  CHECK(mine.count(fresh) == 0);
  CHECK(b.cached_bytes() == 0);  // not kept by b either
  // The batch's last block hands it over; a takes it when its list is dry.
  b.free(blocks[BlockCache::kBatch - 1], 4, 0);
  std::set<void*> back;
  for (uint32_t i = 0; i < BlockCache::kBatch; ++i) back.insert(a.alloc(4));
  CHECK(back.size() == BlockCache::kBatch);
  for (void* p : back) CHECK(mine.count(p) == 1);
  // flush() hands over a partial batch.
  b.free(blocks[BlockCache::kBatch], 4, 0);
  b.flush();
  CHECK(a.alloc(4) == blocks[BlockCache::kBatch]);
  // trim() takes the remote list in without an alloc.
  for (void* p : back) b.free(p, 4, 0);
  b.flush();
  CHECK(a.cached_bytes() == 0);
  a.trim();
  CHECK(a.cached_bytes() == BlockCache::kBatch * BlockCache::class_size(4));
  // A block of an unknown origin stays where it is freed.
  b.free(blocks[BlockCache::kBatch], 4, 7);
  CHECK(b.cached_bytes() == BlockCache::class_size(4));
  a.free(fresh, 4, 0);
  // The destructors free what each holds, batches for peers included.
  b.free(a.alloc(4), 4, 0);
}

TEST_CASE("BlockCache stress: blocks cross threads and come back, none handed out twice") {
  // Each thread owns a cache, allocates blocks of random classes, stamps
  // them live and passes them to the next thread, which checks the stamp
  // and frees them back to their origin. A block handed out while still
  // live would carry the stamp at alloc.
  constexpr int kThreads = 4;
  const int64_t kPerThread = 40000 * weft::testing::scale();
  constexpr uint64_t kLive = 0x6c6976656c697665ull;
  struct Mail {
    std::mutex mu;
    std::deque<void*> q;
  };
  std::vector<std::unique_ptr<BlockCache>> caches;
  std::vector<BlockCache*> peers;
  for (int i = 0; i < kThreads; ++i) {
    caches.push_back(std::make_unique<BlockCache>(i, 64 << 10));
    peers.push_back(caches.back().get());
  }
  for (auto& c : caches) c->set_peers(peers);
  std::vector<Mail> mail(kThreads);
  std::atomic<int64_t> received{0}, reused_stamp{0}, bad_stamp{0};
  std::atomic<int> done_sending{0};
  auto body = [&](int me) {
    BlockCache& c = *caches[static_cast<size_t>(me)];
    uint64_t rng = 0x9E3779B97F4A7C15ull * static_cast<uint64_t>(me + 1);
    Mail& out = mail[static_cast<size_t>((me + 1) % kThreads)];
    Mail& in = mail[static_cast<size_t>(me)];
    std::vector<void*> got;
    auto take = [&] {
      got.clear();
      {
        std::lock_guard<std::mutex> g(in.mu);
        got.assign(in.q.begin(), in.q.end());
        in.q.clear();
      }
      for (void* p : got) {
        auto* w = static_cast<uint64_t*>(p);
        const uint32_t cls = static_cast<uint32_t>(w[3]);
        const int origin = static_cast<int>(w[4]);
        if (w[2] != kLive || cls < 1 || cls > BlockCache::kClasses || w[5] != reinterpret_cast<uint64_t>(p)) {
          bad_stamp.fetch_add(1);
          continue;
        }
        w[2] = 0;
        c.free(p, cls, origin);
        received.fetch_add(1, std::memory_order_relaxed);
      }
    };
    for (int64_t i = 0; i < kPerThread; ++i) {
      rng ^= rng << 13;
      rng ^= rng >> 7;
      rng ^= rng << 17;
      const uint32_t cls = 1 + static_cast<uint32_t>(rng % 4);
      auto* w = static_cast<uint64_t*>(c.alloc(cls));
      if (w[2] == kLive) reused_stamp.fetch_add(1);
      w[2] = kLive;
      w[3] = cls;
      w[4] = static_cast<uint64_t>(me);
      w[5] = reinterpret_cast<uint64_t>(w);
      {
        std::lock_guard<std::mutex> g(out.mu);
        out.q.push_back(w);
      }
      if ((i & 63) == 0) take();
      if ((i & 1023) == 0) c.flush();
    }
    done_sending.fetch_add(1);
    while (done_sending.load() < kThreads || received.load() < kPerThread * kThreads) {
      take();
      c.flush();
    }
  };
  std::vector<std::thread> threads;
  for (int i = 0; i < kThreads; ++i) threads.emplace_back(body, i);
  for (auto& t : threads) t.join();
  CHECK(received.load() == kPerThread * kThreads);
  CHECK(bad_stamp.load() == 0);
  CHECK(reused_stamp.load() == 0);
  size_t held = 0;
  for (auto& c : caches) {
    c->trim();
    held += c->cached_bytes();
  }
  CHECK(held > 0);  // blocks came back to their origins
  CHECK(held <= kThreads * (64u << 10));
}

}  // namespace
}  // namespace weft::internal
