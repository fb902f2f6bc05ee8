// The worker loop: where a worker finds its next fiber, and how it goes
// idle without losing a wake-up or spinning.
//
// # Finding work (find_runnable)
//   Local first: the LIFO slot (at most kLifoBudget runs in a row), then the
//   run queue; every kGlobalQueueInterval ticks the injection queue first,
//   and every kPollInterval ticks a non-blocking poll, so neither starves
//   while local work never runs out.
//
// # Idle workers (no lost wakeups, no spinning)
//   1. A worker with no local work takes from the inject queue, polls its
//      poller without blocking, then becomes a searcher (at most half of
//      the busy workers search at once) and tries to steal half of a peer's
//      queue, visiting peers in random order.
//   2. Finding nothing, it stores sleeping_ = true, enters the idle list,
//      and re-checks every source of work (inbox, inject queue, peer
//      queues). Only then does it block in epoll_wait until its next timer.
//   3. Whoever adds work from outside (inject) or queues stealable work
//      wakes one idle worker if nobody searches (Scheduler::notify_idle),
//      handing it the searching role; a poller dispatch does so once per
//      batch, and only for fibers beyond the one its worker runs next.
//      Whoever sends a worker a message signals its eventfd if sleeping_ is
//      set. Steps 2 and 3 use seq_cst operations on both sides, so one of
//      them always sees the other.
//   4. A worker woken by its poller leaves the idle list before dispatching
//      events and timers (poll_once), so their wake-ups never pick the
//      worker itself.
#include "runtime/internal/worker.h"

#include <algorithm>
#include <utility>

#include "runtime/internal/scheduler.h"
#include "runtime/internal/uring.h"
#include "runtime/platform/fault.h"
#include "runtime/platform/monotonic.h"
#include "runtime/platform/prefetch.h"
#include "runtime/platform/signal_mask.h"
#include "runtime/platform/thread_clock.h"

