// runtime/platform/epoll_poller.h
//
// Poller: a thin owner of one epoll instance. Each worker owns one; it is
// never shared. Registration calls are thread-safe at the kernel level, but
// weft only issues them from the owning worker (see docs/io.md).
#pragma once

#include <sys/epoll.h>

#include <cstdint>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace weft::internal {

class Poller {
 public:
  static absl::StatusOr<Poller> create();
  Poller(Poller&& o) noexcept : fd_(o.fd_) { o.fd_ = -1; }
  Poller& operator=(Poller&&) = delete;
  ~Poller();

  int fd() const { return fd_; }

  // add()/modify()/remove() wrap epoll_ctl; `data` is returned verbatim
  // with each event.
  absl::Status add(int fd, uint32_t events, uint64_t data);
  absl::Status modify(int fd, uint32_t events, uint64_t data);
  absl::Status remove(int fd);

  // wait() blocks for up to timeout_ms (-1: forever, 0: do not block) and
  // returns the number of events written to `out` (EINTR returns 0).
  int wait(epoll_event* out, int max_events, int timeout_ms);

 private:
  explicit Poller(int fd) : fd_(fd) {}
  int fd_;
};

}  // namespace weft::internal
