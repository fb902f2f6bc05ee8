#include <doctest/doctest.h>
#include <fcntl.h>
#include <unistd.h>

#include <atomic>
#include <thread>

#include "runtime/platform/epoll_poller.h"
#include "runtime/platform/eventfd.h"
#include "runtime/platform/syscall.h"

namespace weft::internal {

TEST_CASE("errno_status names the operation and the errno") {
  absl::Status s = errno_status(EMFILE, "accept4");
  CHECK(s.message().find("Too many open files") != std::string_view::npos);
  CHECK(s.message().find("accept4") != std::string_view::npos);
  CHECK(!s.ok());
}

TEST_CASE("Poller reports an eventfd signal and drain clears it") {
  auto poller = Poller::create();
  REQUIRE(poller.ok());
  auto wake = Wakeup::create();
  REQUIRE(wake.ok());
  REQUIRE(poller->add(wake->fd(), EPOLLIN, 42).ok());
  epoll_event ev[4];
  CHECK(poller->wait(ev, 4, 0) == 0);
  wake->signal();
  wake->signal();  // folded into the first
  REQUIRE(poller->wait(ev, 4, 0) == 1);
  uint64_t data = ev[0].data.u64;
  CHECK(data == 42);
  wake->drain();
  CHECK(poller->wait(ev, 4, 0) == 0);
  wake->signal();  // a signal after drain is not swallowed
  CHECK(poller->wait(ev, 4, 0) == 1);
}

TEST_CASE("a signal from another thread ends a blocking wait") {
  auto poller = Poller::create();
  auto wake = Wakeup::create();
  REQUIRE(poller->add(wake->fd(), EPOLLIN, 7).ok());
  std::thread t([&] { wake->signal(); });
  epoll_event ev[1];
  int n = poller->wait(ev, 1, 10000);
  t.join();
  CHECK(n == 1);
}

TEST_CASE("epoll_ctl errors come back as statuses") {
  auto poller = Poller::create();
  absl::Status s = poller->remove(12345);
  CHECK(!s.ok());
  CHECK(s.message().find("epoll_ctl") != std::string_view::npos);
}

}  // namespace weft::internal
