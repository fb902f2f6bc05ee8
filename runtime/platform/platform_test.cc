#include <doctest/doctest.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <fstream>
#include <iterator>
#include <string>
#include <thread>

#include "runtime/platform/epoll_poller.h"
#include "runtime/platform/eventfd.h"
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
  const auto until = std::chrono::steady_clock::now() + std::chrono::milliseconds(30);
  while (std::chrono::steady_clock::now() < until) {
  }
  CHECK(cpu_clock_nanos(self) - cpu0 >= 10'000'000);  // spun 30 ms: ran at least 10 of them

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

}  // namespace weft::internal
