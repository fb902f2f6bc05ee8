#include "process/internal/reaper.h"

#include <signal.h>
#include <sys/epoll.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <mutex>
#include <thread>

#ifndef P_PIDFD
#define P_PIDFD 3
#endif

namespace weft::process::internal {
namespace {

std::atomic<int64_t> g_pending{0};

// try_reap() reaps the child of pidfd if it has exited; true if it is gone
// (reaped, or not ours to reap any more).
bool try_reap(int pidfd) {
  siginfo_t info;
  std::memset(&info, 0, sizeof info);
  int rc = ::waitid(static_cast<idtype_t>(P_PIDFD), static_cast<id_t>(pidfd), &info,
                    WEXITED | WNOHANG);
  if (rc < 0) return errno != EINTR;  // ECHILD: reaped elsewhere
  return info.si_pid != 0;
}

class Reaper {
 public:
  Reaper() {
    epfd_ = ::epoll_create1(EPOLL_CLOEXEC);
    if (epfd_ < 0) {
      std::fprintf(stderr, "weft: process reaper: epoll_create1: %s\n", std::strerror(errno));
      return;
    }
    std::thread([this] { run(); }).detach();
  }

  void add(int pidfd) {
    if (try_reap(pidfd)) {
      ::close(pidfd);
      return;
    }
    g_pending.fetch_add(1, std::memory_order_relaxed);
    epoll_event ev{};
    ev.events = EPOLLIN | EPOLLONESHOT;
    ev.data.fd = pidfd;
    if (epfd_ < 0 || ::epoll_ctl(epfd_, EPOLL_CTL_ADD, pidfd, &ev) < 0) {
      // Cannot watch it: reap it on a thread of its own rather than leave a
      // zombie.
      std::thread([pidfd] {
        siginfo_t info;
        while (::waitid(static_cast<idtype_t>(P_PIDFD), static_cast<id_t>(pidfd), &info,
                        WEXITED) < 0 &&
               errno == EINTR) {
        }
        ::close(pidfd);
        g_pending.fetch_sub(1, std::memory_order_relaxed);
      }).detach();
    }
  }

 private:
  void run() {
    epoll_event evs[64];
    for (;;) {
      int n = ::epoll_wait(epfd_, evs, 64, -1);
      if (n < 0) {
        if (errno == EINTR) continue;
        std::fprintf(stderr, "weft: process reaper: epoll_wait: %s\n", std::strerror(errno));
        return;
      }
      for (int i = 0; i < n; ++i) {
        int fd = evs[i].data.fd;
        if (try_reap(fd)) {
          ::close(fd);  // leaves the epoll set
          g_pending.fetch_sub(1, std::memory_order_relaxed);
        } else {
          epoll_event ev{};
          ev.events = EPOLLIN | EPOLLONESHOT;
          ev.data.fd = fd;
          ::epoll_ctl(epfd_, EPOLL_CTL_MOD, fd, &ev);
        }
      }
    }
  }

  int epfd_ = -1;
};

Reaper& reaper() {
  static Reaper* r = new Reaper();  // lives for the process
  return *r;
}

}  // namespace

void reap_later(int pidfd) { reaper().add(pidfd); }

int64_t reaper_pending() { return g_pending.load(std::memory_order_relaxed); }

}  // namespace weft::process::internal
