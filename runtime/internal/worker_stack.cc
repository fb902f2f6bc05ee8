// run_on_worker_stack(): a call on the worker's own stack (worker_stack.h).
//
// # A call on the worker's stack
//   1. The caller is a fiber F that worker W runs (current_worker()'s
//      current fiber), and W is not already on its stack (on_aux_): else
//      fn runs right where the caller is. At W's first call, W makes its
//      auxiliary context: a stack of the default fiber size from its stack
//      cache (guard page below), entry aux_entry.
//   2. F sets W.on_aux_ and switches to the auxiliary context with the
//      call's record (switch_context: ASan and TSan see the switch, as for
//      any fiber switch).
//   3. The auxiliary context, landed (in aux_entry the first time, after
//      its last switch back otherwise), saves F's continuation in F's own
//      ExecutionContext (F is running, so nothing else reads it), runs fn
//      (catching any exception into the record) and switches back to F.
//      It waits there for the next call, whose record comes with the
//      switch that resumes it.
//   4. F, resumed, saves the auxiliary context's continuation, clears
//      on_aux_ and rethrows what fn threw.
//   Between 2 and 4 nothing can suspend F (suspend_from() aborts while
//   on_aux_ is set), so F stays on W's thread, no other fiber of W runs,
//   and the stack never holds two calls at once. A peer serving W's driver
//   while W is stuck (monitor.cc) runs its own fibers on its own stack.
#include <exception>
#include <string>

#include "runtime/internal/fiber.h"
#include "runtime/internal/fiber_context.h"
#include "runtime/internal/worker.h"
#include "runtime/internal/worker_stack.h"
#include "runtime/platform/check.h"

namespace weft::internal {

namespace {

struct AuxCall {
  void (*fn)(void*);
  void* arg;
  ExecutionContext* caller;  // the calling fiber's context
  ExecutionContext* aux;
  std::exception_ptr error;
};

void aux_entry(Transfer t) {
  auto* call = static_cast<AuxCall*>(t.data);
  on_context_start(call->aux);
  for (;;) {
    call->caller->fctx = t.fctx;  // step 3
    try {
      call->fn(call->arg);
    } catch (...) {
      call->error = std::current_exception();
    }
    ExecutionContext* aux = call->aux;
    t = switch_context(aux, call->caller, nullptr, false);
    call = static_cast<AuxCall*>(t.data);  // the next call
  }
}

}  // namespace

void Worker::run_on_worker_stack(void (*fn)(void*), void* arg) {
  Worker* w = current_worker();
  Fiber* f = w != nullptr ? w->current_ : nullptr;
  if (f == nullptr || w->on_aux_) {  // step 1: off a fiber, or already there
    fn(arg);
    return;
  }
  if (w->aux_stack_.base == nullptr) {
    absl::StatusOr<Stack> s = w->stacks_.get(w->stacks_.default_size());
    WEFT_CHECK(s.ok(), "on_worker_stack: cannot map worker %d's stack: %s", w->id_,
               std::string(s.status().message()).c_str());
    w->aux_stack_ = *s;
    init_fiber_context(&w->aux_ctx_, w->aux_stack_.bottom(), w->aux_stack_.size, aux_entry);
  }
  AuxCall call{fn, arg, &f->ctx, &w->aux_ctx_, nullptr};
  w->on_aux_ = true;  // step 2
  Transfer t = switch_context(&f->ctx, &w->aux_ctx_, &call, false);
  w->aux_ctx_.fctx = t.fctx;  // step 4
  w->on_aux_ = false;
  if (call.error) std::rethrow_exception(call.error);
}

}  // namespace weft::internal
