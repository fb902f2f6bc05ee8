// runtime/internal/scheduler.h
//
// The scheduler's private types: Fiber (one stackful task), Worker (one
// thread with its run queue, LIFO slot, inbox, epoll poller, eventfd and
// timer wheel) and Scheduler (the workers, the global injection queue, the
// idle-worker bookkeeping and the registry of live fibers).
//
// NOT for users: the public API is runtime/runtime.h. docs/scheduler.md
// describes the protocols; the numbered steps are at the top of
// scheduler.cc.
//
// Fiber hazard: a fiber may resume on a different worker than the one it
// suspended on. Code running on a fiber must never keep a Worker* (or any
// thread-local) across a call that can suspend; it calls current_worker()
// again afterwards.
#pragma once

#include <sys/epoll.h>

#include <atomic>
#include <cstdint>
#include <deque>
#include <exception>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "runtime/internal/fiber_context.h"
#include "runtime/internal/inject_queue.h"
#include "runtime/internal/mpsc_inbox.h"
#include "runtime/internal/run_queue.h"
#include "runtime/internal/spin_lock.h"
#include "runtime/internal/stack_pool.h"
#include "runtime/platform/epoll_poller.h"
#include "runtime/platform/eventfd.h"
#include "timer/timer_wheel.h"

namespace weft {
struct RuntimeOptions;
struct RuntimeStats;
}  // namespace weft

namespace weft::internal {

class Worker;
class Scheduler;
struct Fiber;
class JoinStateBase;
// release_join_state() drops one reference to the join state, which owns
// the fiber's control block (runtime.cc).
void release_join_state(JoinStateBase* s);
// cancel_join_state() completes the join state as cancelled (runtime.cc).
void cancel_join_state(JoinStateBase* s, uint64_t fiber_id);

// Thrown from a suspension point of a fiber that the runtime cancels at
// shutdown, to unwind its stack. Deliberately not a std::exception: code
// that catches it must rethrow it.
struct FiberUnwind {};

// ---------------------------------------------------------------------------
// Worker messages
// ---------------------------------------------------------------------------

// The messages a worker's inbox carries. A worker drains its inbox in
// poll_once(); senders signal its eventfd if it sleeps.
enum class MessageKind : uint8_t {
  kStub,                 // the inbox's internal stub node
  kSpawn,                // run a new fiber on this worker (Fiber::msg)
  kWake,                 // run a woken fiber on this worker (Fiber::msg)
  kShutdown,             // the runtime is stopping: leave the loop
  kRegisterSocket,       // IoMessage: add an fd to this worker's poller
  kModifySocket,         // IoMessage: change the interest of a registration
  kCloseSocket,          // IoMessage: remove a registration
  kSetSocketTimeout,     // IoMessage: arm a registration's timer
  kCancelSocketTimeout,  // IoMessage: disarm a registration's timer
};

struct WorkerMessage {
  std::atomic<WorkerMessage*> inbox_next{nullptr};
  MessageKind kind = MessageKind::kStub;
  Fiber* fiber = nullptr;  // kSpawn, kWake
};

// IoSource: something registered with one worker's poller. Its callbacks
// run on that worker (on a fiber stack or the worker's own stack), must not
// suspend, and should only record state and wake fibers.
class IoSource {
 public:
  virtual ~IoSource() = default;
  // on_io_events() receives the epoll events of this registration.
  virtual void on_io_events(uint32_t events) = 0;
  // on_io_timeout() reports that timer `index` (0 or 1) set with
  // kSetSocketTimeout expired.
  virtual void on_io_timeout(int index) = 0;
};

// IoToken identifies one registration: slot index and generation. Events
// carry it in epoll_data; an event whose generation no longer matches its
// slot (the fd was closed or moved) is dropped.
using IoToken = uint64_t;
inline constexpr IoToken kNoIoToken = ~uint64_t{0};
inline constexpr int kIoTimers = 2;

struct Completion;

struct IoMessage : WorkerMessage {
  IoSource* source = nullptr;
  int fd = -1;
  uint32_t events = 0;
  IoToken token = kNoIoToken;     // in: the registration (all but register)
  int timer_index = 0;            // kSet/CancelSocketTimeout
  int64_t deadline_nanos = 0;     // kSetSocketTimeout, monotonic clock
  Completion* done = nullptr;     // signalled with the result, may be null
};

// ---------------------------------------------------------------------------
// Fibers
// ---------------------------------------------------------------------------

// The body of a fiber, constructed at the top of its stack. run() executes
// the user's function and publishes the result; cancel() publishes that the
// fiber was cancelled before it ran. The destructor destroys the function.
class TaskBase {
 public:
  virtual ~TaskBase() = default;
  virtual void run() = 0;
  virtual void cancel() = 0;
  // fail() publishes that the fiber could not start (no stack).
  virtual void fail(const absl::Status& why) = 0;
};

// Fiber::wake_word = (park sequence << 2) | ParkState. See scheduler.cc,
// "Parking".
enum ParkState : uint64_t {
  kRunning = 0,   // not parked (runnable or running)
  kParking = 1,   // announced a park; its context may not be saved yet
  kParked = 2,    // context saved; whoever claims it must schedule it
  kNotified = 3,  // claimed by a waker for this sequence
};

struct Fiber {
  ExecutionContext ctx;
  Fiber* next = nullptr;  // InjectQueue link
  WorkerMessage msg;      // kSpawn / kWake into a worker's inbox
  uint64_t id = 0;
  Scheduler* sched = nullptr;
  // The stack is attached when the fiber first runs (Worker::runnable), so
  // a spawned fiber that has not started costs only this control block.
  Stack stack;
  size_t stack_size = 0;
  TaskBase* task = nullptr;
  // The control block (this Fiber, the join state and the task) is one
  // allocation, freed when the fiber has exited and its handle is gone.
  JoinStateBase* join = nullptr;

