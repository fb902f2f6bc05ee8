// tools/soak/soak.h
//
// The soak tool's pieces: named workloads that run rounds with exact
// accounting until asked to stop, and the growth judge that reads the
// per-second samples (RSS, open descriptors, live fibers) at the end.
// main.cc drives them; docs/soak.md describes the run and the criterion.
#pragma once

#include <atomic>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace weft {
class Runtime;
}  // namespace weft

namespace weft::soak {

// WorkloadContext: what a workload sees while it runs. One per workload;
// its fibers may share it (the counters are atomic).
class WorkloadContext {
 public:
  WorkloadContext(std::string name, uint64_t seed, Runtime* runtime, int workers,
                  const std::atomic<bool>* stop, bool inject_check_failure)
      : name_(std::move(name)),
        seed_(seed),
        runtime_(runtime),
        workers_(workers),
        stop_(stop),
        inject_check_failure_(inject_check_failure) {}

  const std::string& name() const { return name_; }
  // seed() is this workload's seed, derived from --seed and the name.
  uint64_t seed() const { return seed_; }
  Runtime* runtime() const { return runtime_; }
  int workers() const { return workers_; }
  // stopping() is true once the run's duration is over. Workloads look at
  // it between rounds, so a round always ends with its checks.
  bool stopping() const { return stop_->load(std::memory_order_acquire); }

  // count() adds checked operations (for the ops/s columns).
  void count(uint64_t n = 1) { ops_.fetch_add(n, std::memory_order_relaxed); }
  // round_done() records a round whose accounting held; the stall check
  // fails a workload that completes none for --stall_timeout.
  void round_done() { rounds_.fetch_add(1, std::memory_order_relaxed); }
  uint64_t ops() const { return ops_.load(std::memory_order_relaxed); }
  uint64_t rounds() const { return rounds_.load(std::memory_order_relaxed); }

  // inject_check_failure() is --inject_check_failure: the spawn workload
  // then miscounts one round on purpose, so a test sees a failed check
  // end the run.
  bool inject_check_failure() const { return inject_check_failure_; }

  // fail() reports a failed check, naming the workload, the place and the
  // round, and ends the process with exit status 1 at once: a broken
  // invariant can leave fibers parked for ever, so nothing waits for them.
  [[noreturn]] void fail(const char* file, int line, const char* fmt, ...)
      __attribute__((format(printf, 4, 5)));

 private:
  std::string name_;
  uint64_t seed_;
  Runtime* runtime_;
  int workers_;
  const std::atomic<bool>* stop_;
  bool inject_check_failure_;
  std::atomic<uint64_t> ops_{0};
  std::atomic<uint64_t> rounds_{0};
};

// SOAK_CHECK(ctx, cond, fmt, ...) fails the run unless cond holds; the
// message is formatted only on failure.
#define SOAK_CHECK(ctx, cond, ...)                          \
  do {                                                      \
    if (!(cond)) (ctx).fail(__FILE__, __LINE__, __VA_ARGS__); \
  } while (0)

// A workload: a name for --workloads and the output columns, a line for
// --help, and the function that runs rounds until ctx.stopping(). It runs
// on a fiber of the runtime and must leave no fiber, socket, file or
// descriptor behind when it returns.
struct Workload {
  const char* name;
  const char* what;
  void (*run)(WorkloadContext& ctx);
};

// all_workloads() is the registry, in column order (workloads.cc).
const std::vector<Workload>& all_workloads();

// One per-second sample of the process.
struct Sample {
  double t = 0;          // seconds since the workloads started
  int64_t rss_kb = 0;    // resident set, /proc/self/statm
  int64_t fds = 0;       // entries of /proc/self/fd
  int64_t live_fibers = 0;  // RuntimeStats::live_fibers
};

// The growth criterion (docs/soak.md, "What fails a run"):
//   - the first max(2, n/10) samples are warm-up and ignored;
//   - the rest are cut in three equal parts; B is the middle one, C the last;
//   - a metric keeps growing if median(C) > median(B) + allowance, where
//       rss_kb:       allowance = rss_growth_percent% of median(B) + rss_slack_kb
//       fds:          allowance = fd_slack
//       live_fibers:  allowance = fiber_slack_percent% of median(B) + fiber_slack
// Fewer than kMinJudgedSamples samples after the warm-up are too few to
// judge; the verdict then says so and nothing is flagged.
struct GrowthLimits {
  double rss_growth_percent = 10;
  int64_t rss_slack_kb = 8 * 1024;
  int64_t fd_slack = 4;
  double fiber_slack_percent = 25;
  int64_t fiber_slack = 32;
};
inline constexpr int kMinJudgedSamples = 6;

struct MetricVerdict {
  const char* metric = "";
  int64_t middle_median = 0, last_median = 0, allowance = 0;
  bool growing = false;
};

struct GrowthVerdict {
  bool judged = false;  // enough samples
  int warmup = 0;       // samples skipped
  MetricVerdict rss, fds, fibers;
  bool any_growing() const { return rss.growing || fds.growing || fibers.growing; }
};

GrowthVerdict judge_growth(const std::vector<Sample>& samples, const GrowthLimits& limits);

}  // namespace weft::soak
