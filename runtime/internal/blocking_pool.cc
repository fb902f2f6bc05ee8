// The blocking pools: BlockingCall's waits, the lanes and their threads,
// which pool a call goes to, and a runtime pool's teardown.
//
// # A call's life
//   1. run_blocking()/spawn_blocking() allocate a BlockingCall (refs = 1,
//      the waiter's or handle's) and submit_blocking() queues it on its
//      lane of the caller's pool (current_blocking_pool()) with a second
//      reference, the pool's. If no thread of the lane is idle and the
//      lane is under its limit, a thread is started.
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
// # Which pool
//   A pool thread submits to its own pool (a thread_local set when it
//   starts), so a call nested in a call stays in its runtime; a fiber or a
//   worker thread to its runtime's pool; any other thread to the
//   process-wide fallback pool. A runtime's pool outlives every fiber of
//   the runtime (it is shut down after they are reaped) and every one of
//   its threads (teardown waits for them), so the pool a caller finds is
//   alive for as long as the call is being submitted.
//
// # Shutdown of a waiting fiber
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
//   then exit if still idle. They are detached: a runtime's pool knows
//   when they are gone by the live count (Teardown), and the fallback pool
//   is never destroyed, so no thread is joined during static destruction.
//
// # Teardown (BlockingPool::shutdown(), from Scheduler::stop() once every
//   fiber of the runtime has been reaped)
//   1. Every queued call whose waiter is gone was dropped while the waiter
//      unwound (above); what is still queued is spawn_blocking() calls,
//      detached or with a handle outside the runtime.
//   2. Each lane is marked stopping and its idle threads woken. A lane
//      thread runs queued calls while there are any (detached calls run to
//      completion, like a tokio runtime's drop), and exits when its lane's
//      queue is empty instead of waiting for keep_alive.
//   3. Only the pool's own threads can submit now (no fiber or worker of
//      the runtime is left): a nested call is queued as usual and may start
//      a thread. A lane counts a thread in the pool's live count
//      (thread_starting(), under the lane lock) before starting it, so the
//      count cannot reach zero while a live thread still submits.
//   4. An exiting thread does its lane's accounting under the lane lock,
//      releases it, and then, as its very last access to the pool, locks
//      live_mu_, decrements the live count, notifies live_cv_ if it reached
//      zero WHILE HOLDING live_mu_, and unlocks. Notifying under the lock
//      means shutdown() cannot return from its wait (it must reacquire
//      live_mu_) before the notify is over; the unlock is the last touch,
//      and a mutex may be destroyed once the last thread to hold it has
//      unlocked it (POSIX; the unlock makes no access after the release
//      that lets another thread acquire it).
//   5. shutdown() waits under live_mu_ for a live count of zero, then sets
//      shut_down_: from then on thread_starting() refuses, so a stray
//      submission runs inline instead of starting a thread into a pool that
//      is about to be freed.
//   6. The scheduler destroys the pool with the Scheduler. Every call's
//      pool reference was dropped by its thread before step 4, so a
//      detached call's function and result are destroyed before stop()
//      returns.
#include "runtime/internal/blocking_pool.h"

#include <system_error>
#include <thread>

#include "runtime/internal/fiber.h"
#include "runtime/internal/scheduler.h"
#include "runtime/internal/worker.h"
#include "runtime/platform/check.h"
#include "runtime/platform/signal_mask.h"

namespace weft::internal {

namespace {
// The pool whose thread this is ("Which pool"). initial-exec, like
// tls_worker (switch.cc): declared with the default model, in the shared
// library of a fastbuild test, reads of it on a worker thread returned the
// worker pointer (tls_worker's value) and sent calls to a bogus pool.
__attribute__((tls_model("initial-exec"))) thread_local BlockingPool* t_pool = nullptr;
}  // namespace

// --- BlockingCall -------------------------------------------------------------

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
  BlockingPool& pool = current_blocking_pool();
  if (pool.submit(call, lane)) return;
  // No thread could take it: block this thread instead.
  if (call->start()) {
    call->invoke();
    pool.count_inline(lane);
    call->finish();
  }
  call->unref();
}

