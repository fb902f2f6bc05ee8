// runtime/platform/monotonic.h
//
// The runtime's clock: CLOCK_MONOTONIC in nanoseconds, and the conversion
// of an absolute absl::Time deadline to it. NOT for users.
#pragma once

#include <cstdint>

#include "absl/time/clock.h"
#include "absl/time/time.h"

namespace weft::internal {

// monotonic_now() is CLOCK_MONOTONIC in nanoseconds.
int64_t monotonic_now();

// to_monotonic() converts an absolute absl::Time to monotonic nanos
// (absl::InfiniteFuture(), or more than a century ahead: -1, no deadline).
int64_t to_monotonic(absl::Time t);

// deadline_after() is the monotonic deadline `d` from now: -1 (none) for
// absl::InfiniteDuration() or a duration too long to add to the clock
// (absl::ToInt64Nanoseconds saturates, and the sum would overflow); now
// for a duration <= 0.
int64_t deadline_after(absl::Duration d);

}  // namespace weft::internal
