#include "runtime/platform/thread_clock.h"

#include <fcntl.h>
#include <pthread.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>

namespace weft::internal {

int kernel_tid() { return static_cast<int>(::syscall(SYS_gettid)); }

bool own_cpu_clock(clockid_t* out) { return pthread_getcpuclockid(pthread_self(), out) == 0; }

int64_t cpu_clock_nanos(clockid_t c) {
  timespec ts;
  if (clock_gettime(c, &ts) != 0) return -1;
  return static_cast<int64_t>(ts.tv_sec) * 1'000'000'000 + ts.tv_nsec;
}

ThreadState thread_state(int tid) {
  char path[64];
  std::snprintf(path, sizeof(path), "/proc/self/task/%d/stat", tid);
  int fd = ::open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return ThreadState::kUnknown;
  // "TID (COMM) S ...": COMM may hold spaces and parentheses, so the state
  // is the first field after the last ')'. 512 bytes reach well past it
  // (COMM is at most 16 bytes).
  char buf[512];
  ssize_t n = ::read(fd, buf, sizeof(buf) - 1);
  ::close(fd);
  if (n <= 0) return ThreadState::kUnknown;
  buf[n] = '\0';
  const char* close_paren = std::strrchr(buf, ')');
  if (close_paren == nullptr || close_paren[1] != ' ' || close_paren[2] == '\0') return ThreadState::kUnknown;
  switch (close_paren[2]) {
    case 'R':
      return ThreadState::kRunnable;
    case 'S':
    case 'D':
      return ThreadState::kBlocked;
    default:
      return ThreadState::kOther;
  }
}

}  // namespace weft::internal
