// signal/signal.cc
//
// The rules users see are in signal.h. How they are carried out:
//
//   1. Reservation (open): under g_mu, for each signal whose listener count
//      goes 0 -> 1, clear its forwarded count, then swap in forward() with
//      sigaction, saving the old disposition; publish the reserved set to
//      runtime/platform/signal_mask, which weft's threads apply at their
//      next turn. Then the opening thread holds the signals blocked.
//   2. Each set owns a signalfd, an eventfd `cancel` and an epoll instance
//      `poll_fd` that watches both and the process-wide eventfd `g_bell`,
//      all edge-triggered. poll_fd is what recv() registers with a worker's
//      poller, so one registration wakes the fiber for any of three causes:
//      a signal pending for the process, a forwarded signal, a close().
//   3. forward() runs on a thread that does not block a reserved signal:
//      it bumps g_forwarded[sig] and writes g_bell (both async-signal-safe).
//   4. recv(): try_take() drains poll_fd's ready list (epoll_wait, no
//      wait), then takes a forwarded count (CAS) or reads one siginfo from
//      the signalfd. If it found nothing, the fiber registers a dup of
//      poll_fd with its worker (SocketCore, edge-triggered), parks until
//      an edge, and tries again; the registration ends with the call. A
//      signal that arrives between the try and the park raises an edge
//      that SocketCore keeps, so it is not slept through.
//   5. Release (close): mark the set closed and write `cancel` (parked
//      fibers wake and return kCancelled). Under g_mu, for each signal
//      whose count goes 1 -> 0: restore the saved disposition, discard what
//      is pending for the process through a temporary signalfd, clear the
//      forwarded count, and publish the smaller reserved set. The opening
//      thread unblocks what it held in the first close() or destructor that
//      runs on it.
#include "signal/signal.h"

#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <mutex>
#include <string>
#include <thread>
#include <utility>

#include "absl/base/thread_annotations.h"
#include "net/internal/socket_core.h"
#include "runtime/platform/check.h"
#include "runtime/platform/signal_mask.h"
#include "runtime/platform/syscall.h"
#include "runtime/runtime.h"

