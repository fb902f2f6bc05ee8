// timer/manual_clock.h
//
// ManualClock: a Clock that moves only when told to. Thread-safe.
#pragma once

#include <atomic>
#include <cstdint>

#include "timer/clock.h"

namespace weft {

class ManualClock final : public Clock {
 public:
  explicit ManualClock(absl::Time start = absl::UnixEpoch()) : nanos_(absl::ToUnixNanos(start)) {}
  absl::Time now() const override { return absl::FromUnixNanos(nanos_.load(std::memory_order_acquire)); }
  void advance(absl::Duration d) { nanos_.fetch_add(absl::ToInt64Nanoseconds(d), std::memory_order_acq_rel); }
  void set(absl::Time t) { nanos_.store(absl::ToUnixNanos(t), std::memory_order_release); }

 private:
  std::atomic<int64_t> nanos_;
};

}  // namespace weft
