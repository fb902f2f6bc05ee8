// The blocking pool.
//
// # A call's life
//   1. run_blocking()/spawn_blocking() allocate a BlockingCall (refs = 1,
//      the waiter's or handle's) and submit_blocking() queues it on its
//      lane with a second reference, the pool's. If no thread of the lane
//      is idle and the lane is under its limit, a thread is started.
//   2. A lane thread pops it and moves it kQueued -> kRunning (a CAS: the
//      waiter may have dropped it, kQueued -> kDropped, in which case the
//      thread only lets go of its reference). It runs fn outside every
//      lock, counts it served, then, under the call's mutex, sets kDone and
//      notifies thread waiters, then sets the Completion that wakes a
//      parked fiber, and drops its reference.
//   3. The waiter parks on the Completion (a fiber) or the condition
//      variable (a thread), then takes the result and drops its reference.
//      Whoever drops the last reference deletes the call, so neither side
//      ever touches a call the other has freed.
//
// # Shutdown
//   Runtime shutdown resumes a parked fiber on the shutdown thread by
//   throwing FiberUnwind from Completion::wait(), after removing its waiter
//   from the Completion. BlockingCall::wait() catches it: a queued call is
//   dropped (the thread that pops it skips fn); a running call is waited
//   for on the condition variable, blocking the shutdown thread, because fn
//   may use the fiber's locals, which the unwind is about to destroy. Then
//   the unwind goes on. A fiber that is already unwinding (run_blocking in
//   a destructor during the unwind) never parks: it blocks the thread the
//   same way, since the shutdown would release a fiber that parks and
//   nobody will wake.
//
// # Threads
//   Lane threads wait on their lane's condition variable for keep_alive,
//   then exit if still idle (detached: the pool lives for the process and
//   is never destroyed, so no thread is joined during static destruction).
#include "runtime/blocking.h"

#include "runtime/internal/fiber.h"
#include "runtime/platform/signal_mask.h"

#include <algorithm>
#include <chrono>
#include <system_error>
#include <thread>

namespace weft {
namespace internal {
namespace {

class Lane {
 public:
  // submit() queues call; returns false if it must run inline.
  bool submit(BlockingCall* call) {
    bool start = false;
    {
      std::lock_guard<std::mutex> g(mu_);
      call->next = nullptr;
      if (tail_ != nullptr) {
        tail_->next = call;
      } else {
        head_ = call;
      }
      tail_ = call;
      ++queued_;
      if (idle_ < queued_ && threads_ < max_threads_) {
        ++threads_;
        ++threads_started_;
        start = true;
      }
    }
    if (!start) {
      cv_.notify_one();
      return true;
    }
    try {
      internal::start_runtime_thread([this] { run(); }).detach();
      return true;
    } catch (const std::system_error&) {
      std::lock_guard<std::mutex> g(mu_);
      --threads_;
      --threads_started_;
      if (threads_ > 0) return true;  // a live thread will get to it
      // No thread at all: take the call back and let the caller run it.
      unlink_locked(call);
      return false;
    }
  }

  void configure(int max_threads, absl::Duration keep_alive) {
    {
      std::lock_guard<std::mutex> g(mu_);
      max_threads_ = max_threads;
      keep_alive_ = keep_alive;
    }
    cv_.notify_all();  // idle threads above the limit exit
  }

  void count_inline() {
    std::lock_guard<std::mutex> g(mu_);
    ++served_;
  }

  BlockingLaneStats stats() {
    std::lock_guard<std::mutex> g(mu_);
    BlockingLaneStats s;
    s.queued = queued_;
    s.threads = threads_;
    s.busy = busy_;
    s.max_threads = max_threads_;
    s.threads_started = threads_started_;
    s.threads_exited = threads_exited_;
    s.calls_served = served_;
    s.calls_dropped = dropped_;
    return s;
  }

 private:
  void unlink_locked(BlockingCall* call) {
    BlockingCall* prev = nullptr;
    for (BlockingCall* c = head_; c != nullptr; prev = c, c = c->next) {
      if (c != call) continue;
      (prev != nullptr ? prev->next : head_) = c->next;
      if (tail_ == c) tail_ = prev;
      --queued_;
      return;
    }
  }

  void run() {
    std::unique_lock<std::mutex> l(mu_);
    for (;;) {
      ++idle_;
      bool timed_out = false;
      while (head_ == nullptr && threads_ <= max_threads_) {
        auto wait = absl::ToChronoNanoseconds(keep_alive_);
        if (cv_.wait_for(l, wait) == std::cv_status::timeout && head_ == nullptr) {
          timed_out = true;
          break;
        }
      }
      --idle_;
      if (timed_out || threads_ > max_threads_) {
        --threads_;
        ++threads_exited_;
        // Above the limit with calls queued: a sleeping thread of the lane
        // must take them (it may have gone to sleep before the limit fell).
        if (head_ != nullptr) cv_.notify_one();
        return;
      }
      BlockingCall* call = head_;
      head_ = call->next;
      if (head_ == nullptr) tail_ = nullptr;
      --queued_;
      ++busy_;
      l.unlock();
      internal::sync_thread_signal_mask();
      // Counted before the waiter wakes, so a caller that sees its call
      // done also sees it in the counters.
      if (call->start()) {
        call->invoke();
        l.lock();
        ++served_;
        l.unlock();
        call->finish();
      } else {
        l.lock();
        ++dropped_;
        l.unlock();
      }
      call->unref();
      l.lock();
      --busy_;
    }
  }

