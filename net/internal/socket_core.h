// net/internal/socket_core.h
//
// SocketCore: one non-blocking socket registered with one worker's poller
// (its owning worker), and the fibers parked on it. Every net type (TCP
// stream and listener, UDP socket) is a thin layer over one SocketCore.
// NOT for users: the public API is net/tcp.h and net/udp.h. docs/io.md
// describes the protocols; the numbered steps are at the top of
// socket_core.cc.
//
// Threads: readiness callbacks (on_io_events, on_io_timeout) run on the
// owning worker. io() and wait() run on any fiber (or plain thread) of
// the runtime; control operations (set_deadline, migrate_to, close) are
// serialized by a fiber mutex. Many fibers may wait in each direction; the
// usual shape is one reader and one writer (full duplex).
#pragma once

#include <sys/epoll.h>
#include <sys/types.h>

#include <atomic>
#include <cstdint>
#include <memory>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "runtime/internal/scheduler.h"
#include "runtime/internal/worker.h"
#include "runtime/internal/spin_lock.h"
#include "runtime/platform/syscall.h"
#include "sync/mutex.h"

namespace weft::internal {

enum class Dir : int { kRead = 0, kWrite = 1 };

// Interest sets. Edge-triggered, registered once per owner (docs/io.md).
// EPOLLPRI: TCP urgent data, which stops a read short (see io()).
inline constexpr uint32_t kReadInterest = EPOLLIN | EPOLLPRI | EPOLLRDHUP | EPOLLET;
inline constexpr uint32_t kDuplexInterest = EPOLLIN | EPOLLPRI | EPOLLOUT | EPOLLRDHUP | EPOLLET;

class alignas(64) SocketCore final : public IoSource {
 public:
  // open() takes ownership of `fd` (non-blocking) and registers it with
  // worker `owner` of `sched` (-1: the calling worker, or worker 0 off the
  // runtime). On failure the fd is closed. `kind` names the socket type in
  // error messages ("TcpStream"). Suspends unless `owner` is the caller's
  // worker.
  static absl::StatusOr<std::unique_ptr<SocketCore>> open(Scheduler* sched, int fd, int owner,
                                                          uint32_t interest, const char* kind);
  ~SocketCore() override;
  SocketCore(const SocketCore&) = delete;
  SocketCore& operator=(const SocketCore&) = delete;

  int fd() const { return fd_; }
  Scheduler* scheduler() const { return sched_; }
  // owner() is the worker whose poller holds the socket now.
  int owner() const { return owner_.load(std::memory_order_acquire); }
  const char* kind() const { return kind_; }
  // closed() is true once close() has begun.
  bool closed() const { return (users_.load(std::memory_order_acquire) & 1) != 0; }
  uint64_t migrations() const { return migrations_.load(std::memory_order_relaxed); }

  // io() runs `op`, a non-blocking system call returning ssize_t (-1 and
  // errno on failure), until it does not fail with EAGAIN; between tries
  // the caller parks on direction `d`. `timeout_nanos` (<0: none) bounds
  // the time this call waits; the socket's own deadline for `d` (see
  // set_deadline) bounds every call. Statuses: the errno of the call
  // (errno_status, naming `what`), kDeadlineExceeded, kFailedPrecondition
  // once closed, kCancelled when a close() wakes the caller. Suspends.
  //
  // `stream_read` is the buffer size of a stream-socket read (0 for
  // anything else). A stream read that returns fewer bytes than asked for
  // emptied the receive queue, so the next such read waits for an edge
  // before its first try instead of spending a system call on EAGAIN (as
  // tokio does). Nothing can be missed: bytes that arrive after that read
  // raise a new edge, which either sets ready_ or wakes the waiter; and
  // if any read edge was dispatched since the short read (to another
  // reader, say, who did not take everything), the next read tries first.
  // End of stream, errors and TCP urgent data are the exception: they stay
  // readable with no new edge (a FIN may come in the same edge as the last
  // bytes; a read stops short at the urgent mark), so once an edge has
  // reported one (hangup_), every read tries first. A skipped try is made
  // up before a read times out.
  template <class Op>
  absl::StatusOr<size_t> io(Dir d, const char* what, int64_t timeout_nanos, Op&& op,
                            size_t stream_read = 0);

