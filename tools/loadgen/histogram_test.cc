// LatencyHistogram: bucket arithmetic, exact small values, quantiles within
// one bucket of the truth, merge, clamping.
#include "tools/loadgen/histogram.h"

#include <doctest/doctest.h>

#include <algorithm>
#include <cstdint>

namespace weft::loadgen {
namespace {

using H = LatencyHistogram;

TEST_CASE("buckets tile the values without gaps and stay within 1/128") {
  uint64_t expect_low = 0;
  for (size_t i = 0; i < H::bucket_index(H::kMaxValue) + 1; ++i) {
    CAPTURE(i);
    REQUIRE(H::lowest_in_bucket(i) == expect_low);
    REQUIRE(H::highest_in_bucket(i) >= H::lowest_in_bucket(i));
    REQUIRE(H::bucket_index(H::lowest_in_bucket(i)) == i);
    REQUIRE(H::bucket_index(H::highest_in_bucket(i)) == i);
    uint64_t width = H::highest_in_bucket(i) - H::lowest_in_bucket(i) + 1;
    if (i < 256) {
      REQUIRE(width == 1);
    } else {
      REQUIRE(width * 128 <= H::lowest_in_bucket(i));
    }
    expect_low = H::highest_in_bucket(i) + 1;
  }
  CHECK(expect_low == H::kMaxValue + 1);
  CHECK(H::bucket_index(UINT64_MAX) == H::bucket_index(H::kMaxValue));
}

TEST_CASE("values below 256 are exact") {
  H h;
  CHECK(h.count() == 0);
  CHECK(h.value_at_quantile(0.5) == 0);
  CHECK(h.min() == 0);
  CHECK(h.max() == 0);
  for (uint64_t v = 1; v <= 100; ++v) h.record(v);
  CHECK(h.count() == 100);
  CHECK(h.min() == 1);
  CHECK(h.max() == 100);
  CHECK(h.mean() == doctest::Approx(50.5));
  CHECK(h.value_at_quantile(0) == 1);
  CHECK(h.value_at_quantile(0.01) == 1);
  CHECK(h.value_at_quantile(0.5) == 50);
  CHECK(h.value_at_quantile(0.99) == 99);
  CHECK(h.value_at_quantile(0.999) == 100);
  CHECK(h.value_at_quantile(1) == 100);
}

TEST_CASE("quantiles of 1..1,000,000 are the true value rounded up to its bucket") {
  H h;
  for (uint64_t v = 1; v <= 1000000; ++v) h.record(v);
  for (double q : {0.5, 0.9, 0.99, 0.999, 0.9999}) {
    CAPTURE(q);
    uint64_t truth = static_cast<uint64_t>(q * 1000000 + 0.5);
    uint64_t got = h.value_at_quantile(q);
    CHECK(got >= truth);
    CHECK(got == std::min<uint64_t>(H::highest_in_bucket(H::bucket_index(truth)), 1000000));
    CHECK(static_cast<double>(got - truth) <= static_cast<double>(truth) / 128);
  }
  CHECK(h.value_at_quantile(1.0) == 1000000);  // the exact max, not the bucket's top
  CHECK(h.mean() == doctest::Approx(500000.5));
}

TEST_CASE("known latencies: 990 fast, 9 slow, 1 very slow") {
  H h;
  h.record(50'000, 990);     // 50 us
  h.record(2'000'000, 9);    // 2 ms
  h.record(40'000'000);      // 40 ms
  CHECK(h.count() == 1000);
  uint64_t p50 = h.value_at_quantile(0.50);
  uint64_t p99 = h.value_at_quantile(0.99);
  uint64_t p999 = h.value_at_quantile(0.999);
  CHECK(p50 >= 50'000);
  CHECK(p50 < 50'000 + 50'000 / 128);
  CHECK(p99 == p50);  // the 990th value is still a fast one
  CHECK(p999 >= 2'000'000);
  CHECK(p999 < 2'000'000 + 2'000'000 / 128);
  CHECK(h.value_at_quantile(0.9995) == 40'000'000);  // clamped to the exact max
  CHECK(h.max() == 40'000'000);
  CHECK(h.min() == 50'000);
}

TEST_CASE("record with a count equals repeated records; merge equals one histogram") {
  H a, b, all, counted;
  for (uint64_t v = 0; v < 5000; v += 7) {
    (v % 2 ? a : b).record(v * 1000);
    all.record(v * 1000);
    counted.record(v * 1000, 3);
  }
  H merged;
  merged.merge(a);
  merged.merge(b);
  merged.merge(H());
  CHECK(merged.count() == all.count());
  CHECK(counted.count() == 3 * all.count());
  CHECK(merged.min() == all.min());
  CHECK(merged.max() == all.max());
  for (double q : {0.0, 0.1, 0.5, 0.9, 0.99, 0.999, 1.0}) {
    CAPTURE(q);
    CHECK(merged.value_at_quantile(q) == all.value_at_quantile(q));
    CHECK(counted.value_at_quantile(q) == all.value_at_quantile(q));
  }
}

TEST_CASE("values past kMaxValue share the last bucket; max stays exact") {
  H h;
  h.record(10);
  h.record(UINT64_MAX / 2);
  CHECK(h.max() == UINT64_MAX / 2);
  CHECK(h.value_at_quantile(1.0) == H::kMaxValue);
  CHECK(h.value_at_quantile(0.5) == 10);
}

}  // namespace
}  // namespace weft::loadgen