namespace weft::signal {

using internal::errno_status;

namespace {

constexpr int kMaxSignal = 64;

uint64_t bit(int sig) { return uint64_t{1} << (sig - 1); }

template <class Fn>
void for_each_signal(uint64_t bits, Fn&& fn) {
  for (int sig = 1; sig <= kMaxSignal; ++sig) {
    if (bits & bit(sig)) fn(sig);
  }
}

std::string signal_name(int sig) {
  const char* abbrev = (sig >= 1 && sig < SIGRTMIN) ? ::sigabbrev_np(sig) : nullptr;
  if (abbrev != nullptr) return std::string("SIG") + abbrev;
  if (sig >= SIGRTMIN && sig <= SIGRTMAX) return "SIGRTMIN+" + std::to_string(sig - SIGRTMIN);
  return "signal " + std::to_string(sig);
}

absl::Status check_signal(int sig) {
  const char* why = nullptr;
  if (sig < 1 || sig > kMaxSignal || sig > SIGRTMAX) {
    why = "no such signal";
  } else if (sig == SIGKILL || sig == SIGSTOP) {
    why = "it cannot be caught or blocked";
  } else if (sig == SIGSEGV || sig == SIGBUS || sig == SIGFPE || sig == SIGILL || sig == SIGTRAP ||
             sig == SIGSYS || sig == SIGABRT) {
    why = "it reports a fault of the thread that raises it";
  } else if (sig > SIGSYS && sig < SIGRTMIN) {
    why = "the C library uses it";
  } else if (sig == SIGRTMIN + 7) {
    why = "the runtime uses it for backtraces";
  }
  if (why == nullptr) return absl::OkStatus();
  return absl::InvalidArgumentError("weft::signal: cannot receive " + signal_name(sig) + ": " + why);
}

// --- the process-wide registry (steps 1, 3, 5) ---

std::mutex g_mu;
int g_listeners[kMaxSignal + 1] ABSL_GUARDED_BY(g_mu) = {};
struct sigaction g_saved[kMaxSignal + 1] ABSL_GUARDED_BY(g_mu);
uint64_t g_reserved ABSL_GUARDED_BY(g_mu) = 0;
// Forwarded, not yet received, per signal; written by forward().
std::atomic<uint32_t> g_forwarded[kMaxSignal + 1] = {};
// Written by forward() after a count; created once, never closed, so a
// handler still running on another thread never writes a stale fd.
std::atomic<int> g_bell{-1};

// forward(): step 3. Async-signal-safe.
void forward(int sig, siginfo_t*, void*) {
  const int saved_errno = errno;
  if (sig >= 1 && sig <= kMaxSignal) g_forwarded[sig].fetch_add(1, std::memory_order_release);
  const int bell = g_bell.load(std::memory_order_acquire);
  if (bell >= 0) {
    const uint64_t one = 1;
    (void)!::write(bell, &one, sizeof one);
  }
  errno = saved_errno;
}

// discard_pending() reads away what is pending for the process (and the
// calling thread) of `bits`: step 5.
void discard_pending(uint64_t bits) {
  sigset_t set;
  sigemptyset(&set);
  for_each_signal(bits, [&](int sig) { sigaddset(&set, sig); });
  const int fd = ::signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
  if (fd < 0) return;
  signalfd_siginfo buf[8];
  while (::read(fd, buf, sizeof buf) > 0) {
  }
  ::close(fd);
}

absl::Status reserve(uint64_t bits) {
  std::lock_guard<std::mutex> g(g_mu);
  if (g_bell.load(std::memory_order_relaxed) < 0) {
    const int bell = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (bell < 0) return errno_status(errno, "weft::signal: eventfd");
    g_bell.store(bell, std::memory_order_release);
  }
  uint64_t installed = 0;
  absl::Status st;
  for_each_signal(bits, [&](int sig) {
    if (!st.ok() || g_listeners[sig] != 0) return;
    g_forwarded[sig].store(0, std::memory_order_relaxed);
    struct sigaction sa = {};
    sa.sa_sigaction = forward;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_SIGINFO | SA_RESTART | SA_ONSTACK;
    if (::sigaction(sig, &sa, &g_saved[sig]) != 0) {
      st = errno_status(errno, "weft::signal: sigaction(" + signal_name(sig) + ")");
      return;
    }
    installed |= bit(sig);
  });
  if (!st.ok()) {
    for_each_signal(installed, [&](int sig) { ::sigaction(sig, &g_saved[sig], nullptr); });
    return st;
  }
  for_each_signal(bits, [&](int sig) { ++g_listeners[sig]; });
  g_reserved |= bits;
  internal::set_reserved_signals(g_reserved);
  return absl::OkStatus();
}

void release(uint64_t bits) {
  std::lock_guard<std::mutex> g(g_mu);
  uint64_t last = 0;
  for_each_signal(bits, [&](int sig) {
    if (g_listeners[sig] > 0 && --g_listeners[sig] == 0) {
      ::sigaction(sig, &g_saved[sig], nullptr);
      last |= bit(sig);
    }
  });
  if (last == 0) return;
  discard_pending(last);
  for_each_signal(last, [&](int sig) { g_forwarded[sig].store(0, std::memory_order_relaxed); });
  g_reserved &= ~last;
  internal::set_reserved_signals(g_reserved);
}

}  // namespace

// --- SignalSet ---

struct SignalSet::State {
  uint64_t bits = 0;
  int signal_fd = -1;
  int cancel_fd = -1;
  int poll_fd = -1;
  pthread_t opener{};
  bool held = false;  // the opener still holds the signals (under close_mu)
  std::atomic<bool> closed{false};
  std::atomic<int> receivers{0};  // fibers inside receive()
  std::mutex close_mu;

  ~State() {
    for (int fd : {signal_fd, cancel_fd, poll_fd}) {
      if (fd >= 0) ::close(fd);
    }
  }

