// SocketCore: readiness, parking, deadlines, close and migration of one
// socket. See docs/io.md.
//
// # Readiness (edge-triggered, a token per direction, as Go's pollDesc)
//   1. A caller tries the system call first. On EAGAIN it parks with
//      wait(d): under lock_, a ready token left by an earlier edge is
//      consumed (retry at once); otherwise it queues a Waiter and parks.
//   2. on_io_events() runs on the owning worker for each edge. Under
//      lock_ it wakes every waiter of each direction the edge concerns, or,
//      if none waits, leaves that direction's token. Woken callers retry
//      the call; one that finds EAGAIN parks again.
//   So an edge is never lost: it either finds a waiter or leaves a token,
//   and both are decided under the same lock as the waiter's check.
//
// # Deadlines
//   set_deadline() stores the deadline under lock_ and arms timer d of the
//   registration on the owning worker (SetSocketTimeout). on_io_timeout()
//   re-checks the stored deadline against the clock (a timer that fires
//   after the deadline moved later is ignored), marks the direction expired
//   and wakes its waiters, which then fail with kDeadlineExceeded.
//
// # Close
//   1. Set the closed bit in users_: new calls fail at once.
//   2. Wake every waiter; their retry fails with kCancelled.
//   3. Wait until the calls in flight have left (users_ drains to the bit).
//   4. CloseSocket on the owner (no event reaches us after it completes),
//      then ::close(fd). Closing the fd last means no call can ever act on
//      an fd number the kernel has handed to somebody else.
//
// # Migration to worker w
//   1. Under ctl_, CloseSocket on the old owner: its poller forgets the fd
//      and its timers are cancelled; a late event carries the old token's
//      generation and is dropped.
//   2. RegisterSocket on w (EPOLL_CTL_ADD reports the socket's current
//      readiness, so an edge that arrived in between is not lost).
//   3. Re-arm the deadlines on w, then wake every parked fiber to retry
//      (at worst one EAGAIN each). Bytes never leave the kernel buffers.
//   If w refuses the registration, the socket goes back to the old owner.
//
// # Select readiness (net/select.h: readable(s), writable(s))
//   An edge says "something changed", not "a call will not wait now": its
//   bytes may already have been read (the edge is dispatched late), so a
//   select case is decided by the level, poll(2), never by an edge alone.
//   1. Poll: the case holds the socket (like an io() call, so close()
//      waits for it) and asks poll(2); ready, closed or past the
//      direction's deadline completes the select at once. A writable case
//      first registers EPOLLOUT (the socket starts read-only).
//   2. Arm, under lock_: the same three checks again, then queue the
//      case's waiter on the direction's list. An edge after this point
//      finds the waiter; one before it is seen by the level check.
//   3. An edge (on_io_events) or a migration wakes d's plain waiters as
//      before; a select waiter is woken only if poll(2) says d is ready
//      now, and only if it wins its select. Otherwise it stays queued
//      (not ready) or is dropped (another case won). If no waiter at all
//      was woken, d keeps its ready token, so a plain waiter queued after
//      a select waiter never loses the edge to it. close() and an expired
//      deadline wake every waiter: a select case then reports that state.
//   4. Disarm under lock_, then release the hold (which lets a close()
//      that woke the case finish).
#include "net/internal/socket_core.h"

#include <poll.h>
#include <sched.h>
#include <unistd.h>

#include <mutex>
#include <string>
#include <vector>

