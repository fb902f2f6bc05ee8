// runtime/internal/fiber_context.h
//
// The only file that sees Boost.Context. It makes and switches execution
// contexts (fcontext) and tells AddressSanitizer and ThreadSanitizer about
// every switch, since Debian's Boost.Context uses fcontext, which neither
// sanitizer understands by itself.
//
// NOT a general-purpose API: only the scheduler switches contexts.
#pragma once

#include <cstddef>

namespace weft::internal {

// ExecutionContext describes one stack that code can run on: a fiber's
// stack, or a worker thread's own stack.
struct ExecutionContext {
  void* fctx = nullptr;          // saved fcontext while suspended
  void* stack_bottom = nullptr;  // lowest address of the usable stack
  size_t stack_size = 0;
  void* tsan_fiber = nullptr;    // ThreadSanitizer's handle for this context
  void* asan_fake_stack = nullptr;
};

// What a context receives when it is resumed: the context that jumped to it
// (to be saved by the receiver) and the data pointer passed to the jump.
struct Transfer {
  void* fctx;
  void* data;
};

using ContextEntry = void (*)(Transfer);

// init_fiber_context() prepares `ctx` to start running `entry` on the stack
// [bottom, bottom + size) the first time something switches to it.
void init_fiber_context(ExecutionContext* ctx, void* bottom, size_t size,
                        ContextEntry entry);

// init_thread_context() describes the calling thread's own stack.
void init_thread_context(ExecutionContext* ctx);

// release_context() frees sanitizer state of a context that will never run
// again. Must not be called on the running context.
void release_context(ExecutionContext* ctx);

// switch_context() suspends the running context `from` and resumes `to`.
// It returns when some context switches back to `from`, with that
// context's Transfer (whose fctx the receiver must save). `from_exits`
// says `from` will never be resumed. `from` may be null for a context that
// exits and has no record to save into.
Transfer switch_context(ExecutionContext* from, ExecutionContext* to,
                        void* data, bool from_exits);

// hand_over_context() gives the stack that `from` runs on to `to`, a
// context that has never run, without a jump: the caller goes on running
// on the same stack as `to` (switch.cc step 4). For ThreadSanitizer it is a
// switch to a new fiber (and `from`'s is destroyed); AddressSanitizer sees
// no switch, since the stack does not change. `from` is left with no stack
// and nothing to release.
void hand_over_context(ExecutionContext* from, ExecutionContext* to);

// on_context_start() must be the first call in a ContextEntry.
void on_context_start(ExecutionContext* self);

}  // namespace weft::internal
