// runtime/internal/worker.h
//
// Worker: one thread with its run queue, LIFO slot, inbox, epoll poller,
// eventfd and timer wheel. NOT for users.
//
// The code is split by concern:
//   worker.cc     the loop and the idle protocol (find work, steal, sleep)
//   switch.cc     context switches between fibers and the worker's stack
//   worker_io.cc  poll_once: inbox, readiness, I/O slots and timers
//   shutdown.cc   the reaper's entry points (with Scheduler::stop)
//   monitor.cc    the hand-over of a stuck worker's driver to a peer
//
// Who may touch what is stated per field group below: "owner" means the
// worker's own thread, including fibers while they run on it. The worker's
// *driver* (its poller, inbox, I/O slot table and the wheel's firing) is
// served by the owner, or, while the owner is stuck in one fiber, by a peer
// the monitor picked (the rescuer; protocol in monitor.cc); never by two
// threads at once: driver_lock_ says who.
//
// Fiber hazard: a fiber may resume on a different worker than the one it
// suspended on. Code running on a fiber must never keep a Worker* (or any
// thread-local) across a call that can suspend; it calls current_worker()
// again afterwards.
#pragma once

#include <sys/epoll.h>
#include <time.h>

#include <atomic>
#include <cstdint>
#include <memory>
#include <thread>
#include <vector>

#include "runtime/internal/block_cache.h"
#include "runtime/internal/fiber.h"
#include "runtime/internal/fiber_context.h"
#include "runtime/internal/inject_queue.h"
#include "runtime/internal/io_messages.h"
#include "runtime/internal/mpsc_inbox.h"
#include "runtime/internal/paged_table.h"
#include "runtime/internal/run_queue.h"
#include "runtime/internal/spin_lock.h"
#include "runtime/internal/stack_pool.h"
#include "runtime/platform/epoll_poller.h"
#include "runtime/platform/eventfd.h"
#include "timer/timer_wheel.h"

namespace weft::internal {

class CancelState;
class Ring;
class Scheduler;

// Per-worker counters. Written by the owner only (relaxed load+store, no
// RMW); read by Runtime::stats() from any thread.
struct WorkerCounters {
  std::atomic<uint64_t> spawned{0}, run{0}, completed{0};
  std::atomic<uint64_t> steal_attempts{0}, steal_successes{0}, stolen{0};
  std::atomic<uint64_t> parks{0}, unparks{0};
  std::atomic<uint64_t> polls{0}, poll_events{0}, messages{0}, timers_fired{0};
  std::atomic<uint64_t> idle_sleeps{0}, wakeups{0}, inject_taken{0};
  std::atomic<uint64_t> largest_poll{0};  // a high-water mark, not a count
  std::atomic<uint64_t> ring_ops{0};      // calls submitted to the worker's io_uring
  std::atomic<uint64_t> ring_dropped{0};  // results of abandoned calls
  void bump(std::atomic<uint64_t>& c, uint64_t n = 1) {
    c.store(c.load(std::memory_order_relaxed) + n, std::memory_order_relaxed);
  }
  void raise(std::atomic<uint64_t>& c, uint64_t v) {
    if (v > c.load(std::memory_order_relaxed)) c.store(v, std::memory_order_relaxed);
  }
};

// current_worker() is the worker the calling thread runs, or null. Never
// inlined, so a fiber that migrated reads the new thread's value.
Worker* current_worker();
// set_current_worker() sets the calling thread's worker (the loop, and the
// reaper, which runs as worker 0 after stop()).
void set_current_worker(Worker* w);
// fiber_entry() is where every fiber starts (switch.cc).
void fiber_entry(Transfer t);

class Worker {
 public:
  Worker(Scheduler* sched, int id, Poller poller, Wakeup wakeup);
  ~Worker();
  Worker(const Worker&) = delete;
  Worker& operator=(const Worker&) = delete;

