// timer/clock.cc
//
// SystemClock and monotonic_nanos().
#include "timer/clock.h"

#include <time.h>

#include "absl/time/clock.h"

namespace weft::internal {

absl::Time SystemClock::now() const { return absl::Now(); }

uint64_t monotonic_nanos() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1000000000u + static_cast<uint64_t>(ts.tv_nsec);
}

}  // namespace weft::internal
