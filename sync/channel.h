// sync/channel.h
//
// weft::Channel<T>: a multi-producer, multi-consumer FIFO channel, bounded
// or unbounded, with close semantics. Waiting parks the fiber (or blocks a
// plain thread); every call works from fibers and plain threads alike.
//
//   weft::Channel<int> ch(16);                      // bounded, waits when full
//   weft::Channel<int> log(16, weft::FullPolicy::kDropOldest);
//   weft::Channel<int> q(weft::Channel<int>::kUnbounded);
//
// Statuses:
//   send*     kFailedPrecondition  the channel is closed
//             kResourceExhausted   full, with FullPolicy::kFail or try_send()
//             kDeadlineExceeded    send_for()/send_until() timed out
//             kCancelled           the sending fiber was cancelled while it waited
//   recv*     kOutOfRange          closed and drained (end of stream)
//             kUnavailable         try_recv() on an empty open channel
//             kDeadlineExceeded    recv_for()/recv_until() timed out
//             kCancelled           the receiving fiber was cancelled while it waited
// A send that fails leaves its argument untouched, so nothing is lost. A
// cancellation that races with a hand-over never loses the value: either
// the value was handed over and the call returns it (OK), or it was not
// and stays where it was (in the channel, or the sender's argument).
//
// Ordering: a value is received at most once, in the order sends
// completed. A receiver waiting on an empty channel gets the value handed
// directly, and a sender waiting on a full one has its value moved into
// the buffer by the receiver that made room.
#pragma once

#include <cstddef>
#include <cstdint>
#include <deque>
#include <limits>
#include <mutex>
#include <optional>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "runtime/internal/park.h"
#include "runtime/internal/spin_lock.h"
#include "runtime/platform/check.h"

namespace weft {

// What send() does when a bounded channel is full.
enum class FullPolicy {
  kWait,        // wait for room (default)
  kFail,        // fail at once with kResourceExhausted
  kDropOldest,  // drop the oldest buffered value (counted in dropped)
};

struct ChannelStats {
  uint64_t sent = 0;      // values accepted into the channel
  uint64_t received = 0;  // values taken out
  uint64_t dropped = 0;   // values discarded by kDropOldest
  size_t size = 0;        // values buffered now
  bool closed = false;
};

template <class T>
class Channel {
 public:
  static constexpr size_t kUnbounded = std::numeric_limits<size_t>::max();

  explicit Channel(size_t capacity, FullPolicy policy = FullPolicy::kWait)
      : capacity_(capacity), policy_(policy) {
    WEFT_CHECK(capacity >= 1, "Channel capacity must be at least 1 (use kUnbounded for no limit)");
  }
  Channel(const Channel&) = delete;
  Channel& operator=(const Channel&) = delete;
  ~Channel() {
    WEFT_CHECK(recv_waiters_.empty() && send_waiters_.empty(),
               "Channel destroyed while fibers wait on it");
  }

  // send() suspends while the channel is full (FullPolicy::kWait).
  absl::Status send(T&& v) { return send_impl(v, -1); }
  absl::Status send(const T& v) {
    T c(v);
    return send_impl(c, -1);
  }
  absl::Status send_until(T&& v, absl::Time deadline) {
    return send_impl(v, internal::to_monotonic(deadline));
  }
  absl::Status send_for(T&& v, absl::Duration d) { return send_until(std::move(v), absl::Now() + d); }
  // try_send() never waits.
  absl::Status try_send(T&& v) { return send_impl(v, kNoWait); }
  absl::Status try_send(const T& v) {
    T c(v);
    return send_impl(c, kNoWait);
  }

  // recv() suspends until a value arrives or the channel is closed and
  // drained.
  absl::StatusOr<T> recv() { return recv_impl(-1); }
  absl::StatusOr<T> recv_until(absl::Time deadline) { return recv_impl(internal::to_monotonic(deadline)); }
  absl::StatusOr<T> recv_for(absl::Duration d) { return recv_until(absl::Now() + d); }
  absl::StatusOr<T> try_recv() { return recv_impl(kNoWait); }

