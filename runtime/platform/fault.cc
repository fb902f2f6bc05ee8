#include "runtime/platform/fault.h"

#include <errno.h>
#include <execinfo.h>
#include <signal.h>
#include <sys/mman.h>
#include <unistd.h>

#include <atomic>
#include <cstring>
#include <mutex>

namespace weft::internal {

namespace {

struct sigaction g_prev_segv;
std::atomic<GuardFaultReporter> g_reporter{nullptr};

[[maybe_unused]] void segv_handler(int sig, siginfo_t* info, void* uctx) {
  GuardFaultReporter report = g_reporter.load(std::memory_order_acquire);
  char buf[160];
  if (report != nullptr && report(info->si_addr, buf, sizeof(buf))) {
    (void)!::write(STDERR_FILENO, buf, std::strlen(buf));
    ::signal(SIGABRT, SIG_DFL);
    ::abort();
  }
  // Not ours: restore the previous disposition and let the fault recur.
  ::sigaction(SIGSEGV, &g_prev_segv, nullptr);
  (void)sig;
  (void)uctx;
}

}  // namespace

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
bool backtraces_supported() { return false; }
void install_backtrace_handler() {}
bool request_backtrace(pthread_t, const char*) { return false; }
#else
namespace {
const int kBacktraceSignal = SIGRTMIN + 7;
// One request at a time: the header the handler prints.
std::atomic<const char*> g_backtrace_header{nullptr};

void backtrace_handler(int, siginfo_t*, void*) {
  int saved = errno;
  const char* header = g_backtrace_header.exchange(nullptr, std::memory_order_acq_rel);
  if (header != nullptr) {
    void* frames[48];
    int n = ::backtrace(frames, 48);
    (void)!::write(STDERR_FILENO, header, std::strlen(header));
    ::backtrace_symbols_fd(frames, n, STDERR_FILENO);
  }
  errno = saved;
}
}  // namespace

bool backtraces_supported() { return true; }

void install_backtrace_handler() {
  static std::once_flag once;
  std::call_once(once, [] {
    void* warm[1];
    ::backtrace(warm, 1);  // loads the unwinder now: the handler must not allocate
    struct sigaction sa;
    std::memset(&sa, 0, sizeof(sa));
    sa.sa_sigaction = backtrace_handler;
    sa.sa_flags = SA_SIGINFO | SA_ONSTACK | SA_RESTART;
    sigemptyset(&sa.sa_mask);
    ::sigaction(kBacktraceSignal, &sa, nullptr);
  });
}

bool request_backtrace(pthread_t thread, const char* header) {
  const char* expected = nullptr;
  if (!g_backtrace_header.compare_exchange_strong(expected, header, std::memory_order_acq_rel)) {
    return false;  // one is in flight
  }
  if (::pthread_kill(thread, kBacktraceSignal) != 0) {
    g_backtrace_header.store(nullptr, std::memory_order_release);
    return false;
  }
  return true;
}
#endif

void install_stack_overflow_handler(GuardFaultReporter reporter) {
#if !defined(__SANITIZE_ADDRESS__)
  static std::mutex mu;
  std::lock_guard<std::mutex> g(mu);
  g_reporter.store(reporter, std::memory_order_release);
  struct sigaction cur;
  if (::sigaction(SIGSEGV, nullptr, &cur) == 0 && (cur.sa_flags & SA_SIGINFO) &&
      cur.sa_sigaction == segv_handler) {
    return;
  }
  struct sigaction sa;
  std::memset(&sa, 0, sizeof(sa));
  sa.sa_sigaction = segv_handler;
  sa.sa_flags = SA_SIGINFO | SA_ONSTACK;
  sigemptyset(&sa.sa_mask);
  ::sigaction(SIGSEGV, &sa, &g_prev_segv);
#else
  (void)reporter;
#endif
}

AltSignalStack::AltSignalStack() {
  void* mem = ::mmap(nullptr, kSize, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (mem == MAP_FAILED) return;
  mem_ = mem;
  stack_t ss{};
  ss.ss_sp = mem_;
  ss.ss_size = kSize;
  ::sigaltstack(&ss, nullptr);
}

AltSignalStack::~AltSignalStack() {
  if (mem_ == nullptr) return;
  stack_t ss{};
  ss.ss_flags = SS_DISABLE;
  ::sigaltstack(&ss, nullptr);
  ::munmap(mem_, kSize);
}

}  // namespace weft::internal