namespace weft::internal {

namespace {

constexpr uint32_t kGlobalQueueInterval = 61;  // ticks between inject checks
constexpr uint32_t kPollInterval = 61;         // ticks between busy polls
constexpr int kLifoBudget = 3;                 // consecutive LIFO-slot runs
constexpr size_t kMaxInjectBatch = 64;
constexpr uint64_t kIdBlock = 1024;
// Steal back-off (Worker::steal_backoff): a steal of fewer fibers than this
// makes the next steal from the same victim wait this long after it.
constexpr uint32_t kSmallSteal = 4;
constexpr int64_t kStealBackoffNanos = 2000;
// The Fiber and, after it, the usual join state and task (prefetch_fiber).
constexpr size_t kPrefetchBytes = 384;
// How many runs ahead: one run is shorter than a memory round trip.
constexpr uint32_t kPrefetchAhead = 2;
// The stack top of the fiber about to run is prefetched only while at least
// this many fibers are queued, counting it (prefetch_stack).
constexpr uint32_t kColdQueue = 8;
// Cached stacks (release_stacks): every kStackReleaseTicks (ticks are
// milliseconds), a worker unmaps those no fiber took in the last interval,
// keeping kStacksKept, at most kMaxStacksReleased at a time: a munmap took
// about 8 us here with another thread of the process running (the TLB
// shootdown), so one release holds the worker for at most about half a
// millisecond, and a thousand idle stacks go back over 16 s. A busy worker
// checks every kStackReleasePolls busy polls, about once per thousand runs.
constexpr uint64_t kStackReleaseTicks = 1000;
constexpr size_t kStacksKept = 32;
constexpr size_t kMaxStacksReleased = 64;
constexpr uint32_t kStackReleasePolls = 16;
// Free control blocks a worker keeps for its next spawns (block_cache.h);
// beyond this they go back to malloc. 4 MiB is about 11,000 blocks of 384
// bytes (a Fiber, a join state and a small lambda).
constexpr size_t kMaxCachedBlockBytes = size_t{4} << 20;
constexpr unsigned kRingEntries = 256;  // SQ slots; the CQ has twice as many

uint64_t next_rand(uint64_t* s) {
  // xorshift64*
  uint64_t x = *s;
  x ^= x >> 12;
  x ^= x << 25;
  x ^= x >> 27;
  *s = x;
  return x * 0x2545F4914F6CDD1DULL;
}

}  // namespace

Worker::Worker(Scheduler* sched, int id, Poller poller, Wakeup wakeup)
    : sched_(sched),
      id_(id),
      stacks_(sched->default_stack_size(), sched->stack_cache_size()),
      blocks_(id, kMaxCachedBlockBytes),
      rng_(sched->seed() * 0x9E3779B97F4A7C15ULL + static_cast<uint64_t>(id) * 0xBF58476D1CE4E5B9ULL + 1),
      poller_(std::move(poller)),
      wakeup_(std::move(wakeup)),
      wheel_(0) {
  shutdown_msg_.kind = MessageKind::kShutdown;
}

Worker::~Worker() {
  if (aux_stack_.base != nullptr) {
    release_context(&aux_ctx_);  // suspended in its loop; never resumed
    free_stack(aux_stack_);
  }
}

void Worker::start_thread() {
  thread_ = start_runtime_thread([this] { run_loop(); });
}

void Worker::join_thread() {
  if (thread_.joinable()) thread_.join();
}

void Worker::send_shutdown() {
  send(&shutdown_msg_);
  wakeup_.signal();
}

uint64_t Worker::next_fiber_id(std::atomic<uint64_t>& global) {
  if (id_next_ == id_end_) {
    id_next_ = global.fetch_add(kIdBlock, std::memory_order_relaxed);
    id_end_ = id_next_ + kIdBlock;
  }
  return id_next_++;
}

void Worker::run_loop() {
  set_current_worker(this);
  init_thread_context(&thread_ctx_);
  AltSignalStack alt;
  start_ring();
  has_cpu_clock_ = own_cpu_clock(&cpu_clock_);
  kernel_tid_.store(internal::kernel_tid(), std::memory_order_release);
  served_at_.store(monotonic_now(), std::memory_order_relaxed);  // the monitor's starting point
  loop_started_.store(true, std::memory_order_release);
  while (!sched_->stopping()) {
    sync_thread_signal_mask();  // signals reserved or released since the last turn
    Fiber* f = find_runnable();
    if (f != nullptr) resume(f);
  }
  if (searching_) {
    searching_ = false;
    sched_->num_searching_.fetch_sub(1, std::memory_order_seq_cst);
  }
  stop_ring();
  set_current_worker(nullptr);
}

void Worker::start_ring() {
  if (!sched_->io_uring_wanted()) return;
  absl::StatusOr<std::unique_ptr<Ring>> r = Ring::create(kRingEntries, &counters_.ring_ops, &counters_.ring_dropped);
  if (!r.ok()) return;  // ENOSYS, EPERM...: this worker's file calls use the pool
  absl::Status st;
  {
    std::lock_guard<SpinLock> g(driver_lock_);
    // Edge-triggered: a rescuer that sees the edge does not reap (it is not
    // the ring's thread) and must not be woken by it again; the owner
    // reaps before each of its own epoll_waits anyway (uring.cc, step 3).
    st = poller_.add((*r)->event_fd(), EPOLLIN | EPOLLET, Scheduler::kRingData);
  }
  if (!st.ok()) return;
  ring_ = std::move(*r);
  set_thread_ring(ring_.get());
  ring_active_.store(true, std::memory_order_release);
}

void Worker::stop_ring() {
  if (ring_ == nullptr) return;
  ring_->drain();  // uring.cc step 5: no CQE may still be owed
  set_thread_ring(nullptr);
  {
    std::lock_guard<SpinLock> g(driver_lock_);
    (void)poller_.remove(ring_->event_fd());
  }
  ring_.reset();
  ring_active_.store(false, std::memory_order_release);
}

void Worker::push_local(Fiber* f, bool lifo) {
  // While a rescuer serves this worker's driver, the owner is stuck in a
  // fiber: what it wakes goes where peers can steal it, and so does a fiber
  // it left in the LIFO slot (hand-over step 2).
  if (lifo && rescued_by_.load(std::memory_order_relaxed) >= 0) {
    lifo = false;
    if (lifo_ != nullptr) push_local(std::exchange(lifo_, nullptr), false);
  }
  if (lifo) {
    Fiber* old = lifo_;
    lifo_ = f;
    if (old == nullptr) return;
    f = old;  // the previous occupant goes to the back of the queue
  }
  while (!queue_.push(f)) {
    // Full: move the older half, plus f, to the inject queue.
    Fiber* batch[decltype(queue_)::capacity() / 2 + 1];
    size_t n = 0;
    queue_.take_half([&](Fiber* x) { batch[n++] = x; });
    if (n == 0) continue;  // thieves made room
    batch[n++] = f;
    sched_->inject_.push_batch(batch, n);
    break;
  }
  if (in_poll_) {
    ++poll_woken_;  // poll_once() notifies once, after the whole batch
  } else {
    sched_->notify_idle();  // idle step 3
  }
}

void Worker::wake_here(Fiber* f) {
  counters_.bump(counters_.unparks);
  push_local(f, !in_poll_);
}

// prefetch_fiber() starts loading the control block of a fiber that will
// run kPrefetchAhead runs from now, for writing. A queue longer than the
// caches (a spawner far ahead of the workers running its fibers) would
// otherwise cost a memory round trip per line of each block, in series
// with the run. A hint: f may be stolen meanwhile; a prefetch never faults.
void Worker::prefetch_fiber(const Fiber* f) {
  if (f == nullptr) return;
  const char* p = reinterpret_cast<const char*>(f);
  for (size_t off = 0; off < kPrefetchBytes; off += 64) prefetch_for_write(p + off);
}

// prefetch_stack() starts loading the saved context of the fiber just
// popped, which this worker now owns: the first load of jump_fcontext is
// from that fiber's stack top, a line last touched when the fiber parked
// and, with a thousand fibers cycling through a worker, long gone from its
// caches (perf, echo at 1,000 connections: jump_fcontext was the largest
// user-space cost, 90% of its samples on that load). The rest of the way
// to the jump (runnable(), switch_to()) overlaps part of the miss. Its
// fctx was saved before it was queued (switch.cc step 3), and no other
// thread can run it now, so the read is an ordinary one. Two lines: the
// saved registers and the frame above. Only while kColdQueue fibers or
// more are queued: with fewer (a few fibers yielding in turn) the stacks
// are warm and the work is pure cost.
void Worker::prefetch_stack(const Fiber* f) {
  const char* sp = static_cast<const char*>(f->ctx.fctx);
  if (sp == nullptr) return;  // never run: its stack is not chosen yet
  prefetch_for_read(sp);
  prefetch_for_read(sp + 64);
}

Fiber* Worker::next_local() {
  if (sched_->stopping()) return nullptr;
  ++tick_;
  progress_.store(tick_, std::memory_order_relaxed);  // for the monitor
  if (rescued_by_.load(std::memory_order_relaxed) >= 0) reclaim_driver();
  if (ring_ != nullptr && ring_->ready()) ring_->reap();  // uring.cc step 3
  // The busy poll comes first: the inject check below may return, and with
  // both intervals 61 it would otherwise skip every busy poll while the
  // inject queue is never empty (many yielding fibers).
  static_assert(kPollBatch < static_cast<int>(kPollInterval),
                "a busy poll must take fewer events than run between two (worker_io.cc step 2)");
  if (tick_ % kPollInterval == 0) {
    poll_once(0);
    if (serves_others()) serve_rescued();
    // Blocks given back by peers wait on the remote list until this worker
    // spawns again; a worker that has stopped spawning but never idles
    // would hold them all (block_cache.h step 4 keeps up to the cap).
    blocks_.trim();
    if (tick_ % (kPollInterval * kStackReleasePolls) == 0) release_stacks();
  }
  if (tick_ % kGlobalQueueInterval == 0) {
    Fiber* f = take_from_inject(kMaxInjectBatch);
    if (f != nullptr) {
      // The LIFO slot is never left occupied under a fiber that starts
      // running: if that fiber gets stuck, a fiber in the slot would be
      // stranded (the slot cannot be stolen).
      if (lifo_ != nullptr) push_local(std::exchange(lifo_, nullptr), false);
      return f;
    }
  }
  if (lifo_ != nullptr) {
    Fiber* f = lifo_;
    lifo_ = nullptr;
    if (lifo_streak_ < kLifoBudget) {
      ++lifo_streak_;
      return f;
    }
    push_local(f, false);  // budget spent: let the queue run first
  }
  lifo_streak_ = 0;
  Fiber* f = queue_.pop();
  if (f != nullptr) {
    prefetch_fiber(queue_.peek(kPrefetchAhead - 1));
    if (queue_.size() + 1 >= kColdQueue) prefetch_stack(f);
  }
  return f;
}

bool Worker::attach_stack(Fiber* f) {
  absl::StatusOr<Stack> st = stacks_.get(f->stack_size);
  if (!st.ok()) {
    absl::Status why = absl::Status(st.status().code(),
                                    "cannot start fiber: " + std::string(st.status().message()));
    sched_->discard_unstarted(f, &why);
    return false;
  }
  f->stack = *st;
  init_fiber_context(&f->ctx, st->bottom(), st->size, fiber_entry);
  return true;
}

Fiber* Worker::runnable(Fiber* f) {
  while (f != nullptr && f->ctx.fctx == nullptr) {
    if (f->unwind_requested) {  // shutdown: never started, never will
      sched_->discard_unstarted(f);
    } else if (attach_stack(f)) {
      break;
    }
    f = next_local();
  }
  return f;
}

Fiber* Worker::take_from_inject(size_t max) {
  size_t len = sched_->inject_.len();
  if (len == 0) return nullptr;
  size_t want = std::min(max, len / static_cast<size_t>(sched_->num_workers()) + 1);
  Fiber* batch[kMaxInjectBatch];
  size_t n = sched_->inject_.pop_batch(batch, want);
  if (n == 0) return nullptr;
  counters_.bump(counters_.inject_taken, n);
  for (size_t i = 0; i < n && i <= kPrefetchAhead; ++i) prefetch_fiber(batch[i]);
  for (size_t i = 1; i < n; ++i) {
    if (!queue_.push(batch[i])) push_local(batch[i], false);
  }
  return batch[0];
}

Fiber* Worker::find_runnable() {
  for (;;) {
    if (sched_->stopping()) return nullptr;
    Fiber* f = next_local();
    if (f == nullptr) f = take_from_inject(kMaxInjectBatch);  // idle step 1
    if (f == nullptr) {
      if (sched_->num_workers() > 1) {
        poll_once(0);  // own sockets before a peer's queue
      } else {
        // Nobody to steal from: the sleep below polls at once, and a
        // non-blocking poll first would double the epoll_wait calls of
        // a worker that goes idle after every wake-up (low load).
        poll_once(0, /*use_poller=*/false);
      }
      f = next_local();
    }
    if (f == nullptr && serves_others()) {
      serve_rescued();  // hand-over step 4
      f = next_local();
    }
    if (f == nullptr) f = steal();
    if (f != nullptr) {
      stop_searching();
      return f;
    }
    sleep_until_work();
  }
}

// Steal back-off. A thief that took only a few fibers, new ones, from a
// victim and comes back for more is most likely draining a fiber that
// spawns faster than one at a time but slower than the thief runs them:
// stealing again at once takes one or two fibers per steal, and every
// steal and every push of the victim then moves the queue's lines between
// the two cores (the victim's pushes ran 3x slower in spawn_benchmark).
// So the thief waits until kStealBackoffNanos have passed since that small
// steal before stealing from the same victim again, spinning (a sleep would
// make the victim pay for a wake-up). Go's runqgrab sleeps 3 us for the
// same reason before taking a running P's runnext.
void Worker::steal_backoff() {
  const int64_t until = small_steal_at_ + kStealBackoffNanos;
  while (monotonic_now() < until) {
    for (int i = 0; i < 16; ++i) __builtin_ia32_pause();
  }
  small_steal_victim_ = -1;
}

Fiber* Worker::steal() {
  const int n = sched_->num_workers();
  if (n == 1) return nullptr;
  if (!searching_) {
    uint32_t searching = sched_->num_searching_.load(std::memory_order_seq_cst);
    uint32_t idle = sched_->num_idle_.load(std::memory_order_seq_cst);
    if (2 * searching >= static_cast<uint32_t>(n) - std::min<uint32_t>(idle, static_cast<uint32_t>(n))) {
      return nullptr;
    }
    searching_ = true;
    sched_->num_searching_.fetch_add(1, std::memory_order_seq_cst);
  }
  int start = static_cast<int>(next_rand(&rng_) % static_cast<uint64_t>(n));
  for (int i = 0; i < n; ++i) {
    int v = (start + i) % n;
    if (v == id_) continue;
    if (v == small_steal_victim_) steal_backoff();
    counters_.bump(counters_.steal_attempts);
    uint32_t got = 0;
    Fiber* f = sched_->worker(v)->queue_.steal_into(queue_, &got);
    if (f != nullptr) {
      counters_.bump(counters_.steal_successes);
      counters_.bump(counters_.stolen, got);
      // Only a spawner is backed off from: the fibers it left are new.
      // Fibers woken by I/O come in bursts, one poll at a time, and a
      // thief that waited for more would only add latency (and, measured
      // on echo at 100 connections, cost 4% of the CPU per message).
      if (got < kSmallSteal && f->ctx.fctx == nullptr) {
        small_steal_victim_ = v;
        small_steal_at_ = monotonic_now();
      } else {
        small_steal_victim_ = -1;
      }
      return f;
    }
  }
  return nullptr;
}

void Worker::stop_searching() {
  if (!searching_) return;
  searching_ = false;
  // The last searcher to find work wakes another, if more work is waiting
  // (Go's rule: someone must keep looking while work is left over).
  if (sched_->num_searching_.fetch_sub(1, std::memory_order_seq_cst) == 1 &&
      (!queue_.empty() || sched_->inject_.len() > 0)) {
    sched_->notify_idle();
  }
}

bool Worker::work_visible() const {
  if (!inbox_.empty() || sched_->inject_.len() > 0) return true;
  if (rescue_pending_.load(std::memory_order_seq_cst)) return true;
  for (const Worker* s : serving_) {
    if (!s->inbox_.empty()) return true;
  }
  for (int i = 0; i < sched_->num_workers(); ++i) {
    if (i != id_ && !sched_->worker(i)->queue_.empty()) return true;
  }
  return false;
}

void Worker::sleep_until_work() {
  if (searching_) {
    searching_ = false;
    sched_->num_searching_.fetch_sub(1, std::memory_order_seq_cst);
  }
  // Unmapping stacks takes up to half a millisecond: done before this
  // worker counts as idle, so no wake-up picks it meanwhile.
  const int release_wait = release_stacks();
  sleeping_.store(true, std::memory_order_seq_cst);  // idle step 2
  sched_->add_idle(this);
  if (!sched_->stopping() && !work_visible() && !woken_to_search_.load(std::memory_order_seq_cst)) {
    counters_.bump(counters_.idle_sleeps);
    // Before sleeping, give the control blocks of fibers that exited here
    // back to the workers that spawned them, and take in those given back
    // here (block_cache.h steps 3b and 4).
    blocks_.flush();
    blocks_.trim();
    // An idle worker that still caches more than kStacksKept wakes when
    // the next release is due: a burst's stacks go back even if no timer
    // or socket wakes it.
    int timeout = timeout_until_next_timer();
    if (release_wait >= 0 && (timeout < 0 || release_wait < timeout)) timeout = release_wait;
    poll_once(timeout);
  }
  leave_idle();
}

int Worker::release_stacks() {
  if (stacks_.cached() <= kStacksKept) return -1;  // no clock read
  const uint64_t now = sched_->now_tick();
  if (now < next_stack_release_) return static_cast<int>(next_stack_release_ - now);
  next_stack_release_ = now + kStackReleaseTicks;
  stacks_.release_idle(kStacksKept, kMaxStacksReleased);
  return stacks_.cached() > kStacksKept ? static_cast<int>(kStackReleaseTicks) : -1;
}

void Worker::leave_idle() {
  if (!sleeping_.load(std::memory_order_relaxed)) return;
  sleeping_.store(false, std::memory_order_seq_cst);
  sched_->monitor().worker_active();  // monitor step 3
  sched_->remove_idle(this);
  if (woken_to_search_.exchange(false, std::memory_order_seq_cst)) searching_ = true;
}

}  // namespace weft::internal
