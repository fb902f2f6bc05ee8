#include "runtime/platform/prefetch.h"

#if defined(__x86_64__)
#include <cpuid.h>
#endif

namespace weft::internal {

bool cpu_has_prefetchw() {
#if defined(__x86_64__)
  unsigned a = 0, b = 0, c = 0, d = 0;
  if (__get_cpuid(0x80000001u, &a, &b, &c, &d) == 0) return false;
  return (c & (1u << 8)) != 0;
#else
  return true;
#endif
}

}  // namespace weft::internal