  std::atomic<uint64_t> wake_word{0};
  uint64_t park_seq = 0;  // written only by the fiber itself

  // Deadline of the current park. Linked into timer_worker's wheel, under
  // that worker's timer lock.
  TimerEntry timer;
  Worker* timer_worker = nullptr;
  uint64_t timer_seq = 0;

  // Registry of live fibers (shard `reg_shard`, under its lock).
  Fiber* reg_prev = nullptr;
  Fiber* reg_next = nullptr;
  int reg_shard = 0;

  bool unwind_requested = false;  // set at shutdown, when no worker runs
  bool unwinding = false;
};

// Returned by Waiter::wait().
enum class WakeReason { kNotified, kTimeout, kCancelled };

// ---------------------------------------------------------------------------
// Per-worker counters
// ---------------------------------------------------------------------------

// Written by the owning worker only (relaxed); read by Runtime::stats().
struct WorkerCounters {
  std::atomic<uint64_t> spawned{0}, run{0}, completed{0};
  std::atomic<uint64_t> steal_attempts{0}, steal_successes{0}, stolen{0};
  std::atomic<uint64_t> parks{0}, unparks{0};
  std::atomic<uint64_t> polls{0}, poll_events{0}, messages{0}, timers_fired{0};
  std::atomic<uint64_t> idle_sleeps{0}, wakeups{0}, inject_taken{0};
  void bump(std::atomic<uint64_t>& c, uint64_t n = 1) {
    c.store(c.load(std::memory_order_relaxed) + n, std::memory_order_relaxed);
  }
};

// ---------------------------------------------------------------------------
// Worker
// ---------------------------------------------------------------------------

class Worker {
 public:
  Worker(Scheduler* sched, int id, Poller poller, Wakeup wakeup);
  ~Worker();
  Worker(const Worker&) = delete;
  Worker& operator=(const Worker&) = delete;

  int id() const { return id_; }
  Scheduler* scheduler() const { return sched_; }
  Fiber* current() const { return current_; }
  const WorkerCounters& counters() const { return counters_; }
  size_t queue_depth() const { return queue_.size(); }
  // registered_sockets() is the number of live registrations in this
  // worker's poller (relaxed; for placement policies).
  size_t registered_sockets() const { return io_count_.load(std::memory_order_relaxed); }

