#include <doctest/doctest.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/mman.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <fstream>
#include <iterator>
#include <string>
#include <thread>

#include "runtime/platform/direct_syscall.h"
#include "runtime/platform/epoll_poller.h"
#include "runtime/platform/eventfd.h"
#include "runtime/platform/monotonic.h"
#include "runtime/platform/prefetch.h"
#include "runtime/platform/syscall.h"
#include "runtime/platform/thread_clock.h"

namespace weft::internal {

TEST_CASE("errno_status names the operation and the errno") {
  absl::Status s = errno_status(EMFILE, "accept4");
  CHECK(s.message().find("Too many open files") != std::string_view::npos);
  CHECK(s.message().find("accept4") != std::string_view::npos);
  CHECK(!s.ok());
}

// sys:: calls the kernel directly in optimised builds and glibc under the
// sanitizers; both must keep glibc's contract: the result, or -1 and errno.
TEST_CASE("sys:: calls return what the kernel returns, and -1 with errno on failure") {
  int sv[2];
  REQUIRE(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv) == 0);
  char buf[16] = {};

  errno = 0;
  CHECK(sys::recv(sv[0], buf, sizeof buf, 0) == -1);
  CHECK(errno == EAGAIN);
  CHECK(sys::send(sv[1], "hello", 5, MSG_NOSIGNAL) == 5);
  CHECK(sys::recv(sv[0], buf, sizeof buf, 0) == 5);
  CHECK(std::string(buf, 5) == "hello");

  iovec iov[2] = {{const_cast<char*>("ab"), 2}, {const_cast<char*>("cde"), 3}};
  msghdr msg{};
  msg.msg_iov = iov;
  msg.msg_iovlen = 2;
  CHECK(sys::sendmsg(sv[1], &msg, MSG_NOSIGNAL) == 5);
  char in[8] = {};
  iovec rio{in, sizeof in};
  msghdr rmsg{};
  rmsg.msg_iov = &rio;
  rmsg.msg_iovlen = 1;
  CHECK(sys::recvmsg(sv[0], &rmsg, 0) == 5);
  CHECK(std::string(in, 5) == "abcde");

  CHECK(sys::write(sv[0], "xyz", 3) == 3);
  CHECK(sys::read(sv[1], buf, sizeof buf) == 3);
  CHECK(sys::sendto(sv[0], "q", 1, MSG_NOSIGNAL, nullptr, 0) == 1);

  int ep = ::epoll_create1(EPOLL_CLOEXEC);
  REQUIRE(ep >= 0);
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.u64 = 42;
  REQUIRE(::epoll_ctl(ep, EPOLL_CTL_ADD, sv[1], &ev) == 0);
  epoll_event out[4];
  CHECK(sys::epoll_wait(ep, out, 4, 1000) == 1);
  const uint64_t got = out[0].data.u64;  // a packed field: copied out for CHECK
  CHECK(got == 42);

