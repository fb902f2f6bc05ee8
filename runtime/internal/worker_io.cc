// Worker I/O: poll_once() and what it serves. Each worker owns a driver:
// an epoll poller, an eventfd waker, an MPSC inbox of messages, a slot
// table of socket registrations, and a timer wheel. A wake batch drains the
// inbox, dispatches readiness and fires due timers. The owner runs its
// driver's batches; while it is stuck in one fiber, its rescuer does
// (monitor.cc). Either way the batch runs under the driver lock, and the
// fibers it wakes go to the queue of the worker that runs it (the runner).
//
// # A wake batch (serve_driver)
//   1. Drain the inbox: spawns and wakes sent from other threads, and the
//      socket messages (register, modify, close, set/cancel timeout).
//   2. epoll_wait for at most kPollBatch (32) events, and at most as many
//      as the run queue has room for (at least kMinPollEvents): the rest
//      wait in the kernel's ready list, in order, instead of overflowing
//      the queue out of order, or standing in it. A busy poll comes every
//      kPollInterval (61) runs; if it could take more events than ran
//      since the last one, the queue would grow to its capacity and stay
//      there, and every woken fiber would wait a full queue's turn between
//      its wake-up, which touched its socket, waiter and control block,
//      and its run, by when those lines, its stack and the kernel's socket
//      lines that epoll_wait just read are cold again. When epoll_wait
//      returns, the driver stores served_at (monitor.cc step 2a); a batch
//      that skips the call (no socket, nothing pending) reads no clock.
//   3. Leave the idle list (idle step 4 in worker.cc), then dispatch each
//      event to its registration; an event whose generation no longer
//      matches its slot (closed or moved) is dropped. Each dispatch first
//      prefetches what the next few events will touch (prefetch_dispatch).
//   4. Fire due timers: fiber deadlines are claimed under the wheel's lock;
//      socket timers run their callbacks after it is dropped.
//   5. Fibers woken in steps 3-4 went to the back of the run queue in event
//      order; wake one idle peer, once, only for work this worker will not
//      run next.
#include <algorithm>
#include <climits>
#include <mutex>
#include <optional>

#include "runtime/internal/cancel.h"
#include "runtime/internal/park.h"
#include "runtime/internal/scheduler.h"
#include "runtime/internal/uring.h"
#include "runtime/internal/worker.h"
#include "runtime/platform/monotonic.h"
#include "runtime/platform/prefetch.h"

