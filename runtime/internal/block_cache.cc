#include "runtime/internal/block_cache.h"

#include <new>
#include <utility>

#include "runtime/platform/check.h"
#include "runtime/platform/prefetch.h"

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/asan_interface.h>
#define WEFT_POISON(p, n) ASAN_POISON_MEMORY_REGION(p, n)
#define WEFT_UNPOISON(p, n) ASAN_UNPOISON_MEMORY_REGION(p, n)
#else
#define WEFT_POISON(p, n) ((void)(p), (void)(n))
#define WEFT_UNPOISON(p, n) ((void)(p), (void)(n))
#endif

namespace weft::internal {

static_assert(sizeof(void*) * 4 <= BlockCache::kGranule, "a free block's header must fit its class");

BlockCache::BlockCache(int index, size_t max_cached_bytes) : index_(index), max_cached_bytes_(max_cached_bytes) {}

BlockCache::~BlockCache() {
  for (FreeBlock*& head : lists_) {
    while (head != nullptr) delete_block(std::exchange(head, head->next));
  }
  FreeBlock* r = remote_.exchange(nullptr, std::memory_order_acquire);
  while (r != nullptr) {
    FreeBlock* batch = std::exchange(r, r->next_batch);
    while (batch != nullptr) delete_block(std::exchange(batch, batch->next));
  }
  for (Batch& b : outgoing_) {
    while (b.head != nullptr) delete_block(std::exchange(b.head, b.head->next));
  }
}

void BlockCache::set_peers(std::vector<BlockCache*> peers) {
  WEFT_CHECK(index_ >= 0 && static_cast<size_t>(index_) < peers.size() && peers[static_cast<size_t>(index_)] == this,
             "BlockCache %d is not at its own index among %zu peers", index_, peers.size());
  peers_ = std::move(peers);
  outgoing_.assign(peers_.size() * (kClasses + 1), Batch{});
}

BlockCache::FreeBlock* BlockCache::as_free(void* block, uint32_t cls) {
  auto* b = static_cast<FreeBlock*>(block);
  b->next = nullptr;
  b->next_batch = nullptr;
  b->last = nullptr;
  b->cls = cls;
  b->count = 0;
  WEFT_POISON(reinterpret_cast<char*>(block) + sizeof(FreeBlock), class_size(cls) - sizeof(FreeBlock));
  return b;
}

void BlockCache::delete_block(FreeBlock* b) {
  WEFT_UNPOISON(b, class_size(b->cls));
  ::operator delete(b);
}

void* BlockCache::alloc(uint32_t cls) {
  WEFT_CHECK(cls >= 1 && cls <= kClasses, "BlockCache::alloc of size class %u (1..%u)", cls, kClasses);
  FreeBlock* b = lists_[cls];  // step 1
  if (b == nullptr) {
    collect();
    b = lists_[cls];
    if (b == nullptr) return ::operator new(class_size(cls));
  }
  lists_[cls] = b->next;
  cached_bytes_ -= class_size(cls);
  // The blocks are likely cold (freed on another core, whose cache may
  // still hold them): start loading for writing the one after next, for
  // the spawn after next. One spawn ahead is shorter than the round trip
  // to the other core's cache (docs/benchmarks.md, "Spawn when the runner
  // keeps up"); the next block's own lines were prefetched by the alloc
  // before, so reading its link here does not wait.
  if (const FreeBlock* next = lists_[cls]) {
    if (const char* after = reinterpret_cast<const char*>(next->next)) {
      for (size_t off = 0; off < class_size(cls); off += kGranule) prefetch_for_write(after + off);
    }
  }
  WEFT_UNPOISON(b, class_size(cls));
  return b;
}

void BlockCache::keep(FreeBlock* b) {
  const size_t size = class_size(b->cls);
  if (cached_bytes_ + size > max_cached_bytes_) {
    delete_block(b);
    return;
  }
  b->next = lists_[b->cls];
  lists_[b->cls] = b;
  cached_bytes_ += size;
}

void BlockCache::free(void* block, uint32_t cls, int origin) {
  WEFT_CHECK(cls >= 1 && cls <= kClasses, "BlockCache::free of size class %u (1..%u)", cls, kClasses);
  FreeBlock* b = as_free(block, cls);
  if (origin == index_ || origin < 0 || static_cast<size_t>(origin) >= peers_.size()) {
    keep(b);  // step 2 (a block of unknown origin stays here)
    return;
  }
  Batch& out = outgoing(origin, cls);  // step 3a
  if (out.head == nullptr) {
    out.head = out.tail = b;
  } else {
    out.tail->next = b;
    out.tail = b;
  }
  if (++out.n == kBatch) {
    peers_[static_cast<size_t>(origin)]->push_remote(out);
    out = Batch{};
  }
}

void BlockCache::flush() {
  for (size_t i = 0; i < outgoing_.size(); ++i) {
    Batch& out = outgoing_[i];
    if (out.head == nullptr) continue;
    peers_[i / (kClasses + 1)]->push_remote(out);
    out = Batch{};
  }
}

void BlockCache::push_remote(const Batch& b) {
  // Step 3b: the batch's first block carries its last block and count;
  // its next_batch is the only field written after the CAS reads the
  // list, and only until the CAS succeeds.
  b.head->last = b.tail;
  b.head->count = b.n;
  FreeBlock* old = remote_.load(std::memory_order_relaxed);
  do {
    b.head->next_batch = old;
  } while (!remote_.compare_exchange_weak(old, b.head, std::memory_order_release, std::memory_order_relaxed));
}

void BlockCache::collect() {
  if (remote_.load(std::memory_order_relaxed) == nullptr) return;
  FreeBlock* b = remote_.exchange(nullptr, std::memory_order_acquire);  // step 4
  while (b != nullptr) {
    FreeBlock* first = std::exchange(b, b->next_batch);
    const size_t bytes = first->count * class_size(first->cls);
    if (cached_bytes_ + bytes > max_cached_bytes_) {
      while (first != nullptr) delete_block(std::exchange(first, first->next));
      continue;
    }
    first->last->next = lists_[first->cls];
    lists_[first->cls] = first;
    cached_bytes_ += bytes;
  }
}

}  // namespace weft::internal
