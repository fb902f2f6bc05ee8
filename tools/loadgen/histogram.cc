// tools/loadgen/histogram.cc
#include "tools/loadgen/histogram.h"

#include <algorithm>
#include <bit>
#include <cmath>

namespace weft::loadgen {

size_t LatencyHistogram::bucket_index(uint64_t value) {
  value = std::min(value, kMaxValue);
  if (value < 2 * kSubBuckets) return static_cast<size_t>(value);
  // value in [2^e, 2^(e+1)), e >= kSubBucketBits + 1: the top
  // kSubBucketBits + 1 bits of the value pick one of 128 buckets of width
  // 2^shift; each power of two adds 128 buckets.
  int e = 63 - std::countl_zero(value);
  int shift = e - kSubBucketBits;
  return static_cast<size_t>(shift) * kSubBuckets + static_cast<size_t>(value >> shift);
}

uint64_t LatencyHistogram::lowest_in_bucket(size_t index) {
  if (index < 2 * kSubBuckets) return index;
  size_t shift = index / kSubBuckets - 1;
  uint64_t sub = index - shift * kSubBuckets;  // in [128, 256)
  return sub << shift;
}

uint64_t LatencyHistogram::highest_in_bucket(size_t index) {
  if (index < 2 * kSubBuckets) return index;
  size_t shift = index / kSubBuckets - 1;
  return lowest_in_bucket(index) + (uint64_t{1} << shift) - 1;
}

void LatencyHistogram::record(uint64_t value, uint64_t count) {
  if (count == 0) return;
  size_t i = bucket_index(value);
  if (i >= counts_.size()) counts_.resize(i + 1, 0);
  counts_[i] += count;
  total_ += count;
  min_ = std::min(min_, value);
  max_ = std::max(max_, value);
  uint64_t add = value * count;
  bool overflow = (count != 0 && add / count != value) || sum_ + add < sum_;
  sum_ = overflow ? UINT64_MAX : sum_ + add;
}

void LatencyHistogram::merge(const LatencyHistogram& other) {
  if (other.total_ == 0) return;
  if (other.counts_.size() > counts_.size()) counts_.resize(other.counts_.size(), 0);
  for (size_t i = 0; i < other.counts_.size(); ++i) counts_[i] += other.counts_[i];
  total_ += other.total_;
  min_ = std::min(min_, other.min_);
  max_ = std::max(max_, other.max_);
  sum_ = sum_ + other.sum_ < sum_ ? UINT64_MAX : sum_ + other.sum_;
}

uint64_t LatencyHistogram::value_at_quantile(double q) const {
  if (total_ == 0) return 0;
  q = std::clamp(q, 0.0, 1.0);
  // Rank of the wanted value, 1-based; the epsilon keeps 0.999 * 1000 at
  // 999 despite rounding.
  double r = std::ceil(q * static_cast<double>(total_) - 1e-9);
  uint64_t rank = r < 1 ? 1 : std::min(total_, static_cast<uint64_t>(r));
  uint64_t seen = 0;
  for (size_t i = 0; i < counts_.size(); ++i) {
    seen += counts_[i];
    if (seen >= rank) return std::clamp(highest_in_bucket(i), min_, max_);
  }
  return max_;
}

double LatencyHistogram::mean() const {
  if (total_ == 0) return 0;
  return static_cast<double>(sum_) / static_cast<double>(total_);
}

}  // namespace weft::loadgen
