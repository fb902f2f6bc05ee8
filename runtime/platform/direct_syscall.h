// runtime/platform/direct_syscall.h
//
// The system calls on weft's per-message paths (a socket's recv and send,
// the poller's epoll_wait, the waker's eventfd), entered directly instead
// of through glibc's wrappers.
//
// Why: glibc makes recv, send, sendmsg, sendto, recvmsg, read, write and
// epoll_wait cancellation points. In a process with more than one thread
// (every weft process: the workers and the monitor) each such wrapper
// switches the thread to asynchronous cancellation before the call and
// back after it, two atomic read-modify-writes on the thread's descriptor
// around every call. A profile of the echo server at 1,000 connections put
// the pair at 0.7% of the server's time (docs/benchmarks.md, "Echo on
// io_uring, and calls without glibc's cancellation wrappers"). weft never
// cancels a thread with pthread_cancel, so it needs none of that.
//
// The functions keep the libc contract: -1 with errno set on failure, so
// the callers' errno handling (and last_errno()) is unchanged.
//
// Under AddressSanitizer and ThreadSanitizer they call glibc instead: the
// sanitizers intercept those calls to check the buffers the kernel reads
// and to model the kernel's writes into them, and a direct call would hide
// both. They also call glibc on architectures other than x86-64 (and on
// x32, whose long is 32 bits), for which the direct path is not written.
#pragma once

#include <errno.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <unistd.h>

#include <cstddef>

#if defined(__x86_64__) && !defined(__ILP32__) && !defined(__SANITIZE_ADDRESS__) && \
    !defined(__SANITIZE_THREAD__)
#define WEFT_DIRECT_SYSCALLS 1
#else
#define WEFT_DIRECT_SYSCALLS 0
#endif

namespace weft::internal::sys {

#if WEFT_DIRECT_SYSCALLS
// The x86-64 system call: number in rax, arguments in rdi, rsi, rdx, r10,
// r8, r9; the kernel clobbers rcx and r11 and returns -errno on failure.
inline long syscall6(long nr, long a1, long a2, long a3, long a4, long a5, long a6) {
  long ret;
  register long r10 __asm__("r10") = a4;
  register long r8 __asm__("r8") = a5;
  register long r9 __asm__("r9") = a6;
  __asm__ volatile("syscall"
                   : "=a"(ret)
                   : "0"(nr), "D"(a1), "S"(a2), "d"(a3), "r"(r10), "r"(r8), "r"(r9)
                   : "rcx", "r11", "memory");
  return ret;
}

// The kernel's result as libc would return it: errors (-4095..-1) become
// -1 with errno set.
inline long libc_result(long r) {
  if (__builtin_expect(r < 0 && r >= -4095, 0)) {
    errno = static_cast<int>(-r);
    return -1;
  }
  return r;
}
#endif

inline ssize_t recv(int fd, void* buf, size_t len, int flags) {
#if WEFT_DIRECT_SYSCALLS
  return libc_result(syscall6(SYS_recvfrom, fd, reinterpret_cast<long>(buf), static_cast<long>(len),
                              flags, 0, 0));
#else
  return ::recv(fd, buf, len, flags);
#endif
}

inline ssize_t send(int fd, const void* buf, size_t len, int flags) {
#if WEFT_DIRECT_SYSCALLS
  return libc_result(syscall6(SYS_sendto, fd, reinterpret_cast<long>(buf), static_cast<long>(len),
                              flags, 0, 0));
#else
  return ::send(fd, buf, len, flags);
#endif
}

inline ssize_t sendto(int fd, const void* buf, size_t len, int flags, const sockaddr* to,
                      socklen_t to_len) {
#if WEFT_DIRECT_SYSCALLS
  return libc_result(syscall6(SYS_sendto, fd, reinterpret_cast<long>(buf), static_cast<long>(len),
                              flags, reinterpret_cast<long>(to), to_len));
#else
  return ::sendto(fd, buf, len, flags, to, to_len);
#endif
}

inline ssize_t sendmsg(int fd, const msghdr* msg, int flags) {
#if WEFT_DIRECT_SYSCALLS
  return libc_result(syscall6(SYS_sendmsg, fd, reinterpret_cast<long>(msg), flags, 0, 0, 0));
#else
  return ::sendmsg(fd, msg, flags);
#endif
}

inline ssize_t recvmsg(int fd, msghdr* msg, int flags) {
#if WEFT_DIRECT_SYSCALLS
  return libc_result(syscall6(SYS_recvmsg, fd, reinterpret_cast<long>(msg), flags, 0, 0, 0));
#else
  return ::recvmsg(fd, msg, flags);
#endif
}

inline ssize_t read(int fd, void* buf, size_t len) {
#if WEFT_DIRECT_SYSCALLS
  return libc_result(
      syscall6(SYS_read, fd, reinterpret_cast<long>(buf), static_cast<long>(len), 0, 0, 0));
#else
  return ::read(fd, buf, len);
#endif
}

inline ssize_t write(int fd, const void* buf, size_t len) {
#if WEFT_DIRECT_SYSCALLS
  return libc_result(
      syscall6(SYS_write, fd, reinterpret_cast<long>(buf), static_cast<long>(len), 0, 0, 0));
#else
  return ::write(fd, buf, len);
#endif
}

inline int epoll_wait(int epfd, epoll_event* events, int max_events, int timeout_ms) {
#if WEFT_DIRECT_SYSCALLS
  return static_cast<int>(libc_result(syscall6(SYS_epoll_wait, epfd, reinterpret_cast<long>(events),
                                               max_events, timeout_ms, 0, 0)));
#else
  return ::epoll_wait(epfd, events, max_events, timeout_ms);
#endif
}

}  // namespace weft::internal::sys
