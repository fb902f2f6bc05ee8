// The scheduler: workers, switching, parking, idling, shutdown.
//
// # Switching
//   1. A fiber that gives up the CPU (yield, park, exit) picks its successor
//      itself from the local queues (Worker::next_local) and jumps straight
//      to it; only when nothing is local does it jump to the worker's own
//      stack, which searches further (inject queue, poller, peers) or sleeps.
//   2. The switching fiber records {itself, action} in Worker::pending_.
//      The context that lands runs after_switch(): it saves the previous
//      context's fcontext and only then carries out the action (queue it
//      for yield, publish kParked for park, free it for exit). So no other
//      thread can resume a fiber before its registers are saved.
//
// # Parking (lost-wakeup free without holding a lock across the switch)
//   1. The fiber bumps park_seq and stores wake_word = seq|kParking, then
//      makes itself findable (e.g. a Waiter in a wait list, a timer).
//   2. It switches out with kPark. after_switch() CASes seq|kParking ->
//      seq|kParked. If that CAS fails, a waker claimed the park in between
//      (step 3), and after_switch() queues the fiber itself.
//   3. A waker holding seq CASes the word to seq|kNotified. Seeing kParked
//      it must schedule() the fiber; seeing kParking it leaves that to step
//      2. A stale seq, or kNotified, means somebody else won: do nothing.
//   Timers fire under their wheel's lock and cancel takes the same lock, so
//   a timer callback never touches a fiber that already returned.
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
//      wakes one idle worker if nobody searches (notify_idle), handing it
//      the searching role; a poller dispatch does so once per batch, and
//      only for fibers beyond the one its worker runs next. Whoever sends
//      a worker a message signals its eventfd if sleeping_ is set. Steps 2
//      and 3 use seq_cst operations on both sides, so one of them always
//      sees the other. A worker woken by its poller leaves the idle list
//      before dispatching events and timers, so their wake-up never picks
//      the worker itself.
//
// # Shutdown
//   1. stop() sets stopping_ and sends every worker kShutdown; workers
//      leave their loop at the next switch to their own stack.
//   2. After joining them, the stopping thread adopts worker 0 and gathers
//      every queued fiber there. It marks every live fiber unwind_requested
//      and claims the parked ones.
//   3. It runs them: a fiber that never started is cancelled; one that is
//      suspended returns from its suspension point by throwing FiberUnwind,
//      which unwinds its stack and completes its JoinHandle as cancelled.
//      Timers of all wheels are fired when nothing else is runnable.
//   4. A fiber that blocks forever while unwinding is reported and its
//      stack released. No fiber or stack remains afterwards.
#include "runtime/internal/scheduler.h"

#include <linux/futex.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <climits>
#include <cstdio>
#include <cstring>
#include <new>
#include <system_error>

#include "runtime/platform/check.h"
#include "runtime/runtime.h"

