#include "runtime/platform/epoll_poller.h"

#include <unistd.h>

#include <cerrno>

#include "runtime/platform/direct_syscall.h"
#include "runtime/platform/syscall.h"

namespace weft::internal {

absl::StatusOr<Poller> Poller::create() {
  int fd = ::epoll_create1(EPOLL_CLOEXEC);
  if (fd < 0) return errno_status(errno, "epoll_create1");
  return Poller(fd);
}

Poller::~Poller() {
  if (fd_ >= 0) ::close(fd_);
}

absl::Status Poller::add(int fd, uint32_t events, uint64_t data) {
  epoll_event ev{};
  ev.events = events;
  ev.data.u64 = data;
  if (::epoll_ctl(fd_, EPOLL_CTL_ADD, fd, &ev) != 0) return errno_status(errno, "epoll_ctl(ADD)");
  return absl::OkStatus();
}

absl::Status Poller::modify(int fd, uint32_t events, uint64_t data) {
  epoll_event ev{};
  ev.events = events;
  ev.data.u64 = data;
  if (::epoll_ctl(fd_, EPOLL_CTL_MOD, fd, &ev) != 0) return errno_status(errno, "epoll_ctl(MOD)");
  return absl::OkStatus();
}

absl::Status Poller::remove(int fd) {
  if (::epoll_ctl(fd_, EPOLL_CTL_DEL, fd, nullptr) != 0) return errno_status(errno, "epoll_ctl(DEL)");
  return absl::OkStatus();
}

int Poller::wait(epoll_event* out, int max_events, int timeout_ms) {
  int n = sys::epoll_wait(fd_, out, max_events, timeout_ms);
  return n < 0 ? 0 : n;
}

}  // namespace weft::internal
