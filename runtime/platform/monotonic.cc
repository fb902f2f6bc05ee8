#include "runtime/platform/monotonic.h"

#include <time.h>

#include <cstdint>

namespace weft::internal {

int64_t monotonic_now() {
  timespec ts;
  ::clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<int64_t>(ts.tv_sec) * 1000000000LL + ts.tv_nsec;
}

int64_t to_monotonic(absl::Time t) {
  if (t == absl::InfiniteFuture()) return -1;
  absl::Duration left = t - absl::Now();
  int64_t now = monotonic_now();
  if (left <= absl::ZeroDuration()) return now;
  if (left > absl::Hours(24 * 365 * 100)) return -1;
  return now + absl::ToInt64Nanoseconds(left);
}

int64_t deadline_after(absl::Duration d) {
  if (d == absl::InfiniteDuration()) return -1;
  const int64_t now = monotonic_now();
  if (d <= absl::ZeroDuration()) return now;
  const int64_t ns = absl::ToInt64Nanoseconds(d);
  return ns > INT64_MAX - now ? -1 : now + ns;
}

}  // namespace weft::internal
