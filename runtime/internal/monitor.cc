// The monitor: no worker is frozen by one fiber.
//
// Each worker alone polls its epoll set, fires its timer wheel and drains
// its inbox (its *driver*). A fiber that computes for 200 ms, or blocks in
// a system call by mistake, would stop every socket and timer its worker
// owns. The monitor notices, and hands the driver to a peer until the
// worker comes back. (Go's sysmon retakes a P stuck in a syscall; its
// netpoller is global. With a poller per worker, the driver itself must
// move.)
//
// # Detecting a stuck worker
//   1. Every worker publishes progress_ (its loop tick, bumped at every
//      switch and every turn of its loop), sleeping_ (blocked in
//      epoll_wait with nothing to do) and served_at_ (when its epoll_wait
//      last returned; stored before it leaves idle).
//   2. The monitor samples them. A worker that is awake and whose progress
//      has not moved for stall_threshold is stuck, and so is one that has
//      not moved since the last sample and has sockets whose readiness it
//      has not served (served_at, stored when its epoll_wait returns) for
//      stall_threshold: its driver is handed over (below), and an episode
//      starts, counted once its charged time (2b) reaches stall_threshold.
//      It ends when progress moves.
//   2a. When the next sample comes. While some awake worker has not moved
//      since the last sample, has its readiness unserved for
//      stall_threshold, or has no socket: stall_threshold/2 later. Else
//      (every awake worker moves and polls its sockets) at the moment the
//      first of them would have gone stall_threshold without a poll:
//      min(served_at) + stall_threshold, at least 0.5 ms ahead. A busy
//      runtime of socket-owning workers polls every few hundred
//      microseconds, so that is about one sample per stall_threshold,
//      half as many wake-ups as a fixed stall_threshold/2 (each takes the
//      CPU from a worker for tens of microseconds on a shared CPU), and a
//      fiber that stops its worker right after a poll is found
//      stall_threshold after that poll: one sample sees it moved (or
//      starved), the next, stall_threshold/2 later at most, still and
//      starved. A worker with no socket is judged by progress alone: its
//      busy polls skip epoll_wait and read no clock (step 2 of
//      worker_io.cc's batch).
//   2b. A stall is charged to the fiber only for the time its thread ran
//      or was blocked in the kernel, not for time it waited for a CPU: on an
//      oversubscribed host (more runnable threads than CPUs, a container's
//      CPU quota) a worker can sit in the kernel's run queue for tens of
//      milliseconds with no fault of its fiber. At each sample of a worker
//      that has not moved, the monitor reads the thread's CPU time and its
//      state (/proc/self/task/TID/stat): blocked in the kernel ('S', 'D': a
//      blocking system call, the mistake hog reports exist for) charges the
//      whole interval since the last sample; runnable ('R') charges only the
//      CPU time it ran in that interval (at the first sample, with no
//      earlier reading, one sampling period at most). The driver is handed
//      over after stall_threshold of wall time either way (its sockets wait
//      just the same); an episode is counted once stall_threshold is
//      charged, and a report printed once report_threshold is. Without the
//      thread's clock or state (no /proc), the whole interval is charged.
//   3. When every worker sleeps (and none is stuck), the monitor parks on
//      a futex: it stores parked_ = 1, re-checks that every worker still
//      sleeps, and waits. A worker leaving idle stores sleeping_ = false,
//      then reads parked_ and wakes it (seq_cst on both sides: either the
//      monitor's re-check sees the worker awake, or the worker sees the
//      monitor parked). An idle runtime costs no monitor wake-ups. Back
//      from the park, every watch starts over: a worker that woke and has
//      not turned its loop yet (it runs its driver's batch, or a cancel
//      callback, first) has been stuck for no longer than since its wake.
//
// # Hand-over of a stuck worker S's driver to a rescuer R
//   1. The monitor picks R: an idle worker first, else any worker that is
//      not stuck. It stores S.rescued_by_ = R (seq_cst), queues S on R's
//      rescue requests and signals R's eventfd (start_rescue).
//   2. From then on every sender signals S's eventfd for each message it
//      queues (Worker::notify reads rescued_by_), and what S itself wakes
//      skips its LIFO slot, so peers can steal it. (A fiber S put in its
//      LIFO slot before the monitor noticed waits for S: the slot is never
//      stolen, tokio's rule; S never leaves the slot occupied under a fiber
//      it starts.)
//   3. R takes the request (serve_rescued) and adds S's epoll fd to its own
//      poller, level-triggered: S's readiness and S's eventfd (messages)
//      now wake R. R's sleep timeout includes S's next timer, and R does not
//      sleep while S's inbox holds a message.
//   4. Whenever R looks for work (each round of find_runnable, each busy
//      poll), it try-locks S's driver lock and runs one non-blocking wake
//      batch of S's driver (serve_driver: inbox, readiness, due timers)
//      with itself as the runner: the fibers it wakes go to R's queue.
//   5. S takes its driver back at its next turn of the loop (next_local):
//      it stores rescued_by_ = -1. Its next poll takes the driver lock, so
//      it waits for a batch R is in the middle of (a non-blocking poll just
//      skips it). Every event, timer and message is consumed under the
//      driver lock by exactly one batch: none is lost or seen twice.
//   6. R, finding S.rescued_by_ != R, removes S's epoll fd from its poller
//      and forgets S. If R itself gets stuck, the monitor hands S to
//      another worker (step 1 again) and R drops S when it comes back.
//
// # Reporting
//   An episode that lasts report_threshold is reported once, with the
//   fiber's id and where it was spawned; at most max_reports_per_second,
//   the rest counted and mentioned in the next report. Debug builds (no
//   NDEBUG, no sanitizer) add the stuck thread's backtrace, which that
//   thread prints itself on a signal (fault.h).
#include "runtime/internal/monitor.h"

