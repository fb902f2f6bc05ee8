// runtime/internal/scheduler.h
//
// Scheduler: the state a runtime's workers share: the workers, the global
// injection queue, the idle-worker bookkeeping, the registry of fibers a
// drain must find and the count of the others, and shutdown. NOT for users:
// the public API is runtime/runtime.h.
//
//   scheduler.cc  creation, the fiber registry, submit, io_call, the idle
//                 list, stats
//   shutdown.cc   stop() and the reaper (numbered steps there)
//   blocking_pool.cc  the runtime's blocking pool (and the fallback pool)
//
// Field groups say who may touch them: the fields under "shared with
// workers" are read and written by every worker (atomics, or under the
// named lock).
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "runtime/internal/fiber.h"
#include "runtime/internal/inject_queue.h"
#include "runtime/internal/io_messages.h"
#include "runtime/internal/monitor.h"
#include "runtime/internal/spin_lock.h"
#include "runtime/internal/worker.h"
#include "runtime/options.h"

namespace weft {
struct RuntimeOptions;
struct RuntimeStats;
}  // namespace weft

namespace weft::internal {

class BlockingPool;  // blocking_pool.h

// release_join_state() drops one reference to the join state, which owns
// the fiber's control block (runtime.cc).
void release_join_state(JoinStateBase* s);
// cancel_join_state() completes the join state as cancelled (runtime.cc).
void cancel_join_state(JoinStateBase* s, uint64_t fiber_id);

class Scheduler {
 public:
  // epoll_data of each worker's own eventfd.
  static constexpr uint64_t kWakeupData = ~uint64_t{0};
  // epoll_data of a rescued worker's epoll fd in its rescuer's poller
  // (monitor.cc): generation 0xffffffff, which no I/O token uses.
  static uint64_t rescue_data(int worker) { return (uint64_t{0xffffffffu} << 32) | static_cast<uint32_t>(worker); }
  static bool is_rescue_data(uint64_t data) {
    return (data >> 32) == 0xffffffffu && data != kWakeupData && data != kRingData;
  }
  // epoll_data of each worker's io_uring completion eventfd (uring.h).
  static constexpr uint64_t kRingData = (uint64_t{0xffffffffu} << 32) | 0xfffffffeu;

  static absl::StatusOr<std::unique_ptr<Scheduler>> create(const RuntimeOptions& opts);
  ~Scheduler();

  // --- any thread ---
  int num_workers() const { return static_cast<int>(workers_.size()); }
  Worker* worker(int i) const { return workers_[static_cast<size_t>(i)].get(); }
  bool stopping() const { return stopping_.load(std::memory_order_acquire); }
  size_t default_stack_size() const { return default_stack_size_; }
  size_t stack_cache_size() const { return stack_cache_size_; }
  uint64_t seed() const { return seed_; }
  // io_uring_wanted() is whether workers should try to create a ring
  // (RuntimeOptions::io_uring, and the WEFT_IO_URING environment variable).
  bool io_uring_wanted() const { return io_uring_wanted_; }
  // blocking_pool() is the runtime's blocking pool (blocking_pool.h):
  // created with the scheduler, shut down by stop() after the fibers are
  // reaped, destroyed with the scheduler.
  BlockingPool* blocking_pool() const { return blocking_pool_.get(); }

  // new_fiber() allocates a fiber control block with `extra` bytes after
  // the Fiber (16-byte aligned) for the join state and the task; *extra_mem
  // receives where. The caller must set Fiber::join and Fiber::task. The
  // fiber is registered but not runnable until submit(). Its stack is
  // mapped when it first runs.
  absl::StatusOr<Fiber*> new_fiber(size_t stack_size, size_t extra, void** extra_mem);
  // fiber_block_size() is the size of a control block with `extra` bytes.
  static size_t fiber_block_size(size_t extra);
  // submit() makes a new fiber runnable: on the calling worker if it
  // belongs to this runtime, else through the injection queue. After
  // stop(), the fiber is cancelled instead.
  void submit(Fiber* f);
  // submit_to() makes a new fiber runnable on worker `w` (kSpawn message).
  void submit_to(Fiber* f, int w);
  // inject() queues a runnable fiber on the injection queue and wakes an
  // idle worker (schedule() from outside the runtime).
  void inject(Fiber* f);

  // io_call() carries out the socket message `m` on worker `w` and returns
  // its status; for kRegisterSocket *token receives the registration.
  // On worker w's own thread the message is handled inline (the direct
  // path: same result, no round trip); elsewhere it is sent and the caller
  // suspends (or blocks, off a fiber) until w has handled it. Once the
  // runtime has stopped it returns kCancelled without sending: the pollers
  // are gone. m->done is overwritten. Suspends.
  absl::Status io_call(int w, IoMessage* m, IoToken* token = nullptr);

  // stop() cancels everything, joins the workers, then lets the blocking
  // pool finish its calls and waits for its threads; idempotent. Must not
  // be called from one of this runtime's workers or pool threads.
  void stop();
  // drain() is Runtime::shutdown(grace)'s first half (shutdown.cc,
  // "Draining"): cancel every fiber, wait up to `grace` for them to finish.
  void drain(absl::Duration grace, ShutdownReport* report);

