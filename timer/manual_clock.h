// timer/manual_clock.h
//
// ManualClock: a Clock for tests that moves only when told to. Thread-safe:
// one thread may advance it while others read it.
#pragma once
// NOT for users: the runtime's timer machinery, in weft::internal.

#include <atomic>
#include <cstdint>

#include "absl/time/time.h"
#include "timer/clock.h"

namespace weft::internal {

// ManualClock: time is a count of nanoseconds since the Unix epoch, changed
// only by advance() and set().
class ManualClock final : public Clock {
 public:
  explicit ManualClock(absl::Time start = absl::UnixEpoch()) : nanos_(absl::ToUnixNanos(start)) {}

  // now() is the start time plus every advance(), or the last set().
  absl::Time now() const override { return absl::FromUnixNanos(nanos_.load(std::memory_order_acquire)); }

  // advance() moves the clock by d (which may be negative).
  void advance(absl::Duration d) {
    nanos_.fetch_add(absl::ToInt64Nanoseconds(d), std::memory_order_acq_rel);
  }

  // set() moves the clock to t.
  void set(absl::Time t) { nanos_.store(absl::ToUnixNanos(t), std::memory_order_release); }

 private:
  std::atomic<int64_t> nanos_;
};

}  // namespace weft::internal