#include <sys/epoll.h>
#include <time.h>

#include <algorithm>
#include <cinttypes>
#include <cstdio>
#include <mutex>

#include "runtime/internal/scheduler.h"
#include "runtime/platform/fault.h"
#include "runtime/platform/futex.h"
#include "runtime/platform/monotonic.h"
#include "runtime/platform/signal_mask.h"
#include "runtime/platform/thread_clock.h"

namespace weft::internal {

// --- the workers' side ---------------------------------------------------------

void Worker::running_fiber(uint64_t* id, const char** file, int* line) const {
  *id = running_id_.load(std::memory_order_relaxed);
  *file = running_file_.load(std::memory_order_relaxed);
  *line = running_line_.load(std::memory_order_relaxed);
}

void Worker::start_rescue(Worker* rescuer) {
  rescued_by_.store(rescuer->id_, std::memory_order_seq_cst);  // steps 1-2
  {
    std::lock_guard<SpinLock> g(rescuer->rescue_lock_);
    rescuer->rescue_requests_.push_back(this);
  }
  rescuer->rescue_pending_.store(true, std::memory_order_seq_cst);
  rescuer->wakeup_.signal();
}

void Worker::reclaim_driver() {
  rescued_by_.store(-1, std::memory_order_seq_cst);  // step 5
}

void Worker::serve_rescued() {
  if (rescue_pending_.exchange(false, std::memory_order_seq_cst)) {  // step 3
    std::vector<Worker*> requests;
    {
      std::lock_guard<SpinLock> g(rescue_lock_);
      requests.swap(rescue_requests_);
    }
    for (Worker* s : requests) {
      if (std::find(serving_.begin(), serving_.end(), s) != serving_.end()) continue;
      absl::Status st;
      {
        std::lock_guard<SpinLock> g(driver_lock_);
        st = poller_.add(s->poller_.fd(), EPOLLIN, Scheduler::rescue_data(s->id_));
      }
      // Without the registration R still serves S on every search round
      // and busy poll; it just is not woken by S's events while it sleeps.
      (void)st;
      serving_.push_back(s);
    }
  }
  for (size_t i = 0; i < serving_.size();) {
    Worker* s = serving_[i];
    if (s->rescued_by_.load(std::memory_order_seq_cst) != id_) {  // step 6
      {
        std::lock_guard<SpinLock> g(driver_lock_);
        (void)poller_.remove(s->poller_.fd());
      }
      serving_.erase(serving_.begin() + static_cast<std::ptrdiff_t>(i));
      continue;
    }
    if (s->driver_lock_.try_lock()) {  // step 4
      s->serve_driver(this, 0, true);
      s->driver_lock_.unlock();
      if (!deferred_cancels_.empty()) run_deferred_cancels();
    }
    ++i;
  }
}

// --- the monitor thread -------------------------------------------------------

Monitor::Monitor(Scheduler* sched, MonitorOptions opts)
    : sched_(sched), opts_(opts), watch_(static_cast<size_t>(sched->num_workers())) {}

Monitor::~Monitor() { stop(); }

void Monitor::start() {
  if (opts_.stall_nanos <= 0) return;
  thread_ = start_runtime_thread([this] { run(); });
}

void Monitor::stop() {
  if (!thread_.joinable()) return;
  stop_.store(1, std::memory_order_seq_cst);
  futex_wake(&stop_);
  parked_.store(0, std::memory_order_seq_cst);
  futex_wake(&parked_);
  thread_.join();
}

void Monitor::unpark() {
  if (parked_.exchange(0, std::memory_order_seq_cst) == 1) futex_wake(&parked_);  // step 3
}

bool Monitor::all_idle() const {
  for (int i = 0; i < sched_->num_workers(); ++i) {
    if (!sched_->worker(i)->sleeping()) return false;
  }
  return true;
}

void Monitor::run() {
  while (stop_.load(std::memory_order_acquire) == 0) {
    wakeups_.fetch_add(1, std::memory_order_relaxed);
    sync_thread_signal_mask();
    const int64_t now = monotonic_now();
    int64_t next = 0;
    if (!check(now, &next)) {
      parked_.store(1, std::memory_order_seq_cst);  // step 3
      if (all_idle() && stop_.load(std::memory_order_acquire) == 0) futex_wait(&parked_, 1, nullptr);
      parked_.store(0, std::memory_order_seq_cst);
      // The samples taken before the park are as old as the idle spell: a
      // worker that woke and has not yet turned its loop would look stuck
      // since then. Each watch starts over at the next check.
      for (Watch& x : watch_) x.since = 0;
      continue;
    }
    const int64_t delay = next - now;
    timespec ts{delay / 1'000'000'000, delay % 1'000'000'000};
    futex_wait(&stop_, 0, &ts);
  }
}

bool Monitor::check(int64_t now, int64_t* next) {
  bool awake = false;
  // Step 2a: the sample after this one.
  bool soon = false;
  int64_t due = now + opts_.stall_nanos;
  for (int i = 0; i < sched_->num_workers(); ++i) {
    Worker* w = sched_->worker(i);
    Watch& x = watch_[static_cast<size_t>(i)];
    uint64_t p = w->progress();
    bool sleeping = w->sleeping();
    // After sleeping() saw the worker awake: both are at least as new as
    // its wake-up (worker_io.cc stores them before it leaves idle).
    const bool sockets = !sleeping && w->registered_sockets() > 0;
    const int64_t served = w->served_at();
    const bool starved = sockets && now - served >= opts_.stall_nanos;
    if (sleeping || p != x.progress || x.since == 0) {  // step 2: moving, or idle
      x.progress = p;
      x.since = now;
      x.stuck = false;
      x.counted = false;
      x.reported = false;
      x.sampled_at = now;
      x.cpu_at = -1;  // read at the first sample that finds it still
      x.charged = 0;
      if (!sleeping) {
        awake = true;
        if (!sockets || starved) {
          soon = true;
        } else {
          due = std::min(due, served + opts_.stall_nanos);
        }
      }
      continue;
    }
    awake = true;
    soon = true;
    charge(w, x, now);  // step 2b
    const int64_t ran = now - x.since;
    if (ran < opts_.stall_nanos && !starved) continue;
    x.stuck = true;
    if (!x.counted && x.charged >= opts_.stall_nanos) {
      x.counted = true;
      episodes_.fetch_add(1, std::memory_order_relaxed);
    }
    int r = w->rescued_by();
    if (r < 0 || watch_[static_cast<size_t>(r)].stuck) hand_over(w);
    if (opts_.report && !x.reported && x.charged >= opts_.report_nanos) {
      x.reported = true;
      report(w, x.charged, ran - x.charged);
    }
  }
  *next = soon ? now + sample_nanos() : std::max(due, now + kMinSampleGapNanos);
  return awake;
}

void Monitor::charge(Worker* w, Watch& x, int64_t now) {
  const int64_t interval = now - x.sampled_at;
  x.sampled_at = now;
  int tid;
  clockid_t clock;
  if (!w->thread_ids(&tid, &clock)) {
    x.charged += interval;
    return;
  }
  const int64_t cpu = cpu_clock_nanos(clock);
  const int64_t prev = x.cpu_at;
  x.cpu_at = cpu;
  if (cpu < 0) {
    x.charged += interval;
    return;
  }
  switch (thread_state(tid)) {
    case ThreadState::kRunnable:
      // The first sample of a stall has no earlier CPU reading: charge
      // one sampling period, as a thread that ran all along would be, but
      // no more: the monitor itself may have waited for a CPU, and a
      // stretched interval is not the fiber's doing (rt_monitor_test's
      // starved worker once counted an episode that way, on a loaded
      // machine). The samples after it charge the CPU time exactly.
      x.charged += prev < 0 ? std::min(interval, sample_nanos()) : std::clamp<int64_t>(cpu - prev, 0, interval);
      break;
    case ThreadState::kOther:  // stopped by a debugger: not the fiber's doing
      break;
    case ThreadState::kBlocked:
    case ThreadState::kUnknown:
      x.charged += interval;
      break;
  }
}

void Monitor::hand_over(Worker* stuck) {
  Worker* best = nullptr;  // hand-over step 1: an idle worker first
  for (int j = 0; j < sched_->num_workers(); ++j) {
    if (j == stuck->id() || watch_[static_cast<size_t>(j)].stuck) continue;
    Worker* c = sched_->worker(j);
    if (c->sleeping()) {
      best = c;
      break;
    }
    if (best == nullptr) best = c;
  }
  if (best == nullptr) return;  // a lone worker, or every other one is stuck too
  // The worker may have come back since the sample: then it needs no help.
  if (stuck->progress() != watch_[static_cast<size_t>(stuck->id())].progress) return;
  stuck->start_rescue(best);
  handovers_.fetch_add(1, std::memory_order_relaxed);
}

void Monitor::report(Worker* w, int64_t ran_nanos, int64_t waited_nanos) {
  const int64_t now = monotonic_now();
  if (now - window_start_ >= 1'000'000'000) {
    window_start_ = now;
    window_reports_ = 0;
  }
  if (window_reports_ >= opts_.max_reports_per_second) {
    ++suppressed_;
    return;
  }
  ++window_reports_;
  reports_.fetch_add(1, std::memory_order_relaxed);
  uint64_t id;
  const char* file;
  int line;
  w->running_fiber(&id, &file, &line);
  char where[256] = "";
  if (file != nullptr) std::snprintf(where, sizeof(where), " (spawned at %s:%d)", file, line);
  char also[96] = "";
  if (suppressed_ > 0) {
    std::snprintf(also, sizeof(also), " [%" PRIu64 " more reports suppressed]", suppressed_);
    suppressed_ = 0;
  }
  int r = w->rescued_by();
  char served[96] = "";
  if (r >= 0) std::snprintf(served, sizeof(served), "; worker %d serves its sockets and timers meanwhile", r);
  char waited[96] = "";
  if (waited_nanos >= 1'000'000) {
    std::snprintf(waited, sizeof(waited), " (and waited %" PRId64 " ms for a CPU)", waited_nanos / 1'000'000);
  }
  if (id != 0) {
    std::fprintf(stderr, "weft: fiber %" PRIu64 " has run %" PRId64 " ms on worker %d without suspending%s%s%s%s\n",
                 id, ran_nanos / 1'000'000, w->id(), waited, where, served, also);
  } else {
    std::fprintf(stderr, "weft: worker %d has not returned to its loop for %" PRId64 " ms%s%s%s\n", w->id(),
                 ran_nanos / 1'000'000, waited, served, also);
  }
#ifndef NDEBUG
  // Debug builds: where it is stuck, printed by the worker's own thread
  // (fault.h says what the signal does to a blocked system call).
  if (backtraces_supported()) request_backtrace(w->native_thread(), "weft: backtrace of the stuck worker:\n");
#endif
}

}  // namespace weft::internal
