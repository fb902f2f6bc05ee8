// runtime/platform/fault.h
//
// Stack-overflow reporting for fiber stacks: a SIGSEGV handler that runs on
// a per-thread alternate signal stack, asks the runtime whether the faulting
// address lies in the running fiber's guard page, and if so prints a report
// naming the fiber and aborts. Any other fault is passed on to the handler
// that was installed before. NOT for users.
#pragma once

#include <pthread.h>

#include <cstddef>

namespace weft::internal {

// GuardFaultReporter: called in the signal handler with the faulting
// address. Returns true (after writing up to `len` bytes of report into
// `buf`, NUL-terminated) when the address is in the current fiber's guard
// page. Must be async-signal-safe.
using GuardFaultReporter = bool (*)(void* addr, char* buf, size_t len);

// install_stack_overflow_handler() installs the SIGSEGV handler once per
// process (later calls are no-ops while it is still installed). A handler
// set in between, by a test framework say, is chained to. Does nothing
// under AddressSanitizer, which reports overflows itself.
void install_stack_overflow_handler(GuardFaultReporter reporter);

// Backtraces of another thread, for reports of a stuck worker in debug
// builds: install_backtrace_handler() installs a handler for
// kBacktraceSignal that writes the receiving thread's backtrace to stderr,
// under a header line; request_backtrace() sends it to a thread. The signal
// interrupts a system call the thread is blocked in; calls that restart
// (SA_RESTART) do, others (sleeps, epoll_wait) return EINTR. Not available
// under the sanitizers, which intercept signals: request_backtrace()
// returns false there.
bool backtraces_supported();
void install_backtrace_handler();
bool request_backtrace(pthread_t thread, const char* header);

// AltSignalStack: an alternate signal stack for the calling thread, so the
// handler can run when a fiber stack is exhausted. Construct it on the
// thread that needs it; the destructor disables and frees it.
class AltSignalStack {
 public:
  AltSignalStack();
  ~AltSignalStack();
  AltSignalStack(const AltSignalStack&) = delete;
  AltSignalStack& operator=(const AltSignalStack&) = delete;

 private:
  void* mem_ = nullptr;
  static constexpr size_t kSize = 64 * 1024;
};

}  // namespace weft::internal
