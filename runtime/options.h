// runtime/options.h
//
// RuntimeOptions (what Runtime::create() takes) and RuntimeStats (what
// Runtime::stats() returns), with the blocking pool's options and counters
// (runtime/blocking.h). Included by runtime/runtime.h.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/time/time.h"

namespace weft {

// --- The blocking pool (runtime/blocking.h) ---------------------------------

// The pool's lanes: each has its own queue, threads and limit, so a flood
// of calls in one cannot starve the other.
enum class BlockingLane : uint8_t {
  kDefault = 0,  // files, processes, user calls
  kResolve = 1,  // name resolution, net::resolve()
};
inline constexpr int kNumBlockingLanes = 2;

// Why 64 and not tokio's 512: a weft blocking call is nearly always a
// syscall that waits for a disk or the kernel, and a disk serves a few dozen
// requests in parallel at best (an NVMe queue is ~32 deep per core, a SATA
// disk 32, a page-cache hit needs a CPU, and this runtime targets machines
// with a few cores). Beyond that, threads only add 8 MiB of reserved stack
// and scheduler churn each. Raise it (RuntimeOptions::blocking, or
// Runtime::configure_blocking()) for slow network filesystems where calls
// mostly wait.
inline constexpr int kDefaultBlockingThreads = 64;
inline constexpr int kDefaultResolveThreads = 8;

struct BlockingPoolOptions {
  // The most threads each lane runs at once (1..4096).
  int max_threads = kDefaultBlockingThreads;
  int max_resolve_threads = kDefaultResolveThreads;
  // How long an idle thread waits for a call before it exits (>= 1 ms).
  absl::Duration keep_alive = absl::Seconds(10);
};

// Counters of one lane. Gauges (queued, threads, busy) are a snapshot;
// the others only grow.
struct BlockingLaneStats {
  int64_t queued = 0;           // calls waiting for a thread
  int64_t threads = 0;          // threads alive now
  int64_t busy = 0;             // threads running a call now
  int64_t max_threads = 0;      // the lane's limit
  uint64_t threads_started = 0;
  uint64_t threads_exited = 0;  // after keep_alive idle, or at runtime teardown
  uint64_t calls_served = 0;    // calls that ran (or were run inline)
  uint64_t calls_dropped = 0;   // queued calls whose waiter was cancelled
};

struct BlockingPoolStats {
  BlockingLaneStats lanes[kNumBlockingLanes];
  const BlockingLaneStats& lane(BlockingLane l) const { return lanes[static_cast<int>(l)]; }
};

// --- The runtime ------------------------------------------------------------

// Whether workers serve file calls on an io_uring of their own (docs/fs.md,
// "io_uring"). kAuto: each worker creates a ring when it starts and uses
// the blocking pool if the kernel refuses one (ENOSYS, or EPERM under a
// seccomp filter). kOff: the pool only. The environment variable
// WEFT_IO_URING=0 turns rings off whatever this says.
enum class IoUringMode : uint8_t { kAuto, kOff };

struct RuntimeOptions {
  // Worker threads; 0 means one per online CPU.
  int workers = 0;
  // Default usable stack size of a fiber (rounded up to pages, >= 16 KiB).
  // Only touched pages cost memory.
  size_t stack_size = 64 * 1024;
  // Free default-size stacks each worker keeps for reuse. A stack that
  // does not fit is unmapped; size this near the number of fibers that run
  // at once per worker, or churn costs an mmap/munmap per fiber. Stacks
  // no fiber took for a second are unmapped down to 32 per worker
  // (docs/runtime.md, "Stacks").
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
  // at file:line)...", at most 10 reports a second. Only time the worker's
  // thread ran or was blocked in the kernel counts, not time it waited for
  // a CPU (an oversubscribed host); the same goes for hog_episodes.
  absl::Duration hog_report_threshold = absl::Milliseconds(100);
  bool report_hogs = true;
  // The runtime's blocking pool (runtime/blocking.h): each lane's thread
  // limit and the idle keep-alive. Runtime::configure_blocking() changes
  // them later.
  BlockingPoolOptions blocking = {};
  // io_uring for stat, lstat, exists, File::open and File::close (the
  // calls where a ring measured faster than the pool; docs/fs.md).
  IoUringMode io_uring = IoUringMode::kAuto;
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
  // largest_poll: the most events one epoll_wait has returned; never more
  // than the poll batch (32, docs/scheduler.md).
  uint64_t largest_poll = 0;
  size_t queue_depth = 0;
  // ring_active: the worker has an io_uring (RuntimeOptions::io_uring);
  // ring_ops: file calls submitted to it; ring_dropped: results of calls
  // whose fiber was cancelled first, dropped when they came (an open's
  // descriptor closed).
  bool ring_active = false;
  uint64_t ring_ops = 0, ring_dropped = 0;
};

struct RuntimeStats {
  std::vector<WorkerStats> workers;
  size_t inject_depth = 0;
  int64_t live_fibers = 0;
  // The monitor: episodes of a stuck worker, hand-overs of a stuck
  // worker's driver to a peer, hog reports printed, and the monitor
  // thread's wake-ups (none while every worker is idle).
  uint64_t hog_episodes = 0, handovers = 0, hog_reports = 0, monitor_wakeups = 0;
  // The runtime's blocking pool, per lane: queue depth, threads alive and
  // busy, threads started and exited, calls served and dropped.
  BlockingPoolStats blocking = {};
  // Workers that serve file calls on their own io_uring.
  int rings_active() const {
    int n = 0;
    for (const auto& w : workers) n += w.ring_active ? 1 : 0;
    return n;
  }
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
  // "fiber <id> (spawned at <file>:<line>)" for up to 16 of the fibers left
  // that had started: those that had suspended or taken a token, and those
  // running at the deadline (queued fibers that never ran are counted in
  // `left`).
  std::vector<std::string> left_fibers;
};

}  // namespace weft
