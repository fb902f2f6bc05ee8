#include "runtime/internal/stack_pool.h"

#include <sys/mman.h>

#include <cerrno>

#include "runtime/platform/syscall.h"

namespace weft::internal {

namespace {
std::atomic<int64_t> g_mapped{0};
}

size_t round_stack_size(size_t size) {
  if (size < kMinStackSize) size = kMinStackSize;
  return (size + kPageSize - 1) & ~(kPageSize - 1);
}

absl::StatusOr<Stack> allocate_stack(size_t size) {
  size = round_stack_size(size);
  size_t total = size + kGuardSize;
  // Map everything inaccessible, then open the usable part: two VMAs per
  // stack (see docs/runtime.md on vm.max_map_count).
  void* p = ::mmap(nullptr, total, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (p == MAP_FAILED) return errno_status(errno, "mmap(fiber stack)");
  if (::mprotect(static_cast<char*>(p) + kGuardSize, size, PROT_READ | PROT_WRITE) != 0) {
    int err = errno;
    ::munmap(p, total);
    return errno_status(err, "mprotect(fiber stack)");
  }
  g_mapped.fetch_add(1, std::memory_order_relaxed);
  return Stack{p, size};
}

void free_stack(Stack s) {
  if (s.base == nullptr) return;
  ::munmap(s.base, s.size + kGuardSize);
  g_mapped.fetch_sub(1, std::memory_order_relaxed);
}

int64_t mapped_stack_count() { return g_mapped.load(std::memory_order_relaxed); }

StackCache::~StackCache() {
  for (Stack& s : free_) free_stack(s);
}

absl::StatusOr<Stack> StackCache::get(size_t size) {
  size = round_stack_size(size);
  if (size == default_size_ && !free_.empty()) {
    Stack s = free_.back();
    free_.pop_back();
    return s;
  }
  return allocate_stack(size);
}

void StackCache::put(Stack s) {
  if (s.size == default_size_ && free_.size() < capacity_) {
    free_.push_back(s);
  } else {
    free_stack(s);
  }
}

}  // namespace weft::internal
