// tests/test_util.h
//
// Helpers shared by weft's tests: the stress scale and per-worker-count
// runtimes.
#pragma once

#include <cstdint>
#include <initializer_list>

namespace weft::testing {

// scale() multiplies the size of stress and randomized tests. 1 by default;
// set with --scale=N (bazel test --test_arg=--scale=N) or the environment
// variable WEFT_STRESS_SCALE.
int64_t scale();

// for_each_worker_count() runs fn(n) for each worker count, with the count
// captured in doctest's failure messages.
template <class Fn>
void for_each_worker_count(std::initializer_list<int> counts, Fn&& fn);

}  // namespace weft::testing

#include <doctest/doctest.h>

namespace weft::testing {
template <class Fn>
void for_each_worker_count(std::initializer_list<int> counts, Fn&& fn) {
  for (int n : counts) {
    CAPTURE(n);
    fn(n);
  }
}
}  // namespace weft::testing

#include <sys/wait.h>
#include <unistd.h>

#include <csignal>
#include <functional>
#include <string>

namespace weft::testing {

// eventually() polls pred for up to 10 s; true once it holds. For state
// that settles just after the event a test waits for, such as a fiber's
// exit after its join completed.
template <class Pred>
bool eventually(Pred pred) {
  for (int i = 0; i < 10000; ++i) {
    if (pred()) return true;
    ::usleep(1000);
  }
  return pred();
}

// overflow_stack() recurses, 512 bytes of frame a level, until the stack
// it runs on hits its guard page: for the stack-overflow death tests.
inline int overflow_stack() {
  std::function<int(int)> rec = [&](int d) -> int {
    volatile char pad[512];
    pad[0] = static_cast<char>(d);
    return pad[0] + rec(d + 1);
  };
  return rec(0);
}

// expect_death() runs fn in a forked child and checks that the child dies
// (a signal or a non-zero exit) after writing `message` to stderr. fn must
// not start threads (not supported after fork under TSan).
template <class Fn>
void expect_death(Fn&& fn, const std::string& message) {
  int fds[2];
  REQUIRE(::pipe(fds) == 0);
  pid_t pid = ::fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    // The test framework's crash handlers would report the expected death
    // as a failure of their own.
    for (int sig : {SIGABRT, SIGSEGV, SIGBUS, SIGILL, SIGFPE}) ::signal(sig, SIG_DFL);
    ::close(fds[0]);
    ::dup2(fds[1], 2);
    fn();
    ::_exit(0);
  }
  ::close(fds[1]);
  std::string out;
  char buf[512];
  ssize_t n;
  while ((n = ::read(fds[0], buf, sizeof(buf))) > 0) out.append(buf, static_cast<size_t>(n));
  ::close(fds[0]);
  int status = 0;
  ::waitpid(pid, &status, 0);
  CAPTURE(out);
  CHECK((WIFSIGNALED(status) || (WIFEXITED(status) && WEXITSTATUS(status) != 0)));
  CHECK(out.find(message) != std::string::npos);
}

}  // namespace weft::testing
