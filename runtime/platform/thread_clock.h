// runtime/platform/thread_clock.h
//
// What another thread of this process is doing, as the kernel sees it: the
// CPU time it has run, and whether it is on (or waiting for) a CPU or
// blocked in a system call. The monitor reads them to tell a fiber that
// holds its worker from a worker that merely waits for a CPU (monitor.cc,
// step 2b). NOT for users.
#pragma once

#include <time.h>

#include <cstdint>

namespace weft::internal {

// kernel_tid() is the calling thread's kernel thread id (gettid).
int kernel_tid();

// own_cpu_clock() is the calling thread's CPU-time clock, which any thread
// of the process may read with cpu_clock_nanos() while this one lives.
// Returns false if there is none.
bool own_cpu_clock(clockid_t* out);

// cpu_clock_nanos() reads a clock from own_cpu_clock(): the CPU time its
// thread has run, in nanoseconds, or -1 if it cannot be read.
int64_t cpu_clock_nanos(clockid_t c);

enum class ThreadState {
  kRunnable,  // on a CPU, or in the kernel's run queue waiting for one ('R')
  kBlocked,   // sleeping in the kernel, in a system call or a page fault ('S', 'D')
  kOther,     // stopped, traced, exiting
  kUnknown,   // no such thread, or /proc is not mounted
};

// thread_state() is the state of thread `tid` of this process, from
// /proc/self/task/TID/stat. A file read: for occasional use.
ThreadState thread_state(int tid);

}  // namespace weft::internal
