// tests/test_util.h
//
// Helpers shared by weft's tests: the stress scale and per-worker-count
// runtimes.
#pragma once

#include <cstdint>
#include <initializer_list>

namespace weft::testing {

// Scale() multiplies the size of stress and randomized tests. 1 by default;
// set with --scale=N (bazel test --test_arg=--scale=N) or the environment
// variable WEFT_STRESS_SCALE.
int64_t Scale();

// ForEachWorkerCount() runs fn(n) for each worker count, with the count
// captured in doctest's failure messages.
template <class Fn>
void ForEachWorkerCount(std::initializer_list<int> counts, Fn&& fn);

}  // namespace weft::testing

#include <doctest/doctest.h>

namespace weft::testing {
template <class Fn>
void ForEachWorkerCount(std::initializer_list<int> counts, Fn&& fn) {
  for (int n : counts) {
    CAPTURE(n);
    fn(n);
  }
}
}  // namespace weft::testing
