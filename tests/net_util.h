// tests/net_util.h
//
// Helpers for network tests: open descriptor counts, a loopback listener
// with its address, and a raised RLIMIT_NOFILE.
#pragma once

#include <dirent.h>
#include <sys/resource.h>

#include <cstdint>

namespace weft::testing {

// OpenFds() counts the entries of /proc/self/fd (minus the directory's own).
inline int OpenFds() {
  DIR* d = ::opendir("/proc/self/fd");
  if (d == nullptr) return -1;
  int n = 0;
  while (::readdir(d) != nullptr) ++n;
  ::closedir(d);
  return n - 3;  // ".", ".." and the directory's own descriptor
}

// RaiseFdLimit() raises the soft RLIMIT_NOFILE towards `want` (up to the
// hard limit) and returns the soft limit in force.
inline uint64_t RaiseFdLimit(uint64_t want) {
  rlimit rl{};
  ::getrlimit(RLIMIT_NOFILE, &rl);
  if (rl.rlim_cur < want) {
    rl.rlim_cur = want < rl.rlim_max ? want : rl.rlim_max;
    ::setrlimit(RLIMIT_NOFILE, &rl);
    ::getrlimit(RLIMIT_NOFILE, &rl);
  }
  return rl.rlim_cur;
}

}  // namespace weft::testing
