// Switching: how the running fiber hands its worker to the next one.
//
// # Switching
//   1. A fiber that gives up the CPU (yield, park, exit) picks its successor
//      itself from the local queues (Worker::next_local) and jumps straight
//      to it; only when nothing is local does it jump to the worker's own
//      stack, which searches further (inject queue, poller, peers) or
//      sleeps (worker.cc).
//   2. The switching fiber records {itself, action} in Worker::pending_.
//   3. The context that lands runs after_switch(): it saves the previous
//      context's fcontext and only then carries out the action (queue it
//      for yield, publish kParked for park, free it for exit). So no other
//      thread can resume a fiber before its registers are saved.
//   4. A fiber that exits and whose successor has never run, and wants a
//      stack of the same size, hands its stack over instead of jumping
//      (Worker::start_here): the successor's body runs in the same
//      fiber_entry frame, as a plain call. The exited fiber is freed at
//      once (nothing runs on its behalf any more, and its registers are
//      not needed); the successor is counted as a run, as a jump to it
//      would. This skips the stack cache, the context set-up,
//      the jump and after_switch() for a fiber that starts.
//   Every switch goes through switch_context() (fiber_context.cc), which
//   tells ASan and TSan about it; a hand-over (step 4) through
//   hand_over_context(), which tells TSan (the stack stays the same).
#include <cstdio>

#include "runtime/internal/cancel.h"
#include "runtime/internal/fiber.h"
#include "runtime/internal/park.h"
#include "runtime/internal/scheduler.h"
#include "runtime/internal/worker.h"
#include "runtime/platform/check.h"

namespace weft::internal {

namespace {

// initial-exec: a plain %fs-relative load, no __tls_get_addr call on the
// switch path.
__attribute__((tls_model("initial-exec"))) thread_local Worker* tls_worker = nullptr;

}  // namespace

__attribute__((noinline, noipa)) Worker* current_worker() {
  Worker* w = tls_worker;
  asm volatile("" ::: "memory");
  return w;
}

__attribute__((noinline, noipa)) Fiber* current_fiber() {
  Worker* w = tls_worker;
  return w != nullptr ? w->current() : nullptr;
}

void set_current_worker(Worker* w) { tls_worker = w; }

// What the worker runs, for the monitor's hog report: three relaxed stores
// to the worker's own line, no fence.
inline void Worker::publish_running(Fiber* f) {
  running_id_.store(f != nullptr ? f->id : 0, std::memory_order_relaxed);
  running_file_.store(f != nullptr ? f->spawn_file : nullptr, std::memory_order_relaxed);
  running_line_.store(f != nullptr ? f->spawn_line : 0, std::memory_order_relaxed);
}

void Worker::resume(Fiber* f) {
  f = runnable(f);
  if (f == nullptr) return;
  counters_.bump(counters_.run);
  current_ = f;
  publish_running(f);
  pending_ = {nullptr, SwitchAction::kNone};
  Transfer t = switch_context(&thread_ctx_, &f->ctx, nullptr, false);
  after_switch(t);
}

void Worker::switch_to(Fiber* from, Fiber* to, SwitchAction action) {
  to = runnable(to);
  pending_ = {from, action};  // step 2
  current_ = to;
  publish_running(to);
  ExecutionContext* target = &thread_ctx_;
  if (to != nullptr) {
    counters_.bump(counters_.run);
    target = &to->ctx;
  }
  Transfer t = switch_context(&from->ctx, target, nullptr, action == SwitchAction::kExit);
  after_switch(t);  // resumed, possibly on another worker
}

void Worker::suspend(SwitchAction action) { suspend_from(current_worker(), action); }

void Worker::suspend_from(Worker* w, SwitchAction action) {
  Fiber* self = w->current_;
  WEFT_DCHECK(self != nullptr, "suspend() off a fiber");
  WEFT_CHECK(!w->on_aux_,
             "a function run by on_worker_stack() tried to suspend (block, wait, yield or do I/O); "
             "it must run to completion");
  // A fiber that is not running must be findable by a drain or a shutdown
  // (park() has registered it already, before its cancellation check).
  w->sched_->register_running(w, self);
  Fiber* next = w->next_local();  // step 1
  w->switch_to(self, next, action);
}

void Worker::after_switch(Transfer t) {
  Worker* w = current_worker();  // step 3
  Fiber* prev = w->pending_.from;
  SwitchAction action = w->pending_.action;
  w->pending_ = {nullptr, SwitchAction::kNone};
  if (prev == nullptr) {
    w->thread_ctx_.fctx = t.fctx;
    return;
  }
  prev->ctx.fctx = t.fctx;
  switch (action) {
    case SwitchAction::kYield:
      w->push_local(prev, false);
      break;
    case SwitchAction::kPark:
      if (!publish_parked(prev, prev->park_seq)) {
        w->push_local(prev, false);  // claimed while it was switching out
      }
      break;
    case SwitchAction::kExit:
      w->sched_->release_fiber(w, prev);
      break;
    case SwitchAction::kNone:
      break;
  }
}

bool Worker::start_here(Fiber* self, Fiber* next) {
  // Step 4. Only a fiber that has never run (no context yet), is not to be
  // discarded (runnable() does that), and wants the same stack size.
  if (next->ctx.fctx != nullptr || next->unwind_requested || next->stack_size != self->stack_size) return false;
  next->stack = self->stack;
  self->stack = Stack{};
  hand_over_context(&self->ctx, &next->ctx);
  sched_->release_started(this, self);
  counters_.bump(counters_.run);
  current_ = next;
  publish_running(next);
  return true;
}

void fiber_entry(Transfer t) {
  Fiber* self = current_worker()->current_;
  on_context_start(&self->ctx);
  Worker::after_switch(t);
  for (;;) {
    // A fiber cancelled before it started never runs (its join reports it
    // as cancelled).
    if (self->unwind_requested || fiber_cancelled(self)) {
      self->task->cancel();
    } else {
      self->task->run();
    }
    self->task->~TaskBase();
    release_fiber_tokens(self);  // may yield: a canceller may be firing it
    // Timed parks step 5: the fiber's memory is about to go.
    if (self->timer_worker != nullptr) Worker::disarm_timer(self);
    Worker* w = current_worker();
    w->counters_.bump(w->counters_.completed);
    Fiber* next = w->next_local();
    if (next != nullptr && w->start_here(self, next)) {  // step 4
      self = next;
      continue;
    }
    w->switch_to(self, next, Worker::SwitchAction::kExit);
    __builtin_unreachable();
  }
}

}  // namespace weft::internal
