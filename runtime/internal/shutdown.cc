// Shutdown: stop the workers, then cancel and unwind every fiber that has
// not finished, so that no fiber, stack or control block outlives the
// runtime.
//
// # Shutdown
//   1. stop() sets stopping_ and sends every worker kShutdown; workers
//      leave their loop at the next switch to their own stack.
//   2. After joining them, the stopping thread sets stopped_ (later
//      submissions from outside are cancelled at once) and adopts worker 0
//      as the reaper. It gathers every queued fiber through each worker's
//      take_all_for_shutdown().
//   3. It marks every live fiber unwind_requested and claims the parked
//      ones: the registry's fibers here, the unstarted ones as step 2
//      gathers them. Every started fiber is registered by now: the workers
//      left their loops at switches, and a fiber registers before it
//      first suspends (Scheduler::register_running).
//   4. It runs them: a fiber that never started is cancelled; one that is
//      suspended returns from its suspension point by throwing FiberUnwind,
//      which unwinds its stack and completes its JoinHandle as cancelled.
//      What they wake lands on worker 0's queues and is gathered again;
//      when nothing else is runnable, every wheel's timers are expired
//      (expire_all_timers_for_shutdown), releasing sleepers.
//   5. A fiber that blocks forever while unwinding is reported and its
//      stack released. No fiber or stack remains afterwards.
//   6. With no fiber or worker left to submit to it, the runtime's blocking
//      pool is shut down: its threads finish the running calls, run what
//      is still queued (detached spawn_blocking() calls run to completion;
//      queued calls whose waiter unwound in step 4 were dropped then and
//      are skipped), and exit; stop() waits until the last one has left
//      the pool's memory (blocking_pool.cc, "Teardown"). A call that never
//      returns therefore blocks stop() forever.
//
// # Draining (Runtime::shutdown(grace), before the above)
//   1. drain() sets draining_ under submit_mu_: from then on, submissions
//      from other threads are cancelled at once.
//   2. It walks the registry and cancels every registered fiber
//      (request_cancel, and its own token, read under the fiber's
//      cancel_lock: a fiber exiting concurrently unpublishes its tokens'
//      block under that lock before freeing it, cancel.cc "A fiber's
//      tokens" step 4). A fiber registers before its first suspension and
//      when it first takes a token of its own, and reads draining_ after
//      either (park()'s cancellation check reads it; so does
//      fiber_current_token()). So a fiber that is parked, queued after a
//      yield, or holds a token is found by the walk or sees the flag; one
//      that has not started, or has run without either since it started,
//      sees the flag at its first cancellation check or first run
//      (park.cc cancel_seen(), switch.cc fiber_entry()).
//   3. It polls live_fibers() every millisecond until zero or the grace
//      period ends, and records what is left: the registry's fibers and,
//      not being registered, the ones running at that moment, by their
//      workers' published fibers.
#include <time.h>

#include <algorithm>
#include <cstdio>
#include <string>
#include <mutex>
#include <utility>

#include "runtime/internal/blocking_pool.h"
#include "runtime/internal/cancel.h"
#include "runtime/internal/park.h"
#include "runtime/internal/scheduler.h"
#include "runtime/internal/worker.h"
#include "runtime/platform/check.h"

