// runtime/platform/signal_mask.h
//
// The signals that weft::signal listeners have reserved, and the signal
// masks of the threads weft starts (workers, the monitor, the blocking
// pool). NOT for users: signal/signal.h states the rules they see.
//
// A signalfd only reports a process-directed signal that every thread of
// the process blocks; otherwise the kernel hands it to a thread that does
// not, with its ordinary disposition. So while a signal is reserved:
//   - every thread weft starts blocks it: a new thread from its first
//     instruction (it inherits the mask of its creator, and
//     enter_runtime_thread() completes it), a live one at the next turn of
//     its loop (sync_thread_signal_mask());
//   - a thread weft did not start blocks it while it holds a listener
//     (hold_signals_in_this_thread());
// and once it is released, each thread unblocks what it blocked for it, and
// nothing else. "Bit n-1" stands for signal n (1..64) throughout.
#pragma once

#include <cstdint>
#include <thread>
#include <utility>

namespace weft::internal {

// set_reserved_signals() publishes the set of reserved signals. The caller
// (signal/) serializes calls. Any thread.
void set_reserved_signals(uint64_t bits);
// reserved_signals() is the set published last. Any thread.
uint64_t reserved_signals();

// reserved_blocked_here() is the set of signals the calling thread blocks
// because they are (or were) reserved, which a thread it creates inherits.
uint64_t reserved_blocked_here();

// enter_runtime_thread() is the first call of a thread weft starts;
// `inherited` is its creator's reserved_blocked_here(). It marks the thread
// as weft's and brings its mask up to date.
void enter_runtime_thread(uint64_t inherited);

// sync_thread_signal_mask() brings the calling thread's mask up to date
// with the reserved set, if the thread is weft's: it blocks the reserved
// signals and unblocks those it blocked for a reservation since lifted. One
// relaxed load when nothing changed. A no-op in other threads.
void sync_thread_signal_mask();

// hold_signals_in_this_thread() blocks `bits` in the calling thread (if it
// is not weft's: weft's threads follow the reserved set) until as many
// release_signals_in_this_thread() calls on the same thread. Counts per
// signal; a signal the thread already blocked stays blocked afterwards.
void hold_signals_in_this_thread(uint64_t bits);
void release_signals_in_this_thread(uint64_t bits);

// start_runtime_thread() starts `fn` on a new std::thread that is weft's
// (enter_runtime_thread first). Throws what std::thread throws.
template <class Fn>
std::thread start_runtime_thread(Fn fn) {
  const uint64_t inherited = reserved_blocked_here();
  return std::thread([inherited, fn = std::move(fn)]() mutable {
    enter_runtime_thread(inherited);
    fn();
  });
}

}  // namespace weft::internal
