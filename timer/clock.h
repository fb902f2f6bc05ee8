// timer/clock.h
//
// Clock: the source of "now" for code that converts time to timer ticks,
// injectable so tests can drive time by hand (see manual_clock.h). The
// timer wheel itself never reads a clock.
#pragma once

#include <time.h>

#include <cstdint>

#include "absl/time/clock.h"
#include "absl/time/time.h"

namespace weft {

class Clock {
 public:
  virtual ~Clock() = default;
  virtual absl::Time now() const = 0;
};

class SystemClock final : public Clock {
 public:
  absl::Time now() const override { return absl::Now(); }
};

// monotonic_nanos() is CLOCK_MONOTONIC in nanoseconds.
inline int64_t monotonic_nanos() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<int64_t>(ts.tv_sec) * 1000000000LL + ts.tv_nsec;
}

}  // namespace weft
