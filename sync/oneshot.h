// sync/oneshot.h
//
// weft::Oneshot: a channel for exactly one value, split into a sender and a
// receiver (tokio's oneshot). make_oneshot<T>() returns both.
//
//   auto [tx, rx] = weft::make_oneshot<int>();
//   weft::spawn([tx = std::move(tx)]() mutable { (void)tx.send(42); });
//   absl::StatusOr<int> v = rx.recv();   // 42
//
// Statuses: recv() returns kAborted if the sender was destroyed without
// sending, kDeadlineExceeded when recv_for()/recv_until() time out,
// kCancelled if the receiving fiber is cancelled first (a value sent at the
// same moment stays in the oneshot for the next recv), and
// kFailedPrecondition if the value was already received. send() returns
// kFailedPrecondition if a value was already sent and kCancelled if the
// receiver is gone (the value is then left in the argument).
// Both ends work from fibers and from plain threads.
#pragma once

#include <memory>
#include <mutex>
#include <optional>
#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "runtime/internal/park.h"
#include "runtime/internal/spin_lock.h"

namespace weft {

namespace internal {
template <class T>
struct OneshotState {
  SpinLock lock;
  std::optional<T> value;
  bool sent = false, received = false, sender_gone = false, receiver_gone = false;
  WaitList waiters;
  void wake_all() {
    WakeSet wake;
    std::lock_guard<SpinLock> g(lock);
    wake.add_all(waiters);
  }
};
}  // namespace internal

template <class T>
class OneshotSender {
 public:
  OneshotSender() = default;
  explicit OneshotSender(std::shared_ptr<internal::OneshotState<T>> s) : s_(std::move(s)) {}
  OneshotSender(OneshotSender&&) noexcept = default;
  OneshotSender& operator=(OneshotSender&& o) noexcept {
    if (this != &o) {
      drop();
      s_ = std::move(o.s_);
    }
    return *this;
  }
  ~OneshotSender() { drop(); }

  // send() delivers the value. On failure `v` is left untouched.
  absl::Status send(T&& v) {
    if (!s_) return absl::FailedPreconditionError("Oneshot: send on an empty sender");
    {
      std::lock_guard<internal::SpinLock> g(s_->lock);
      if (s_->sent) return absl::FailedPreconditionError("Oneshot: value already sent");
      if (s_->receiver_gone) return absl::CancelledError("Oneshot: receiver is gone");
      s_->value.emplace(std::move(v));
      s_->sent = true;
    }
    s_->wake_all();
    return absl::OkStatus();
  }
  absl::Status send(const T& v) {
    T copy(v);
    return send(std::move(copy));
  }

 private:
  void drop() {
    if (!s_) return;
    {
      std::lock_guard<internal::SpinLock> g(s_->lock);
      s_->sender_gone = true;
    }
    s_->wake_all();
    s_.reset();
  }
  std::shared_ptr<internal::OneshotState<T>> s_;
};

template <class T>
class OneshotReceiver {
 public:
  OneshotReceiver() = default;
  explicit OneshotReceiver(std::shared_ptr<internal::OneshotState<T>> s) : s_(std::move(s)) {}
  OneshotReceiver(OneshotReceiver&&) noexcept = default;
  // The receiver replaced is gone, as if destroyed: its sender's send()
  // returns kCancelled.
  OneshotReceiver& operator=(OneshotReceiver&& o) noexcept {
    if (this != &o) {
      drop();
      s_ = std::move(o.s_);
    }
    return *this;
  }
  ~OneshotReceiver() { drop(); }

  // recv() suspends until the value arrives or the sender is gone.
  absl::StatusOr<T> recv() { return recv_impl(-1); }
  absl::StatusOr<T> recv_for(absl::Duration d) { return recv_until(absl::Now() + d); }
  absl::StatusOr<T> recv_until(absl::Time deadline) { return recv_impl(internal::to_monotonic(deadline)); }
  // try_recv() never waits: kUnavailable if nothing was sent yet.
  absl::StatusOr<T> try_recv() { return recv_impl(-2); }

 private:
  // deadline: -1 none, -2 do not wait, else monotonic nanos.
  absl::StatusOr<T> recv_impl(int64_t deadline) {
    if (!s_) return absl::FailedPreconditionError("Oneshot: recv on an empty receiver");
    for (;;) {
      internal::Waiter w;
      {
        std::lock_guard<internal::SpinLock> g(s_->lock);
        if (s_->received) return absl::FailedPreconditionError("Oneshot: value already received");
        if (s_->sent) {
          s_->received = true;
          T v = std::move(*s_->value);
          s_->value.reset();
          return v;
        }
        if (s_->sender_gone) return absl::AbortedError("Oneshot: sender dropped without sending");
        if (deadline == -2) return absl::UnavailableError("Oneshot: nothing sent yet");
        if (deadline >= 0 && deadline <= internal::monotonic_now()) {
          return absl::DeadlineExceededError("Oneshot: recv timed out");
        }
        s_->waiters.push_back(&w);
      }
      // Notified or timed out, look at the state again: sent, sender gone,
      // or timed out. Cancelled: the value (if any) stays for a later recv.
      internal::WakeReason r = internal::settle_wait(w, s_->waiters, s_->lock, w.wait(deadline));
      if (r == internal::WakeReason::kCancelled) return internal::wake_status(r, "Oneshot::recv");
    }
  }
  void drop() {
    if (!s_) return;
    {
      std::lock_guard<internal::SpinLock> g(s_->lock);
      s_->receiver_gone = true;
    }
    s_.reset();
  }
  std::shared_ptr<internal::OneshotState<T>> s_;
};

template <class T>
std::pair<OneshotSender<T>, OneshotReceiver<T>> make_oneshot() {
  auto s = std::make_shared<internal::OneshotState<T>>();
  return {OneshotSender<T>(s), OneshotReceiver<T>(s)};
}

}  // namespace weft