  // close() refuses further sends and wakes every waiter: receivers drain
  // what is buffered and then get kOutOfRange; waiting senders get
  // kFailedPrecondition and keep their values. Idempotent.
  void close() {
    internal::WakeSet wake;
    std::lock_guard<internal::SpinLock> g(lock_);
    closed_ = true;
    for (internal::WaitList* l : {&recv_waiters_, &send_waiters_}) {
      while (internal::Waiter* w = l->pop_front()) {
        w->signal = kClosedSignal;
        wake.add(w);
      }
    }
  }

  bool is_closed() const {
    std::lock_guard<internal::SpinLock> g(lock_);
    return closed_;
  }
  size_t size() const {
    std::lock_guard<internal::SpinLock> g(lock_);
    return buf_.size();
  }
  size_t capacity() const { return capacity_; }
  ChannelStats stats() const {
    std::lock_guard<internal::SpinLock> g(lock_);
    return ChannelStats{sent_, received_, dropped_, buf_.size(), closed_};
  }

  // --- select() cases (sync/select.h); not for direct use ---
  // select_recv()/select_send() try the operation for case w (under the
  // lock, after winning w's group) and return true with *out set, or queue
  // w and return false. kLost: the group was decided by another case.
  enum SelectArm { kDone, kQueued, kLost };
  SelectArm select_recv(internal::Waiter& w, std::optional<T>* slot, absl::StatusOr<T>* out) {
    internal::WakeSet wake;  // declared first: wakes after unlock
    std::lock_guard<internal::SpinLock> g(lock_);
    if (!buf_.empty() || closed_) {
      if (!w.try_win()) return kLost;
      if (buf_.empty()) {
        *out = absl::OutOfRangeError("channel closed");
        return kDone;
      }
      *out = std::move(buf_.front());
      buf_.pop_front();
      ++received_;
      if (internal::Waiter* sw = send_waiters_.pop_winnable()) {
        buf_.push_back(std::move(*static_cast<T*>(sw->payload)));
        ++sent_;
        wake.add(sw);
      }
      return kDone;
    }
    w.payload = slot;
    recv_waiters_.push_back(&w);
    return kQueued;
  }
  SelectArm select_send(internal::Waiter& w, T* v, absl::Status* out) {
    internal::WakeSet wake;
    std::lock_guard<internal::SpinLock> g(lock_);
    if (closed_) {
      if (!w.try_win()) return kLost;
      *out = absl::FailedPreconditionError("send on a closed channel");
      return kDone;
    }
    if (!recv_waiters_.empty() || buf_.size() < capacity_ || policy_ == FullPolicy::kDropOldest) {
      if (!w.try_win()) return kLost;
      if (internal::Waiter* rw = recv_waiters_.pop_winnable()) {
        static_cast<std::optional<T>*>(rw->payload)->emplace(std::move(*v));
        ++received_;
        wake.add(rw);
      } else {
        if (buf_.size() >= capacity_) {  // kDropOldest
          buf_.pop_front();
          ++dropped_;
        }
        buf_.push_back(std::move(*v));
      }
      ++sent_;
      *out = absl::OkStatus();
      return kDone;
    }
    w.payload = v;
    send_waiters_.push_back(&w);
    return kQueued;
  }
  // select_disarm_recv()/_send() take a case's waiter off the list it was
  // queued on (no-op if a waker popped it); after it, a waker that won w
  // has finished with it.
  void select_disarm_recv(internal::Waiter& w) {
    std::lock_guard<internal::SpinLock> g(lock_);
    recv_waiters_.remove(&w);
  }
  void select_disarm_send(internal::Waiter& w) {
    std::lock_guard<internal::SpinLock> g(lock_);
    send_waiters_.remove(&w);
  }
  // Whether w was notified (its operation completed) with the closed
  // signal.
  static bool select_closed(const internal::Waiter& w) { return w.signal == kClosedSignal; }

 private:
  static constexpr int64_t kNoWait = -2;
  static constexpr uint32_t kClosedSignal = 1;

