// runtime/platform/prefetch.h
//
// prefetch_for_write(): start loading a cache line that the caller is about
// to write, in the state that allows the write (PREFETCHW), so that a line
// last written by another core costs one round trip, not a read and then
// an invalidation. prefetch_for_read(): a plain read prefetch (PREFETCHT0),
// for a line that this core wrote last. NOT for users.
//
// GCC emits PREFETCHW for __builtin_prefetch(p, 1) only when the target
// has it (-mprfchw); without, it emits a read prefetch, and it dropped the
// builtin altogether in one inlined loop of ours. So the instruction is
// written out, and issued only when CPUID says the CPU has it (AMD since
// K8, Intel since Broadwell): elsewhere the call is a read prefetch.
#pragma once

namespace weft::internal {

// cpu_has_prefetchw() is CPUID 0x80000001 ECX bit 8 (3DNowPrefetch), read
// once.
bool cpu_has_prefetchw();

inline void prefetch_for_write(const void* p) {
#if defined(__x86_64__)
  static const bool kHas = cpu_has_prefetchw();
  if (kHas) {
    asm volatile("prefetchw %0" : : "m"(*static_cast<const char*>(p)));
    return;
  }
  asm volatile("prefetcht0 %0" : : "m"(*static_cast<const char*>(p)));
#else
  __builtin_prefetch(p, 1, 3);
#endif
}

inline void prefetch_for_read(const void* p) {
#if defined(__x86_64__)
  asm volatile("prefetcht0 %0" : : "m"(*static_cast<const char*>(p)));
#else
  __builtin_prefetch(p, 0, 3);
#endif
}

}  // namespace weft::internal