namespace weft::internal {

absl::StatusOr<std::unique_ptr<SocketCore>> SocketCore::open(Scheduler* sched, int fd, int owner,
                                                             uint32_t interest, const char* kind) {
  if (owner < 0) {
    Worker* w = current_worker();
    owner = (w != nullptr && w->scheduler() == sched) ? w->id() : 0;
  }
  std::unique_ptr<SocketCore> s(new SocketCore(sched, fd, interest, kind));
  IoMessage m;
  m.kind = MessageKind::kRegisterSocket;
  m.source = s.get();
  m.fd = fd;
  m.events = interest;
  IoToken token = kNoIoToken;
  absl::Status st = sched->io_call(owner, &m, &token);
  if (!st.ok()) {
    s->fd_closed_ = true;  // nothing registered; the destructor must not deregister
    ::close(fd);
    return absl::Status(st.code(), std::string(kind) + ": cannot register socket: " +
                                       std::string(st.message()));
  }
  s->token_ = token;
  s->owner_.store(owner, std::memory_order_release);
  s->write_interest_.store((interest & EPOLLOUT) != 0, std::memory_order_release);
  return s;
}

SocketCore::~SocketCore() { (void)close(); }

absl::Status SocketCore::closed_status(const char* what) const {
  return absl::FailedPreconditionError(std::string(kind_) + "::" + what + ": socket is closed");
}

absl::Status SocketCore::op_error(absl::StatusCode code, const char* what, const char* tail) const {
  return absl::Status(code, std::string(kind_) + "::" + what + tail);
}

absl::Status SocketCore::errno_error(int err, const char* what) const {
  return errno_status(err, std::string(kind_) + "::" + what);
}

absl::Status SocketCore::wait(Dir d, int64_t op_deadline, const char* what, bool deadline_ahead) {
  const int i = static_cast<int>(d);
  Waiter w;
  lock_.lock();
  if (closed()) {
    lock_.unlock();
    return op_error(absl::StatusCode::kCancelled, what, ": socket closed while waiting");
  }
  if (expired_[i].load(std::memory_order_relaxed)) {
    lock_.unlock();
    return op_error(absl::StatusCode::kDeadlineExceeded, what, ": deadline passed");
  }
  if (ready_[i]) {
    ready_[i] = false;
    lock_.unlock();
    return absl::OkStatus();
  }
  if (op_deadline >= 0 && !deadline_ahead && op_deadline <= monotonic_now()) {
    lock_.unlock();
    return op_error(absl::StatusCode::kDeadlineExceeded, what, ": timed out");
  }
  waiters_[i].push_back(&w);
  if (d == Dir::kRead) set_wake_hint(&w);
  lock_.unlock();
  WakeReason r = settle_wait(w, waiters_[i], lock_, w.wait(op_deadline));
  if (r == WakeReason::kNotified) return absl::OkStatus();  // retry the call
  if (r == WakeReason::kCancelled) {
    return op_error(absl::StatusCode::kCancelled, what, ": the waiting fiber was cancelled");
  }
  return op_error(absl::StatusCode::kDeadlineExceeded, what, ": timed out");
}

bool SocketCore::level_ready(Dir d) const {
  pollfd p{};
  p.fd = fd_;
  p.events = d == Dir::kRead ? (POLLIN | POLLPRI | POLLRDHUP) : POLLOUT;
  int n;
  do {
    n = ::poll(&p, 1, 0);
  } while (n < 0 && errno == EINTR);
  // A failed poll(2) says nothing; treat it as ready so the caller's next
  // call reports the error instead of waiting.
  return n != 0;
}

void SocketCore::wake_dir(int i, WakeSet& wake) {
  // Select readiness step 3.
  bool woke = false;
  int level = -1;  // poll(2) asked at most once per wake-up, and only for a select waiter
  for (Waiter* w = waiters_[i].front(); w != nullptr;) {
    Waiter* next = w->next;
    if (w->group() != nullptr) {
      if (level < 0) level = level_ready(static_cast<Dir>(i)) ? 1 : 0;
      if (level == 0) {
        w = next;
        continue;
      }
    }
    waiters_[i].remove(w);
    if (w->try_win()) {
      wake.add(w);
      woke = true;
    }
    w = next;
  }
  if (!woke) ready_[i] = true;
}

bool SocketCore::select_poll(Dir d, absl::Status* out) {
  // Select readiness step 1.
  const int i = static_cast<int>(d);
  if (d == Dir::kWrite && !write_interest_.load(std::memory_order_acquire) && !level_ready(d)) {
    absl::Status st = ensure_write_interest();
    if (!st.ok()) {
      *out = std::move(st);
      return true;
    }
  }
  if (closed() || expired_[i].load(std::memory_order_acquire) || level_ready(d)) {
    *out = select_result(d, d == Dir::kRead ? "readable" : "writable");
    return true;
  }
  return false;
}

SocketCore::SelectArm SocketCore::select_arm(Dir d, Waiter& w) {
  // Select readiness step 2.
  const int i = static_cast<int>(d);
  std::lock_guard<SpinLock> g(lock_);
  if (closed() || expired_[i].load(std::memory_order_relaxed) || level_ready(d)) {
    return w.try_win() ? SelectArm::kDone : SelectArm::kLost;
  }
  waiters_[i].push_back(&w);
  return SelectArm::kQueued;
}

void SocketCore::select_disarm(Dir d, Waiter& w) {
  // Select readiness step 4 (the hold is released by the case).
  std::lock_guard<SpinLock> g(lock_);
  waiters_[static_cast<int>(d)].remove(&w);
}

absl::Status SocketCore::select_result(Dir d, const char* what) const {
  if (closed()) return closed_status(what);
  if (expired_[static_cast<int>(d)].load(std::memory_order_acquire)) {
    return absl::DeadlineExceededError(std::string(kind_) + "::" + what + ": deadline passed");
  }
  return absl::OkStatus();
}

void SocketCore::on_io_events(uint32_t events) {
  WakeSet wake;
  auto signal = [&](int i) ABSL_EXCLUSIVE_LOCKS_REQUIRED(lock_) {
    if (waiters_[i].empty()) {
      ready_[i] = true;
      return;
    }
    wake_dir(i, wake);
  };
  {
    std::lock_guard<SpinLock> g(lock_);
    // Set before the wake-up and before the edge count moves, so a fiber
    // that sees either sees it.
    if (events & (EPOLLRDHUP | EPOLLHUP | EPOLLERR | EPOLLPRI)) {
      hangup_.store(true, std::memory_order_relaxed);
    }
    if (events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR | EPOLLPRI)) {
      read_edges_.fetch_add(1, std::memory_order_release);
      signal(0);
    }
    if (events & (EPOLLOUT | EPOLLHUP | EPOLLERR)) signal(1);
  }
  wake.schedule_all();
}

