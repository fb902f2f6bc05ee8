// runtime/cancel.h
//
// weft::CancellationToken: cooperative cancellation that reaches every wait.
//
//   weft::CancellationToken stop;
//   auto h = weft::spawn({.token = stop}, [] {
//     auto v = ch.recv();          // returns kCancelled once stop.cancel() runs
//   });
//   stop.cancel();
//
// A token is a handle to shared state: copies see the same cancellation.
// cancel() is idempotent and callable from any thread. A child token
// (child()) is cancelled with its parent, or alone. A token made with a
// deadline cancels itself on the timer wheel of the worker that made it
// (no extra thread).
//
// Every fiber has a current token, this_fiber::cancellation(): a child of
// the token it was spawned with (SpawnOptions::token, or its TaskScope's),
// which JoinHandle::abort() and Runtime::shutdown(grace) cancel too. When
// the current token is cancelled, every wait of the fiber that would
// suspend returns kCancelled instead (see docs/cancellation.md for the list
// and for what is never lost); a call that can complete without waiting
// still completes. Mutex::lock() does not observe cancellation.
//
// Callbacks (on_cancel) run once, on the context that cancels: the thread
// or fiber calling cancel(), or the worker whose timer fired a deadline
// (off any fiber). They must not block; a callback may spawn a fiber.
#pragma once

#include <functional>
#include <optional>
#include <stdexcept>
#include <utility>

#include "absl/time/time.h"
#include "runtime/internal/cancel.h"
#include "runtime/platform/check.h"
#include "runtime/platform/monotonic.h"

namespace weft {

// Thrown by a wait that has no status to return (JoinHandle::join(),
// BlockingHandle::join(), run_blocking() of a fn that returns neither
// absl::Status nor absl::StatusOr) when the waiting fiber is cancelled.
class WaitCancelled : public std::runtime_error {
 public:
  explicit WaitCancelled(const char* what = "weft: wait cancelled: the waiting fiber was cancelled")
      : std::runtime_error(what) {}
};

class CancellationToken;

// CancelRegistration: an on_cancel() callback; destroying it (or reset())
// unregisters the callback, waiting for it to finish if it is running on
// another thread or fiber. Move-only.
class CancelRegistration {
 public:
  CancelRegistration() = default;
  CancelRegistration(CancelRegistration&& o) noexcept
      : state_(std::exchange(o.state_, nullptr)), node_(std::exchange(o.node_, nullptr)) {}
  CancelRegistration& operator=(CancelRegistration&& o) noexcept {
    if (this != &o) {
      reset();
      state_ = std::exchange(o.state_, nullptr);
      node_ = std::exchange(o.node_, nullptr);
    }
    return *this;
  }
  ~CancelRegistration() { reset(); }

  // reset() unregisters now. Returns after the callback has run, if it was
  // running; it will not run afterwards.
  void reset() {
    if (node_ == nullptr) return;
    state_->remove(node_);
    delete node_;
    node_ = nullptr;
    std::exchange(state_, nullptr)->unref();
  }
  // active() is whether a callback is registered and has not run.
  bool active() const { return node_ != nullptr && !state_->cancelled(); }

 private:
  friend class CancellationToken;
  struct Node final : internal::CancelNode {
    explicit Node(std::function<void()> f) : fn(std::move(f)) {}
    void on_cancel(internal::CancelCause) noexcept override { fn(); }
    std::function<void()> fn;
  };
  CancelRegistration(internal::CancelState* s, Node* n) : state_(s), node_(n) {}
  internal::CancelState* state_ = nullptr;
  Node* node_ = nullptr;
};

class CancellationToken {
 public:
  // A new token of its own, not cancelled.
  CancellationToken() : s_(internal::CancelState::create(nullptr)) {}
  CancellationToken(const CancellationToken& o) : s_(o.s_) { s_->ref(); }
  CancellationToken& operator=(const CancellationToken& o) {
    if (s_ != o.s_) {
      o.s_->ref();
      s_->unref();
      s_ = o.s_;
    }
    return *this;
  }
  // No move operations: a moved-from token stays a valid copy.
  // g++ 12 at -O1 with -fsanitize=thread reports this read as maybe
  // uninitialized where a token sits in a disengaged std::optional
  // (SpawnOptions::token), whose destructor never runs it; under -Werror
  // that broke every --config=tsan build that spawns.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
  ~CancellationToken() { s_->unref(); }
#pragma GCC diagnostic pop

  // with_deadline() / with_timeout(): a new token that cancels itself at
  // the deadline. Must be called on a fiber or worker thread: the deadline
  // runs on that worker's timer wheel (1 ms resolution).
  static CancellationToken with_deadline(absl::Time deadline) {
    CancellationToken t;
    t.s_->arm_deadline(internal::to_monotonic(deadline));
    return t;
  }
  static CancellationToken with_timeout(absl::Duration d) { return with_deadline(absl::Now() + d); }

  // child(): a token cancelled when this one is, or on its own.
  CancellationToken child() const { return CancellationToken(internal::CancelState::create(s_)); }
  // child(deadline): a child that also cancels itself at the deadline
  // (same rule as with_deadline()).
  CancellationToken child(absl::Time deadline) const {
    CancellationToken t = child();
    t.s_->arm_deadline(internal::to_monotonic(deadline));
    return t;
  }

  // cancel() cancels the token and its children and runs its callbacks,
  // on the caller, before it returns. Idempotent; any thread.
  void cancel() const { s_->cancel(internal::CancelCause::kCancelled); }
  bool cancelled() const { return s_->cancelled(); }
  // deadline_exceeded() is true if the token was cancelled by its
  // deadline, or an ancestor's.
  bool deadline_exceeded() const { return s_->cause() == internal::CancelCause::kDeadline; }

  // on_cancel() registers fn to run once when the token is cancelled. On a
  // token already cancelled fn runs now, on the caller, and the returned
  // registration is empty. Keep the registration: destroying it
  // unregisters fn.
  [[nodiscard]] CancelRegistration on_cancel(std::function<void()> fn) const {
    auto* n = new CancelRegistration::Node(std::move(fn));
    if (!s_->add(n)) {
      n->fn();
      delete n;
      return {};
    }
    s_->ref();
    return CancelRegistration(s_, n);
  }

  friend bool operator==(const CancellationToken& a, const CancellationToken& b) { return a.s_ == b.s_; }

  // For the runtime: the shared state (borrowed).
  internal::CancelState* state() const { return s_; }
  // Wraps a state, taking a new reference.
  static CancellationToken from_state(internal::CancelState* s) {
    s->ref();
    return CancellationToken(s);
  }

 private:
  explicit CancellationToken(internal::CancelState* s) : s_(s) {}
  internal::CancelState* s_;
};

}  // namespace weft