  // --- called by the owning worker thread (or a fiber running on it) ---

  // push_local() makes f runnable on this worker. `lifo` puts it in the
  // LIFO slot (woken fibers), otherwise at the back of the queue.
  void push_local(Fiber* f, bool lifo);
  // suspend() switches the running fiber out; see SwitchAction.
  enum class SwitchAction : uint8_t { kNone, kYield, kPark, kExit };
  static void suspend(SwitchAction action);
  // arm_timer()/disarm_timer() manage the running fiber's park deadline.
  void arm_timer(Fiber* f, uint64_t seq, int64_t deadline_nanos);
  static void disarm_timer(Fiber* f);

  // --- any thread ---

  // send() queues a message and wakes the worker if it sleeps.
  void send(WorkerMessage* m);
  // notify() interrupts the worker's poll_once if it blocks.
  void notify();

 private:
  friend class Scheduler;
  friend void fiber_entry(Transfer t);
  friend void park(Fiber* self, uint64_t seq, int64_t deadline_nanos);
  friend void schedule(Fiber* f);

  struct IoSlot {
    IoSource* source = nullptr;
    int fd = -1;
    uint32_t gen = 0;
    TimerEntry timers[kIoTimers];
    int32_t next_free = -1;
  };

  void run_loop();
  Fiber* next_local();                  // LIFO, queue, periodic inject/poll
  Fiber* runnable(Fiber* f);            // attach a stack, or fail f and pick another
  bool attach_stack(Fiber* f);
  Fiber* find_runnable();               // next_local, inject, poll, steal, sleep
  Fiber* take_from_inject(size_t max);
  Fiber* steal();
  void sleep_until_work();
  // leave_idle() ends an idle period (off the idle list, sleeping_ false);
  // a no-op when the worker is not idle.
  void leave_idle();
  bool work_visible() const;
  void stop_searching();
  void resume(Fiber* f);                // from the worker's own stack
  void switch_to(Fiber* from, Fiber* to, SwitchAction action);
  static void after_switch(Transfer t);
  // poll_once() drains the inbox, dispatches readiness (blocking up to
  // timeout_ms, -1: no limit) and fires due timers, as one wake batch.
  // use_poller=false skips epoll_wait (and the polls counter): inbox and
  // timers only.
  void poll_once(int timeout_ms, bool use_poller = true);
  void drain_inbox();
  void handle_io_message(IoMessage* m);
  void dispatch_io(uint64_t data, uint32_t events);
  void fire_timers(Worker* into);
  int timeout_until_next_timer();
  uint64_t now_tick() const;

  Scheduler* const sched_;
  const int id_;

  // Run queue: owner pushes/pops, thieves steal half.
  RunQueue<Fiber> queue_;
  Fiber* lifo_ = nullptr;  // owner only; never stolen
  int lifo_streak_ = 0;
  // True while poll_once() dispatches readiness and fires timers: the
  // fibers they wake go to the back of the queue, in event order (as Go's
  // netpoll and tokio's I/O driver do), not into the LIFO slot, where each
  // would jump ahead of every fiber woken before it; and their pushes leave
  // notify_idle() to one call at the end of poll_once().
  bool in_poll_ = false;
  size_t poll_woken_ = 0;  // fibers queued by the current poll_once()

  MpscInbox<WorkerMessage> inbox_;
  Poller poller_;
  Wakeup wakeup_;
  // True while the worker may block in poll_once (seq_cst with senders).
  std::atomic<bool> sleeping_{false};
  // Set by a waker that hands this idle worker the searching role.
  std::atomic<bool> woken_to_search_{false};
  bool searching_ = false;

  SpinLock timer_lock_;
  TimerWheel wheel_ ABSL_GUARDED_BY(timer_lock_);
  std::atomic<size_t> timers_armed_{0};

  std::deque<IoSlot> io_slots_;  // deque: linked TimerEntries never move
  int32_t io_free_ = -1;
  size_t io_live_ = 0;
  std::atomic<size_t> io_count_{0};  // io_live_, readable by other threads