  // forget_drained() makes the next stream read try its call first (after
  // a shutdown, whose own edge is not relied on).
  void forget_drained() { drained_mark_.store(0, std::memory_order_relaxed); }

  // wait() parks until direction `d` may be ready: an edge since the last
  // wait, a migration, or a close. kOk means "try the call again".
  // `op_deadline` is monotonic nanos, <0: none. `deadline_ahead`: the
  // caller has just made op_deadline later than the clock (now plus a
  // positive timeout), so wait() need not read the clock again to see
  // whether it has passed (a deadline that passes meanwhile still ends the
  // wait, through the park's timer). Suspends.
  absl::Status wait(Dir d, int64_t op_deadline, const char* what, bool deadline_ahead = false);

  // set_deadline() sets the absolute deadline of direction `d` (Go's
  // SetReadDeadline): once it passes, pending and later calls in that
  // direction fail with kDeadlineExceeded until a new deadline is set.
  // absl::InfiniteFuture() clears it. Armed on the owning worker's timer
  // wheel (SetSocketTimeout / CancelSocketTimeout). Suspends.
  absl::Status set_deadline(Dir d, absl::Time deadline);

  // ensure_write_interest() adds EPOLLOUT to the registration
  // (ModifySocket) the first time a writer must wait. Suspends.
  absl::Status ensure_write_interest();

  // migrate_to() moves the registration to worker `w`: CloseSocket on the
  // old owner, RegisterSocket on the new one, deadlines re-armed, parked
  // fibers woken to retry. Bytes stay in the kernel; readiness that arrives
  // during the move is reported by the new registration. Suspends.
  absl::Status migrate_to(int w);

  // close() wakes every parked fiber (kCancelled), waits until no call is
  // inside the socket, deregisters it and closes the fd. Idempotent; the
  // first close's status is returned to every caller. Suspends.
  absl::Status close();

  // Use: holds the socket open (close() waits for it) while a caller
  // works on the fd directly (shutdown, options, addresses). ok() is false
  // if the socket is closed.
  class Use {
   public:
    explicit Use(SocketCore* s) : s_(s != nullptr && s->acquire() ? s : nullptr) {}
    ~Use() {
      if (s_ != nullptr) s_->release();
    }
    Use(const Use&) = delete;
    Use& operator=(const Use&) = delete;
    bool ok() const { return s_ != nullptr; }

   private:
    SocketCore* s_;
  };

  // Select cases (net/select.h: readable(), writable()); the protocol is
  // "Select readiness" in socket_core.cc.
  // select_hold() keeps the socket open while a select waits on it, as an
  // io() call does (close() wakes the case, then waits for the release);
  // false if it is closed. select_release() ends the hold.
  bool select_hold() { return acquire(); }
  void select_release() { release(); }
  // select_poll() is step 1: true (with *out) if a call in direction `d`
  // would not wait now. A writable case registers EPOLLOUT here, the one
  // step that may suspend. Needs a hold.
  bool select_poll(Dir d, absl::Status* out);
  // select_arm() is step 2: under lock_, either queues w on d (kQueued),
  // or finds d ready and tries to win w's select (kDone: won; kLost).
  enum class SelectArm { kDone, kQueued, kLost };
  SelectArm select_arm(Dir d, Waiter& w);
  // select_disarm() takes w off d's list (no-op if a waker took it).
  void select_disarm(Dir d, Waiter& w);
  // select_result() is what a won case reports: OK (a call in d will not
  // wait), kFailedPrecondition once closed, kDeadlineExceeded once d's
  // deadline has passed. `what` names the case in the message.
  absl::Status select_result(Dir d, const char* what) const;