namespace weft::internal {

namespace {
constexpr int kMinPollEvents = 16;  // events a poll takes even from a full queue
}  // namespace

void Worker::send(WorkerMessage* m) {
  inbox_.push(m);
  notify();
}

void Worker::notify() {
  // Hand-over step 2: while a rescuer serves this driver, every message
  // must wake it (through this worker's eventfd, in the epoll set that the
  // rescuer watches).
  if (sleeping_.load(std::memory_order_seq_cst) || rescued_by_.load(std::memory_order_seq_cst) >= 0) {
    wakeup_.signal();
  }
}

void Worker::poll_once(int timeout_ms, bool use_poller) {
  if (timeout_ms == 0) {
    // A rescuer is in the middle of a batch of this driver: it serves it.
    if (!driver_lock_.try_lock()) {
      leave_idle();
      return;
    }
  } else {
    driver_lock_.lock();  // a rescuer's batch never blocks
  }
  serve_driver(this, timeout_ms, use_poller);
  driver_lock_.unlock();
  if (!deferred_cancels_.empty()) run_deferred_cancels();
}

void Worker::run_deferred_cancels() {
  std::vector<CancelState*> due;
  due.swap(deferred_cancels_);
  for (CancelState* s : due) {
    s->cancel(CancelCause::kDeadline);
    s->unref();
  }
}

void Worker::handle_io_message_direct(IoMessage* m) {
  std::lock_guard<SpinLock> g(driver_lock_);
  handle_io_message(m);
}

void Worker::serve_driver(Worker* runner, int timeout_ms, bool use_poller) {
  if (use_poller) runner->counters_.bump(runner->counters_.polls);
  drain_inbox(runner);  // step 1
  // Step 2. (A blocking poll only happens with the queue empty.)
  const int room = static_cast<int>(runner->queue_.capacity() - runner->queue_.size());
  const int max_events = std::min(kPollBatch, std::max(room, kMinPollEvents));
  runner->in_poll_ = true;
  runner->poll_woken_ = 0;
  epoll_event* events = runner->events_;
  int n = 0;
  // The owner reaps its ring before it polls (uring.cc step 3): a CQE that
  // came while it ran fibers may have had its eventfd edge taken by a
  // rescuer, and the fibers it wakes must not wait behind a blocking poll.
  if (runner == this && ring_ != nullptr && ring_->reap() > 0) timeout_ms = 0;
  // A non-blocking poll with no socket registered has nothing to find but
  // a pending eventfd signal, which must be drained all the same: a rescuer
  // watches this epoll fd level-triggered and would be woken by it forever.
  if (use_poller && (timeout_ms != 0 || io_live_ > 0 || wakeup_.pending())) {
    n = poller_.wait(events, max_events, timeout_ms);
    runner->counters_.raise(runner->counters_.largest_poll, static_cast<uint64_t>(n));
    // For the monitor (monitor.cc step 2): readiness served now. Stored
    // before the runner leaves idle (below), so a monitor that sees it
    // awake sees this too. Only with a system call made: its cost hides
    // the clock read, which a poll that skips epoll_wait (no socket) would
    // add to every 61 runs of a fiber that only computes.
    served_at_.store(monotonic_now(), std::memory_order_relaxed);
  }
  // Step 3: off the idle list before waking anyone, so the wake-up below
  // cannot pick the runner (an eventfd write, and a next sleep that
  // returns at once to read it).
  runner->leave_idle();
  for (int i = 0; i < n; ++i) {
    prefetch_dispatch(events, n, i);
    uint64_t data = events[i].data.u64;
    if (data == Scheduler::kWakeupData) {
      runner->counters_.bump(runner->counters_.wakeups);
      wakeup_.drain();
    } else if (data == Scheduler::kRingData) {
      // The ring's eventfd: only its own thread reaps (uring.cc step 3).
      if (runner == this && ring_ != nullptr) {
        ring_->clear_event();
        ring_->reap();
      }
    } else if (Scheduler::is_rescue_data(data)) {
      // A driver this worker serves has work: serve_rescued() runs it.
    } else {
      runner->counters_.bump(runner->counters_.poll_events);
      dispatch_io(data, events[i].events);
    }
  }
  fire_timers(runner);  // step 4
  runner->in_poll_ = false;
  // Step 5: a lone woken fiber runs here at once, and waking a peer for it
  // costs an eventfd write and a search that finds nothing, or a steal that
  // moves the fiber to a cold CPU (tokio's rule is the same).
  if (runner->poll_woken_ > 0 &&
      (runner->queue_.size() > (runner->lifo_ == nullptr ? 1u : 0u) || sched_->inject_.len() > 0)) {
    sched_->notify_idle();
  }
  if (n > 0) drain_inbox(runner);
}

void Worker::drain_inbox(Worker* runner) {
  while (WorkerMessage* m = inbox_.pop()) {
    runner->counters_.bump(runner->counters_.messages);
    switch (m->kind) {
      case MessageKind::kSpawn:
      case MessageKind::kWake: {
        runner->push_local(m->fiber, m->kind == MessageKind::kWake);
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
        // The first socket: its readiness waits from now (monitor.cc step
        // 2), not since the last poll, which may be long ago.
        if (io_live_ == 1) served_at_.store(monotonic_now(), std::memory_order_relaxed);
        io_count_.store(io_live_, std::memory_order_release);
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
      // Late events carrying the old token are dropped. Generation
      // 0xffffffff is never used: epoll data with it marks a rescued
      // driver's epoll fd (Scheduler::rescue_data).
      if (++s->gen == 0xffffffffu) s->gen = 0;
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
    // Moved, not copied: a copy would leave this worker dropping the last
    // reference to an error's payload after the waiter has read it, through
    // a reference count TSan cannot see (abseil is not instrumented here).
    m->done->set(std::move(status), token);
  } else {
    delete m;
  }
}

Worker::IoSlot* Worker::slot_hint(uint64_t data) {
  uint32_t idx = static_cast<uint32_t>(data & 0xffffffffu);
  return idx < io_slots_.size() ? &io_slots_[idx] : nullptr;
}

void Worker::prefetch_dispatch(const epoll_event* events, int n, int i) {
  // Step 3's prefetch. Each event costs a chain of dependent loads, each
  // likely a miss with a thousand sockets on a worker: its slot, then the
  // socket (IoSource) the slot names, then the waiter that socket names
  // (on the parked fiber's stack). Ahead of the event dispatched now, the
  // loop loads the slot of event i+4, the socket of event i+2 (its slot
  // was loaded two events ago) and the waiter of event i+1, so each load
  // is in flight while other events are dispatched. What it reads is
  // safe to read: the slot table is this driver's, under its lock; a slot
  // with a source holds a live registration (CloseSocket clears it under
  // the same lock); wake_hint() is an atomic. The waiter is only
  // prefetched, never read: it may be gone. Special events (the eventfd,
  // the ring, a rescued driver) just waste a prefetch.
  if (i == 0) {
    for (int k = 1; k < 4 && k < n; ++k) {
      if (IoSlot* s = slot_hint(events[k].data.u64)) prefetch_for_read(s);
    }
  }
  if (i + 4 < n) {
    if (IoSlot* s = slot_hint(events[i + 4].data.u64)) prefetch_for_read(s);
  }
  if (i + 2 < n) {
    if (IoSlot* s = slot_hint(events[i + 2].data.u64); s != nullptr && s->source != nullptr) {
      const char* p = reinterpret_cast<const char*>(s->source);
      prefetch_for_write(p);
      prefetch_for_write(p + 64);
    }
  }
  if (i + 1 < n) {
    if (IoSlot* s = slot_hint(events[i + 1].data.u64); s != nullptr && s->source != nullptr) {
      if (const void* w = s->source->wake_hint()) prefetch_for_write(w);
    }
  }
}

void Worker::dispatch_io(uint64_t data, uint32_t events) {
  IoSlot* s = slot_hint(data);
  // Stale: closed or moved.
  if (s == nullptr || s->source == nullptr || s->gen != static_cast<uint32_t>(data >> 32)) return;
  s->source->on_io_events(events);
}

void Worker::fire_timers(Worker* runner) {
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
        auto tag = reinterpret_cast<uintptr_t>(e->owner);
        if ((tag & 3) == 0) {
          Fiber* f = static_cast<Fiber*>(e->owner);
          // Timed parks step 2: a later park reused the entry and times
          // out after this tick. Filed again at its tick; nothing fires.
          if (f->timer_due > wheel_.now()) {
            wheel_.insert(e, f->timer_due);
            return;
          }
        }
        timers_armed_.fetch_sub(1, std::memory_order_relaxed);
        runner->counters_.bump(runner->counters_.timers_fired);
        if ((tag & 3) == 2) {  // a CancelState's deadline (ptr|2): cancel.h step 5
          auto* cs = reinterpret_cast<CancelState*>(tag & ~uintptr_t{3});
          cs->timer_worker_.store(nullptr, std::memory_order_release);
          if (cs->try_ref_from_timer()) runner->deferred_cancels_.push_back(cs);
          return;
        }
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
        // Step 3: the park it was armed for, or a stale sequence if that
        // park ended (try_claim fails, and the entry is simply gone).
        Fiber* f = static_cast<Fiber*>(e->owner);
        if (try_claim(f, f->timer_seq)) runner->push_local(f, false);
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
  // The earliest timer of this wheel and of every wheel this worker serves
  // as a rescuer (hand-over step 3).
  std::optional<uint64_t> next;
  auto consider = [&](Worker* w) {
    if (w->timers_armed_.load(std::memory_order_relaxed) == 0) return;
    std::lock_guard<SpinLock> g(w->timer_lock_);
    std::optional<uint64_t> t = w->wheel_.next_deadline();
    if (t && (!next || *t < *next)) next = t;
  };
  consider(this);
  for (Worker* s : serving_) consider(s);
  if (!next) return -1;
  uint64_t now = sched_->now_tick();
  if (*next <= now) return 0;
  return static_cast<int>(std::min<uint64_t>(*next - now, INT_MAX));
}

void Worker::arm_timer(Fiber* f, uint64_t seq, int64_t deadline_nanos) {
  const uint64_t due = sched_->deadline_tick(deadline_nanos);
  if (Worker* tw = f->timer_worker) {
    std::lock_guard<SpinLock> g(tw->timer_lock_);
    if (f->timer.linked()) {
      if (f->timer.deadline() <= due) {  // timed parks step 1: reuse it
        f->timer_seq = seq;
        f->timer_due = due;
        return;
      }
      tw->wheel_.cancel(&f->timer);  // it would fire late: file it anew
      tw->timers_armed_.fetch_sub(1, std::memory_order_relaxed);
    }
  }
  // Unlinked: no timer callback can be reading these.
  f->timer_seq = seq;
  f->timer_due = due;
  f->timer.owner = f;
  f->timer_worker = this;
  std::lock_guard<SpinLock> g(timer_lock_);
  wheel_.insert(&f->timer, due);
  timers_armed_.fetch_add(1, std::memory_order_relaxed);
}

void Worker::arm_cancel_timer(CancelState* s, int64_t deadline_nanos) {
  uint64_t tick = sched_->deadline_tick(deadline_nanos);
  s->timer_.owner = reinterpret_cast<void*>(reinterpret_cast<uintptr_t>(s) | 2);
  std::lock_guard<SpinLock> g(timer_lock_);
  s->timer_worker_.store(this, std::memory_order_release);
  wheel_.insert(&s->timer_, tick);
  timers_armed_.fetch_add(1, std::memory_order_relaxed);
}

void Worker::disarm_cancel_timer(CancelState* s) {
  for (;;) {
    Worker* w = s->timer_worker_.load(std::memory_order_acquire);
    if (w == nullptr) return;
    std::lock_guard<SpinLock> g(w->timer_lock_);
    if (s->timer_worker_.load(std::memory_order_relaxed) != w) continue;
    if (w->wheel_.cancel(&s->timer_)) w->timers_armed_.fetch_sub(1, std::memory_order_relaxed);
    s->timer_worker_.store(nullptr, std::memory_order_relaxed);
    return;
  }
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

}  // namespace weft::internal