  StackCache stacks_;
  ExecutionContext thread_ctx_;
  Fiber* current_ = nullptr;
  struct {
    Fiber* from;
    SwitchAction action;
  } pending_{nullptr, SwitchAction::kNone};

  uint64_t tick_ = 0;
  uint64_t rng_;
  uint64_t id_next_ = 0, id_end_ = 0;  // block of fiber ids
  WorkerMessage shutdown_msg_;
  WorkerCounters counters_;
  std::thread thread_;
  static constexpr int kMaxEvents = 256;
  epoll_event events_[kMaxEvents];
};

// current_worker() is the worker the calling thread runs, or null. Never
// inlined, so a fiber that migrated reads the new thread's value.
Worker* current_worker();
// current_fiber() is the running fiber, or null off a fiber.
Fiber* current_fiber();

// ---------------------------------------------------------------------------
// Parking
// ---------------------------------------------------------------------------

// prepare_park() starts a park of the running fiber and returns its
// sequence. Wakers that know the sequence may claim it from now on.
uint64_t prepare_park(Fiber* self);
// park() suspends the fiber until a waker claims `seq` or `deadline_nanos`
// (monotonic; <0: none) passes. Suspends. Never throws.
void park(Fiber* self, uint64_t seq, int64_t deadline_nanos);
// try_claim() claims a park. Returns true if the caller must schedule(f)
// (the fiber's context is saved); false if the claim failed or the parking
// fiber schedules itself.
bool try_claim(Fiber* f, uint64_t seq);
// schedule() makes a claimed fiber runnable: on the current worker's LIFO
// slot when called on a worker of its runtime, else through the injection
// queue.
void schedule(Fiber* f);
// unwind_if_cancelled() throws FiberUnwind if the runtime cancels the
// running fiber (shutdown) and it is not unwinding yet.
void unwind_if_cancelled(Fiber* self);

// Waiter: one waiting fiber or thread in a wait list of a sync primitive.
// Lives on the waiter's stack. Protocol (see docs/scheduler.md):
//
//   Waiter w;                       // binds to this fiber or thread
//   lock(); list.push(&w); unlock();
//   w.wait(deadline);               // suspends
//   if (!w.notified()) { lock(); if (!w.notified()) list.remove(&w); ... }
//
//   waker: lock(); Waiter* w = list.pop(); Fiber* f = w->notify_locked();
//          unlock(); if (f) schedule(f);
//
// Nothing may suspend between constructing a Waiter and calling wait().
class Waiter {
 public:
  Waiter();
  Waiter(const Waiter&) = delete;
  Waiter& operator=(const Waiter&) = delete;

  // wait() blocks until notify_locked() or the deadline (monotonic nanos,
  // <0: none). kCancelled: the runtime is cancelling this fiber; clean up,
  // then call unwind_if_cancelled().
  WakeReason wait(int64_t deadline_nanos = -1);

  // notify_locked() claims the waiter; call under the lock of the list it
  // is on. Returns a fiber for the caller to schedule() after unlocking.
  [[nodiscard]] Fiber* notify_locked();

  bool notified() const { return notified_.load(std::memory_order_acquire); }
  bool on_fiber() const { return fiber_ != nullptr; }

  Waiter* prev = nullptr;
  Waiter* next = nullptr;
  void* payload = nullptr;  // primitive-specific, e.g. a channel slot
  uint32_t signal = 0;      // primitive-specific outcome, set by the waker

 private:
  Fiber* fiber_;
  uint64_t seq_ = 0;
  std::atomic<uint32_t> futex_{0};  // thread waiters: 1 once notified
  std::atomic<bool> notified_{false};
};

class WaitList;

// settle_wait() finishes a wait that Waiter::wait() ended with `r`. Returns
// true if the waiter was notified (the waker completed its operation).
// Otherwise it removes the waiter from `list` under `lock` and returns
// false, or throws FiberUnwind if the runtime is cancelling the fiber.
bool settle_wait(Waiter& w, WaitList& list, SpinLock& lock, WakeReason r);

// WaitList: an intrusive FIFO of Waiters, guarded by the owner's lock.
class WaitList {
 public:
  bool empty() const { return head_ == nullptr; }
  Waiter* front() const { return head_; }
  void push_back(Waiter* w);
  Waiter* pop_front();
  void remove(Waiter* w);

