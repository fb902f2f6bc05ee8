// tests/stress_util.h
//
// Sizing for stress tests: the named size times --scale, divided under the
// sanitizers, which run every fiber switch through their runtime.
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

}  // namespace weft::testing