namespace weft::internal {

// --- the workers' entry points for the reaper -------------------------------

void Worker::take_all_for_shutdown(std::vector<Fiber*>* out) {
  WEFT_CHECK(!thread_.joinable(), "take_all_for_shutdown() on a running worker");
  while (WorkerMessage* m = inbox_.pop()) {
    if (m->kind == MessageKind::kSpawn || m->kind == MessageKind::kWake) {
      out->push_back(m->fiber);
    } else if (m->kind != MessageKind::kShutdown && m->kind != MessageKind::kStub) {
      auto* io = static_cast<IoMessage*>(m);
      if (io->done != nullptr) {
        io->done->set(absl::CancelledError("runtime shut down"));
      } else {
        delete io;
      }
    }
  }
  if (lifo_ != nullptr) out->push_back(std::exchange(lifo_, nullptr));
  while (Fiber* f = queue_.pop()) out->push_back(f);
}

bool Worker::expire_all_timers_for_shutdown(std::vector<Fiber*>* out) {
  bool fired = false;
  {
  std::lock_guard<SpinLock> g(timer_lock_);
  wheel_.advance(~uint64_t{0} >> 8, [&](TimerEntry* e) {
    timers_armed_.fetch_sub(1, std::memory_order_relaxed);
    auto tag = reinterpret_cast<uintptr_t>(e->owner);
    if ((tag & 3) == 2) {
      // A token's deadline (ptr|2): the runtime is going, so cancel it now.
      auto* cs = reinterpret_cast<CancelState*>(tag & ~uintptr_t{3});
      cs->timer_worker_.store(nullptr, std::memory_order_release);
      if (cs->try_ref_from_timer()) deferred_cancels_.push_back(cs);
      return;
    }
    if (tag & 1) return;  // a socket timer: its socket is being closed
    Fiber* fb = static_cast<Fiber*>(e->owner);
    if (try_claim(fb, fb->timer_seq)) {
      out->push_back(fb);
      fired = true;
    }
  });
  }
  if (!deferred_cancels_.empty()) {
    run_deferred_cancels();
    fired = true;
  }
  return fired;
}

void Worker::adopt_thread_for_shutdown() {
  WEFT_CHECK(!thread_.joinable(), "adopt_thread_for_shutdown() on a running worker");
  set_current_worker(this);
  init_thread_context(&thread_ctx_);
}

// --- drain -------------------------------------------------------------------

void Scheduler::drain(absl::Duration grace, ShutdownReport* report) {
  Worker* cw = current_worker();
  WEFT_CHECK(cw == nullptr || cw->scheduler() != this,
             "Runtime::shutdown(grace) called from one of the runtime's own fibers or workers");
  const int64_t deadline = deadline_after(grace);  // -1: no limit
  {
    std::lock_guard<std::mutex> g(submit_mu_);  // step 1
    draining_.store(true, std::memory_order_seq_cst);
  }
  if (stopped_.load(std::memory_order_acquire)) return;
  std::vector<Fiber*> claimed;  // step 2
  std::vector<CancelState*> owns;
  report->cancelled += unregistered_fibers();  // they see draining_
  for (int i = 0; i < num_workers(); ++i) {
    RegistryShard& s = registry_[static_cast<size_t>(i)];
    std::lock_guard<SpinLock> g(s.lock);
    report->cancelled += s.count;
    for (Fiber* f = s.head; f != nullptr; f = f->reg_next) {
      if (Fiber* c = request_cancel(f)) claimed.push_back(c);
      std::lock_guard<SpinLock> cg(f->cancel_lock);
      CancelState* own = f->cancel_ext != nullptr ? f->cancel_ext->own_token : nullptr;
      if (own != nullptr) {
        own->ref();
        owns.push_back(own);
      }
    }
  }
  // Tokens first: a fiber woken with kCancelled finds its token cancelled.
  for (CancelState* s : owns) {
    s->cancel(CancelCause::kCancelled);
    s->unref();
  }
  for (Fiber* f : claimed) schedule(f);
  while (live_fibers() > 0 && (deadline < 0 || monotonic_now() < deadline)) {  // step 3
    timespec ts{0, 1000000};
    nanosleep(&ts, nullptr);
  }
  report->left = live_fibers();
  auto name = [](uint64_t id, const char* file, int line) {
    return "fiber " + std::to_string(id) + " (spawned at " + (file != nullptr ? file : "?") + ":" +
           std::to_string(line) + ")";
  };
  std::vector<uint64_t> named;
  for (int i = 0; i < num_workers() && report->left_fibers.size() < 16; ++i) {
    RegistryShard& s = registry_[static_cast<size_t>(i)];
    std::lock_guard<SpinLock> g(s.lock);
    for (Fiber* f = s.head; f != nullptr && report->left_fibers.size() < 16; f = f->reg_next) {
      report->left_fibers.push_back(name(f->id, f->spawn_file, f->spawn_line));
      named.push_back(f->id);
    }
  }
  // A fiber that has run since it started without suspending is not
  // registered; the worker running it publishes it (for the monitor).
  for (int i = 0; i < num_workers() && report->left_fibers.size() < 16; ++i) {
    uint64_t id;
    const char* file;
    int line;
    workers_[static_cast<size_t>(i)]->running_fiber(&id, &file, &line);
    if (id != 0 && std::find(named.begin(), named.end(), id) == named.end()) {
      report->left_fibers.push_back(name(id, file, line));
      named.push_back(id);
    }
  }
}

// --- stop and reap ------------------------------------------------------------

void Scheduler::stop() {
  // Before stop_mu_: a pool thread would otherwise wait for it while a
  // concurrent stop() waits for the pool thread.
  WEFT_CHECK(blocking_pool_ == nullptr || BlockingPool::of_this_thread() != blocking_pool_.get(),
             "Runtime::shutdown() called from one of the runtime's own blocking-pool threads "
             "(it waits for them)");
  std::lock_guard<std::mutex> g(stop_mu_);
  if (stop_done_) return;
  Worker* cw = current_worker();
  WEFT_CHECK(cw == nullptr || cw->scheduler() != this,
             "Runtime::shutdown() called from one of the runtime's own fibers or workers");
  if (monitor_ != nullptr) monitor_->stop();
  stopping_.store(true, std::memory_order_seq_cst);  // step 1
  for (auto& w : workers_) {
    if (w->thread_started()) w->send_shutdown();
  }
  for (auto& w : workers_) w->join_thread();
  {
    std::lock_guard<std::mutex> sg(submit_mu_);  // step 2
    stopped_.store(true, std::memory_order_seq_cst);
  }
  reap();
  if (blocking_pool_ != nullptr) blocking_pool_->shutdown();  // step 6
  stop_done_ = true;
}

void Scheduler::reap() {
  Worker* w0 = workers_[0].get();
  // stop() may run on a worker of another runtime: keep its identity.
  Worker* const caller_worker = current_worker();
  w0->adopt_thread_for_shutdown();
  std::vector<Fiber*> ready;
  // The list is unbounded: worker 0's local queue would overflow into the
  // inject queue, which we drain too.
  auto gather = [&] {
    for (auto& wp : workers_) wp->take_all_for_shutdown(&ready);
    Fiber* batch[256];
    while (size_t n = inject_.pop_batch(batch, 256)) ready.insert(ready.end(), batch, batch + n);
    // Step 3 for the fibers that never started (they are not registered):
    // they are cancelled without running.
    for (Fiber* f : ready) {
      if (f->ctx.fctx == nullptr) f->unwind_requested = true;
    }
  };
  gather();
  // Step 3.
  for (int i = 0; i < num_workers(); ++i) {
    RegistryShard& s = registry_[static_cast<size_t>(i)];
    std::lock_guard<SpinLock> g(s.lock);
    for (Fiber* f = s.head; f != nullptr; f = f->reg_next) {
      f->unwind_requested = true;
      if (try_claim(f, f->park_seq)) ready.push_back(f);
    }
  }
  // Step 4.
  for (;;) {
    if (ready.empty()) gather();
    if (!ready.empty()) {
      Fiber* f = ready.back();
      ready.pop_back();
      w0->resume_for_shutdown(f);
      continue;
    }
    bool fired = false;
    for (auto& wp : workers_) fired |= wp->expire_all_timers_for_shutdown(&ready);
    if (!fired) break;
  }
  // Step 5: whatever is left blocked forever while unwinding.
  for (int i = 0; i < num_workers(); ++i) {
    RegistryShard& s = registry_[static_cast<size_t>(i)];
    for (;;) {
      Fiber* f;
      {
        std::lock_guard<SpinLock> g(s.lock);
        f = s.head;
      }
      if (f == nullptr) break;
      std::fprintf(stderr,
                   "weft: fiber %llu stayed blocked while being cancelled at shutdown; "
                   "its stack is released without finishing the unwind\n",
                   static_cast<unsigned long long>(f->id));
      unregister_fiber(f);
      release_context(&f->ctx);
      free_stack(f->stack);
      cancel_join_state(f->join, f->id);  // its joiner must not wait forever
      release_fiber_tokens(f);
      free_control_block(f);
    }
  }
  w0->release_thread_after_shutdown();
  set_current_worker(caller_worker);
}

}  // namespace weft::internal