 private:
  Waiter* head_ = nullptr;
  Waiter* tail_ = nullptr;
};

// Completion: a one-shot result that a worker hands back to the fiber or
// thread that sent it a message.
struct Completion {
  void set(absl::Status s, IoToken token = kNoIoToken);
  // wait() suspends (or blocks the thread) until set().
  absl::Status wait();
  SpinLock lock;
  bool done = false;
  absl::Status status;
  IoToken token = kNoIoToken;
  WaitList waiters;
};

// monotonic_now() is CLOCK_MONOTONIC in nanoseconds.
int64_t monotonic_now();
// to_monotonic() converts an absolute absl::Time to monotonic nanos
// (absl::InfiniteFuture() -> -1).
int64_t to_monotonic(absl::Time t);

// ---------------------------------------------------------------------------
// Scheduler
// ---------------------------------------------------------------------------

class Scheduler {
 public:
  static absl::StatusOr<std::unique_ptr<Scheduler>> create(const RuntimeOptions& opts);
  ~Scheduler();

  int num_workers() const { return static_cast<int>(workers_.size()); }
  Worker* worker(int i) const { return workers_[static_cast<size_t>(i)].get(); }
  bool stopping() const { return stopping_.load(std::memory_order_acquire); }
  size_t default_stack_size() const { return default_stack_size_; }

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

  // io_call() carries out the socket message `m` on worker `w` and returns
  // its status; for kRegisterSocket *token receives the registration.
  // On worker w's own thread the message is handled inline (the direct
  // path: same result, no round trip); elsewhere it is sent and the caller
  // suspends (or blocks, off a fiber) until w has handled it. Once the
  // runtime has stopped it returns kCancelled without sending: the pollers
  // are gone. m->done is overwritten.
  absl::Status io_call(int w, IoMessage* m, IoToken* token = nullptr);

  // stop() cancels everything and joins the workers; idempotent.
  void stop();

  void fill_stats(RuntimeStats* out) const;
  int64_t live_fibers() const;

  // now_tick() is the timer tick (1 ms since the runtime started);
  // deadline_tick() the first tick at or after a monotonic deadline.
  uint64_t now_tick() const;
  uint64_t deadline_tick(int64_t deadline_nanos) const;

 private:
  friend class Worker;
  friend void fiber_entry(Transfer t);
  friend void schedule(Fiber* f);
  explicit Scheduler(const RuntimeOptions& opts);

  void inject(Fiber* f);
  void notify_idle();  // wake one idle worker if nobody searches
  void add_idle(Worker* w);
  bool remove_idle(Worker* w);
  void register_fiber(Fiber* f);
  void unregister_fiber(Fiber* f);
  void release_fiber(Worker* w, Fiber* f);  // after the fiber exited
  void discard_unstarted(Fiber* f, const absl::Status* why = nullptr);  // never ran
  void free_control_block(Fiber* f);
  void reap();

  std::vector<std::unique_ptr<Worker>> workers_;
  InjectQueue<Fiber> inject_;
  std::atomic<bool> stopping_{false};
  std::mutex stop_mu_;  // serializes stop()
  bool stop_done_ = false;
  // Once stopped_ is set (after the workers are joined) submissions from
  // other threads are cancelled at once instead of queued.
  std::mutex submit_mu_;
  std::atomic<bool> stopped_{false};

  std::atomic<uint32_t> num_searching_{0};
  std::atomic<uint32_t> num_idle_{0};
  std::mutex idle_mu_;
  std::vector<Worker*> idle_ ABSL_GUARDED_BY(idle_mu_);

  struct alignas(64) RegistryShard {
    SpinLock lock;
    Fiber* head = nullptr;
    int64_t count = 0;
  };
  std::unique_ptr<RegistryShard[]> registry_;
  std::atomic<uint64_t> next_id_{1};

  size_t default_stack_size_;
  size_t stack_cache_size_;
  uint64_t seed_;
  int64_t epoch_nanos_;
};

}  // namespace weft::internal
