#include "runtime/platform/eventfd.h"

#include <sys/eventfd.h>
#include <unistd.h>

#include <cstdint>

#include "runtime/platform/direct_syscall.h"
#include "runtime/platform/syscall.h"

namespace weft::internal {

absl::StatusOr<Wakeup> Wakeup::create() {
  int fd = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (fd < 0) return errno_status(errno, "eventfd");
  return Wakeup(fd);
}

Wakeup::~Wakeup() {
  if (fd_ >= 0) ::close(fd_);
}

void Wakeup::signal() {
  if (pending_.exchange(true, std::memory_order_seq_cst)) return;
  uint64_t one = 1;
  // EAGAIN means the counter is saturated, which is still "readable".
  (void)!retry_on_eintr([&] { return sys::write(fd_, &one, sizeof(one)); });
}

void Wakeup::drain() {
  uint64_t v;
  (void)!retry_on_eintr([&] { return sys::read(fd_, &v, sizeof(v)); });
  pending_.store(false, std::memory_order_seq_cst);
}

}  // namespace weft::internal