  // --- any thread ---
  int id() const { return id_; }
  Scheduler* scheduler() const { return sched_; }
  const WorkerCounters& counters() const { return counters_; }
  size_t queue_depth() const { return queue_.size(); }
  // registered_sockets() is the number of live registrations in this
  // worker's poller (for placement policies, and the monitor, which reads
  // served_at() after it: the first registration stores served_at_ first).
  size_t registered_sockets() const { return io_count_.load(std::memory_order_acquire); }
  // ring_active() is whether this worker serves file calls on its own
  // io_uring (uring.h): set once its loop has created the ring.
  bool ring_active() const { return ring_active_.load(std::memory_order_acquire); }
  // loop_started() is whether the worker's thread has set up its ring (or
  // given up on one) and entered its loop.
  bool loop_started() const { return loop_started_.load(std::memory_order_acquire); }
  // send() queues a message and wakes the worker if it sleeps.
  void send(WorkerMessage* m);
  // notify() interrupts the worker's poll_once if it blocks.
  void notify();
  // hand_search_role() makes this idle worker a searcher (the idle
  // protocol's step 3; Scheduler::notify_idle, under its idle lock);
  // wake_up() then signals its eventfd.
  void hand_search_role() { woken_to_search_.store(true, std::memory_order_seq_cst); }
  void wake_up() { wakeup_.signal(); }

  // --- owner (the worker's thread, or a fiber running on it) ---
  Fiber* current() const { return current_; }
  // push_local() makes f runnable on this worker. `lifo` puts it in the
  // LIFO slot (woken fibers), otherwise at the back of the queue.
  void push_local(Fiber* f, bool lifo);
  // wake_here() makes a fiber claimed by a waker on this worker runnable:
  // the LIFO slot, or the back of the queue while a poll dispatches.
  void wake_here(Fiber* f);
  void count_spawn() { counters_.bump(counters_.spawned); }
  // Fibers created on this worker, and unregistered fibers gone here
  // (registered, freed without ever registering, or discarded):
  // Scheduler::live_fibers() counts the unregistered ones from these.
  // Owner only; release stores for live_fibers()'s acquire loads.
  void count_created() { bump_release(unregistered_in_); }
  void count_unregistered_gone() { bump_release(unregistered_out_); }
  uint64_t created_count() const { return unregistered_in_.load(std::memory_order_acquire); }
  uint64_t unregistered_gone_count() const { return unregistered_out_.load(std::memory_order_acquire); }
  // next_fiber_id() hands out ids from a block reserved from `global`.
  uint64_t next_fiber_id(std::atomic<uint64_t>& global);
  // release_stack() returns an exited fiber's stack to this worker's cache.
  void release_stack(const Stack& s) { stacks_.put(s); }
  // blocks() is this worker's cache of fiber control blocks (block_cache.h).
  BlockCache& blocks() { return blocks_; }
  void count_park() { counters_.bump(counters_.parks); }
  // SwitchAction: what after_switch() does with the fiber that switched out.
  enum class SwitchAction : uint8_t { kNone, kYield, kPark, kExit };
  // suspend() switches the running fiber out and runs the next local fiber
  // or the worker's loop. Suspends.
  static void suspend(SwitchAction action);
  // suspend_from() is suspend() for a caller that already holds the running
  // fiber's worker `w` (current_worker(), read before any suspension).
  static void suspend_from(Worker* w, SwitchAction action);
  // arm_timer() makes the running fiber's timer claim park `seq` at
  // deadline_nanos: it reuses the entry an earlier park left linked, on
  // any worker's wheel, if that entry fires no later, and otherwise files
  // it on this worker's wheel (park.cc, "Timed parks", step 1).
  // disarm_timer() takes it off whichever wheel holds it (any worker of
  // the runtime, under that wheel's lock).
  void arm_timer(Fiber* f, uint64_t seq, int64_t deadline_nanos);
  static void disarm_timer(Fiber* f);
  // arm_cancel_timer() puts a CancelState's deadline on this worker's
  // wheel (cancel.h step 5); disarm_cancel_timer() takes it off, if `s`
  // still names w as its timer's worker.
  void arm_cancel_timer(CancelState* s, int64_t deadline_nanos);
  static void disarm_cancel_timer(CancelState* s);
  // run_on_worker_stack() runs fn(arg) on this thread's worker's own
  // stack (worker_stack.h); see worker_stack.cc for the protocol.
  static void run_on_worker_stack(void (*fn)(void*), void* arg);
  // worker_stack_guard() is whether addr lies in the guard page below this
  // worker's stack for run_on_worker_stack() (the fault reporter).
  bool worker_stack_guard(const void* addr) const {
    return aux_stack_.base != nullptr && aux_stack_.in_guard(addr);
  }
  // handle_io_message_direct() carries out a socket message on this
  // worker's poller and slot table from its own thread (io_call's direct
  // path), taking the driver lock.
  void handle_io_message_direct(IoMessage* m);
  // --- the monitor (monitor.cc), from its own thread ---
  uint64_t progress() const { return progress_.load(std::memory_order_relaxed); }
  bool sleeping() const { return sleeping_.load(std::memory_order_seq_cst); }
  // served_at() is when this worker's readiness was last served (its
  // epoll_wait returned), monotonic nanos. Read after sleeping() found the
  // worker awake, it is at least as new as the worker's wake-up.
  int64_t served_at() const { return served_at_.load(std::memory_order_relaxed); }
  int rescued_by() const { return rescued_by_.load(std::memory_order_seq_cst); }
  // running_fiber() is what the worker runs now: fiber id (0: its own
  // loop) and spawn site.
  void running_fiber(uint64_t* id, const char** file, int* line) const;
  // start_rescue() makes `rescuer` serve this worker's driver (hand-over
  // steps 1-2) and asks it to start (step 3).
  void start_rescue(Worker* rescuer);