  // Errors: a peer that is gone, a closed descriptor.
  ::close(sv[1]);
  errno = 0;
  CHECK(sys::send(sv[0], "x", 1, MSG_NOSIGNAL) == -1);
  CHECK(errno == EPIPE);
  ::close(sv[0]);
  errno = 0;
  CHECK(sys::recv(sv[0], buf, sizeof buf, 0) == -1);
  CHECK(errno == EBADF);
  errno = 0;
  CHECK(sys::read(sv[0], buf, sizeof buf) == -1);
  CHECK(errno == EBADF);
  ::close(ep);
  errno = 0;
  CHECK(sys::epoll_wait(ep, out, 4, 0) == -1);
  CHECK(errno == EBADF);
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

TEST_CASE("prefetch_for_write is a hint: any address, mapped or not, and the memory is unchanged") {
  // The scheduler prefetches fibers that a thief may have taken and freed
  // meanwhile (worker.cc prefetch_fiber): the prefetch must never fault.
  alignas(64) char line[64] = {1, 2, 3};
  prefetch_for_write(line);
  CHECK(line[0] == 1);
  CHECK(line[2] == 3);
  void* p = ::mmap(nullptr, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  REQUIRE(p != MAP_FAILED);
  REQUIRE(::munmap(p, 4096) == 0);
  prefetch_for_write(p);  // unmapped now
  void* guard = ::mmap(nullptr, 4096, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  REQUIRE(guard != MAP_FAILED);
  prefetch_for_write(guard);  // mapped, no access
  ::munmap(guard, 4096);
#if defined(__x86_64__)
  // The kernel names the same CPUID bit 3dnowprefetch.
  std::ifstream cpuinfo("/proc/cpuinfo");
  std::string text((std::istreambuf_iterator<char>(cpuinfo)), std::istreambuf_iterator<char>());
  REQUIRE(text.find("flags") != std::string::npos);
  CHECK(cpu_has_prefetchw() == (text.find(" 3dnowprefetch") != std::string::npos));
#endif
}

TEST_CASE("thread_state and cpu_clock_nanos tell a computing thread from a blocked one") {
  CHECK(thread_state(kernel_tid()) == ThreadState::kRunnable);  // we are on a CPU now
  CHECK(thread_state(-1) == ThreadState::kUnknown);
  clockid_t self;
  REQUIRE(own_cpu_clock(&self));
  const int64_t cpu0 = cpu_clock_nanos(self);
  REQUIRE(cpu0 >= 0);
  // Spin until the clock shows 10 ms of CPU, or give up after 10 s of wall
  // time: on a loaded host the thread gets a share of a CPU, not all of it
  // (30 ms of wall time once gave 9.8 ms), so a fixed spin proves nothing.
  const auto give_up = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (cpu_clock_nanos(self) - cpu0 < 10'000'000 && std::chrono::steady_clock::now() < give_up) {
  }
  CHECK(cpu_clock_nanos(self) - cpu0 >= 10'000'000);

  // A thread blocked in read(2) on an empty pipe: kBlocked, and its clock
  // stands still, read from this thread.
  int p[2];
  REQUIRE(::pipe(p) == 0);
  std::atomic<int> tid{0};
  std::atomic<bool> clock_ok{false};
  clockid_t its_clock{};
  std::thread reader([&] {
    clock_ok.store(own_cpu_clock(&its_clock));
    tid.store(kernel_tid());
    char c;
    CHECK(::read(p[0], &c, 1) == 1);
  });
  while (tid.load() == 0) std::this_thread::yield();
  REQUIRE(clock_ok.load());
  ThreadState st = ThreadState::kRunnable;
  for (int i = 0; i < 5000 && st != ThreadState::kBlocked; ++i) {  // until it has entered read(2)
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
    st = thread_state(tid.load());
  }
  CHECK(st == ThreadState::kBlocked);
  const int64_t before = cpu_clock_nanos(its_clock);
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  const int64_t after = cpu_clock_nanos(its_clock);
  CHECK(before >= 0);
  CHECK(after - before < 5'000'000);  // blocked 50 ms: ran (almost) none of it
  CHECK(thread_state(tid.load()) == ThreadState::kBlocked);
  REQUIRE(::write(p[1], "x", 1) == 1);
  reader.join();
  ::close(p[0]);
  ::close(p[1]);
}

TEST_CASE("deadline_after: no deadline for an infinite or unreachable duration, never an overflow") {
  CHECK(deadline_after(absl::InfiniteDuration()) == -1);
  // absl::ToInt64Nanoseconds saturates at INT64_MAX: added to the clock, an
  // overflow (UBSan aborts the ASan build on it).
  CHECK(deadline_after(absl::Hours(24 * 365 * 1000)) == -1);
  CHECK(deadline_after(absl::Nanoseconds(INT64_MAX)) == -1);
  const int64_t before = monotonic_now();
  const int64_t now_or_later = deadline_after(-absl::Seconds(5));
  CHECK(now_or_later >= before);
  CHECK(now_or_later <= monotonic_now());
  const int64_t in_1s = deadline_after(absl::Seconds(1));
  CHECK(in_1s >= before + 1'000'000'000);
  CHECK(in_1s <= monotonic_now() + 1'000'000'000);
  CHECK(deadline_after(absl::ZeroDuration()) >= before);
}

}  // namespace weft::internal