namespace weft::internal {

namespace {

// initial-exec: a plain %fs-relative load, no __tls_get_addr call on the
// switch path.
__attribute__((tls_model("initial-exec"))) thread_local Worker* tls_worker = nullptr;

constexpr uint32_t kGlobalQueueInterval = 61;  // ticks between inject checks
constexpr uint32_t kPollInterval = 61;         // ticks between busy polls
constexpr int kLifoBudget = 3;                 // consecutive LIFO-slot runs
constexpr size_t kMaxInjectBatch = 64;
constexpr int kMinPollEvents = 16;             // events a poll takes even from a full queue
constexpr uint64_t kWakeupData = ~uint64_t{0};
constexpr uint64_t kIdBlock = 1024;

std::atomic<uint64_t> g_next_fiber_id{1};

uint64_t next_rand(uint64_t* s) {
  // xorshift64*
  uint64_t x = *s;
  x ^= x >> 12;
  x ^= x << 25;
  x ^= x >> 27;
  *s = x;
  return x * 0x2545F4914F6CDD1DULL;
}

int futex_wait(std::atomic<uint32_t>* word, uint32_t expected, const timespec* timeout) {
  return static_cast<int>(::syscall(SYS_futex, reinterpret_cast<uint32_t*>(word), FUTEX_WAIT_PRIVATE,
                                    expected, timeout, nullptr, 0));
}

void futex_wake(std::atomic<uint32_t>* word) {
  ::syscall(SYS_futex, reinterpret_cast<uint32_t*>(word), FUTEX_WAKE_PRIVATE, 1, nullptr, nullptr, 0);
}

// --- stack overflow reporting ---------------------------------------------

struct sigaction g_prev_segv;

[[maybe_unused]] void segv_handler(int sig, siginfo_t* info, void* uctx) {
  Worker* w = tls_worker;
  Fiber* f = w != nullptr ? w->current() : nullptr;
  if (f != nullptr && f->stack.in_guard(info->si_addr)) {
    char buf[160];
    int n = std::snprintf(buf, sizeof(buf),
                          "weft: fiber stack overflow (fiber %llu, stack size %zu bytes)\n",
                          static_cast<unsigned long long>(f->id), f->stack.size);
    (void)!::write(STDERR_FILENO, buf, static_cast<size_t>(n));
    ::signal(SIGABRT, SIG_DFL);
    ::abort();
  }
  // Not ours: restore the previous disposition and let the fault recur.
  ::sigaction(SIGSEGV, &g_prev_segv, nullptr);
  (void)sig;
  (void)uctx;
}

// Installed by every Scheduler::create(), unless it is installed already,
// so a handler set in between (a test framework, say) is chained to.
void install_segv_handler() {
#if !defined(__SANITIZE_ADDRESS__)
  static std::mutex mu;
  std::lock_guard<std::mutex> g(mu);
  struct sigaction cur;
  if (::sigaction(SIGSEGV, nullptr, &cur) == 0 && (cur.sa_flags & SA_SIGINFO) &&
      cur.sa_sigaction == segv_handler) {
    return;
  }
  struct sigaction sa;
  std::memset(&sa, 0, sizeof(sa));
  sa.sa_sigaction = segv_handler;
  sa.sa_flags = SA_SIGINFO | SA_ONSTACK;
  sigemptyset(&sa.sa_mask);
  ::sigaction(SIGSEGV, &sa, &g_prev_segv);
#endif
}

// Each worker thread handles signals on its own alternate stack, so a
// fault on a full fiber stack can still be reported.
struct AltStack {
  void* mem = nullptr;
  size_t size = 64 * 1024;
  AltStack() {
    mem = ::mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (mem == MAP_FAILED) {
      mem = nullptr;
      return;
    }
    stack_t ss{};
    ss.ss_sp = mem;
    ss.ss_size = size;
    ::sigaltstack(&ss, nullptr);
  }
  ~AltStack() {
    if (mem == nullptr) return;
    stack_t ss{};
    ss.ss_flags = SS_DISABLE;
    ::sigaltstack(&ss, nullptr);
    ::munmap(mem, size);
  }
};

}  // namespace

void fiber_entry(Transfer t);

__attribute__((noinline, noipa)) Worker* current_worker() {
  Worker* w = tls_worker;
  asm volatile("" ::: "memory");
  return w;
}

__attribute__((noinline, noipa)) Fiber* current_fiber() {
  Worker* w = tls_worker;
  return w != nullptr ? w->current() : nullptr;
}

int64_t monotonic_now() {
  timespec ts;
  ::clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<int64_t>(ts.tv_sec) * 1000000000LL + ts.tv_nsec;
}

int64_t to_monotonic(absl::Time t) {
  if (t == absl::InfiniteFuture()) return -1;
  absl::Duration left = t - absl::Now();
  int64_t now = monotonic_now();
  if (left <= absl::ZeroDuration()) return now;
  if (left > absl::Hours(24 * 365 * 100)) return -1;
  return now + absl::ToInt64Nanoseconds(left);
}

// ===========================================================================
// Worker
// ===========================================================================

Worker::Worker(Scheduler* sched, int id, Poller poller, Wakeup wakeup)
    : sched_(sched),
      id_(id),
      poller_(std::move(poller)),
      wakeup_(std::move(wakeup)),
      wheel_(0),
      stacks_(sched->default_stack_size(), sched->stack_cache_size_),
      rng_(sched->seed_ * 0x9E3779B97F4A7C15ULL + static_cast<uint64_t>(id) * 0xBF58476D1CE4E5B9ULL + 1) {
  shutdown_msg_.kind = MessageKind::kShutdown;
}

Worker::~Worker() = default;

void Worker::run_loop() {
  tls_worker = this;
  init_thread_context(&thread_ctx_);
  AltStack alt;
  while (!sched_->stopping()) {
    Fiber* f = find_runnable();
    if (f != nullptr) resume(f);
  }
  if (searching_) {
    searching_ = false;
    sched_->num_searching_.fetch_sub(1, std::memory_order_seq_cst);
  }
  tls_worker = nullptr;
}

void Worker::push_local(Fiber* f, bool lifo) {
  if (lifo) {
    Fiber* old = lifo_;
    lifo_ = f;
    if (old == nullptr) return;
    f = old;  // the previous occupant goes to the back of the queue
  }
  while (!queue_.push(f)) {
    // Full: move the older half, plus f, to the inject queue.
    Fiber* first = nullptr;
    Fiber* last = nullptr;
    size_t n = queue_.take_half([&](Fiber* x) {
      x->next = nullptr;
      if (last != nullptr) {
        last->next = x;
      } else {
        first = x;
      }
      last = x;
    });
    if (n == 0) continue;  // thieves made room
    last->next = f;
    sched_->inject_.push_batch(first, f, n + 1);
    break;
  }
  if (in_poll_) {
    ++poll_woken_;  // poll_once() notifies once, after the whole batch
  } else {
    sched_->notify_idle();
  }
}

Fiber* Worker::next_local() {
  if (sched_->stopping()) return nullptr;
  ++tick_;
  // The busy poll comes first: the inject check below may return, and with
  // both intervals 61 it would otherwise skip every busy poll while the
  // inject queue is never empty (many yielding fibers).
  if (tick_ % kPollInterval == 0) poll_once(0);
  if (tick_ % kGlobalQueueInterval == 0) {
    Fiber* f = take_from_inject(kMaxInjectBatch);
    if (f != nullptr) return f;
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
  return queue_.pop();
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
  size_t n = 0;
  Fiber* chain = sched_->inject_.pop_batch(want, &n);
  if (chain == nullptr) return nullptr;
  counters_.bump(counters_.inject_taken, n);
  Fiber* first = chain;
  chain = chain->next;
  while (chain != nullptr) {
    Fiber* nx = chain->next;
    if (!queue_.push(chain)) push_local(chain, false);
    chain = nx;
  }
  return first;
}

Fiber* Worker::find_runnable() {
  for (;;) {
    if (sched_->stopping()) return nullptr;
    Fiber* f = next_local();
    if (f == nullptr) f = take_from_inject(kMaxInjectBatch);
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
    if (f == nullptr) f = steal();
    if (f != nullptr) {
      stop_searching();
      return f;
    }
    sleep_until_work();
  }
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
    counters_.bump(counters_.steal_attempts);
    uint32_t got = 0;
    Fiber* f = sched_->worker(v)->queue_.steal_into(queue_, &got);
    if (f != nullptr) {
      counters_.bump(counters_.steal_successes);
      counters_.bump(counters_.stolen, got);
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
  sleeping_.store(true, std::memory_order_seq_cst);
  sched_->add_idle(this);
  if (!sched_->stopping() && !work_visible() && !woken_to_search_.load(std::memory_order_seq_cst)) {
    counters_.bump(counters_.idle_sleeps);
    poll_once(timeout_until_next_timer());
  }
  leave_idle();
}

void Worker::leave_idle() {
  if (!sleeping_.load(std::memory_order_relaxed)) return;
  sleeping_.store(false, std::memory_order_seq_cst);
  sched_->remove_idle(this);
  if (woken_to_search_.exchange(false, std::memory_order_seq_cst)) searching_ = true;
}

void Worker::resume(Fiber* f) {
  f = runnable(f);
  if (f == nullptr) return;
  counters_.bump(counters_.run);
  current_ = f;
  pending_ = {nullptr, SwitchAction::kNone};
  Transfer t = switch_context(&thread_ctx_, &f->ctx, nullptr, false);
  after_switch(t);
}

void Worker::switch_to(Fiber* from, Fiber* to, SwitchAction action) {
  to = runnable(to);
  pending_ = {from, action};
  current_ = to;
  ExecutionContext* target = &thread_ctx_;
  if (to != nullptr) {
    counters_.bump(counters_.run);
    target = &to->ctx;
  }
  Transfer t = switch_context(&from->ctx, target, nullptr, action == SwitchAction::kExit);
  after_switch(t);  // resumed, possibly on another worker
}

void Worker::suspend(SwitchAction action) {
  Worker* w = current_worker();
  Fiber* self = w->current_;
  WEFT_DCHECK(self != nullptr, "suspend() off a fiber");
  Fiber* next = w->next_local();
  w->switch_to(self, next, action);
}

void Worker::after_switch(Transfer t) {
  Worker* w = current_worker();
  Fiber* prev = w->pending_.from;
  SwitchAction action = w->pending_.action;
  w->pending_ = {nullptr, SwitchAction::kNone};
  if (prev == nullptr) {
    w->thread_ctx_.fctx = t.fctx;
    return;
  }
  prev->ctx.fctx = t.fctx;
  switch (action) {
    case SwitchAction::kYield:
      w->push_local(prev, false);
      break;
    case SwitchAction::kPark: {
      uint64_t seq = prev->park_seq;
      uint64_t expect = (seq << 2) | kParking;
      if (!prev->wake_word.compare_exchange_strong(expect, (seq << 2) | kParked,
                                                   std::memory_order_acq_rel)) {
        w->push_local(prev, false);  // claimed while it was switching out
      }
      break;
    }
    case SwitchAction::kExit:
      w->sched_->release_fiber(w, prev);
      break;
    case SwitchAction::kNone:
      break;
  }
}

void Worker::send(WorkerMessage* m) {
  inbox_.push(m);
  notify();
}

void Worker::notify() {
  if (sleeping_.load(std::memory_order_seq_cst)) wakeup_.signal();
}

void Worker::poll_once(int timeout_ms, bool use_poller) {
  if (use_poller) counters_.bump(counters_.polls);
  drain_inbox();
  // Take no more events than the run queue has room for: the rest wait in
  // the kernel's ready list, in order, for the next poll. Taking them all
  // would overflow the queue and send its older half to the inject queue,
  // behind fibers woken later (a latency tail with many connections). At
  // least kMinPollEvents are taken even from a full queue, so a worker
  // busy with runnable fibers still serves its sockets. (A blocking poll
  // only happens with the queue empty.)
  const int room = static_cast<int>(queue_.capacity() - queue_.size());
  const int max_events = std::min(kMaxEvents, std::max(room, kMinPollEvents));
  // Fibers woken from here to the end of fire_timers() (readiness and
  // timers) go to the back of the queue in order, and wake an idle peer at
  // most once, at the end.
  in_poll_ = true;
  poll_woken_ = 0;
  int n = 0;
  if (use_poller && (timeout_ms != 0 || io_live_ > 0)) n = poller_.wait(events_, max_events, timeout_ms);
  // Off the idle list before waking anyone, so the wake-up below cannot
  // pick this worker (an eventfd write, and a next sleep that returns at
  // once to read it).
  leave_idle();
  for (int i = 0; i < n; ++i) {
    uint64_t data = events_[i].data.u64;
    if (data == kWakeupData) {
      counters_.bump(counters_.wakeups);
      wakeup_.drain();
    } else {
      counters_.bump(counters_.poll_events);
      dispatch_io(data, events_[i].events);
    }
  }
  fire_timers(this);
  in_poll_ = false;
  // Wake an idle peer only for work this worker will not get to next:
  // a lone woken fiber runs here at once, and waking a peer for it costs
  // an eventfd write and a search that finds nothing, or a steal that
  // moves the fiber to a cold CPU (tokio's rule is the same).
  if (poll_woken_ > 0 &&
      (queue_.size() > (lifo_ == nullptr ? 1u : 0u) || sched_->inject_.len() > 0)) {
    sched_->notify_idle();
  }
  if (n > 0) drain_inbox();
}

void Worker::drain_inbox() {
  while (WorkerMessage* m = inbox_.pop()) {
    counters_.bump(counters_.messages);
    switch (m->kind) {
      case MessageKind::kSpawn:
      case MessageKind::kWake: {
        push_local(m->fiber, m->kind == MessageKind::kWake);
        break;
      }
      case MessageKind::kShutdown:
      case MessageKind::kStub:
        break;
      default:
        handle_io_message(static_cast<IoMessage*>(m));
        break;
    }
  }
}

void Worker::handle_io_message(IoMessage* m) {
  absl::Status status;
  IoToken token = m->token;
  auto slot_of = [&](IoToken t) -> IoSlot* {
    uint32_t idx = static_cast<uint32_t>(t & 0xffffffffu);
    uint32_t gen = static_cast<uint32_t>(t >> 32);
    if (t == kNoIoToken || idx >= io_slots_.size()) return nullptr;
    IoSlot& s = io_slots_[idx];
    return (s.source != nullptr && s.gen == gen) ? &s : nullptr;
  };
  switch (m->kind) {
    case MessageKind::kRegisterSocket: {
      uint32_t idx;
      if (io_free_ >= 0) {
        idx = static_cast<uint32_t>(io_free_);
        io_free_ = io_slots_[idx].next_free;
      } else {
        idx = static_cast<uint32_t>(io_slots_.size());
        io_slots_.emplace_back();
      }
      IoSlot& s = io_slots_[idx];
      token = (static_cast<uint64_t>(s.gen) << 32) | idx;
      status = poller_.add(m->fd, m->events, token);
      if (status.ok()) {
        s.source = m->source;
        s.fd = m->fd;
        ++io_live_;
        io_count_.store(io_live_, std::memory_order_relaxed);
      } else {
        s.next_free = io_free_;
        io_free_ = static_cast<int32_t>(idx);
        token = kNoIoToken;
      }
      break;
    }
    case MessageKind::kModifySocket: {
      IoSlot* s = slot_of(token);
      status = s == nullptr ? absl::NotFoundError("ModifySocket: no such registration")
                            : poller_.modify(s->fd, m->events, token);
      break;
    }
    case MessageKind::kCloseSocket: {
      IoSlot* s = slot_of(token);
      if (s == nullptr) {
        status = absl::NotFoundError("CloseSocket: no such registration");
        break;
      }
      status = poller_.remove(s->fd);
      {
        std::lock_guard<SpinLock> g(timer_lock_);
        for (TimerEntry& te : s->timers) {
          if (wheel_.cancel(&te)) timers_armed_.fetch_sub(1, std::memory_order_relaxed);
        }
      }
      s->source = nullptr;
      s->fd = -1;
      ++s->gen;  // late events carrying the old token are dropped
      s->next_free = io_free_;
      io_free_ = static_cast<int32_t>(token & 0xffffffffu);
      --io_live_;
      io_count_.store(io_live_, std::memory_order_relaxed);
      break;
    }
    case MessageKind::kSetSocketTimeout:
    case MessageKind::kCancelSocketTimeout: {
      IoSlot* s = slot_of(token);
      if (s == nullptr || m->timer_index < 0 || m->timer_index >= kIoTimers) {
        status = absl::NotFoundError("socket timeout: no such registration or timer");
        break;
      }
      TimerEntry& te = s->timers[m->timer_index];
      std::lock_guard<SpinLock> g(timer_lock_);
      if (wheel_.cancel(&te)) timers_armed_.fetch_sub(1, std::memory_order_relaxed);
      if (m->kind == MessageKind::kSetSocketTimeout) {
        uint64_t idx = token & 0xffffffffu;
        te.owner = reinterpret_cast<void*>((idx << 2) | (static_cast<uint64_t>(m->timer_index) << 1) | 1);
        wheel_.insert(&te, sched_->deadline_tick(m->deadline_nanos));
        timers_armed_.fetch_add(1, std::memory_order_relaxed);
      }
      break;
    }
    default:
      status = absl::InternalError("unknown worker message");
      break;
  }
  if (m->done != nullptr) {
    m->done->set(status, token);
  } else {
    delete m;
  }
}

void Worker::dispatch_io(uint64_t data, uint32_t events) {
  uint32_t idx = static_cast<uint32_t>(data & 0xffffffffu);
  uint32_t gen = static_cast<uint32_t>(data >> 32);
  if (idx >= io_slots_.size()) return;
  IoSlot& s = io_slots_[idx];
  if (s.source == nullptr || s.gen != gen) return;  // stale: closed or moved
  s.source->on_io_events(events);
}

void Worker::fire_timers(Worker* into) {
  if (timers_armed_.load(std::memory_order_relaxed) == 0) return;
  const uint64_t now = sched_->now_tick();
  for (;;) {
    // Fiber timers are claimed under the lock (disarm_timer() takes it, so
    // the fiber cannot have returned). I/O timers run after it is dropped:
    // their callbacks may touch the wheel, and they belong to this worker.
    uint64_t io_fired[64];
    size_t n_io = 0;
    bool more = false;
    {
      std::lock_guard<SpinLock> g(timer_lock_);
      wheel_.advance(now, [&](TimerEntry* e) {
        timers_armed_.fetch_sub(1, std::memory_order_relaxed);
        counters_.bump(counters_.timers_fired);
        auto tag = reinterpret_cast<uintptr_t>(e->owner);
        if (tag & 1) {
          if (n_io < 64) {
            io_fired[n_io++] = tag >> 1;
          } else {
            wheel_.insert(e, now);  // no room this round: due again at once
            timers_armed_.fetch_add(1, std::memory_order_relaxed);
            more = true;
          }
          return;
        }
        Fiber* f = static_cast<Fiber*>(e->owner);
        if (try_claim(f, f->timer_seq)) into->push_local(f, false);
      });
    }
    for (size_t i = 0; i < n_io; ++i) {
      uint64_t idx = io_fired[i] >> 1;
      int which = static_cast<int>(io_fired[i] & 1);
      if (idx < io_slots_.size() && io_slots_[idx].source != nullptr) {
        io_slots_[idx].source->on_io_timeout(which);
      }
    }
    if (!more) return;
  }
}

int Worker::timeout_until_next_timer() {
  if (timers_armed_.load(std::memory_order_relaxed) == 0) return -1;
  std::optional<uint64_t> next;
  {
    std::lock_guard<SpinLock> g(timer_lock_);
    next = wheel_.next_deadline();
  }
  if (!next) return -1;
  uint64_t now = sched_->now_tick();
  if (*next <= now) return 0;
  return static_cast<int>(std::min<uint64_t>(*next - now, INT_MAX));
}

void Worker::arm_timer(Fiber* f, uint64_t seq, int64_t deadline_nanos) {
  f->timer_seq = seq;
  f->timer.owner = f;
  f->timer_worker = this;
  uint64_t tick = sched_->deadline_tick(deadline_nanos);
  std::lock_guard<SpinLock> g(timer_lock_);
  wheel_.insert(&f->timer, tick);
  timers_armed_.fetch_add(1, std::memory_order_relaxed);
}

void Worker::disarm_timer(Fiber* f) {
  Worker* w = f->timer_worker;
  if (w == nullptr) return;
  {
    std::lock_guard<SpinLock> g(w->timer_lock_);
    if (w->wheel_.cancel(&f->timer)) w->timers_armed_.fetch_sub(1, std::memory_order_relaxed);
  }
  f->timer_worker = nullptr;
}

// ===========================================================================
// Parking
// ===========================================================================

uint64_t prepare_park(Fiber* self) {
  uint64_t seq = ++self->park_seq;
  self->wake_word.store((seq << 2) | kParking, std::memory_order_release);
  return seq;
}

void park(Fiber* self, uint64_t seq, int64_t deadline_nanos) {
  Worker* w = current_worker();
  if (deadline_nanos >= 0) w->arm_timer(self, seq, deadline_nanos);
  w->counters_.bump(w->counters_.parks);
  Worker::suspend(Worker::SwitchAction::kPark);
  if (self->timer_worker != nullptr) Worker::disarm_timer(self);
}

bool try_claim(Fiber* f, uint64_t seq) {
  const uint64_t seq_bits = seq << 2;
  uint64_t w = f->wake_word.load(std::memory_order_acquire);
  for (;;) {
    if ((w & ~uint64_t{3}) != seq_bits) return false;
    uint64_t st = w & 3;
    if (st != kParking && st != kParked) return false;
    if (f->wake_word.compare_exchange_weak(w, seq_bits | kNotified, std::memory_order_acq_rel,
                                           std::memory_order_acquire)) {
      return st == kParked;
    }
  }
}

void schedule(Fiber* f) {
  Worker* w = current_worker();
  if (w != nullptr && w->sched_ == f->sched) {
    w->counters_.bump(w->counters_.unparks);
    w->push_local(f, !w->in_poll_);
  } else {
    f->sched->inject(f);
  }
}

void unwind_if_cancelled(Fiber* self) {
  if (self->unwind_requested && !self->unwinding) {
    self->unwinding = true;
    throw FiberUnwind{};
  }
}

Waiter::Waiter() : fiber_(current_fiber()) {
  if (fiber_ != nullptr) seq_ = prepare_park(fiber_);
}

WakeReason Waiter::wait(int64_t deadline_nanos) {
  if (fiber_ != nullptr) {
    park(fiber_, seq_, deadline_nanos);
    if (notified()) return WakeReason::kNotified;
    if (fiber_->unwind_requested && !fiber_->unwinding) return WakeReason::kCancelled;
    return WakeReason::kTimeout;
  }
  for (;;) {
    if (futex_.load(std::memory_order_acquire) == 1) return WakeReason::kNotified;
    timespec ts;
    timespec* tsp = nullptr;
    if (deadline_nanos >= 0) {
      int64_t left = deadline_nanos - monotonic_now();
      if (left <= 0) return WakeReason::kTimeout;
      ts.tv_sec = left / 1000000000LL;
      ts.tv_nsec = left % 1000000000LL;
      tsp = &ts;
    }
    futex_wait(&futex_, 0, tsp);
  }
}

Fiber* Waiter::notify_locked() {
  // Claim before publishing notified_: a waiter that sees notified() may
  // return without the lock and end its frame, so *this must not be read
  // after the store. A waiter woken by its timer before the store finds
  // notified() false, takes the lock, and waits for us to finish.
  if (Fiber* f = fiber_) {
    bool mine = try_claim(f, seq_);
    notified_.store(true, std::memory_order_release);
    return mine ? f : nullptr;
  }
  std::atomic<uint32_t>* word = &futex_;
  notified_.store(true, std::memory_order_release);
  word->store(1, std::memory_order_release);
  // The thread may already have seen the store and returned; a wake on its
  // dead frame's address is at worst a spurious wake for a futex user that
  // re-checks its condition, as every futex user must.
  futex_wake(word);
  return nullptr;
}

bool settle_wait(Waiter& w, WaitList& list, SpinLock& lock, WakeReason r) {
  if (w.notified()) return true;
  {
    std::lock_guard<SpinLock> g(lock);
    if (w.notified()) return true;  // the waker won the race with the timer
    list.remove(&w);
  }
  if (r == WakeReason::kCancelled) unwind_if_cancelled(current_fiber());
  return false;
}

void WaitList::push_back(Waiter* w) {
  w->next = nullptr;
  w->prev = tail_;
  if (tail_ != nullptr) {
    tail_->next = w;
  } else {
    head_ = w;
  }
  tail_ = w;
}

Waiter* WaitList::pop_front() {
  Waiter* w = head_;
  if (w != nullptr) remove(w);
  return w;
}

void WaitList::remove(Waiter* w) {
  if (w->prev != nullptr) {
    w->prev->next = w->next;
  } else {
    head_ = w->next;
  }
  if (w->next != nullptr) {
    w->next->prev = w->prev;
  } else {
    tail_ = w->prev;
  }
  w->prev = w->next = nullptr;
}

void Completion::set(absl::Status s, IoToken t) {
  Fiber* wake[8];
  size_t n = 0;
  std::vector<Fiber*> more;
  {
    std::lock_guard<SpinLock> g(lock);
    done = true;
    status = std::move(s);
    token = t;
    while (Waiter* w = waiters.pop_front()) {
      if (Fiber* f = w->notify_locked()) {
        if (n < 8) {
          wake[n++] = f;
        } else {
          more.push_back(f);
        }
      }
    }
  }
  for (size_t i = 0; i < n; ++i) schedule(wake[i]);
  for (Fiber* f : more) schedule(f);
}

absl::Status Completion::wait() {
  lock.lock();
  if (done) {
    lock.unlock();
    return status;
  }
  Waiter w;
  waiters.push_back(&w);
  lock.unlock();
  settle_wait(w, waiters, lock, w.wait());
  std::lock_guard<SpinLock> g(lock);
  return done ? status : absl::CancelledError("runtime shut down");
}

// ===========================================================================
// Fibers
// ===========================================================================

void fiber_entry(Transfer t) {
  Fiber* self = current_worker()->current_;
  on_context_start(&self->ctx);
  Worker::after_switch(t);
  if (self->unwind_requested) {
    self->task->cancel();
  } else {
    self->task->run();
  }
  self->task->~TaskBase();
  Worker* w = current_worker();
  w->counters_.bump(w->counters_.completed);
  Fiber* next = w->next_local();
  w->switch_to(self, next, Worker::SwitchAction::kExit);
  __builtin_unreachable();
}

// ===========================================================================
// Scheduler
// ===========================================================================

Scheduler::Scheduler(const RuntimeOptions& opts)
    : default_stack_size_(round_stack_size(opts.stack_size)),
      stack_cache_size_(opts.stack_cache_size),
      seed_(opts.seed != 0 ? opts.seed : static_cast<uint64_t>(monotonic_now())),
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
  std::unique_ptr<Scheduler> s(new Scheduler(opts));
  s->registry_ = std::make_unique<RegistryShard[]>(static_cast<size_t>(n) + 1);
  for (int i = 0; i < n; ++i) {
    auto poller = Poller::Create();
    if (!poller.ok()) return poller.status();
    auto wakeup = Wakeup::Create();
    if (!wakeup.ok()) return wakeup.status();
    absl::Status st = poller->add(wakeup->fd(), EPOLLIN, kWakeupData);
    if (!st.ok()) return st;
    s->workers_.push_back(std::make_unique<Worker>(s.get(), i, std::move(*poller), std::move(*wakeup)));
  }
  install_segv_handler();
  for (auto& w : s->workers_) {
    try {
      Worker* wp = w.get();
      w->thread_ = std::thread([wp] { wp->run_loop(); });
    } catch (const std::system_error& e) {
      s->stop();
      return absl::ResourceExhaustedError(std::string("cannot start worker thread: ") + e.what());
    }
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

namespace {
constexpr size_t kFiberHeader = (sizeof(Fiber) + 15) & ~size_t{15};
}  // namespace

size_t Scheduler::fiber_block_size(size_t extra) { return kFiberHeader + extra; }

absl::StatusOr<Fiber*> Scheduler::new_fiber(size_t stack_size, size_t extra, void** extra_mem) {
  Worker* w = current_worker();
  if (w != nullptr && w->sched_ != this) w = nullptr;
  size_t size = stack_size != 0 ? round_stack_size(stack_size) : default_stack_size_;
  if (extra > size / 4) {
    return absl::InvalidArgumentError("fiber function object of " + std::to_string(extra) +
                                      " bytes is too large for a " + std::to_string(size) +
                                      "-byte stack; capture less by value");
  }
  void* mem = ::operator new(fiber_block_size(extra));
  Fiber* f = new (mem) Fiber();
  f->sched = this;
  f->stack_size = size;
  // Spawned while the runtime is being torn down: cancel at first run.
  f->unwind_requested = stopped_.load(std::memory_order_relaxed);
  if (w != nullptr) {
    if (w->id_next_ == w->id_end_) {
      w->id_next_ = g_next_fiber_id.fetch_add(kIdBlock, std::memory_order_relaxed);
      w->id_end_ = w->id_next_ + kIdBlock;
    }
    f->id = w->id_next_++;
  } else {
    f->id = g_next_fiber_id.fetch_add(1, std::memory_order_relaxed);
  }
  *extra_mem = static_cast<char*>(mem) + kFiberHeader;
  f->reg_shard = w != nullptr ? w->id_ : num_workers();
  register_fiber(f);
  return f;
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

int64_t Scheduler::live_fibers() const {
  int64_t n = 0;
  for (int i = 0; i <= num_workers(); ++i) {
    RegistryShard& s = registry_[static_cast<size_t>(i)];
    std::lock_guard<SpinLock> g(s.lock);
    n += s.count;
  }
  return n;
}

void Scheduler::release_fiber(Worker* w, Fiber* f) {
  unregister_fiber(f);
  release_context(&f->ctx);
  w->stacks_.put(f->stack);
  free_control_block(f);
}

void Scheduler::discard_unstarted(Fiber* f, const absl::Status* why) {
  if (why != nullptr) {
    f->task->fail(*why);
  } else {
    f->task->cancel();
  }
  f->task->~TaskBase();
  unregister_fiber(f);
  free_control_block(f);
}

void Scheduler::submit(Fiber* f) {
  Worker* w = current_worker();
  if (w != nullptr && w->sched_ == this) {
    w->counters_.bump(w->counters_.spawned);
    w->push_local(f, false);
    return;
  }
  std::lock_guard<std::mutex> g(submit_mu_);
  if (stopped_.load(std::memory_order_relaxed)) {
    discard_unstarted(f);
    return;
  }
  inject(f);
}

void Scheduler::submit_to(Fiber* f, int target) {
  std::lock_guard<std::mutex> g(submit_mu_);
  if (stopped_.load(std::memory_order_relaxed)) {
    discard_unstarted(f);
    return;
  }
  f->msg.kind = MessageKind::kSpawn;
  f->msg.fiber = f;
  workers_[static_cast<size_t>(target)]->send(&f->msg);
}

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
    w->handle_io_message(m);
  } else if (cw != nullptr && cw->sched_ == this) {
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

void Scheduler::inject(Fiber* f) {
  inject_.push(f);
  notify_idle();
}

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
    w->woken_to_search_.store(true, std::memory_order_seq_cst);
  }
  w->wakeup_.signal();
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

void Scheduler::stop() {
  std::lock_guard<std::mutex> g(stop_mu_);
  if (stop_done_) return;
  Worker* cw = current_worker();
  WEFT_CHECK(cw == nullptr || cw->sched_ != this,
             "Runtime::shutdown() called from one of the runtime's own fibers or workers");
  stopping_.store(true, std::memory_order_seq_cst);
  for (auto& w : workers_) {
    if (w->thread_.joinable()) {
      w->send(&w->shutdown_msg_);
      w->wakeup_.signal();
    }
  }
  for (auto& w : workers_) {
    if (w->thread_.joinable()) w->thread_.join();
  }
  {
    std::lock_guard<std::mutex> sg(submit_mu_);
    stopped_.store(true, std::memory_order_seq_cst);
  }
  reap();
  stop_done_ = true;
}

void Scheduler::reap() {
  Worker* w0 = workers_[0].get();
  // stop() may run on a worker of another runtime: keep its identity.
  Worker* const caller_worker = tls_worker;
  tls_worker = w0;
  init_thread_context(&w0->thread_ctx_);
  // 1. Gather every queued fiber. The list is unbounded: worker 0's local
  // queue would overflow into the inject queue, which we drain.
  std::vector<Fiber*> ready;
  auto gather = [&] {
    for (auto& wp : workers_) {
      Worker* w = wp.get();
      while (WorkerMessage* m = w->inbox_.pop()) {
        if (m->kind == MessageKind::kSpawn || m->kind == MessageKind::kWake) {
          ready.push_back(m->fiber);
        } else if (m->kind != MessageKind::kShutdown && m->kind != MessageKind::kStub) {
          auto* io = static_cast<IoMessage*>(m);
          if (io->done != nullptr) {
            io->done->set(absl::CancelledError("runtime shut down"));
          } else {
            delete io;
          }
        }
      }
      if (w->lifo_ != nullptr) ready.push_back(std::exchange(w->lifo_, nullptr));
      while (Fiber* f = w->queue_.pop()) ready.push_back(f);
    }
    size_t n = 0;
    while (Fiber* chain = inject_.pop_batch(1024, &n)) {
      for (; chain != nullptr; chain = chain->next) ready.push_back(chain);
    }
  };
  gather();
  // 2. Mark every live fiber; claim the parked ones.
  for (int i = 0; i <= num_workers(); ++i) {
    RegistryShard& s = registry_[static_cast<size_t>(i)];
    std::lock_guard<SpinLock> g(s.lock);
    for (Fiber* f = s.head; f != nullptr; f = f->reg_next) {
      f->unwind_requested = true;
      if (try_claim(f, f->park_seq)) ready.push_back(f);
    }
  }
  // 3. Run them to completion (what they wake lands on worker 0's queues
  // and is gathered again); release sleepers when nothing else runs.
  for (;;) {
    if (ready.empty()) gather();
    if (!ready.empty()) {
      Fiber* f = ready.back();
      ready.pop_back();
      w0->resume(f);
      continue;
    }
    bool fired = false;
    for (auto& wp : workers_) {
      Worker* w = wp.get();
      std::lock_guard<SpinLock> g(w->timer_lock_);
      w->wheel_.advance(~uint64_t{0} >> 8, [&](TimerEntry* e) {
        w->timers_armed_.fetch_sub(1, std::memory_order_relaxed);
        auto tag = reinterpret_cast<uintptr_t>(e->owner);
        if (tag & 1) return;
        Fiber* fb = static_cast<Fiber*>(e->owner);
        if (try_claim(fb, fb->timer_seq)) {
          ready.push_back(fb);
          fired = true;
        }
      });
    }
    if (!fired) break;
  }
  // 4. Whatever is left blocked forever while unwinding.
  for (int i = 0; i <= num_workers(); ++i) {
    RegistryShard& s = registry_[static_cast<size_t>(i)];
    while (s.head != nullptr) {
      Fiber* f = s.head;
      std::fprintf(stderr,
                   "weft: fiber %llu stayed blocked while being cancelled at shutdown; "
                   "its stack is released without finishing the unwind\n",
                   static_cast<unsigned long long>(f->id));
      unregister_fiber(f);
      release_context(&f->ctx);
      free_stack(f->stack);
      cancel_join_state(f->join, f->id);  // its joiner must not wait forever
      free_control_block(f);
    }
  }
  w0->current_ = nullptr;
  tls_worker = caller_worker;
}

void Scheduler::fill_stats(RuntimeStats* out) const {
  out->workers.clear();
  for (const auto& wp : workers_) {
    const WorkerCounters& c = wp->counters_;
    WorkerStats s;
    s.worker = wp->id_;
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
    s.queue_depth = wp->queue_.size();
    out->workers.push_back(s);
  }
  out->inject_depth = inject_.len();
  out->live_fibers = live_fibers();
}

}  // namespace weft::internal
