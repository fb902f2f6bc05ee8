// lifecycle/ticker.h
//
// weft::Ticker: a periodic timer for a fiber, like Go's time.Ticker.
//
//   weft::Ticker ticker(absl::Milliseconds(100));
//   for (;;) {
//     auto n = ticker.tick();            // parks until the next tick
//     if (!n.ok()) break;                // kCancelled: the fiber was cancelled
//     if (*n > 1) log("missed", *n - 1); // the fiber was late
//     flush();
//   }
//
// Ticks fall on a fixed grid: start + k * period, on the timer wheel of the
// worker running the fiber (1 ms resolution). Missed ticks are skipped,
// not burst: when the fiber comes back late, tick() returns at once with
// the number of periods that have elapsed since the previous tick (>= 1),
// and the next tick stays on the grid. So a slow consumer never sees a
// burst of back-to-back ticks, and the grid never drifts.
//
// In a select(), use at(ticker.next_tick()) and then call tick(), which
// returns at once.
#pragma once

#include <cstdint>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "runtime/platform/check.h"
#include "runtime/runtime.h"

namespace weft {

class Ticker {
 public:
  // The first tick is one period from now. period must be positive.
  explicit Ticker(absl::Duration period) { reset(period); }

  // tick() parks until the next tick and returns how many periods have
  // elapsed since the previous one (1 unless ticks were missed); kCancelled
  // if the fiber is cancelled first (the tick is not consumed). Must be
  // called on a fiber.
  absl::StatusOr<int64_t> tick() {
    absl::Time now = absl::Now();
    if (now < next_) {
      absl::Status s = this_fiber::sleep_until(next_);
      if (!s.ok()) return s;
      now = absl::Now();
      if (now < next_) now = next_;  // the wheel never fires early; be exact
    }
    absl::Duration rem;
    int64_t elapsed = absl::IDivDuration(now - next_, period_, &rem) + 1;
    next_ += period_ * elapsed;
    ticks_ += elapsed;
    return elapsed;
  }

  // reset() restarts the grid: the next tick is one new period from now.
  void reset(absl::Duration period) {
    WEFT_CHECK(period > absl::ZeroDuration(), "Ticker period must be positive");
    period_ = period;
    next_ = absl::Now() + period;
  }

  absl::Time next_tick() const { return next_; }
  absl::Duration period() const { return period_; }
  // ticks() is the number of periods elapsed at the ticks returned so far.
  int64_t ticks() const { return ticks_; }

 private:
  absl::Duration period_;
  absl::Time next_;
  int64_t ticks_ = 0;
};

}  // namespace weft
