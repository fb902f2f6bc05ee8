// tests/stress_util.h
//
// Sizing for stress tests: the named size times --scale, divided under the
// sanitizers, which run every fiber switch through their runtime, and for
// fibers alive at once, capped under TSan.
#pragma once

#include <cstdint>

#include "tests/test_util.h"

namespace weft::testing {

inline int64_t stress_size(int64_t full) {
#if defined(__SANITIZE_THREAD__) || defined(__SANITIZE_ADDRESS__)
  constexpr int64_t kSanitizerDivisor = 20;
#else
  constexpr int64_t kSanitizerDivisor = 1;
#endif
  int64_t n = full * scale() / kSanitizerDivisor;
  return n < 1 ? 1 : n;
}

// stress_fibers() is stress_size() for a number of fibers alive at once.
// TSan gives every fiber one of its 8,128 thread slots and kills the
// process past them ("ThreadSanitizer: Thread limit (8128 threads)
// exceeded"), so under TSan the count stops at 6,000, whatever --scale
// says; the workers, the monitor and the blocking pool's threads take
// slots too.
inline int64_t stress_fibers(int64_t full) {
  int64_t n = stress_size(full);
#if defined(__SANITIZE_THREAD__)
  constexpr int64_t kTsanFiberCap = 6000;
  if (n > kTsanFiberCap) n = kTsanFiberCap;
#endif
  return n;
}

}  // namespace weft::testing