void SocketCore::on_io_timeout(int index) {
  if (index < 0 || index > 1) return;
  WakeSet wake;
  {
    std::lock_guard<SpinLock> g(lock_);
    int64_t d = deadline_[index];
    // The deadline moved (later, or cleared) after this timer was armed.
    if (d < 0 || monotonic_now() < d) return;
    expired_[index].store(true, std::memory_order_release);
    wake.add_all(waiters_[index]);
  }
  wake.schedule_all();
}

absl::Status SocketCore::set_deadline(Dir d, absl::Time deadline) {
  const int i = static_cast<int>(d);
  std::lock_guard<Mutex> c(ctl_);
  if (fd_closed_ || closed()) return closed_status(i == 0 ? "set_read_deadline" : "set_write_deadline");
  int64_t mono = to_monotonic(deadline);
  bool expired_now = mono >= 0 && mono <= monotonic_now();
  WakeSet wake;
  {
    std::lock_guard<SpinLock> g(lock_);
    deadline_[i] = mono;
    expired_[i].store(expired_now, std::memory_order_release);
    if (expired_now) {
      wake.add_all(waiters_[i]);
    }
  }
  wake.schedule_all();
  IoMessage m;
  m.token = token_;
  m.timer_index = i;
  if (mono < 0 || expired_now) {
    if (!timer_armed_[i]) return absl::OkStatus();
    m.kind = MessageKind::kCancelSocketTimeout;
    timer_armed_[i] = false;
  } else {
    m.kind = MessageKind::kSetSocketTimeout;
    m.deadline_nanos = mono;
    timer_armed_[i] = true;
  }
  return sched_->io_call(owner(), &m);
}

absl::Status SocketCore::ensure_write_interest() {
  std::lock_guard<Mutex> c(ctl_);
  if (write_interest_.load(std::memory_order_acquire)) return absl::OkStatus();
  if (fd_closed_ || closed()) return closed_status("write");
  IoMessage m;
  m.kind = MessageKind::kModifySocket;
  m.token = token_;
  m.events = interest_ | EPOLLOUT;
  absl::Status st = sched_->io_call(owner(), &m);
  if (!st.ok()) return st;
  interest_ |= EPOLLOUT;
  write_interest_.store(true, std::memory_order_release);
  return absl::OkStatus();
}

absl::Status SocketCore::migrate_to(int w) {
  if (w < 0 || w >= sched_->num_workers()) {
    return absl::InvalidArgumentError(std::string(kind_) + "::migrate_to: no worker " +
                                      std::to_string(w) + " (runtime has " +
                                      std::to_string(sched_->num_workers()) + ")");
  }
  std::lock_guard<Mutex> c(ctl_);
  if (fd_closed_ || closed()) return closed_status("migrate_to");
  const int from = owner();
  if (from == w) return absl::OkStatus();
  // 1. Leave the old poller.
  IoMessage out;
  out.kind = MessageKind::kCloseSocket;
  out.token = token_;
  absl::Status st = sched_->io_call(from, &out);
  if (!st.ok()) return st;
  timer_armed_[0] = timer_armed_[1] = false;
  // 2. Join the new one; fall back to the old one if it refuses.
  IoMessage in;
  in.kind = MessageKind::kRegisterSocket;
  in.source = this;
  in.fd = fd_;
  in.events = interest_;
  IoToken token = kNoIoToken;
  int target = w;
  st = sched_->io_call(w, &in, &token);
  if (!st.ok()) {
    IoMessage back;
    back.kind = MessageKind::kRegisterSocket;
    back.source = this;
    back.fd = fd_;
    back.events = interest_;
    absl::Status back_st = sched_->io_call(from, &back, &token);
    if (!back_st.ok()) {
      // Registered nowhere: the socket cannot wait any more. Wake its
      // fibers; they will find it closed.
      token_ = kNoIoToken;
      users_.fetch_or(1, std::memory_order_acq_rel);
      WakeSet wake;
      {
        std::lock_guard<SpinLock> g(lock_);
        for (auto& list : waiters_) {
          wake.add_all(list);
        }
      }
      wake.schedule_all();
    }
    target = from;
    st = absl::Status(st.code(), std::string(kind_) + "::migrate_to(" + std::to_string(w) +
                                     "): " + std::string(st.message()));
    if (!back_st.ok()) return st;
  }
  token_ = token;
  owner_.store(target, std::memory_order_release);
  // 3. Re-arm deadlines and let every parked fiber retry.
  int64_t deadlines[2];
  WakeSet wake;
  {
    std::lock_guard<SpinLock> g(lock_);
    for (int i = 0; i < 2; ++i) {
      deadlines[i] = expired_[i].load(std::memory_order_relaxed) ? -1 : deadline_[i];
      wake_dir(i, wake);
    }
  }
  wake.schedule_all();
  for (int i = 0; i < 2; ++i) {
    if (deadlines[i] < 0) continue;
    IoMessage arm;
    arm.kind = MessageKind::kSetSocketTimeout;
    arm.token = token_;
    arm.timer_index = i;
    arm.deadline_nanos = deadlines[i];
    absl::Status a = sched_->io_call(target, &arm);
    if (!a.ok() && st.ok()) st = a;
    timer_armed_[i] = a.ok();
  }
  if (target == w) migrations_.fetch_add(1, std::memory_order_relaxed);
  return st;
}

