// tools/soak/soak.cc
//
// WorkloadContext::fail() and the growth judge (the criterion is in
// soak.h).
#include "tools/soak/soak.h"

#include <algorithm>
#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "runtime/runtime.h"

namespace weft::soak {

void WorkloadContext::fail(const char* file, int line, const char* fmt, ...) {
  char msg[1024];
  va_list ap;
  va_start(ap, fmt);
  std::vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  const char* base = std::strrchr(file, '/');
  std::fprintf(stderr, "soak: FAIL check in workload '%s' (%s:%d, round %llu, fiber %llu): %s\n",
               name_.c_str(), base != nullptr ? base + 1 : file, line,
               static_cast<unsigned long long>(rounds() + 1),
               static_cast<unsigned long long>(this_fiber::id()), msg);
  std::fflush(stdout);
  std::fflush(stderr);
  std::_Exit(1);
}

namespace {

int64_t median(std::vector<int64_t> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

MetricVerdict judge(const char* metric, const std::vector<int64_t>& middle,
                    const std::vector<int64_t>& last, double percent, int64_t slack) {
  MetricVerdict m;
  m.metric = metric;
  m.middle_median = median(middle);
  m.last_median = median(last);
  m.allowance = static_cast<int64_t>(static_cast<double>(m.middle_median) * percent / 100) + slack;
  m.growing = m.last_median > m.middle_median + m.allowance;
  return m;
}

}  // namespace

GrowthVerdict judge_growth(const std::vector<Sample>& samples, const GrowthLimits& limits) {
  GrowthVerdict v;
  const int n = static_cast<int>(samples.size());
  v.warmup = std::max(2, n / 10);
  const int rest = n - v.warmup;
  if (rest < kMinJudgedSamples) return v;
  v.judged = true;
  const int third = rest / 3;
  // The parts: [warmup, warmup+third) is A, then B, then C to the end (C
  // takes the remainder, so the newest sample is always in it).
  const int b_begin = v.warmup + third, c_begin = v.warmup + 2 * third;
  std::vector<int64_t> rb, rc, fb, fc, lb, lc;
  for (int i = b_begin; i < n; ++i) {
    const Sample& s = samples[i];
    const bool in_b = i < c_begin;
    (in_b ? rb : rc).push_back(s.rss_kb);
    (in_b ? fb : fc).push_back(s.fds);
    (in_b ? lb : lc).push_back(s.live_fibers);
  }
  v.rss = judge("rss_kb", rb, rc, limits.rss_growth_percent, limits.rss_slack_kb);
  v.fds = judge("fds", fb, fc, 0, limits.fd_slack);
  v.fibers = judge("live_fibers", lb, lc, limits.fiber_slack_percent, limits.fiber_slack);
  return v;
}

}  // namespace weft::soak