  void fill_stats(RuntimeStats* out) const;
  // live_fibers() is the number of fibers not yet freed: the unregistered
  // ones (not started, or running since they started without having
  // suspended or taken a token) plus the registry's.
  // unregistered_fibers() is the first part.
  int64_t live_fibers() const;
  int64_t unregistered_fibers() const;
  // register_running() registers f, the fiber running on worker w, if it
  // is not yet: before its first suspension (park(), suspend_from()) and
  // when it first takes a token of its own (fiber_current_token()), the
  // two ways a drain reaches a fiber that is not running (shutdown.cc,
  // "Draining"). A fiber that does neither until it exits never touches
  // the registry.
  void register_running(Worker* w, Fiber* f) {
    if (f->reg_shard < 0) register_first(w, f);
  }
  // draining() is true once drain() has begun: every fiber of the runtime
  // is cancelled from then on (park.cc cancel_seen()).
  bool draining() const { return draining_.load(std::memory_order_seq_cst); }

  // now_tick() is the timer tick (1 ms since the runtime started);
  // deadline_tick() the first tick at or after a monotonic deadline.
  uint64_t now_tick() const;
  uint64_t deadline_tick(int64_t deadline_nanos) const;

  // --- workers of this runtime ---
  // notify_idle() wakes one idle worker if nobody searches (idle step 3).
  void notify_idle();
  void add_idle(Worker* w);
  bool remove_idle(Worker* w);
  Monitor& monitor() { return *monitor_; }
  // release_fiber() frees an exited fiber (on worker w, after its switch).
  void release_fiber(Worker* w, Fiber* f);
  // release_started() frees an exited fiber whose stack and context were
  // handed over (switch.cc step 4), on worker w.
  void release_started(Worker* w, Fiber* f);
  // discard_unstarted() drops a fiber that never ran: cancelled, or failed
  // with *why.
  void discard_unstarted(Fiber* f, const absl::Status* why = nullptr);
  // count_unregistered_gone() counts a fiber that was never registered and
  // is gone (discarded unstarted), on the calling thread: its worker's
  // counter, or the outside one.
  void count_unregistered_gone();

 private:
  friend class Worker;  // the shared group below
  explicit Scheduler(const RuntimeOptions& opts);

  void register_first(Worker* w, Fiber* f);
  void register_fiber(Fiber* f);
  void unregister_fiber(Fiber* f);
  // forget_fiber() takes an exited fiber out of the live count on worker
  // w: unregisters it, or counts it gone if it never registered.
  void forget_fiber(Worker* w, Fiber* f);
  void free_control_block(Fiber* f);
  void reap();  // shutdown.cc

  // --- immutable after create() ---
  std::vector<std::unique_ptr<Worker>> workers_;
  size_t default_stack_size_;
  size_t stack_cache_size_;
  uint64_t seed_;
  bool io_uring_wanted_;
  int64_t epoch_nanos_;
  std::unique_ptr<BlockingPool> blocking_pool_;

  // --- shared with workers ---
  // Each group on its own cache lines: the inject queue's lock and length
  // change at every overflow and take; stopping_ is read at every turn of
  // every worker's loop; the idle counts at every spawn (notify_idle).
  alignas(64) InjectQueue<Fiber> inject_;
  alignas(64) std::atomic<bool> stopping_{false};
  alignas(64) std::atomic<uint32_t> num_searching_{0};
  std::atomic<uint32_t> num_idle_{0};
  std::mutex idle_mu_;
  std::vector<Worker*> idle_ ABSL_GUARDED_BY(idle_mu_);
  std::unique_ptr<Monitor> monitor_;  // created with the workers

  // --- the registry: one shard per worker, which holds the fibers that
  // registered on it (register_running()) ---
  struct alignas(64) RegistryShard {
    SpinLock lock;
    Fiber* head ABSL_GUARDED_BY(lock) = nullptr;
    int64_t count ABSL_GUARDED_BY(lock) = 0;
  };
  std::unique_ptr<RegistryShard[]> registry_;
  // Fibers created, and unregistered fibers gone (registered, or freed
  // without registering), on threads that are not this runtime's workers
  // (the workers count their own).
  alignas(64) std::atomic<uint64_t> outside_created_{0};
  std::atomic<uint64_t> outside_gone_{0};

  // --- shutdown ---
  std::mutex stop_mu_;  // serializes stop()
  bool stop_done_ ABSL_GUARDED_BY(stop_mu_) = false;
  // Once stopped_ is set (after the workers are joined) submissions from
  // other threads are cancelled at once instead of queued.
  std::mutex submit_mu_;
  std::atomic<bool> stopped_{false};
  // Set by drain(): submissions from other threads are cancelled at once,
  // and every fiber is cancelled (fibers spawned from now on start
  // cancelled).
  std::atomic<bool> draining_{false};
};

}  // namespace weft::internal
