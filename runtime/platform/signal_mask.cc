#include "runtime/platform/signal_mask.h"

#include <pthread.h>
#include <signal.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <cstring>

namespace weft::internal {

namespace {

std::atomic<uint64_t> g_reserved{0};
// Bumped after every change of g_reserved; threads compare it with the
// generation they last applied.
std::atomic<uint64_t> g_generation{1};

// Per thread: is it weft's, which reserved signals it blocks on their
// account, the generation it applied, and (other threads) hold counts.
thread_local bool t_runtime = false;
thread_local uint64_t t_blocked = 0;
thread_local uint64_t t_seen_generation = 0;
thread_local uint16_t t_holds[64] = {};

sigset_t to_sigset(uint64_t bits) {
  sigset_t set;
  sigemptyset(&set);
  for (int i = 0; i < 64; ++i) {
    if ((bits >> i) & 1) sigaddset(&set, i + 1);
  }
  return set;
}

uint64_t from_sigset(const sigset_t& set, uint64_t among) {
  uint64_t bits = 0;
  for (int i = 0; i < 64; ++i) {
    if (((among >> i) & 1) && sigismember(&set, i + 1) == 1) bits |= uint64_t{1} << i;
  }
  return bits;
}

void mask_or_die(int how, uint64_t bits, sigset_t* old) {
  sigset_t set = to_sigset(bits);
  int err = pthread_sigmask(how, &set, old);
  if (err != 0) {
    // Only EINVAL is possible, for a bad `how`.
    std::fprintf(stderr, "weft: pthread_sigmask: %s\n", std::strerror(err));
    std::abort();
  }
}

// block() blocks `bits` and records as ours those not blocked before.
void block(uint64_t bits) {
  if (bits == 0) return;
  sigset_t old;
  mask_or_die(SIG_BLOCK, bits, &old);
  t_blocked |= bits & ~from_sigset(old, bits);
}

// unblock() unblocks those of `bits` that we blocked.
void unblock(uint64_t bits) {
  bits &= t_blocked;
  if (bits == 0) return;
  mask_or_die(SIG_UNBLOCK, bits, nullptr);
  t_blocked &= ~bits;
}

void apply(uint64_t want) {
  block(want & ~t_blocked);
  unblock(t_blocked & ~want);
}

}  // namespace

void set_reserved_signals(uint64_t bits) {
  g_reserved.store(bits, std::memory_order_release);
  g_generation.fetch_add(1, std::memory_order_acq_rel);
}

uint64_t reserved_signals() { return g_reserved.load(std::memory_order_acquire); }

uint64_t reserved_blocked_here() { return t_blocked; }

void enter_runtime_thread(uint64_t inherited) {
  t_runtime = true;
  // What the creator blocked for a reservation is blocked here too, for the
  // same reason: ours to unblock once it is lifted.
  sigset_t cur;
  pthread_sigmask(SIG_BLOCK, nullptr, &cur);
  t_blocked = from_sigset(cur, inherited);
  t_seen_generation = 0;
  sync_thread_signal_mask();
}

void sync_thread_signal_mask() {
  if (!t_runtime) return;
  const uint64_t gen = g_generation.load(std::memory_order_acquire);
  if (gen == t_seen_generation) return;
  t_seen_generation = gen;
  apply(g_reserved.load(std::memory_order_acquire));
}

void hold_signals_in_this_thread(uint64_t bits) {
  if (t_runtime) {
    sync_thread_signal_mask();
    return;
  }
  uint64_t first = 0;
  for (int i = 0; i < 64; ++i) {
    if (((bits >> i) & 1) && t_holds[i]++ == 0) first |= uint64_t{1} << i;
  }
  block(first);
}

void release_signals_in_this_thread(uint64_t bits) {
  if (t_runtime) {
    sync_thread_signal_mask();
    return;
  }
  uint64_t last = 0;
  for (int i = 0; i < 64; ++i) {
    if (((bits >> i) & 1) && t_holds[i] > 0 && --t_holds[i] == 0) last |= uint64_t{1} << i;
  }
  unblock(last);
}

}  // namespace weft::internal