  std::mutex mu_;
  std::condition_variable cv_;
  BlockingCall* head_ = nullptr;
  BlockingCall* tail_ = nullptr;
  int64_t queued_ = 0;
  int64_t idle_ = 0;
  int64_t busy_ = 0;
  int64_t threads_ = 0;
  int64_t max_threads_ = 0;
  absl::Duration keep_alive_ = absl::Seconds(10);
  uint64_t threads_started_ = 0;
  uint64_t threads_exited_ = 0;
  uint64_t served_ = 0;
  uint64_t dropped_ = 0;
};

class BlockingPool {
 public:
  BlockingPool() { apply(options_); }

  absl::Status configure(const BlockingPoolOptions& o) {
    auto bad = [](int n) { return n < 1 || n > 4096; };
    if (bad(o.max_threads) || bad(o.max_resolve_threads)) {
      return absl::InvalidArgumentError(
          "configure_blocking_pool: max_threads and max_resolve_threads must be in 1..4096");
    }
    if (o.keep_alive < absl::Milliseconds(1)) {
      return absl::InvalidArgumentError("configure_blocking_pool: keep_alive must be >= 1 ms");
    }
    {
      std::lock_guard<std::mutex> g(mu_);
      options_ = o;
    }
    apply(o);
    return absl::OkStatus();
  }
  BlockingPoolOptions options() {
    std::lock_guard<std::mutex> g(mu_);
    return options_;
  }
  Lane& lane(BlockingLane l) { return lanes_[static_cast<int>(l)]; }

 private:
  void apply(const BlockingPoolOptions& o) {
    lanes_[static_cast<int>(BlockingLane::kDefault)].configure(o.max_threads, o.keep_alive);
    lanes_[static_cast<int>(BlockingLane::kResolve)].configure(o.max_resolve_threads,
                                                                o.keep_alive);
  }

  std::mutex mu_;
  BlockingPoolOptions options_;
  Lane lanes_[kNumBlockingLanes];
};

BlockingPool& pool() {
  static BlockingPool* p = new BlockingPool();
  return *p;
}

}  // namespace

bool BlockingCall::start() {
  int expected = kQueued;
  return state_.compare_exchange_strong(expected, kRunning, std::memory_order_acq_rel);
}

void BlockingCall::finish() {
  {
    std::lock_guard<std::mutex> g(mu_);
    finished_ = true;
    state_.store(kDone, std::memory_order_release);
  }
  cv_.notify_all();
  completion_.set(absl::OkStatus());
}

bool BlockingCall::try_drop() {
  int expected = kQueued;
  return state_.compare_exchange_strong(expected, kDropped, std::memory_order_acq_rel);
}

void BlockingCall::wait_thread() {
  std::unique_lock<std::mutex> l(mu_);
  cv_.wait(l, [&] { return finished_; });
}

bool BlockingCall::wait(bool abandon_running) {
  Fiber* f = current_fiber();
  if (f == nullptr || f->unwinding) {
    wait_thread();
    return true;
  }
  try {
    absl::Status s = completion_.wait(Cancellable::kYes);
    if (s.ok() && done()) return true;
    // The waiting fiber was cancelled.
    if (try_drop()) return false;  // never runs
    if (abandon_running) return false;
    // Running, and fn may use our frame: wait for it.
    s = completion_.wait(Cancellable::kNo);
    if (!s.ok() || !done()) wait_thread();
    return true;
  } catch (const FiberUnwind&) {
    // Shutdown unwinds this fiber. fn must not outlive our frame.
    if (!try_drop()) wait_thread();
    throw;
  }
}

void submit_blocking(BlockingCall* call, BlockingLane lane) {
  call->ref();  // the pool's
  Lane& l = pool().lane(lane);
  if (l.submit(call)) return;
  // No thread could be started: block this thread instead.
  if (call->start()) {
    call->invoke();
    l.count_inline();
    call->finish();
  }
  call->unref();
}

}  // namespace internal

absl::Status configure_blocking_pool(const BlockingPoolOptions& options) {
  return internal::pool().configure(options);
}

BlockingPoolOptions blocking_pool_options() { return internal::pool().options(); }

BlockingPoolStats blocking_pool_stats() {
  BlockingPoolStats s;
  for (int i = 0; i < kNumBlockingLanes; ++i) {
    s.lanes[i] = internal::pool().lane(static_cast<BlockingLane>(i)).stats();
  }
  return s;
}

}  // namespace weft