  // IoSource: run on the owning worker.
  void on_io_events(uint32_t events) override;
  void on_io_timeout(int index) override;

 private:
  SocketCore(Scheduler* sched, int fd, uint32_t interest, const char* kind)
      : fd_(fd), sched_(sched), kind_(kind), interest_(interest) {}

  // A use is an io() call in progress; close() waits for them to end.
  bool acquire() {
    uint32_t v = users_.fetch_add(2, std::memory_order_acq_rel);
    if ((v & 1) == 0) return true;
    release();
    return false;
  }
  // release() ends a use. While the socket is open it is one CAS. Once
  // the closed bit is set, the decrement happens under lock_, where close()
  // checks for the last use, so close() cannot go on (and the socket be
  // destroyed) while a releasing caller still touches it.
  void release() {
    uint32_t v = users_.load(std::memory_order_relaxed);
    while ((v & 1) == 0) {
      if (users_.compare_exchange_weak(v, v - 2, std::memory_order_acq_rel, std::memory_order_relaxed)) {
        return;
      }
    }
    release_closed();
  }
  void release_closed();
  void lock_control_no_throw() ABSL_EXCLUSIVE_LOCK_FUNCTION(ctl_);
  // level_ready() is poll(2) on the fd for direction d: true if a call
  // would not wait (data, room, end of stream, error, hang-up).
  bool level_ready(Dir d) const;
  // wake_dir() wakes d's waiters after a readiness edge or a migration:
  // every plain waiter, and every select case whose direction is ready by
  // level (one that is not stays queued: the edge was stale). If nobody
  // was woken, d keeps a ready token for the next wait().
  void wake_dir(int i, WakeSet& wake) ABSL_EXCLUSIVE_LOCKS_REQUIRED(lock_);
  absl::Status closed_status(const char* what) const;
  // The failures of io() and wait(), built out of line: their strings
  // would otherwise take room in the frames of the hot path, which every
  // parked fiber's stack holds (docs/benchmarks.md, "The stack a parked
  // reader holds"). "<kind>::<what><tail>" with `code`; errno_error() is
  // errno_status() of "<kind>::<what>".
  [[gnu::cold, gnu::noinline]] absl::Status op_error(absl::StatusCode code, const char* what,
                                                     const char* tail) const;
  [[gnu::cold, gnu::noinline]] absl::Status errno_error(int err, const char* what) const;

  // What every read and every readiness edge touch comes first (after the
  // vtable pointer and IoSource's wake hint): the first cache line, and
  // the edge count and short-read mark at the start of the second. The
  // object is aligned to a line, so the dispatch loop prefetches those two
  // lines a few events ahead (worker_io.cc step 3), where a 216-byte object
  // at any 16-byte offset spans three or four.
  std::atomic<uint32_t> users_{0};  // 2 * in-flight calls | closed bit
  const int fd_;
  // Readiness, waiters and deadlines (waiters_ and ready_ here,
  // drain_waiters_ and deadline_ below); callbacks take only this lock.
  SpinLock lock_;
  bool ready_[2] ABSL_GUARDED_BY(lock_) = {false, false};
  std::atomic<bool> expired_[2] = {false, false};  // written under lock_
  // An edge reported EPOLLRDHUP, EPOLLHUP, EPOLLERR or EPOLLPRI; never
  // cleared. Set under lock_ before read_edges_ moves.
  std::atomic<bool> hangup_{false};
  std::atomic<bool> write_interest_{false};
  WaitList waiters_[2] ABSL_GUARDED_BY(lock_);  // [kRead] in the first line
  // Read edges dispatched so far (on_io_events, under lock_).
  std::atomic<uint64_t> read_edges_{0};
  // After a short stream read: read_edges_ + 1 as it was just before that
  // read's recv; 0 otherwise. The next read skips its first try only if no
  // read edge has come since (so it holds for whichever fiber reads next).
  std::atomic<uint64_t> drained_mark_{0};

