// tests/net_util.h
//
// Helpers for tests that watch descriptors: the count of open descriptors
// (the leak checks of the net, fs and process tests) and a raised
// RLIMIT_NOFILE.
#pragma once

#include <dirent.h>
#include <sys/resource.h>

#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>

namespace weft::testing {

// open_fds() counts the entries of /proc/self/fd (minus the directory's own).
// Aborts if the directory cannot be read: a leak check that compared two
// failed counts would pass without checking anything.
inline int open_fds() {
  DIR* d = ::opendir("/proc/self/fd");
  if (d == nullptr) {
    std::fprintf(stderr, "open_fds: cannot open /proc/self/fd: %s\n", std::strerror(errno));
    std::abort();
  }
  int n = 0;
  while (::readdir(d) != nullptr) ++n;
  ::closedir(d);
  return n - 3;  // ".", ".." and the directory's own descriptor
}

// raise_fd_limit() raises RLIMIT_NOFILE towards `want` (the hard limit too,
// where the process may) and returns the soft limit in force.
inline uint64_t raise_fd_limit(uint64_t want) {
  rlimit rl{};
  ::getrlimit(RLIMIT_NOFILE, &rl);
  if (rl.rlim_max < want) {
    rlimit up = rl;
    up.rlim_max = want;
    up.rlim_cur = want;
    if (::setrlimit(RLIMIT_NOFILE, &up) == 0) return want;
  }
  if (rl.rlim_cur < want) {
    rl.rlim_cur = want < rl.rlim_max ? want : rl.rlim_max;
    ::setrlimit(RLIMIT_NOFILE, &rl);
    ::getrlimit(RLIMIT_NOFILE, &rl);
  }
  return rl.rlim_cur;
}

}  // namespace weft::testing