// --- which pool -----------------------------------------------------------------

BlockingPool& fallback_blocking_pool() {
  static BlockingPool* p = new BlockingPool(BlockingPoolOptions{});
  return *p;
}

BlockingPool& current_blocking_pool() {
  if (t_pool != nullptr) return *t_pool;
  if (Fiber* f = current_fiber()) return *f->sched->blocking_pool();
  if (Worker* w = current_worker()) return *w->scheduler()->blocking_pool();
  return fallback_blocking_pool();
}

BlockingPool* BlockingPool::of_this_thread() { return t_pool; }

// --- a lane ---------------------------------------------------------------------

bool BlockingPool::Lane::submit(BlockingCall* call) {
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
      if (!pool_->thread_starting()) {  // Teardown step 5: shut down
        unlink_locked(call);
        return false;
      }
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
    start_runtime_thread([this] { run(); }).detach();
    return true;
  } catch (const std::system_error&) {
    std::lock_guard<std::mutex> g(mu_);
    --threads_;
    --threads_started_;
    pool_->thread_not_started();
    if (threads_ > 0) return true;  // a live thread will get to it
    // No thread at all: take the call back and let the caller run it.
    unlink_locked(call);
    return false;
  }
}

void BlockingPool::Lane::configure(int max_threads, absl::Duration keep_alive) {
  {
    std::lock_guard<std::mutex> g(mu_);
    max_threads_ = max_threads;
    keep_alive_ = keep_alive;
  }
  cv_.notify_all();  // idle threads above the limit exit
}

void BlockingPool::Lane::count_inline() {
  std::lock_guard<std::mutex> g(mu_);
  ++served_;
}

