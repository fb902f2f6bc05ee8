// tools/loadgen/histogram.h
//
// weft::loadgen::LatencyHistogram: an HDR-style log-linear histogram of
// non-negative integer values (loadgen records nanoseconds).
//
//   LatencyHistogram h;
//   h.record(1500);                       // one value
//   h.record(2200, 8);                    // eight requests with one latency
//   uint64_t p99 = h.value_at_quantile(0.99);
//
// Buckets: values below 2^(kSubBucketBits + 1) = 256 have a bucket each
// (exact). Above that, every power of two [2^e, 2^(e+1)) is split into 128
// equal buckets of width 2^(e - 7), so a bucket's width is less than 1/128
// (0.8%) of any value in it. Values of kMaxValue and more share the last
// bucket. The counts array grows to the highest bucket used (about 15 KiB
// for values up to a millisecond), so one histogram per connection is
// affordable.
//
// Threads: not synchronized. loadgen gives each connection fiber its own
// histogram (no locks on the hot path) and merges them after joining.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

namespace weft::loadgen {

class LatencyHistogram {
 public:
  static constexpr int kSubBucketBits = 7;
  static constexpr uint64_t kSubBuckets = uint64_t{1} << kSubBucketBits;  // 128
  // Values from kMaxValue on are recorded as kMaxValue (about 18 minutes
  // in nanoseconds); max() still reports the true largest value.
  static constexpr uint64_t kMaxValue = (uint64_t{1} << 40) - 1;

  // LatencyHistogram::record()
  //
  // Adds `count` occurrences of `value`.
  void record(uint64_t value, uint64_t count = 1);

  // LatencyHistogram::merge()
  //
  // Adds every count of `other` to this histogram.
  void merge(const LatencyHistogram& other);

  // LatencyHistogram::value_at_quantile()
  //
  // The smallest recorded value v such that at least q (0..1) of all
  // values are <= v, reported as the highest value of v's bucket, clamped
  // to [min(), max()]. So it is never below the true quantile and exceeds
  // it by less than one bucket width (< 1/128 relative; exact below 256).
  // 0 when empty.
  uint64_t value_at_quantile(double q) const;

  uint64_t count() const { return total_; }
  // min()/max() are the exact extremes recorded (0 when empty).
  uint64_t min() const { return total_ == 0 ? 0 : min_; }
  uint64_t max() const { return max_; }
  double mean() const;

  // bucket_index() is the bucket holding `value`; lowest_in_bucket() and
  // highest_in_bucket() are the range of values a bucket holds.
  static size_t bucket_index(uint64_t value);
  static uint64_t lowest_in_bucket(size_t index);
  static uint64_t highest_in_bucket(size_t index);

 private:
  std::vector<uint64_t> counts_;
  uint64_t total_ = 0;
  uint64_t min_ = UINT64_MAX;
  uint64_t max_ = 0;
  // Sum of the recorded values, for mean(); saturates rather than wraps.
  uint64_t sum_ = 0;
};

}  // namespace weft::loadgen
