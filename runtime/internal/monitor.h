// runtime/internal/monitor.h
//
// Monitor: one thread per runtime that notices a worker stuck in one fiber
// (computing, or blocked in a system call) and hands that worker's driver
// (poller, timers, inbox) to a peer until it comes back, and reports the
// fiber that holds it. Asleep while every worker is idle. The protocol is
// at the top of monitor.cc. NOT for users; RuntimeOptions configures it.
#pragma once

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <thread>
#include <vector>

#include "runtime/internal/worker.h"

namespace weft::internal {

class Scheduler;

struct MonitorOptions {
  int64_t stall_nanos = 5'000'000;       // hand-over after this long; <= 0: no monitor
  int64_t report_nanos = 100'000'000;    // report a hog after this long
  bool report = true;
  int max_reports_per_second = 10;
};

class Monitor {
 public:
  Monitor(Scheduler* sched, MonitorOptions opts);
  ~Monitor();  // stop()s
  Monitor(const Monitor&) = delete;
  Monitor& operator=(const Monitor&) = delete;

  // start() starts the thread (no-op when disabled); stop() ends it.
  void start();
  void stop();

  // worker_active() is called by a worker leaving idle: it wakes the
  // monitor if it sleeps because every worker was idle (step 3).
  void worker_active() {
    if (parked_.load(std::memory_order_seq_cst) != 0) unpark();
  }

  uint64_t episodes() const { return episodes_.load(std::memory_order_relaxed); }
  uint64_t handovers() const { return handovers_.load(std::memory_order_relaxed); }
  uint64_t reports() const { return reports_.load(std::memory_order_relaxed); }
  uint64_t wakeups() const { return wakeups_.load(std::memory_order_relaxed); }

 private:
  // The sampling period while a worker may be stuck (step 2a): half the
  // stall threshold, at least 0.5 ms.
  int64_t sample_nanos() const { return std::max<int64_t>(opts_.stall_nanos / 2, kMinSampleGapNanos); }
  static constexpr int64_t kMinSampleGapNanos = 500'000;
  struct Watch {  // per worker, monitor thread only
    uint64_t progress = 0;
    int64_t since = 0;     // when progress last moved (or the worker slept)
    bool stuck = false;    // stalled for stall_nanos: its driver is handed over
    bool counted = false;  // charged stall_nanos: an episode (step 2b)
    bool reported = false;
    // Step 2b: the stall charged to the fiber, and the worker thread's CPU
    // time at the last sample (-1: not read).
    int64_t sampled_at = 0;
    int64_t cpu_at = -1;
    int64_t charged = 0;
  };

  void run();
  // check() samples every worker once; returns true if any is awake, and
  // sets *next to when the next sample is due (step 2a).
  bool check(int64_t now, int64_t* next);
  void hand_over(Worker* stuck);
  // charge() adds to x.charged the part of the time since the last sample
  // that worker w's fiber held its thread (step 2b).
  void charge(Worker* w, Watch& x, int64_t now);
  void report(Worker* w, int64_t ran_nanos, int64_t waited_nanos);
  void unpark();
  bool all_idle() const;

  Scheduler* const sched_;
  const MonitorOptions opts_;
  std::vector<Watch> watch_;
  std::thread thread_;
  // Futex words: stop_ (nonzero: leave) is also what timed sleeps wait on;
  // parked_ is 1 while the monitor sleeps with every worker idle.
  std::atomic<uint32_t> stop_{0};
  std::atomic<uint32_t> parked_{0};
  std::atomic<uint64_t> episodes_{0}, handovers_{0}, reports_{0}, wakeups_{0};
  // Rate limit of reports: a window of one second.
  int64_t window_start_ = 0;
  int window_reports_ = 0;
  uint64_t suppressed_ = 0;
};

}  // namespace weft::internal
