// timer/clock.h
//
// Clock: the source of "now" for code that converts time to timer ticks.
// It is an interface so that tests can drive time by hand (ManualClock, in
// manual_clock.h). The timer wheel itself never reads a clock.
#pragma once
// NOT for users: the runtime's timer machinery, in weft::internal.

#include <cstdint>

#include "absl/time/time.h"

namespace weft::internal {

// Clock: a source of wall-clock time. Implementations are thread-safe.
class Clock {
 public:
  virtual ~Clock() = default;

  // now() is the current time.
  virtual absl::Time now() const = 0;
};

// SystemClock: the real clock, absl::Now().
class SystemClock final : public Clock {
 public:
  absl::Time now() const override;
};

// monotonic_nanos() is CLOCK_MONOTONIC in nanoseconds: never decreases, and
// unaffected by changes to the wall clock. Its zero is unspecified (boot).
uint64_t monotonic_nanos();

}  // namespace weft::internal
