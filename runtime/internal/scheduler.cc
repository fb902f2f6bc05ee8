// The scheduler's shared state: creation, the fiber registry, submission,
// socket calls to a worker, the idle list (steps in worker.cc) and stats.
// Shutdown is in shutdown.cc.
#include "runtime/internal/scheduler.h"

#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <new>
#include <string>
#include <string_view>
#include <system_error>
#include <thread>

#include "runtime/internal/blocking_pool.h"
#include "runtime/internal/park.h"
#include "runtime/platform/check.h"
#include "runtime/platform/fault.h"
#include "runtime/options.h"

namespace weft::internal {

namespace {

// Fiber ids are unique within the process, across runtimes.
std::atomic<uint64_t> g_next_fiber_id{1};

constexpr size_t kFiberHeader = (sizeof(Fiber) + 15) & ~size_t{15};

// Runs in the SIGSEGV handler (fault.cc): is the address in the guard page
// of the fiber running on this thread?
bool report_guard_fault(void* addr, char* buf, size_t len) {
  Worker* w = current_worker();
  Fiber* f = w != nullptr ? w->current() : nullptr;
  if (f != nullptr && w->worker_stack_guard(addr)) {
    std::snprintf(buf, len, "weft: worker stack overflow in a call from on_worker_stack() (fiber %llu, worker %d)\n",
                  static_cast<unsigned long long>(f->id), w->id());
    return true;
  }
  if (f == nullptr || !f->stack.in_guard(addr)) return false;
  std::snprintf(buf, len, "weft: fiber stack overflow (fiber %llu, stack size %zu bytes)\n",
                static_cast<unsigned long long>(f->id), f->stack.size);
  return true;
}

}  // namespace

namespace {
// io_uring_wanted(): kOff, or WEFT_IO_URING=0 in the environment (for
// tests and for comparing against the pool), turns the rings off.
bool io_uring_wanted_by(IoUringMode mode) {
  if (mode == IoUringMode::kOff) return false;
  const char* env = std::getenv("WEFT_IO_URING");
  return env == nullptr || std::string_view(env) != "0";
}
}  // namespace

Scheduler::Scheduler(const RuntimeOptions& opts)
    : default_stack_size_(round_stack_size(opts.stack_size)),
      stack_cache_size_(opts.stack_cache_size),
      seed_(opts.seed != 0 ? opts.seed : static_cast<uint64_t>(monotonic_now())),
      io_uring_wanted_(io_uring_wanted_by(opts.io_uring)),
      epoch_nanos_(monotonic_now()) {}

absl::StatusOr<std::unique_ptr<Scheduler>> Scheduler::create(const RuntimeOptions& opts) {
  int n = opts.workers;
  if (n < 0 || n > 1024) {
    return absl::InvalidArgumentError("RuntimeOptions::workers must be in [0, 1024], got " +
                                      std::to_string(n));
  }
  if (n == 0) n = std::max(1, static_cast<int>(::sysconf(_SC_NPROCESSORS_ONLN)));
  if (opts.stack_size > (size_t{1} << 30)) {
    return absl::InvalidArgumentError("RuntimeOptions::stack_size must be at most 1 GiB");
  }
  if (opts.stall_threshold < absl::Milliseconds(1) && opts.stall_threshold != absl::ZeroDuration()) {
    return absl::InvalidArgumentError("RuntimeOptions::stall_threshold must be at least 1 ms (or zero: off), got " +
                                      absl::FormatDuration(opts.stall_threshold));
  }
  if (opts.hog_report_threshold < absl::ZeroDuration()) {
    return absl::InvalidArgumentError("RuntimeOptions::hog_report_threshold must not be negative");
  }
  absl::Status blocking = BlockingPool::validate(opts.blocking, "RuntimeOptions::blocking");
  if (!blocking.ok()) return blocking;
  std::unique_ptr<Scheduler> s(new Scheduler(opts));
  s->blocking_pool_ = std::make_unique<BlockingPool>(opts.blocking);
  s->registry_ = std::make_unique<RegistryShard[]>(static_cast<size_t>(n));
  for (int i = 0; i < n; ++i) {
    auto poller = Poller::create();
    if (!poller.ok()) return poller.status();
    auto wakeup = Wakeup::create();
    if (!wakeup.ok()) return wakeup.status();
    absl::Status st = poller->add(wakeup->fd(), EPOLLIN, kWakeupData);
    if (!st.ok()) return st;
    s->workers_.push_back(std::make_unique<Worker>(s.get(), i, std::move(*poller), std::move(*wakeup)));
  }
  std::vector<BlockCache*> caches;
  for (auto& w : s->workers_) caches.push_back(&w->blocks());
  for (auto& w : s->workers_) w->blocks().set_peers(caches);
  install_stack_overflow_handler(report_guard_fault);
#ifndef NDEBUG
  if (opts.report_hogs) install_backtrace_handler();
#endif
  MonitorOptions mo;
  mo.stall_nanos = opts.stall_threshold == absl::InfiniteDuration()
                       ? 0
                       : absl::ToInt64Nanoseconds(opts.stall_threshold);
  mo.report_nanos = absl::ToInt64Nanoseconds(opts.hog_report_threshold);
  mo.report = opts.report_hogs;
  s->monitor_ = std::make_unique<Monitor>(s.get(), mo);
  for (auto& w : s->workers_) {
    try {
      w->start_thread();
    } catch (const std::system_error& e) {
      s->stop();
      return absl::ResourceExhaustedError(std::string("cannot start worker thread: ") + e.what());
    }
  }
  // Each worker sets up its io_uring (or finds it cannot) on its own thread
  // before its loop; wait for that, so that Runtime::stats() says from the
  // start which workers have a ring.
  for (auto& w : s->workers_) {
    while (!w->loop_started()) std::this_thread::yield();
  }
  try {
    s->monitor_->start();
  } catch (const std::system_error& e) {
    s->stop();
    return absl::ResourceExhaustedError(std::string("cannot start monitor thread: ") + e.what());
  }
  return s;
}

Scheduler::~Scheduler() { stop(); }

uint64_t Scheduler::now_tick() const {
  return static_cast<uint64_t>(monotonic_now() - epoch_nanos_) / 1000000u;
}

uint64_t Scheduler::deadline_tick(int64_t deadline_nanos) const {
  int64_t rel = deadline_nanos - epoch_nanos_;
  if (rel <= 0) return 0;
  return (static_cast<uint64_t>(rel) + 999999u) / 1000000u;  // never early
}

// --- fibers -----------------------------------------------------------------

size_t Scheduler::fiber_block_size(size_t extra) { return kFiberHeader + extra; }

absl::StatusOr<Fiber*> Scheduler::new_fiber(size_t stack_size, size_t extra, void** extra_mem) {
  Worker* w = current_worker();
  if (w != nullptr && w->scheduler() != this) w = nullptr;
  size_t size = stack_size != 0 ? round_stack_size(stack_size) : default_stack_size_;
  if (extra > size / 4) {
    return absl::InvalidArgumentError("fiber function object of " + std::to_string(extra) +
                                      " bytes is too large for a " + std::to_string(size) +
                                      "-byte stack; capture less by value");
  }
  // A block spawned on a worker comes from its cache and goes back to it
  // (block_cache.h); one spawned elsewhere, or too large, from malloc.
  const uint32_t cls = w != nullptr ? BlockCache::class_of(fiber_block_size(extra)) : 0;
  void* mem = cls != 0 ? w->blocks().alloc(cls) : ::operator new(fiber_block_size(extra));
  Fiber* f = new (mem) Fiber();
  f->block_tag = cls != 0 ? (static_cast<uint32_t>(w->id()) << 8) | cls : 0;
  f->sched = this;
  f->stack_size = size;
  // Spawned while the runtime is being torn down: cancel at first run.
  f->unwind_requested = stopped_.load(std::memory_order_relaxed);
  f->id = w != nullptr ? w->next_fiber_id(g_next_fiber_id)
                       : g_next_fiber_id.fetch_add(1, std::memory_order_relaxed);
  *extra_mem = static_cast<char*>(mem) + kFiberHeader;
  // Counted as unregistered until it registers (register_running()) or is
  // freed.
  if (w != nullptr) {
    w->count_created();
  } else {
    outside_created_.fetch_add(1, std::memory_order_release);
  }
  return f;
}

void Scheduler::register_first(Worker* w, Fiber* f) {
  // In the shard of the worker f runs on, so that a spawner never takes
  // the lock of the shard its fibers' exits take (they usually exit on the
  // worker they suspended on). drain() sets draining_ before it walks the
  // registry, so a fiber that registers after the walk passed its shard
  // finds the flag in its next cancellation check (shutdown.cc, draining
  // step 2).
  f->reg_shard = w->id();
  register_fiber(f);
  w->count_unregistered_gone();  // after registering: see live_fibers()
}

void Scheduler::count_unregistered_gone() {
  Worker* w = current_worker();
  if (w != nullptr && w->scheduler() == this) {
    w->count_unregistered_gone();
  } else {
    outside_gone_.fetch_add(1, std::memory_order_release);
  }
}

void Scheduler::forget_fiber(Worker* w, Fiber* f) {
  if (f->reg_shard >= 0) {
    unregister_fiber(f);
  } else {
    w->count_unregistered_gone();
  }
}

void Scheduler::free_control_block(Fiber* f) {
  JoinStateBase* join = f->join;
  f->~Fiber();
  release_join_state(join);  // frees the block once the handle is gone too
}

void Scheduler::register_fiber(Fiber* f) {
  RegistryShard& s = registry_[static_cast<size_t>(f->reg_shard)];
  std::lock_guard<SpinLock> g(s.lock);
  f->reg_prev = nullptr;
  f->reg_next = s.head;
  if (s.head != nullptr) s.head->reg_prev = f;
  s.head = f;
  ++s.count;
}

void Scheduler::unregister_fiber(Fiber* f) {
  RegistryShard& s = registry_[static_cast<size_t>(f->reg_shard)];
  std::lock_guard<SpinLock> g(s.lock);
  if (f->reg_prev != nullptr) {
    f->reg_prev->reg_next = f->reg_next;
  } else {
    s.head = f->reg_next;
  }
  if (f->reg_next != nullptr) f->reg_next->reg_prev = f->reg_prev;
  --s.count;
}

int64_t Scheduler::unregistered_fibers() const {
  // Gone first, then created: a fiber counted gone was created before
  // (its creation happens before it runs, and the acquire loads see it),
  // so the difference never misses a fiber that is unregistered
  // throughout; it may count one that registers meanwhile twice.
  uint64_t gone = outside_gone_.load(std::memory_order_acquire);
  for (const auto& w : workers_) gone += w->unregistered_gone_count();
  uint64_t created = outside_created_.load(std::memory_order_acquire);
  for (const auto& w : workers_) created += w->created_count();
  return created > gone ? static_cast<int64_t>(created - gone) : 0;
}

int64_t Scheduler::live_fibers() const {
  // Unregistered, then registered: a fiber that registers between the two
  // reads registered before it counted itself gone, so the second read
  // finds it. Never less than the fibers alive throughout the call; at
  // rest, exact.
  int64_t n = unregistered_fibers();
  for (int i = 0; i < num_workers(); ++i) {
    RegistryShard& s = registry_[static_cast<size_t>(i)];
    std::lock_guard<SpinLock> g(s.lock);
    n += s.count;
  }
  return n;
}

void Scheduler::release_fiber(Worker* w, Fiber* f) {
  WEFT_DCHECK(f->timer_worker == nullptr, "release_fiber: the fiber's park timer is still armed");
  forget_fiber(w, f);
  release_context(&f->ctx);
  w->release_stack(f->stack);
  free_control_block(f);
}

void Scheduler::release_started(Worker* w, Fiber* f) {
  WEFT_DCHECK(f->timer_worker == nullptr, "release_started: the fiber's park timer is still armed");
  forget_fiber(w, f);
  free_control_block(f);
}

void Scheduler::discard_unstarted(Fiber* f, const absl::Status* why) {
  if (why != nullptr) {
    f->task->fail(*why);
  } else {
    f->task->cancel();
  }
  f->task->~TaskBase();
  release_fiber_tokens(f);
  count_unregistered_gone();
  free_control_block(f);
}

void Scheduler::submit(Fiber* f) {
  Worker* w = current_worker();
  if (w != nullptr && w->scheduler() == this) {
    w->count_spawn();
    w->push_local(f, false);
    return;
  }
  std::lock_guard<std::mutex> g(submit_mu_);
  if (stopped_.load(std::memory_order_relaxed) || draining_.load(std::memory_order_relaxed)) {
    discard_unstarted(f);
    return;
  }
  inject(f);
}

void Scheduler::submit_to(Fiber* f, int target) {
  Worker* cw = current_worker();
  const bool outside = cw == nullptr || cw->scheduler() != this;
  std::lock_guard<std::mutex> g(submit_mu_);
  if (stopped_.load(std::memory_order_relaxed) || (outside && draining_.load(std::memory_order_relaxed))) {
    discard_unstarted(f);
    return;
  }
  f->msg.kind = MessageKind::kSpawn;
  f->msg.fiber = f;
  workers_[static_cast<size_t>(target)]->send(&f->msg);
}

void Scheduler::inject(Fiber* f) {
  inject_.push(f);
  notify_idle();
}

// --- socket calls -----------------------------------------------------------

absl::Status Scheduler::io_call(int wi, IoMessage* m, IoToken* token) {
  WEFT_CHECK(wi >= 0 && wi < num_workers(), "io_call: no worker %d (runtime has %d)", wi,
             num_workers());
  Worker* w = workers_[static_cast<size_t>(wi)].get();
  Completion done;
  m->done = &done;
  Worker* cw = current_worker();
  if (cw == w) {
    // The direct path: this thread owns the poller and the slot table
    // (also true for the reaper, which runs as worker 0 after stop()).
    w->handle_io_message_direct(m);
  } else if (cw != nullptr && cw->scheduler() == this) {
    // A worker of this runtime: stopped_ cannot change under us (it is set
    // after every worker has left its loop; the reaper is worker 0).
    if (stopped_.load(std::memory_order_acquire)) {
      return absl::CancelledError("runtime shut down: socket message not delivered");
    }
    w->send(m);
  } else {
    std::lock_guard<std::mutex> g(submit_mu_);
    if (stopped_.load(std::memory_order_relaxed)) {
      return absl::CancelledError("runtime shut down: socket message not delivered");
    }
    w->send(m);
  }
  absl::Status s = done.wait();
  if (token != nullptr) *token = done.token;
  return s;
}

// --- the idle list (protocol in worker.cc) ------------------------------------

void Scheduler::notify_idle() {
  if (num_searching_.load(std::memory_order_seq_cst) != 0) return;
  if (num_idle_.load(std::memory_order_seq_cst) == 0) return;
  Worker* w = nullptr;
  {
    std::lock_guard<std::mutex> g(idle_mu_);
    if (idle_.empty() || num_searching_.load(std::memory_order_seq_cst) != 0) return;
    w = idle_.back();
    idle_.pop_back();
    num_idle_.fetch_sub(1, std::memory_order_seq_cst);
    num_searching_.fetch_add(1, std::memory_order_seq_cst);
    w->hand_search_role();
  }
  w->wake_up();
}

void Scheduler::add_idle(Worker* w) {
  std::lock_guard<std::mutex> g(idle_mu_);
  idle_.push_back(w);
  num_idle_.fetch_add(1, std::memory_order_seq_cst);
}

bool Scheduler::remove_idle(Worker* w) {
  std::lock_guard<std::mutex> g(idle_mu_);
  auto it = std::find(idle_.begin(), idle_.end(), w);
  if (it == idle_.end()) return false;  // a waker took it (and made it a searcher)
  idle_.erase(it);
  num_idle_.fetch_sub(1, std::memory_order_seq_cst);
  return true;
}

// --- stats ------------------------------------------------------------------

void Scheduler::fill_stats(RuntimeStats* out) const {
  out->workers.clear();
  for (const auto& wp : workers_) {
    const WorkerCounters& c = wp->counters();
    WorkerStats s;
    s.worker = wp->id();
    s.spawned = c.spawned.load(std::memory_order_relaxed);
    s.run = c.run.load(std::memory_order_relaxed);
    s.completed = c.completed.load(std::memory_order_relaxed);
    s.steal_attempts = c.steal_attempts.load(std::memory_order_relaxed);
    s.steal_successes = c.steal_successes.load(std::memory_order_relaxed);
    s.stolen = c.stolen.load(std::memory_order_relaxed);
    s.parks = c.parks.load(std::memory_order_relaxed);
    s.unparks = c.unparks.load(std::memory_order_relaxed);
    s.polls = c.polls.load(std::memory_order_relaxed);
    s.poll_events = c.poll_events.load(std::memory_order_relaxed);
    s.messages = c.messages.load(std::memory_order_relaxed);
    s.timers_fired = c.timers_fired.load(std::memory_order_relaxed);
    s.idle_sleeps = c.idle_sleeps.load(std::memory_order_relaxed);
    s.wakeups = c.wakeups.load(std::memory_order_relaxed);
    s.inject_taken = c.inject_taken.load(std::memory_order_relaxed);
    s.largest_poll = c.largest_poll.load(std::memory_order_relaxed);
    s.ring_ops = c.ring_ops.load(std::memory_order_relaxed);
    s.ring_dropped = c.ring_dropped.load(std::memory_order_relaxed);
    s.ring_active = wp->ring_active();
    s.queue_depth = wp->queue_depth();
    out->workers.push_back(s);
  }
  out->inject_depth = inject_.len();
  if (monitor_ != nullptr) {
    out->hog_episodes = monitor_->episodes();
    out->handovers = monitor_->handovers();
    out->hog_reports = monitor_->reports();
    out->monitor_wakeups = monitor_->wakeups();
  }
  out->live_fibers = live_fibers();
  if (blocking_pool_ != nullptr) out->blocking = blocking_pool_->stats();
}

}  // namespace weft::internal