  Scheduler* const sched_;
  const char* const kind_;
  std::atomic<int> owner_{-1};
  std::atomic<uint64_t> migrations_{0};
  WaitList drain_waiters_ ABSL_GUARDED_BY(lock_);
  int64_t deadline_[2] ABSL_GUARDED_BY(lock_) = {-1, -1};  // monotonic

  // Registration; written under ctl_.
  Mutex ctl_;
  IoToken token_ ABSL_GUARDED_BY(ctl_) = kNoIoToken;
  uint32_t interest_ ABSL_GUARDED_BY(ctl_);
  bool timer_armed_[2] ABSL_GUARDED_BY(ctl_) = {false, false};
  bool fd_closed_ ABSL_GUARDED_BY(ctl_) = false;
  absl::Status close_status_ ABSL_GUARDED_BY(ctl_);
};

// ---------------------------------------------------------------------------

template <class Op>
absl::StatusOr<size_t> SocketCore::io(Dir d, const char* what, int64_t timeout_nanos, Op&& op,
                                      size_t stream_read) {
  if (!acquire()) return closed_status(what);
  struct Release {
    SocketCore* s;
    ~Release() { s->release(); }
  } release{this};
  if (expired_[static_cast<int>(d)].load(std::memory_order_acquire)) {
    return op_error(absl::StatusCode::kDeadlineExceeded, what, ": deadline passed");
  }
  int64_t op_deadline = -1;
  // After a short stream read, wait for an edge before the first try, if
  // no read edge has come since that read.
  bool try_first = true;
  bool skipped = false;
  if (stream_read != 0) {
    const uint64_t mark = drained_mark_.load(std::memory_order_relaxed);
    if (mark != 0) {
      drained_mark_.store(0, std::memory_order_relaxed);
      if (mark == read_edges_.load(std::memory_order_acquire) + 1 &&
          !hangup_.load(std::memory_order_relaxed)) {
        try_first = false;
        skipped = true;
      }
    }
  }
  for (;;) {
    if (try_first) {
      const uint64_t edges = stream_read != 0 ? read_edges_.load(std::memory_order_acquire) : 0;
      ssize_t n = op();
      if (n >= 0) {
        if (stream_read != 0 && n > 0 && static_cast<size_t>(n) < stream_read) {
          drained_mark_.store(edges + 1, std::memory_order_relaxed);
        }
        return static_cast<size_t>(n);
      }
      int err = last_errno();
      if (err == EINTR) continue;
      if (err != EAGAIN && err != EWOULDBLOCK) {
        return errno_error(err, what);
      }
    }
    try_first = true;
    if (d == Dir::kWrite && !write_interest_.load(std::memory_order_acquire)) {
      absl::Status st = ensure_write_interest();
      if (!st.ok()) return st;
    }
    // The first wait reads the clock once, to make the call's deadline;
    // the wait after a wake-up that found nothing checks it again.
    bool deadline_ahead = false;
    if (timeout_nanos >= 0 && op_deadline < 0) {
      // A timeout too long to add to the clock (absl::InfiniteDuration()
      // saturates to INT64_MAX nanoseconds) is no deadline at all.
      const int64_t now = monotonic_now();
      op_deadline = timeout_nanos > INT64_MAX - now ? -1 : now + timeout_nanos;
      deadline_ahead = timeout_nanos > 0;
    }
    absl::Status st = wait(d, op_deadline, what, deadline_ahead);
    if (!st.ok()) {
      // A read that skipped its first try must not time out without one:
      // the bytes may have been there all along, their edge not yet
      // dispatched by a busy owner (or a zero timeout).
      if (skipped && st.code() == absl::StatusCode::kDeadlineExceeded) {
        skipped = false;
        ssize_t n = op();
        if (n >= 0) return static_cast<size_t>(n);  // not a new short-read mark: a deadline run
        int err = last_errno();
        if (err != EAGAIN && err != EWOULDBLOCK && err != EINTR) {
          return errno_error(err, what);
        }
      }
      return st;
    }
  }
}

}  // namespace weft::internal
