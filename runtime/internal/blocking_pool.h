// runtime/internal/blocking_pool.h
//
// BlockingPool: the threads behind run_blocking() and spawn_blocking()
// (runtime/blocking.h), in two lanes. Each Runtime owns one (the
// scheduler creates it and shuts it down in stop()); threads with no
// runtime share a process-wide fallback pool. NOT for users: the public
// API is runtime/blocking.h, RuntimeOptions::blocking,
// Runtime::configure_blocking() and RuntimeStats::blocking.
//
// Protocols (a call's life, teardown, threads) are numbered in
// blocking_pool.cc.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/time/time.h"
#include "runtime/internal/blocking_call.h"
#include "runtime/options.h"

namespace weft::internal {

class BlockingPool {
 public:
  // validate() checks limits; `who` prefixes the field names in the
  // message ("RuntimeOptions::blocking" gives
  // "RuntimeOptions::blocking.max_threads must be in 1..4096, got 0").
  static absl::Status validate(const BlockingPoolOptions& o, const std::string& who);

  // The options must be valid. No thread starts until the first call.
  explicit BlockingPool(const BlockingPoolOptions& o);
  // Only after shutdown() (or if no thread ever started).
  ~BlockingPool();
  BlockingPool(const BlockingPool&) = delete;
  BlockingPool& operator=(const BlockingPool&) = delete;

  // configure() validates and applies new limits (see
  // Runtime::configure_blocking()). Any thread.
  absl::Status configure(const BlockingPoolOptions& o, const std::string& who);
  BlockingPoolOptions options();
  BlockingPoolStats stats();

  // submit() queues call (the pool's reference already taken) on lane.
  // False if no thread could take it (none could be started and the lane
  // has none, or the pool has shut down): the caller runs it inline and
  // counts it with count_inline().
  bool submit(BlockingCall* call, BlockingLane lane);
  void count_inline(BlockingLane lane);

  // shutdown() lets the threads finish the running calls and drain the
  // queues, then waits until every thread has left the pool's memory
  // (blocking_pool.cc, "Teardown"). Afterwards submit() returns false.
  // Must not be called on one of the pool's own threads. Idempotent.
  void shutdown();

  // of_this_thread() is the pool whose thread the caller is, or null.
  static BlockingPool* of_this_thread();

 private:
  class Lane {
   public:
    Lane() = default;
    void init(BlockingPool* pool) { pool_ = pool; }
    bool submit(BlockingCall* call);
    void configure(int max_threads, absl::Duration keep_alive);
    void count_inline();
    BlockingLaneStats stats();
    // begin_shutdown() wakes the idle threads so they drain and exit.
    void begin_shutdown();
    bool empty();

   private:
    void unlink_locked(BlockingCall* call) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
    void run();

    BlockingPool* pool_ = nullptr;
    std::mutex mu_;
    std::condition_variable cv_;
    BlockingCall* head_ ABSL_GUARDED_BY(mu_) = nullptr;
    BlockingCall* tail_ ABSL_GUARDED_BY(mu_) = nullptr;
    int64_t queued_ ABSL_GUARDED_BY(mu_) = 0;
    int64_t idle_ ABSL_GUARDED_BY(mu_) = 0;
    int64_t busy_ ABSL_GUARDED_BY(mu_) = 0;
    int64_t threads_ ABSL_GUARDED_BY(mu_) = 0;
    int64_t max_threads_ ABSL_GUARDED_BY(mu_) = 0;
    absl::Duration keep_alive_ ABSL_GUARDED_BY(mu_) = absl::Seconds(10);
    bool stopping_ ABSL_GUARDED_BY(mu_) = false;
    uint64_t threads_started_ ABSL_GUARDED_BY(mu_) = 0;
    uint64_t threads_exited_ ABSL_GUARDED_BY(mu_) = 0;
    uint64_t served_ ABSL_GUARDED_BY(mu_) = 0;
    uint64_t dropped_ ABSL_GUARDED_BY(mu_) = 0;
  };

  // The pool-wide count of live threads (Teardown steps 3-5). A lane
  // calls thread_starting() under its lock before it starts a thread
  // (false once the pool has shut down), thread_not_started() if that
  // failed, and a thread calls thread_exited() as its very last access to
  // the pool.
  bool thread_starting();
  void thread_not_started();
  void thread_exited();
  void apply(const BlockingPoolOptions& o) ABSL_EXCLUSIVE_LOCKS_REQUIRED(options_mu_);

  std::mutex options_mu_;  // serializes configure()
  BlockingPoolOptions options_ ABSL_GUARDED_BY(options_mu_);
  Lane lanes_[kNumBlockingLanes];

  std::mutex live_mu_;
  std::condition_variable live_cv_;
  int64_t live_threads_ ABSL_GUARDED_BY(live_mu_) = 0;
  bool shut_down_ ABSL_GUARDED_BY(live_mu_) = false;  // shutdown() finished
};

// current_blocking_pool() is the pool a call made here goes to: on a pool
// thread, that thread's pool (nested calls stay in their runtime); on a
// fiber or worker thread, its runtime's pool; elsewhere the process-wide
// fallback pool.
BlockingPool& current_blocking_pool();
// fallback_blocking_pool() is the pool of threads with no runtime: default
// limits, created on first use, never destroyed (its threads are detached
// and may outlive main()).
BlockingPool& fallback_blocking_pool();

}  // namespace weft::internal