  // --- thread start and the reaper (Scheduler) ---
  void start_thread();
  void join_thread();
  bool thread_started() const { return thread_.joinable(); }
  pthread_t native_thread() { return thread_.native_handle(); }
  // thread_ids() gives the worker thread's kernel id and CPU-time clock
  // once its loop has started (false before, or if it has no such clock).
  // For the monitor (monitor.cc, step 2b), which stops before the thread
  // ends.
  bool thread_ids(int* tid, clockid_t* cpu_clock) const {
    *tid = kernel_tid_.load(std::memory_order_acquire);
    // has_cpu_clock_ and cpu_clock_ are written before the tid is published.
    if (*tid == 0 || !has_cpu_clock_) return false;
    *cpu_clock = cpu_clock_;
    return true;
  }
  // send_shutdown() tells the loop to stop (any thread).
  void send_shutdown();
  // take_all_for_shutdown() moves every queued fiber (inbox, LIFO slot, run
  // queue) into *out and cancels pending socket messages. Only after the
  // worker's thread has been joined.
  void take_all_for_shutdown(std::vector<Fiber*>* out);
  // expire_all_timers_for_shutdown() fires every fiber timer of this wheel
  // regardless of its deadline and appends the claimed fibers to *out;
  // returns true if any was claimed. Only after the thread has been joined.
  bool expire_all_timers_for_shutdown(std::vector<Fiber*>* out);
  // resume_for_shutdown() runs f until it switches back to the caller's
  // stack (the reaper adopts worker 0 for this).
  void resume_for_shutdown(Fiber* f) { resume(f); }
  void adopt_thread_for_shutdown();
  void release_thread_after_shutdown() { current_ = nullptr; }

 private:
  friend void fiber_entry(Transfer t);

  struct IoSlot {
    IoSource* source = nullptr;
    int fd = -1;
    uint32_t gen = 0;
    TimerEntry timers[kIoTimers];
    int32_t next_free = -1;
  };

  // worker.cc: the loop and the idle protocol.
  void run_loop();
  // start_ring() creates this worker's io_uring and registers its eventfd
  // with the poller, if the runtime wants rings and the kernel allows one;
  // stop_ring() drains and frees it (uring.cc, setup and step 5).
  void start_ring();
  void stop_ring();
  Fiber* next_local();                  // LIFO, queue, periodic inject/poll
  static void prefetch_fiber(const Fiber* f);
  static void prefetch_stack(const Fiber* f);
  Fiber* runnable(Fiber* f);            // attach a stack, or fail f and pick another
  bool attach_stack(Fiber* f);
  Fiber* find_runnable();               // next_local, inject, poll, steal, sleep
  Fiber* take_from_inject(size_t max);
  Fiber* steal();
  void steal_backoff();
  void sleep_until_work();
  // release_stacks() gives back cached stacks no fiber took for a second
  // (StackCache::release_idle) when a release is due, and returns how many
  // milliseconds an idle worker may sleep before the next one is (-1:
  // nothing left to give back).
  int release_stacks();
  // leave_idle() ends an idle period (off the idle list, sleeping_ false);
  // a no-op when the worker is not idle.
  void leave_idle();
  bool work_visible() const;
  void stop_searching();

