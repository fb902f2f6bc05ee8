// runtime/internal/fiber.h
//
// Fiber: the control block of one stackful task, and TaskBase, the body it
// runs. NOT for users.
//
// Where a fiber is, by state (Fiber::wake_word's low bits, see park.h):
//   kRunning: running on a worker, or runnable: in one worker's LIFO slot or
//             run queue, in the injection queue, or in a worker's inbox as a
//             kSpawn/kWake message (never in two places).
//   kParking: announced a park; still running until its switch completes.
//   kParked:  suspended; findable only through what it parked on (a wait
//             list, a timer, a socket), and whoever claims it must schedule it.
//   kNotified: claimed by a waker; runnable or about to be.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>

#include "absl/status/status.h"
#include "runtime/internal/cancel.h"
#include "runtime/internal/fiber_context.h"
#include "runtime/internal/io_messages.h"
#include "runtime/internal/spawn.h"
#include "runtime/internal/spin_lock.h"
#include "runtime/internal/stack_pool.h"
#include "timer/timer_wheel.h"

namespace weft::internal {

class Scheduler;
class Worker;

// Fiber::wake_word = (park sequence << 2) | ParkState. The protocol is in
// park.cc.
enum ParkState : uint64_t {
  kRunning = 0,   // not parked (runnable or running)
  kParking = 1,   // announced a park; its context may not be saved yet
  kParked = 2,    // context saved; whoever claims it must schedule it
  kNotified = 3,  // claimed by a waker for this sequence
};

// FiberCancelNode: a fiber registered on its innermost token; firing it
// claims the fiber's cancellable park, if it is in one (park.cc).
struct FiberCancelNode final : CancelNode {
  Fiber* fiber = nullptr;
  void on_cancel(CancelCause cause) noexcept override;
};

// FiberCancelExt: a fiber's tokens, apart from Fiber because few fibers
// have any (cancel.cc "A fiber's tokens").
struct FiberCancelExt {
  // The token the fiber was spawned with (a reference), or null.
  CancelState* token = nullptr;
  // The innermost token in effect: own_token, or a with_timeout() child
  // pushed on it; null: `token`. node is linked in it. Fiber-only.
  CancelState* top = nullptr;
  // The fiber's own token, made on first use, a child of `token` that
  // abort() cancels. Set under Fiber::cancel_lock, once.
  CancelState* own_token = nullptr;
  FiberCancelNode node;
};

struct Fiber {
  ExecutionContext ctx;
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

  // Cancellation, the fields every park reads (park.cc "Cancellable
  // parks"), next to wake_word so that a park touches one more line at
  // most. The fiber is cancelled when cancel_requested is set (abort(),
  // Runtime::shutdown(deadline); sticky) or its innermost token is.
  std::atomic<uint64_t> cancel_park{0};  // seq of the cancellable park in progress, 0: none
  std::atomic<bool> cancel_requested{false};
  // Guards cancel_ext's publication and its own_token against abort() and
  // drain(), which read them from other threads (cancel.cc "A fiber's
  // tokens"). The fiber reads cancel_ext without it.
  SpinLock cancel_lock;
  bool unwind_requested = false;  // set at shutdown, when no worker runs
  bool unwinding = false;
  // While > 0 (this_fiber::CancellationShield), parks ignore cancellation.
  int cancel_shield = 0;
  // The fiber's tokens, allocated when it first has one; null: none.
  // Written under cancel_lock, by the fiber, by its spawner before it
  // starts, or by whoever frees it when it can no longer run.
  FiberCancelExt* cancel_ext = nullptr;

  // The timer of timed parks (park.cc, "Timed parks"): linked into
  // timer_worker's wheel; timer_seq is the park it may claim and timer_due
  // the tick that park times out at. The entry may stay linked after the
  // park ends, for the next timed park to reuse; fiber_entry() takes it
  // off before the fiber's memory goes. timer_seq, timer_due and the
  // entry change under timer_worker's timer lock while the entry is
  // linked; timer_worker changes only on the fiber's own stack. It comes
  // first: every timed park reads it.
  Worker* timer_worker = nullptr;
  uint64_t timer_seq = 0;
  uint64_t timer_due = 0;
  TimerEntry timer;

  // Registry of the fibers a drain or a shutdown must be able to find: the
  // shard `reg_shard` of the worker the fiber was on when it first
  // suspended or took a token of its own (Scheduler::register_running),
  // under that shard's lock. -1 until then: a fiber that runs to its end
  // without either is never registered (it is counted instead).
  Fiber* reg_prev = nullptr;
  Fiber* reg_next = nullptr;
  int reg_shard = -1;
  // How the control block was allocated: (origin worker << 8) | size
  // class, 0: by malloc (block_cache.h; free_fiber_block() in spawn.cc).
  uint32_t block_tag = 0;

  // Where the fiber was spawned (for the monitor's hog report).
  int spawn_line = 0;
  const char* spawn_file = nullptr;
};

}  // namespace weft::internal