  // deadline: -1 none, kNoWait, else monotonic nanos.
  absl::Status send_impl(T& v, int64_t deadline) {
    internal::WakeOne wake;  // declared first: wakes after unlock
    lock_.lock();
    if (closed_) {
      lock_.unlock();
      return absl::FailedPreconditionError("send on a closed channel");
    }
    if (internal::Waiter* rw = recv_waiters_.pop_winnable()) {
      // A receiver waits, so the buffer is empty: hand the value over.
      static_cast<std::optional<T>*>(rw->payload)->emplace(std::move(v));
      ++sent_;
      ++received_;
      wake.set(rw);
      lock_.unlock();
      return absl::OkStatus();
    }
    if (buf_.size() < capacity_) {
      buf_.push_back(std::move(v));
      ++sent_;
      lock_.unlock();
      return absl::OkStatus();
    }
    if (policy_ == FullPolicy::kDropOldest) {
      buf_.pop_front();
      ++dropped_;
      buf_.push_back(std::move(v));
      ++sent_;
      lock_.unlock();
      return absl::OkStatus();
    }
    if (policy_ == FullPolicy::kFail || deadline == kNoWait) {
      lock_.unlock();
      return absl::ResourceExhaustedError("channel full");
    }
    if (deadline >= 0 && deadline <= internal::monotonic_now()) {
      lock_.unlock();
      return absl::DeadlineExceededError("channel send timed out");
    }
    internal::Waiter w;
    w.payload = &v;
    send_waiters_.push_back(&w);
    lock_.unlock();
    internal::WakeReason r = internal::settle_wait(w, send_waiters_, lock_, w.wait(deadline));
    if (r != internal::WakeReason::kNotified) return internal::wake_status(r, "channel send");
    if (w.signal == kClosedSignal) return absl::FailedPreconditionError("send on a closed channel");
    return absl::OkStatus();  // a receiver moved v into the buffer
  }

  absl::StatusOr<T> recv_impl(int64_t deadline) {
    internal::WakeOne wake;  // declared first: wakes after unlock
    lock_.lock();
    if (!buf_.empty()) {
      T v = std::move(buf_.front());
      buf_.pop_front();
      ++received_;
      if (internal::Waiter* sw = send_waiters_.pop_winnable()) {
        // Room was made: move the longest-waiting sender's value in.
        buf_.push_back(std::move(*static_cast<T*>(sw->payload)));
        ++sent_;
        wake.set(sw);
      }
      lock_.unlock();
      return v;
    }
    if (closed_) {
      lock_.unlock();
      return absl::OutOfRangeError("channel closed");
    }
    if (deadline == kNoWait) {
      lock_.unlock();
      return absl::UnavailableError("channel empty");
    }
    if (deadline >= 0 && deadline <= internal::monotonic_now()) {
      lock_.unlock();
      return absl::DeadlineExceededError("channel recv timed out");
    }
    std::optional<T> slot;
    internal::Waiter w;
    w.payload = &slot;
    recv_waiters_.push_back(&w);
    lock_.unlock();
    internal::WakeReason r = internal::settle_wait(w, recv_waiters_, lock_, w.wait(deadline));
    if (r != internal::WakeReason::kNotified) return internal::wake_status(r, "channel recv");
    if (w.signal == kClosedSignal) return absl::OutOfRangeError("channel closed");
    return std::move(*slot);
  }

  const size_t capacity_;
  const FullPolicy policy_;
  mutable internal::SpinLock lock_;
  std::deque<T> buf_ ABSL_GUARDED_BY(lock_);
  bool closed_ ABSL_GUARDED_BY(lock_) = false;
  uint64_t sent_ ABSL_GUARDED_BY(lock_) = 0;
  uint64_t received_ ABSL_GUARDED_BY(lock_) = 0;
  uint64_t dropped_ ABSL_GUARDED_BY(lock_) = 0;
  internal::WaitList recv_waiters_ ABSL_GUARDED_BY(lock_);
  internal::WaitList send_waiters_ ABSL_GUARDED_BY(lock_);
};

}  // namespace weft
