// runtime/internal/block_cache.h
//
// BlockCache: one worker's free lists of fiber control blocks (the Fiber,
// its join state and its task in one allocation), by size class, so that
// spawning reuses the blocks its fibers' exits gave back instead of going
// through malloc. NOT for users.
//
// Why: a fiber spawned on one worker often exits on another. With glibc
// malloc the exiting worker then frees the block into the spawner's arena,
// under the arena's lock, which the spawner takes for every allocation: the
// two threads sleep on that lock in turn (docs/benchmarks.md, "spawn").
// Here a block goes back to the worker that allocated it (its origin)
// without a lock, as in mimalloc's per-page remote-free lists.
//
// Every block is one `::operator new` of its class's size, so any thread may
// `::operator delete` one at any time: off a worker, after the runtime is
// gone, or when a cache is over its cap. A cache never hands out memory it
// does not own outright, so a block given to the wrong cache (a worker of
// another runtime) is still a valid block of its class.
//
// The protocol (all steps but 3b on the owner's thread):
//   1. alloc(cls): pop the class's own list; if empty, collect (step 4) and
//      pop again; if still empty, ::operator new.
//   2. free() of a block whose origin is this cache: push it on the class's
//      own list, or delete it if the cache holds max_cached_bytes already.
//   3. free() of a block whose origin is peer p: (a) append it to the
//      outgoing batch for p and its class; (b) when the batch holds kBatch
//      blocks, or on flush(), link the batch onto p's remote list with one
//      CAS (release), the only step that touches another cache.
//   4. collect(): take the whole remote list with one exchange (acquire,
//      pairing with 3b's release, so the blocks' last writes by the freeing
//      thread happen before their reuse), and splice each batch onto its
//      class's list whole (the batch's first block knows its last block and
//      its count), or delete it if it would go over the cap. Only the
//      batches' first and last blocks are touched here: the rest were last
//      written by another core, and walking them would be one cache miss
//      per block.
// A free block holds its links, class and batch count in its first 32
// bytes; under ASan the rest is poisoned until alloc() hands it out again.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <vector>

namespace weft::internal {

class BlockCache {
 public:
  static constexpr size_t kGranule = 64;
  static constexpr uint32_t kClasses = 24;  // blocks of up to 1,536 bytes
  static constexpr uint32_t kBatch = 32;

  // class_of() is the size class of a block of `size` bytes, 0 for a block
  // too large to cache (allocated and freed with ::operator new/delete).
  static uint32_t class_of(size_t size) {
    size_t c = (size + kGranule - 1) / kGranule;
    return c <= kClasses ? static_cast<uint32_t>(c) : 0;
  }
  static size_t class_size(uint32_t cls) { return cls * kGranule; }

  // index: this cache's index among its peers.
  BlockCache(int index, size_t max_cached_bytes);
  // Deletes every block the cache holds: its lists, its remote list and its
  // outgoing batches (which it does not hand over: the peers may be gone).
  // No thread may free into it any more.
  ~BlockCache();
  BlockCache(const BlockCache&) = delete;
  BlockCache& operator=(const BlockCache&) = delete;

  // set_peers() names every cache of the runtime, this one included, by
  // index. Before any free().
  void set_peers(std::vector<BlockCache*> peers);

  // --- owner ---
  // alloc() returns a block of class_size(cls) bytes (1 <= cls <= kClasses).
  void* alloc(uint32_t cls);
  // free() takes a block of class cls allocated by the cache at `origin`.
  void free(void* block, uint32_t cls, int origin);
  // flush() hands every outgoing batch to its origin (step 3b).
  void flush();
  // trim() collects the remote list (step 4), so that blocks the peers gave
  // back are kept up to the cap or deleted rather than held unseen.
  void trim() { collect(); }

  // cached_bytes() is the size of the blocks on the own lists (owner).
  size_t cached_bytes() const { return cached_bytes_; }
  int index() const { return index_; }

 private:
  struct FreeBlock {
    FreeBlock* next;        // the next block of the batch or list
    FreeBlock* next_batch;  // on the remote list, in a batch's first block
    FreeBlock* last;        // in a batch's first block
    uint32_t cls;
    uint32_t count;         // in a batch's first block
  };
  struct Batch {
    FreeBlock* head = nullptr;
    FreeBlock* tail = nullptr;
    uint32_t n = 0;
  };

  static FreeBlock* as_free(void* block, uint32_t cls);
  static void delete_block(FreeBlock* b);
  Batch& outgoing(int origin, uint32_t cls) {
    return outgoing_[static_cast<size_t>(origin) * (kClasses + 1) + cls];
  }
  void keep(FreeBlock* b);                          // own list, or delete over the cap
  void collect();                                   // step 4
  void push_remote(const Batch& b);                 // step 3b, from a peer

  const int index_;
  const size_t max_cached_bytes_;
  size_t cached_bytes_ = 0;
  FreeBlock* lists_[kClasses + 1] = {};
  std::vector<BlockCache*> peers_;
  std::vector<Batch> outgoing_;  // by origin and class
  // Blocks peers gave back; any thread pushes (CAS), the owner takes all.
  alignas(64) std::atomic<FreeBlock*> remote_{nullptr};
};

}  // namespace weft::internal