  // try_take(): step 4's try. A signal number, 0 for none, or -errno.
  int try_take() {
    epoll_event events[4];
    (void)::epoll_wait(poll_fd, events, 4, 0);  // clear the edges seen so far
    if (closed.load(std::memory_order_acquire)) return -ECANCELED;
    int taken = 0;
    for_each_signal(bits, [&](int sig) {
      if (taken != 0) return;
      uint32_t n = g_forwarded[sig].load(std::memory_order_acquire);
      while (n > 0 && !g_forwarded[sig].compare_exchange_weak(n, n - 1, std::memory_order_acq_rel)) {
      }
      if (n > 0) taken = sig;
    });
    if (taken != 0) return taken;
    signalfd_siginfo info;
    const ssize_t r = internal::retry_on_eintr([&] { return ::read(signal_fd, &info, sizeof info); });
    if (r == static_cast<ssize_t>(sizeof info)) return static_cast<int>(info.ssi_signo);
    if (r < 0) {
      const int err = internal::last_errno();
      return err == EAGAIN ? 0 : -err;
    }
    return -EIO;  // a short read: not something signalfd does
  }
};

absl::StatusOr<SignalSet> SignalSet::open(std::initializer_list<int> signals) {
  return open(std::span<const int>(signals.begin(), signals.size()));
}

absl::StatusOr<SignalSet> SignalSet::open(std::span<const int> signals) {
  if (signals.empty()) return absl::InvalidArgumentError("weft::signal::SignalSet::open: no signals");
  uint64_t bits = 0;
  for (int sig : signals) {
    absl::Status st = check_signal(sig);
    if (!st.ok()) return st;
    bits |= bit(sig);
  }
  auto state = std::make_unique<State>();
  state->bits = bits;
  state->opener = ::pthread_self();

  absl::Status st = reserve(bits);  // step 1
  if (!st.ok()) return st;
  internal::hold_signals_in_this_thread(bits);
  state->held = true;
  auto fail = [&](const char* call) {
    absl::Status s = errno_status(errno, std::string("weft::signal::SignalSet::open: ") + call);
    internal::release_signals_in_this_thread(bits);
    release(bits);
    return s;
  };

  // Step 2.
  sigset_t set;
  sigemptyset(&set);
  for_each_signal(bits, [&](int sig) { sigaddset(&set, sig); });
  state->signal_fd = ::signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
  if (state->signal_fd < 0) return fail("signalfd");
  state->cancel_fd = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (state->cancel_fd < 0) return fail("eventfd");
  state->poll_fd = ::epoll_create1(EPOLL_CLOEXEC);
  if (state->poll_fd < 0) return fail("epoll_create1");
  for (int fd : {state->signal_fd, state->cancel_fd, g_bell.load(std::memory_order_acquire)}) {
    epoll_event ev = {};
    ev.events = EPOLLIN | EPOLLET;
    ev.data.fd = fd;
    if (::epoll_ctl(state->poll_fd, EPOLL_CTL_ADD, fd, &ev) != 0) return fail("epoll_ctl");
  }
  SignalSet out;
  out.state_ = std::move(state);
  return out;
}

SignalSet::SignalSet() = default;
SignalSet::SignalSet(SignalSet&&) noexcept = default;

SignalSet& SignalSet::operator=(SignalSet&& o) noexcept {
  if (this != &o) {
    reset();
    state_ = std::move(o.state_);
  }
  return *this;
}

SignalSet::~SignalSet() { reset(); }

void SignalSet::reset() {
  if (!state_) return;
  close();
  // Fibers woken by close() may still be on their way out of receive().
  while (state_->receivers.load(std::memory_order_acquire) != 0) {
    if (this_fiber::on_fiber()) {
      this_fiber::yield();
    } else {
      std::this_thread::yield();
    }
  }
  state_.reset();
}

bool SignalSet::contains(int sig) const {
  return state_ && sig >= 1 && sig <= kMaxSignal && (state_->bits & bit(sig)) != 0;
}

bool SignalSet::is_open() const { return state_ && !state_->closed.load(std::memory_order_acquire); }

void SignalSet::close() {
  if (!state_) return;
  State& s = *state_;
  std::lock_guard<std::mutex> g(s.close_mu);
  if (!s.closed.exchange(true, std::memory_order_acq_rel)) {
    const uint64_t one = 1;
    (void)!::write(s.cancel_fd, &one, sizeof one);  // step 5: wake the receivers
    release(s.bits);
  }
  if (s.held && ::pthread_equal(::pthread_self(), s.opener)) {
    s.held = false;
    internal::release_signals_in_this_thread(s.bits);
  } else {
    internal::sync_thread_signal_mask();  // on a weft thread: follow the smaller set
  }
}

absl::StatusOr<int> SignalSet::try_recv() {
  if (!state_) return absl::FailedPreconditionError("weft::signal::SignalSet::try_recv: empty set");
  const int r = state_->try_take();
  if (r > 0) return r;
  if (r == -ECANCELED) return absl::CancelledError("weft::signal::SignalSet::try_recv: closed");
  if (r < 0) return errno_status(-r, "weft::signal::SignalSet::try_recv: read(signalfd)");
  return absl::UnavailableError("weft::signal::SignalSet::try_recv: no signal");
}

absl::StatusOr<int> SignalSet::recv() { return receive(-1, "recv"); }

absl::StatusOr<int> SignalSet::recv_for(absl::Duration timeout) {
  if (timeout < absl::ZeroDuration()) timeout = absl::ZeroDuration();
  return receive(absl::ToInt64Nanoseconds(timeout), "recv_for");
}

absl::StatusOr<int> SignalSet::receive(int64_t timeout_nanos, const char* what) {
  WEFT_CHECK(this_fiber::on_fiber(), "weft::signal::SignalSet::%s() must be called on a fiber", what);
  const std::string where = std::string("weft::signal::SignalSet::") + what;
  if (!state_) return absl::FailedPreconditionError(where + ": empty set");
  State& s = *state_;
  s.receivers.fetch_add(1, std::memory_order_acq_rel);
  struct Leave {
    State& s;
    ~Leave() { s.receivers.fetch_sub(1, std::memory_order_acq_rel); }
  } leave{s};
  auto result = [&](int r) -> absl::StatusOr<int> {
    if (r > 0) return r;
    if (r == -ECANCELED) return absl::CancelledError(where + ": closed");
    return errno_status(-r, where + ": read(signalfd)");
  };
  const int first = s.try_take();
  if (first != 0) return result(first);
  // Step 4: register with this worker for the length of the wait.
  internal::Scheduler* sched = internal::current_scheduler_or_die("weft::signal::SignalSet::recv");
  const int dup = ::fcntl(s.poll_fd, F_DUPFD_CLOEXEC, 3);
  if (dup < 0) return errno_status(errno, where + ": fcntl(F_DUPFD_CLOEXEC)");
  auto core = internal::SocketCore::open(sched, dup, -1, internal::kReadInterest, "SignalSet");
  if (!core.ok()) return core.status();
  int got = 0;
  auto n = (*core)->io(internal::Dir::kRead, what, timeout_nanos, [&]() -> ssize_t {
    got = s.try_take();
    if (got != 0) return 0;
    errno = EAGAIN;
    return -1;
  });
  (void)(*core)->close();
  if (!n.ok()) return n.status();
  return result(got);
}

absl::StatusOr<int> wait(std::initializer_list<int> signals) {
  return wait(std::span<const int>(signals.begin(), signals.size()));
}

absl::StatusOr<int> wait(std::span<const int> signals) {
  WEFT_CHECK(this_fiber::on_fiber(), "weft::signal::wait() must be called on a fiber");
  auto set = SignalSet::open(signals);
  if (!set.ok()) return set.status();
  return set->recv();
}

}  // namespace weft::signal