  // switch.cc
  void resume(Fiber* f);                // from the worker's own stack
  void switch_to(Fiber* from, Fiber* to, SwitchAction action);
  // start_here() runs `next` on the stack of `self`, which has exited
  // (switching step 4), if next has never run; false: switch to it.
  bool start_here(Fiber* self, Fiber* next);
  static void after_switch(Transfer t);
  void publish_running(Fiber* f);

  // worker_io.cc
  // poll_once() serves this worker's own driver: it drains the inbox,
  // dispatches readiness (blocking up to timeout_ms, -1: no limit) and
  // fires due timers, as one wake batch. use_poller=false skips
  // epoll_wait (and the polls counter): inbox and timers only. A
  // non-blocking poll is skipped while a rescuer holds the driver.
  void poll_once(int timeout_ms, bool use_poller = true);
  // serve_driver() is one wake batch of this worker's driver run by
  // `runner` (this worker, or its rescuer): woken fibers go to runner.
  void serve_driver(Worker* runner, int timeout_ms, bool use_poller)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(driver_lock_);
  void drain_inbox(Worker* runner) ABSL_EXCLUSIVE_LOCKS_REQUIRED(driver_lock_);
  void handle_io_message(IoMessage* m) ABSL_EXCLUSIVE_LOCKS_REQUIRED(driver_lock_);
  void dispatch_io(uint64_t data, uint32_t events) ABSL_EXCLUSIVE_LOCKS_REQUIRED(driver_lock_);
  // The slot an event's data names, if the index is in range; the
  // generation is not checked (dispatch_io() checks it; the prefetch does not need to).
  IoSlot* slot_hint(uint64_t data) ABSL_EXCLUSIVE_LOCKS_REQUIRED(driver_lock_);
  void prefetch_dispatch(const epoll_event* events, int n, int i) ABSL_EXCLUSIVE_LOCKS_REQUIRED(driver_lock_);
  void fire_timers(Worker* runner) ABSL_EXCLUSIVE_LOCKS_REQUIRED(driver_lock_);
  // run_deferred_cancels() cancels the states whose deadlines fire_timers()
  // found due, after the driver lock is dropped: their callbacks may touch
  // sockets, whose direct path takes that lock.
  void run_deferred_cancels();
  int timeout_until_next_timer();
  // monitor.cc: the rescuer's side (owner of the rescuer).
  bool serves_others() const {
    return !serving_.empty() || rescue_pending_.load(std::memory_order_relaxed);
  }
  // serve_rescued() takes new rescue requests (step 3), runs a
  // non-blocking wake batch of every driver it serves (step 4), and drops
  // the ones whose owners are back (step 6).
  void serve_rescued();
  // reclaim_driver() is the owner's step 5: back in its loop.
  void reclaim_driver();

  // --- immutable after construction ---
  Scheduler* const sched_;
  const int id_;

  // --- run queue: the owner pushes and pops, thieves steal half ---
  RunQueue<Fiber> queue_;

