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
#include "runtime/internal/fiber_context.h"
#include "runtime/internal/io_messages.h"
#include "runtime/internal/spawn.h"
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

  // Where the fiber was spawned (for the monitor's hog report).
  const char* spawn_file = nullptr;
  int spawn_line = 0;

  bool unwind_requested = false;  // set at shutdown, when no worker runs
  bool unwinding = false;
};

}  // namespace weft::internal
