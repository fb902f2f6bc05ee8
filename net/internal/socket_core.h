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
#include "runtime/internal/spin_lock.h"
#include "runtime/platform/syscall.h"
#include "sync/mutex.h"

namespace weft::internal {

enum class Dir : int { kRead = 0, kWrite = 1 };

// Interest sets. Edge-triggered, registered once per owner (docs/io.md).
inline constexpr uint32_t kReadInterest = EPOLLIN | EPOLLRDHUP | EPOLLET;
inline constexpr uint32_t kDuplexInterest = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET;

class SocketCore final : public IoSource {
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
  // (ErrnoStatus, naming `what`), kDeadlineExceeded, kFailedPrecondition
  // once closed, kCancelled when a close() wakes the caller. Suspends.
  //
  // `stream_read` is the buffer size of a stream-socket read (0 for
  // anything else). A stream read that returns fewer bytes than asked for
  // emptied the receive queue, so the next such read waits for an edge
  // before its first try instead of spending a system call on EAGAIN (as
  // tokio does). Nothing can be missed: bytes that arrive after that read
  // raise a new edge, which either sets ready_ or wakes the waiter. End of
  // stream and errors are the exception: they stay readable with no new
  // edge (the FIN may have come in the same edge as the last bytes), so once
  // an edge has reported one (hangup_), every read tries first.
  template <class Op>
  absl::StatusOr<size_t> io(Dir d, const char* what, int64_t timeout_nanos, Op&& op,
                            size_t stream_read = 0);

  // forget_drained() makes the next stream read try its call first (after
  // a shutdown, whose own edge is not relied on).
  void forget_drained() { drained_.store(false, std::memory_order_relaxed); }

  // wait() parks until direction `d` may be ready: an edge since the last
  // wait, a migration, or a close. kOk means "try the call again".
  // `op_deadline` is monotonic nanos, <0: none. Suspends.
  absl::Status wait(Dir d, int64_t op_deadline, const char* what);

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

  // IoSource: run on the owning worker.
  void on_io_events(uint32_t events) override;
  void on_io_timeout(int index) override;

 private:
  SocketCore(Scheduler* sched, int fd, uint32_t interest, const char* kind)
      : sched_(sched), fd_(fd), kind_(kind), interest_(interest) {}

  // A use is an io() call in progress; close() waits for them to end.
  bool acquire() {
    uint32_t v = users_.fetch_add(2, std::memory_order_acq_rel);
    if ((v & 1) == 0) return true;
    release();
    return false;
  }
  void release() {
    if (users_.fetch_sub(2, std::memory_order_acq_rel) == 3) drained();
  }
  void drained();
  void lock_control_no_throw() ABSL_EXCLUSIVE_LOCK_FUNCTION(ctl_);
  absl::Status closed_status(const char* what) const;

  Scheduler* const sched_;
  const int fd_;
  const char* const kind_;
  std::atomic<int> owner_{-1};
  std::atomic<uint32_t> users_{0};  // 2 * in-flight calls | closed bit
  std::atomic<uint64_t> migrations_{0};

  // Readiness, waiters and deadlines; callbacks take only this lock.
  SpinLock lock_;
  bool ready_[2] ABSL_GUARDED_BY(lock_) = {false, false};
  WaitList waiters_[2] ABSL_GUARDED_BY(lock_);
  WaitList drain_waiters_ ABSL_GUARDED_BY(lock_);
  int64_t deadline_[2] ABSL_GUARDED_BY(lock_) = {-1, -1};  // monotonic
  std::atomic<bool> expired_[2] = {false, false};          // written under lock_

  // Registration; written under ctl_.
  Mutex ctl_;
  IoToken token_ ABSL_GUARDED_BY(ctl_) = kNoIoToken;
  uint32_t interest_ ABSL_GUARDED_BY(ctl_);
  bool timer_armed_[2] ABSL_GUARDED_BY(ctl_) = {false, false};
  bool fd_closed_ ABSL_GUARDED_BY(ctl_) = false;
  absl::Status close_status_ ABSL_GUARDED_BY(ctl_);
  std::atomic<bool> write_interest_{false};
  // The last stream read was short: the receive queue was empty after it.
  std::atomic<bool> drained_{false};
  // An edge reported EPOLLRDHUP, EPOLLHUP or EPOLLERR; never cleared.
  std::atomic<bool> hangup_{false};
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
    return absl::DeadlineExceededError(std::string(kind_) + "::" + what + ": deadline passed");
  }
  int64_t op_deadline = -1;
  // After a short stream read, wait for an edge before the first try.
  bool try_first = true;
  if (stream_read != 0 && drained_.load(std::memory_order_relaxed) &&
      !hangup_.load(std::memory_order_relaxed)) {
    drained_.store(false, std::memory_order_relaxed);
    try_first = false;
  }
  for (;;) {
    if (try_first) {
      ssize_t n = op();
      if (n >= 0) {
        if (stream_read != 0 && n > 0 && static_cast<size_t>(n) < stream_read) {
          drained_.store(true, std::memory_order_relaxed);
        }
        return static_cast<size_t>(n);
      }
      int err = LastErrno();
      if (err == EINTR) continue;
      if (err != EAGAIN && err != EWOULDBLOCK) {
        return ErrnoStatus(err, std::string(kind_) + "::" + what);
      }
    }
    try_first = true;
    if (d == Dir::kWrite && !write_interest_.load(std::memory_order_acquire)) {
      absl::Status st = ensure_write_interest();
      if (!st.ok()) return st;
    }
    if (timeout_nanos >= 0 && op_deadline < 0) op_deadline = monotonic_now() + timeout_nanos;
    absl::Status st = wait(d, op_deadline, what);
    if (!st.ok()) return st;
  }
}

}  // namespace weft::internal
