// runtime/platform/eventfd.h
//
// Wakeup: an eventfd that a worker's poller watches, so that other threads
// can interrupt its epoll_wait. Duplicate signals are folded with a flag (as
// Go's netpollWakeSig does), so a burst of wakeups costs one write(2).
#pragma once

#include <atomic>

#include "absl/status/statusor.h"

namespace weft::internal {

class Wakeup {
 public:
  static absl::StatusOr<Wakeup> create();
  Wakeup(Wakeup&& o) noexcept : fd_(o.fd_) { o.fd_ = -1; }
  Wakeup& operator=(Wakeup&&) = delete;
  ~Wakeup();

  int fd() const { return fd_; }
  // pending() is true between a signal() and the drain() that consumes it.
  bool pending() const { return pending_.load(std::memory_order_acquire); }

  // signal() makes the eventfd readable unless a signal is already pending.
  // May be called from any thread.
  void signal();

  // drain() consumes pending signals. Called only by whoever serves the
  // owning worker's poller (under its driver lock) after the poller
  // reported the fd readable. Reads first, then clears the flag:
  // the other order could swallow a signal sent in between.
  void drain();

 private:
  explicit Wakeup(int fd) : fd_(fd) {}
  int fd_;
  std::atomic<bool> pending_{false};
};

}  // namespace weft::internal