void SocketCore::release_closed() {
  WakeSet wake;  // declared first: wakes after the unlock
  std::lock_guard<SpinLock> g(lock_);
  if (users_.fetch_sub(2, std::memory_order_acq_rel) == 3) {
    // The socket is not touched after the unlock; the waiter is close()'s,
    // claimed here, so it cannot return before it is woken.
    wake.add(drain_waiters_.pop_front());
  }
}

void SocketCore::lock_control_no_throw() {
  // close() runs in destructors, also while the runtime cancels fibers at
  // shutdown, so it must not take ctl_ with Mutex::lock(), which unwinds a
  // cancelled fiber. Control calls hold ctl_ briefly (a message round
  // trip); yield until it is free.
  while (!ctl_.try_lock()) {
    if (current_fiber() != nullptr) {
      Worker::suspend(Worker::SwitchAction::kYield);
    } else {
      sched_yield();
    }
  }
}

absl::Status SocketCore::close() {
  // 1-2. No new calls; wake the parked ones. ctl_ is not held while the
  // calls in flight drain: one of them may be waiting for ctl_ itself
  // (ensure_write_interest), and will find the socket closed.
  lock_control_no_throw();
  if (fd_closed_) {
    absl::Status st = close_status_;
    ctl_.unlock();
    return st;
  }
  users_.fetch_or(1, std::memory_order_acq_rel);
  {
    WakeSet wake;
    {
      std::lock_guard<SpinLock> g(lock_);
      for (auto& list : waiters_) {
        wake.add_all(list);
      }
    }
    wake.schedule_all();
  }
  ctl_.unlock();
  // 3. Wait for the calls in flight. Never throws.
  for (;;) {
    Waiter w(Cancellable::kNo);  // close() finishes even for a cancelled fiber
    lock_.lock();
    if (users_.load(std::memory_order_acquire) == 1) {
      lock_.unlock();
      break;
    }
    drain_waiters_.push_back(&w);
    lock_.unlock();
    WakeReason r = w.wait();
    bool notified = w.notified();
    if (notified) {
      w.finish_notified(lock_);  // Waiter step 4 (park.cc)
    } else {
      {
        std::lock_guard<SpinLock> g(lock_);
        notified = w.notified();
        if (!notified) drain_waiters_.remove(&w);
      }
      if (notified) w.await_signal();
    }
    if (r == WakeReason::kShutdown) {
      // This fiber is being cancelled but must not unwind from here: let
      // the fibers still inside the socket run (and leave) first.
      Worker::suspend(Worker::SwitchAction::kYield);
    }
  }
  // 4. Deregister, then close the fd (once, whoever gets here first).
  lock_control_no_throw();
  if (fd_closed_) {
    absl::Status st = close_status_;
    ctl_.unlock();
    return st;
  }
  absl::Status st;
  if (token_ != kNoIoToken) {
    IoMessage m;
    m.kind = MessageKind::kCloseSocket;
    m.token = token_;
    st = sched_->io_call(owner(), &m);
    token_ = kNoIoToken;
    // After shutdown the pollers are gone with the workers: nothing to do.
    if (st.code() == absl::StatusCode::kCancelled) st = absl::OkStatus();
  }
  if (::close(fd_) != 0 && st.ok()) st = errno_status(last_errno(), std::string(kind_) + "::close");
  fd_closed_ = true;
  close_status_ = st;
  ctl_.unlock();
  return st;
}

}  // namespace weft::internal
