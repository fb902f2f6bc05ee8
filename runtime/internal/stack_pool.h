// runtime/internal/stack_pool.h
//
// Fiber stacks: mmap'd, with a PROT_NONE guard page below the usable range,
// so an overflow faults instead of corrupting a neighbour. Only touched
// pages cost memory. StackCache keeps a bounded number of free stacks of the
// default size per worker so spawning rarely needs a system call, and gives
// back the ones no fiber took for a while (release_idle()).
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace weft::internal {

inline constexpr size_t kPageSize = 4096;
inline constexpr size_t kGuardSize = kPageSize;
inline constexpr size_t kMinStackSize = 16 * 1024;

struct Stack {
  void* base = nullptr;  // start of the mapping (the guard page)
  size_t size = 0;       // usable bytes, above the guard page
  void* bottom() const { return static_cast<char*>(base) + kGuardSize; }
  void* top() const { return static_cast<char*>(bottom()) + size; }
  bool in_guard(const void* addr) const {
    auto a = reinterpret_cast<uintptr_t>(addr), b = reinterpret_cast<uintptr_t>(base);
    return a >= b && a < b + kGuardSize;
  }
};

// round_stack_size() returns `size` rounded up to whole pages, at least
// kMinStackSize.
size_t round_stack_size(size_t size);

// allocate_stack() maps a new stack of round_stack_size(size) usable bytes.
// Fails with the mmap/mprotect errno (ENOMEM when vm.max_map_count or memory
// runs out).
absl::StatusOr<Stack> allocate_stack(size_t size);
void free_stack(Stack s);

// stack_map_error() is allocate_stack()'s status for a failed `op` (mmap or
// mprotect) with errno `err`: errno_status(), and for ENOMEM a hint that
// names the mapped stacks and vm.max_map_count, the usual cause.
absl::Status stack_map_error(int err, std::string_view op);

// mapped_stack_count() is the number of stacks currently mapped by the
// process (for leak checks).
int64_t mapped_stack_count();

// StackCache: free stacks of one size, owned by one worker. Not thread-safe.
class StackCache {
 public:
  StackCache(size_t default_size, size_t capacity)
      : default_size_(round_stack_size(default_size)), capacity_(capacity) {}
  ~StackCache();
  StackCache(const StackCache&) = delete;
  StackCache& operator=(const StackCache&) = delete;

  size_t default_size() const { return default_size_; }
  size_t cached() const { return free_.size(); }

  // get() returns a cached stack when `size` rounds to the default size,
  // otherwise maps a new one.
  absl::StatusOr<Stack> get(size_t size);
  // put() keeps the stack if it has the default size and there is room,
  // otherwise unmaps it.
  void put(Stack s);

  // release_idle() unmaps the cached stacks that no get() took since the
  // previous call (the fewest the cache held in between, its low-water
  // mark), keeping at least `keep` and unmapping at most `max_release`,
  // and starts the next interval. get() and put() work from the back, so
  // those stacks are the ones at the front, untouched since: the coldest.
  // Returns how many it unmapped. Without it, a cache stays at the largest
  // size it ever reached, and fibers that start on one worker and finish
  // on another fill the second one's cache to its capacity over time.
  size_t release_idle(size_t keep, size_t max_release);

 private:
  size_t default_size_;
  size_t capacity_;
  std::vector<Stack> free_;
  size_t low_water_ = 0;  // the fewest cached since the last release_idle()
};

}  // namespace weft::internal
