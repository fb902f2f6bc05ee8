#include "runtime/internal/stack_pool.h"

#include <sys/mman.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <string>

#include "absl/strings/cord.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"

#include "runtime/platform/syscall.h"

namespace weft::internal {

namespace {
std::atomic<int64_t> g_mapped{0};

// The kernel's per-process mapping limit, or -1 if it cannot be read.
int64_t max_map_count() {
  std::FILE* f = std::fopen("/proc/sys/vm/max_map_count", "r");
  if (f == nullptr) return -1;
  long long v = -1;
  if (std::fscanf(f, "%lld", &v) != 1) v = -1;
  std::fclose(f);
  return v;
}
}  // namespace

absl::Status stack_map_error(int err, std::string_view op) {
  absl::Status s = errno_status(err, op);
  if (err != ENOMEM) return s;
  // Most often not memory: every stack is two mappings, and the kernel's
  // default limit of 65,530 holds about 32,000 stacks.
  const int64_t limit = max_map_count();
  std::string limit_text = limit >= 0 ? absl::StrCat("vm.max_map_count is ", limit) : "vm.max_map_count is unknown";
  absl::Status out(s.code(), absl::StrCat(s.message(), " (", mapped_stack_count(),
                                          " fiber stacks are mapped, two mappings each, and ", limit_text,
                                          ": raise it with tools/setup.sh or sysctl -w vm.max_map_count=N,"
                                          " or lower the number of live fibers; else memory is exhausted)"));
  s.ForEachPayload([&](absl::string_view url, const absl::Cord& payload) { out.SetPayload(url, payload); });
  return out;
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
  if (p == MAP_FAILED) return stack_map_error(errno, "mmap(fiber stack)");
  if (::mprotect(static_cast<char*>(p) + kGuardSize, size, PROT_READ | PROT_WRITE) != 0) {
    int err = errno;
    ::munmap(p, total);
    return stack_map_error(err, "mprotect(fiber stack)");
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
    low_water_ = std::min(low_water_, free_.size());
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

size_t StackCache::release_idle(size_t keep, size_t max_release) {
  const size_t idle = std::min(low_water_, free_.size());
  const size_t n = idle > keep ? std::min(idle - keep, max_release) : 0;
  for (size_t i = 0; i < n; ++i) free_stack(free_[i]);
  free_.erase(free_.begin(), free_.begin() + static_cast<ptrdiff_t>(n));
  low_water_ = free_.size();
  return n;
}

}  // namespace weft::internal
