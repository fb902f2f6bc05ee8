// Context switching over Boost.Context's fcontext, with sanitizer hooks.
//
// Switch protocol (both sanitizers):
//   1. Before the jump, the running context announces the target:
//      ASan __sanitizer_start_switch_fiber(save, target stack), TSan
//      __tsan_switch_to_fiber(target).
//   2. Right after the jump lands (a resumed switch_context() or a new
//      context's entry), ASan __sanitizer_finish_switch_fiber() completes it.
//   A context that exits passes a null fake-stack save slot, so ASan frees
//   its fake stack.
#include "runtime/internal/fiber_context.h"

#include <pthread.h>

#include <boost/context/detail/fcontext.hpp>

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/asan_interface.h>
#include <sanitizer/common_interface_defs.h>
#define WEFT_HAVE_ASAN 1
#endif
#if defined(__SANITIZE_THREAD__)
#include <sanitizer/tsan_interface.h>
#define WEFT_HAVE_TSAN 1
#endif

namespace weft::internal {

namespace bctx = boost::context::detail;

void init_fiber_context(ExecutionContext* ctx, void* bottom, size_t size,
                        ContextEntry entry) {
  ctx->stack_bottom = bottom;
  ctx->stack_size = size;
  ctx->asan_fake_stack = nullptr;
  void* top = static_cast<char*>(bottom) + size;
  // Transfer and transfer_t have the same layout (two pointers).
  static_assert(sizeof(Transfer) == sizeof(bctx::transfer_t));
  ctx->fctx = bctx::make_fcontext(
      top, size, reinterpret_cast<void (*)(bctx::transfer_t)>(reinterpret_cast<void*>(entry)));
#if WEFT_HAVE_TSAN
  ctx->tsan_fiber = __tsan_create_fiber(0);
#endif
#if WEFT_HAVE_ASAN
  __asan_unpoison_memory_region(bottom, size);
#endif
}

void init_thread_context(ExecutionContext* ctx) {
  pthread_attr_t attr;
  void* addr = nullptr;
  size_t size = 0;
  if (pthread_getattr_np(pthread_self(), &attr) == 0) {
    pthread_attr_getstack(&attr, &addr, &size);
    pthread_attr_destroy(&attr);
  }
  ctx->stack_bottom = addr;
  ctx->stack_size = size;
  ctx->fctx = nullptr;
#if WEFT_HAVE_TSAN
  ctx->tsan_fiber = __tsan_get_current_fiber();
#endif
}

void release_context(ExecutionContext* ctx) {
#if WEFT_HAVE_TSAN
  if (ctx->tsan_fiber != nullptr) __tsan_destroy_fiber(ctx->tsan_fiber);
#endif
  ctx->tsan_fiber = nullptr;
}

void hand_over_context(ExecutionContext* from, ExecutionContext* to) {
  to->fctx = nullptr;  // running; saved at its first switch
  to->stack_bottom = from->stack_bottom;
  to->stack_size = from->stack_size;
  to->asan_fake_stack = nullptr;
#if WEFT_HAVE_TSAN
  to->tsan_fiber = __tsan_create_fiber(0);
  __tsan_switch_to_fiber(to->tsan_fiber, 0);
  if (from->tsan_fiber != nullptr) __tsan_destroy_fiber(from->tsan_fiber);
#endif
  from->tsan_fiber = nullptr;
  from->stack_bottom = nullptr;
  from->stack_size = 0;
}

void on_context_start(ExecutionContext* self) {
#if WEFT_HAVE_ASAN
  __sanitizer_finish_switch_fiber(nullptr, nullptr, nullptr);
#endif
  (void)self;
}

Transfer switch_context(ExecutionContext* from, ExecutionContext* to, void* data,
                        bool from_exits) {
#if WEFT_HAVE_ASAN
  __sanitizer_start_switch_fiber(from_exits || from == nullptr ? nullptr : &from->asan_fake_stack,
                                 to->stack_bottom, to->stack_size);
#endif
#if WEFT_HAVE_TSAN
  __tsan_switch_to_fiber(to->tsan_fiber, 0);
#endif
  (void)from_exits;
  bctx::transfer_t t = bctx::jump_fcontext(static_cast<bctx::fcontext_t>(to->fctx), data);
#if WEFT_HAVE_ASAN
  __sanitizer_finish_switch_fiber(from->asan_fake_stack, nullptr, nullptr);
#endif
  return Transfer{t.fctx, t.data};
}

}  // namespace weft::internal
