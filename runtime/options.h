// runtime/options.h
//
// RuntimeOptions (what Runtime::create() takes) and RuntimeStats (what
// Runtime::stats() returns). Included by runtime/runtime.h.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/time/time.h"

namespace weft {

struct RuntimeOptions {
  // Worker threads; 0 means one per online CPU.
  int workers = 0;
  // Default usable stack size of a fiber (rounded up to pages, >= 16 KiB).
  // Only touched pages cost memory.
  size_t stack_size = 64 * 1024;
  // Free default-size stacks each worker keeps for reuse. A stack that
  // does not fit is unmapped; size this near the number of fibers that run
  // at once per worker, or churn costs an mmap/munmap per fiber.
  size_t stack_cache_size = 1024;
  // Seed of the steal-victim order; 0 picks one from the clock.
  uint64_t seed = 0;
  // A worker that has not come back to its loop for this long (one fiber
  // computing, or blocked in a system call) is stuck: a peer serves its
  // sockets, timers and messages until it returns (docs/scheduler.md,
  // "A stuck worker"). At least 1 ms; zero turns the monitor off.
  absl::Duration stall_threshold = absl::Milliseconds(5);
  // A stuck episode that lasts this long is reported on stderr, once:
  // "weft: fiber 17 has run 230 ms on worker 1 without suspending (spawned
  // at file:line)...", at most 10 reports a second.
  absl::Duration hog_report_threshold = absl::Milliseconds(100);
  bool report_hogs = true;
};

struct WorkerStats {
  int worker = 0;
  uint64_t spawned = 0, run = 0, completed = 0;
  uint64_t steal_attempts = 0, steal_successes = 0, stolen = 0;
  uint64_t parks = 0, unparks = 0;
  uint64_t polls = 0, poll_events = 0, messages = 0, timers_fired = 0;
  // idle_sleeps: blocking polls. wakeups: polls that found the worker's
  // eventfd signalled (a message, new work, or shutdown, perhaps together
  // with I/O).
  uint64_t idle_sleeps = 0, wakeups = 0, inject_taken = 0;
  size_t queue_depth = 0;
};

struct RuntimeStats {
  std::vector<WorkerStats> workers;
  size_t inject_depth = 0;
  int64_t live_fibers = 0;
  // The monitor: episodes of a stuck worker, hand-overs of a stuck
  // worker's driver to a peer, hog reports printed, and the monitor
  // thread's wake-ups (none while every worker is idle).
  uint64_t hog_episodes = 0, handovers = 0, hog_reports = 0, monitor_wakeups = 0;
  // Sum of a counter over all workers, e.g. total(&WorkerStats::run).
  uint64_t total(uint64_t WorkerStats::*field) const {
    uint64_t s = 0;
    for (const auto& w : workers) s += w.*field;
    return s;
  }
};

// What Runtime::shutdown(grace) found.
struct ShutdownReport {
  int64_t cancelled = 0;  // fibers alive when the shutdown began
  int64_t left = 0;       // of those (and of what they spawned), still alive at the deadline: unwound
  absl::Duration took;    // from the call to the end of the unwind
  // "fiber <id> (spawned at <file>:<line>)" for up to 16 of the fibers left.
  std::vector<std::string> left_fibers;
};

}  // namespace weft
