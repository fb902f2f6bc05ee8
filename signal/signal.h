// signal/signal.h
//
// weft::signal: POSIX signals received on a fiber. A SignalSet is a
// listener you keep open and recv() from as often as you like; a signal
// that arrives while no fiber waits stays pending in the kernel until the
// next recv(), so none is lost between two waits. wait() is the one-shot
// form.
//
//   auto sigs = weft::signal::SignalSet::open({SIGINT, SIGTERM});  // in main, first
//   auto rt = weft::Runtime::create();
//   (*rt)->block_on([&] {
//     auto sig = sigs->recv();            // parks the fiber, not the worker
//     std::printf("got %d\n", *sig);
//   });
//
// How it works: each SignalSet owns a signalfd for its signals. recv()
// registers it, edge-triggered, with the calling worker's poller for the
// length of the wait (the machinery net/ sockets use), so a waiting fiber
// costs no thread. The kernel reports a signal through a signalfd only if
// every thread of the process blocks it; the rules below arrange that.
//
// The rules, step by step:
//   1. SignalSet::open() reserves its signals. On the first reservation of
//      a signal, weft saves the process's disposition for it (handler,
//      SIG_DFL or SIG_IGN) and installs a forwarding handler in its place.
//   2. The thread that calls open() blocks the signals (if it is not one of
//      weft's threads) until the set is closed on that thread. Threads
//      started afterwards inherit the block: this is why open() belongs in
//      main, before the runtime and your own threads start.
//   3. Every thread weft starts (workers, the monitor, blocking-pool
//      threads) blocks every reserved signal: a new one from its start, a
//      running one from the next turn of its loop.
//   4. A reserved signal that still lands on a thread that does not block
//      it (a worker that has not yet taken step 3, the main thread waiting
//      in block_on() when the set was opened on a fiber, a thread of your
//      own) runs the forwarding handler, which counts it for the sets and
//      wakes them. So while a set exists, its signals never take their
//      default action (SIGTERM does not kill the process). Under
//      ThreadSanitizer that handler can run late (TSan defers handlers to
//      its next interceptor in the receiving thread): follow step 2.
//   5. Each signal goes to one receiver: of all the open sets that contain
//      it and all the fibers in recv() on them, the first to look takes it.
//      Sets are not a broadcast; to fan a signal out, receive it in one
//      fiber and set a weft::Event.
//   6. Signals of one number coalesce in the kernel: two SIGUSR1 sent
//      before anyone receives may be received once.
//   7. SignalSet::close() (or the destructor) releases the reservation. On
//      the last release of a signal, weft restores the saved disposition,
//      discards the instances still pending for the process (they arrived
//      while the signal was weft's), and then each of weft's threads
//      unblocks it at its next turn; the opening thread unblocks it in
//      the first close() or destructor that runs on that thread. Afterwards the signal
//      behaves as before: a handler the program installed is called again,
//      SIGTERM's default kills the process. A runtime being destroyed
//      takes its threads' masks with them.
//
// Limits:
//   - raise(), pthread_kill() and tgkill() aim a signal at one thread. If
//     that thread blocks it (steps 2-3), the signal waits on that thread
//     alone and a signalfd read elsewhere never sees it. Signal your own
//     process with kill(getpid(), sig).
//   - A thread you start while a set is open inherits the block and keeps
//     it after the set is closed.
//   - Not SIGKILL and SIGSTOP (nobody can), not the fault signals (SIGSEGV,
//     SIGBUS, SIGFPE, SIGILL, SIGTRAP, SIGSYS, SIGABRT), not signals 32-33
//     (glibc's) nor SIGRTMIN+7 (the runtime's backtrace requests): open()
//     returns kInvalidArgument for them.
//
// Threads: open(), try_recv() and close() work on any thread. recv(),
// recv_for() and wait() must run on a fiber and abort (WEFT_CHECK)
// elsewhere. Several fibers may recv() on one set at once (step 5).
#pragma once

#include <cstdint>
#include <initializer_list>
#include <memory>
#include <span>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace weft::signal {

class SignalSet {
 public:
  // SignalSet::open()
  //
  // Reserves `signals` (steps 1-2) and opens a signalfd for them. Errors:
  // kInvalidArgument for an empty list or a signal that cannot be received
  // (see Limits); the errno of signalfd, epoll_create1, eventfd or
  // sigaction otherwise, naming the call. Any thread; does not suspend.
  static absl::StatusOr<SignalSet> open(std::initializer_list<int> signals);
  static absl::StatusOr<SignalSet> open(std::span<const int> signals);

  // An empty set: recv() on it returns kFailedPrecondition.
  SignalSet();
  SignalSet(SignalSet&&) noexcept;
  SignalSet& operator=(SignalSet&&) noexcept;
  // Closes the set, then waits (yielding, on a fiber) for the fibers that
  // were in recv() on it to return kCancelled.
  ~SignalSet();

  // SignalSet::recv()
  //
  // Returns the number of the next signal of the set, parking the fiber
  // until one arrives. kCancelled once the set is closed (also for a fiber
  // already parked here); kFailedPrecondition on an empty set. Must be
  // called on a fiber. Suspends.
  absl::StatusOr<int> recv();

  // SignalSet::recv_for()
  //
  // recv() that gives up after `timeout` with kDeadlineExceeded;
  // absl::InfiniteDuration() (or any timeout too long to reach) waits like
  // recv(). Must be called on a fiber. Suspends.
  absl::StatusOr<int> recv_for(absl::Duration timeout);

  // SignalSet::try_recv()
  //
  // A signal that has already arrived, or kUnavailable. Any thread; does
  // not suspend.
  absl::StatusOr<int> try_recv();

  // SignalSet::close()
  //
  // Releases the reservation (step 7) and wakes every fiber parked in
  // recv() with kCancelled. Idempotent. Any thread. The signals are
  // unblocked in the thread that opened the set by the first close() or
  // destructor that runs on that thread (so closing on a fiber and
  // destroying in main does both). Does not suspend.
  void close();

  // contains() is true if `sig` is one of the set's signals.
  bool contains(int sig) const;
  bool is_open() const;

  struct State;  // signal.cc

 private:
  absl::StatusOr<int> receive(int64_t timeout_nanos, const char* what);
  // reset() closes the set, waits for the fibers still inside receive() to
  // leave, and frees it.
  void reset();
  std::unique_ptr<State> state_;
};

// weft::signal::wait()
//
// Opens a SignalSet for `signals`, waits for one of them and returns its
// number. A signal sent before the call is seen only if some set already
// reserved it (otherwise it took its ordinary disposition); to wait
// repeatedly, keep a SignalSet open. Must be called on a fiber. Suspends.
absl::StatusOr<int> wait(std::initializer_list<int> signals);
absl::StatusOr<int> wait(std::span<const int> signals);

}  // namespace weft::signal