  // --- owner only ---
  Fiber* lifo_ = nullptr;  // never stolen
  int lifo_streak_ = 0;
  // True while poll_once() dispatches readiness and fires timers: the
  // fibers they wake go to the back of the queue, in event order (as Go's
  // netpoll and tokio's I/O driver do), not into the LIFO slot, where each
  // would jump ahead of every fiber woken before it; and their pushes leave
  // notify_idle() to one call at the end of poll_once().
  bool in_poll_ = false;
  size_t poll_woken_ = 0;  // fibers queued by the current poll_once()
  bool searching_ = false;
  StackCache stacks_;
  uint64_t next_stack_release_ = 0;  // tick
  BlockCache blocks_;
  ExecutionContext thread_ctx_;
  Fiber* current_ = nullptr;
  // run_on_worker_stack(): set while a call runs on aux_ctx_, whose stack
  // (made at the first call) every fiber of this worker shares.
  bool on_aux_ = false;
  ExecutionContext aux_ctx_;
  Stack aux_stack_;
  struct {
    Fiber* from;
    SwitchAction action;
  } pending_{nullptr, SwitchAction::kNone};
  uint64_t tick_ = 0;
  std::vector<Worker*> serving_;  // drivers this worker serves as a rescuer
  std::vector<CancelState*> deferred_cancels_;  // each holds a reference
  uint64_t rng_;
  // The victim of this worker's last steal that took fewer than
  // kSmallSteal fibers, and when (steal back-off, worker.cc), or -1.
  int small_steal_victim_ = -1;
  int64_t small_steal_at_ = 0;
  // The worker's io_uring, or null (never created, or stopped). Only the
  // owner's own thread submits to it and reaps it; a rescuer never does.
  std::unique_ptr<Ring> ring_;
  uint64_t id_next_ = 0, id_end_ = 0;  // block of fiber ids (Scheduler::new_fiber)
  // Events one poll takes at most (worker_io.cc step 2). Fewer than the
  // runs between two busy polls (kPollInterval, worker.cc), so that busy
  // polls cannot build a standing queue: see docs/benchmarks.md, "A
  // standing run queue".
  static constexpr int kPollBatch = 32;
  epoll_event events_[kPollBatch];

  // --- the driver: under driver_lock_ (the owner, or its rescuer) ---
  SpinLock driver_lock_;
  Poller poller_;  // epoll_wait and epoll_ctl under driver_lock_
  // The I/O slot table; paged: linked TimerEntries never move.
  PagedTable<IoSlot> io_slots_ ABSL_GUARDED_BY(driver_lock_);
  int32_t io_free_ ABSL_GUARDED_BY(driver_lock_) = -1;
  size_t io_live_ ABSL_GUARDED_BY(driver_lock_) = 0;

  // --- any thread ---
  MpscInbox<WorkerMessage> inbox_;  // any thread pushes; popped under driver_lock_
  Wakeup wakeup_;                   // any thread signals; drained under driver_lock_
  // True while the worker may block in poll_once (seq_cst with senders).
  std::atomic<bool> sleeping_{false};
  // Set by a waker that hands this idle worker the searching role.
  std::atomic<bool> woken_to_search_{false};
  std::atomic<size_t> io_count_{0};  // io_live_, readable by other threads
  std::atomic<bool> ring_active_{false};  // ring_ != null, for stats
  std::atomic<bool> loop_started_{false};  // set once by the owner
  WorkerCounters counters_;          // written by the owner only
  std::atomic<uint64_t> unregistered_in_{0}, unregistered_out_{0};  // owner only
  static void bump_release(std::atomic<uint64_t>& c) {
    c.store(c.load(std::memory_order_relaxed) + 1, std::memory_order_release);
  }

  // --- hand-over (monitor.cc) ---
  // Published by the owner at every turn of its loop and every switch
  // (relaxed stores); read by the monitor.
  std::atomic<uint64_t> progress_{0};
  // Stored by whoever runs a wake batch of this driver that polls epoll
  // (the owner, or its rescuer), after epoll_wait returns and before the
  // runner leaves idle (the seq_cst store of sleeping_ publishes it).
  std::atomic<int64_t> served_at_{0};
  std::atomic<uint64_t> running_id_{0};
  std::atomic<const char*> running_file_{nullptr};
  std::atomic<int> running_line_{0};
  // The worker serving this one's driver while it is stuck, or -1. Set by
  // the monitor, cleared by the owner (seq_cst: senders read it).
  std::atomic<int> rescued_by_{-1};
  // Drivers the monitor asked this worker to serve (step 1 -> step 3).
  SpinLock rescue_lock_;
  std::vector<Worker*> rescue_requests_ ABSL_GUARDED_BY(rescue_lock_);
  std::atomic<bool> rescue_pending_{false};

  // --- under timer_lock_ (disarm comes from any worker) ---
  SpinLock timer_lock_;
  TimerWheel wheel_ ABSL_GUARDED_BY(timer_lock_);
  std::atomic<size_t> timers_armed_{0};

  WorkerMessage shutdown_msg_;
  std::thread thread_;
  // Written before kernel_tid_ is published (release), read after it.
  std::atomic<int> kernel_tid_{0};
  clockid_t cpu_clock_{};
  bool has_cpu_clock_ = false;
};

}  // namespace weft::internal