BlockingLaneStats BlockingPool::Lane::stats() {
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

void BlockingPool::Lane::begin_shutdown() {
  {
    std::lock_guard<std::mutex> g(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
}

bool BlockingPool::Lane::empty() {
  std::lock_guard<std::mutex> g(mu_);
  return head_ == nullptr && threads_ == 0;
}

void BlockingPool::Lane::unlink_locked(BlockingCall* call) {
  BlockingCall* prev = nullptr;
  for (BlockingCall* c = head_; c != nullptr; prev = c, c = c->next) {
    if (c != call) continue;
    (prev != nullptr ? prev->next : head_) = c->next;
    if (tail_ == c) tail_ = prev;
    --queued_;
    return;
  }
}

void BlockingPool::Lane::run() {
  t_pool = pool_;
  BlockingPool* const pool = pool_;
  {
    std::unique_lock<std::mutex> l(mu_);
    for (;;) {
      ++idle_;
      bool timed_out = false;
      while (head_ == nullptr && threads_ <= max_threads_ && !stopping_) {
        auto wait = absl::ToChronoNanoseconds(keep_alive_);
        if (cv_.wait_for(l, wait) == std::cv_status::timeout && head_ == nullptr) {
          timed_out = true;
          break;
        }
      }
      --idle_;
      // Teardown step 2: a stopping lane's threads leave once its queue is
      // empty.
      if (timed_out || threads_ > max_threads_ || head_ == nullptr) {
        --threads_;
        ++threads_exited_;
        // Above the limit with calls queued: a sleeping thread of the lane
        // must take them (it may have gone to sleep before the limit fell).
        if (head_ != nullptr) cv_.notify_one();
        break;
      }
      BlockingCall* call = head_;
      head_ = call->next;
      if (head_ == nullptr) tail_ = nullptr;
      --queued_;
      ++busy_;
      l.unlock();
      sync_thread_signal_mask();
      // Counted (served, and no longer busy) before the waiter wakes, so a
      // caller that sees its call done also sees it in the counters.
      if (call->start()) {
        call->invoke();
        l.lock();
        ++served_;
        --busy_;
        l.unlock();
        call->finish();
      } else {
        l.lock();
        ++dropped_;
        --busy_;
        l.unlock();
      }
      call->unref();
      l.lock();
    }
  }
  t_pool = nullptr;
  pool->thread_exited();  // Teardown step 4: the last access to the pool
}

// --- the pool -------------------------------------------------------------------

absl::Status BlockingPool::validate(const BlockingPoolOptions& o, const std::string& who) {
  auto bad = [](int n) { return n < 1 || n > 4096; };
  if (bad(o.max_threads)) {
    return absl::InvalidArgumentError(who + ".max_threads must be in 1..4096, got " +
                                      std::to_string(o.max_threads));
  }
  if (bad(o.max_resolve_threads)) {
    return absl::InvalidArgumentError(who + ".max_resolve_threads must be in 1..4096, got " +
                                      std::to_string(o.max_resolve_threads));
  }
  if (o.keep_alive < absl::Milliseconds(1)) {
    return absl::InvalidArgumentError(who + ".keep_alive must be at least 1 ms, got " +
                                      absl::FormatDuration(o.keep_alive));
  }
  return absl::OkStatus();
}

BlockingPool::BlockingPool(const BlockingPoolOptions& o) {
  WEFT_CHECK(validate(o, "BlockingPoolOptions").ok(), "BlockingPool: invalid options");
  for (Lane& l : lanes_) l.init(this);
  std::lock_guard<std::mutex> g(options_mu_);
  options_ = o;
  apply(o);
}

BlockingPool::~BlockingPool() {
  {
    std::lock_guard<std::mutex> g(live_mu_);
    WEFT_CHECK(live_threads_ == 0, "BlockingPool destroyed with %lld threads alive",
               static_cast<long long>(live_threads_));
  }
  for (Lane& l : lanes_) WEFT_CHECK(l.empty(), "BlockingPool destroyed with calls queued");
}

absl::Status BlockingPool::configure(const BlockingPoolOptions& o, const std::string& who) {
  absl::Status s = validate(o, who);
  if (!s.ok()) return s;
  std::lock_guard<std::mutex> g(options_mu_);
  options_ = o;
  apply(o);
  return absl::OkStatus();
}

void BlockingPool::apply(const BlockingPoolOptions& o) {
  lanes_[static_cast<int>(BlockingLane::kDefault)].configure(o.max_threads, o.keep_alive);
  lanes_[static_cast<int>(BlockingLane::kResolve)].configure(o.max_resolve_threads, o.keep_alive);
}

BlockingPoolOptions BlockingPool::options() {
  std::lock_guard<std::mutex> g(options_mu_);
  return options_;
}

BlockingPoolStats BlockingPool::stats() {
  BlockingPoolStats s;
  for (int i = 0; i < kNumBlockingLanes; ++i) s.lanes[i] = lanes_[i].stats();
  return s;
}

bool BlockingPool::submit(BlockingCall* call, BlockingLane lane) {
  return lanes_[static_cast<int>(lane)].submit(call);
}

void BlockingPool::count_inline(BlockingLane lane) { lanes_[static_cast<int>(lane)].count_inline(); }

bool BlockingPool::thread_starting() {
  std::lock_guard<std::mutex> g(live_mu_);
  if (shut_down_) return false;
  ++live_threads_;
  return true;
}

void BlockingPool::thread_not_started() { thread_exited(); }

void BlockingPool::thread_exited() {
  std::lock_guard<std::mutex> g(live_mu_);
  if (--live_threads_ == 0) live_cv_.notify_all();  // under the lock: step 4
}

void BlockingPool::shutdown() {
  WEFT_CHECK(t_pool != this, "BlockingPool::shutdown() on one of the pool's own threads");
  for (Lane& l : lanes_) l.begin_shutdown();  // step 2
  std::unique_lock<std::mutex> g(live_mu_);   // step 5
  live_cv_.wait(g, [&] { return live_threads_ == 0; });
  shut_down_ = true;
}

}  // namespace weft::internal
