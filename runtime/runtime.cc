#include "runtime/runtime.h"

#include <cstdio>
#include <typeinfo>
#include <utility>

#include "runtime/internal/blocking_pool.h"
#include "runtime/internal/fiber.h"
#include "runtime/internal/scheduler.h"
#include "runtime/internal/worker.h"

namespace weft {

namespace {
internal::Fiber* fiber_or_die(const char* what) {
  internal::Fiber* f = internal::current_fiber();
  WEFT_CHECK(f != nullptr, "%s called outside a fiber", what);
  return f;
}
}  // namespace


absl::StatusOr<std::unique_ptr<Runtime>> Runtime::create(RuntimeOptions options) {
  auto s = internal::Scheduler::create(options);
  if (!s.ok()) return s.status();
  return std::unique_ptr<Runtime>(new Runtime(std::move(*s)));
}

Runtime::Runtime(std::unique_ptr<internal::Scheduler> s) : sched_(std::move(s)) {}

Runtime::~Runtime() { shutdown(); }

int Runtime::num_workers() const { return sched_->num_workers(); }

void Runtime::shutdown() { sched_->stop(); }

ShutdownReport Runtime::shutdown(absl::Duration grace) {
  ShutdownReport report;
  const absl::Time start = absl::Now();
  sched_->drain(grace, &report);
  sched_->stop();
  report.took = absl::Now() - start;
  return report;
}

RuntimeStats Runtime::stats() const {
  RuntimeStats out;
  sched_->fill_stats(&out);
  return out;
}

absl::Status Runtime::configure_blocking(const BlockingPoolOptions& options) {
  return sched_->blocking_pool()->configure(options, "Runtime::configure_blocking: options");
}

namespace this_fiber {

void yield() {
  internal::Fiber* self = fiber_or_die("weft::this_fiber::yield()");
  internal::Worker::suspend(internal::Worker::SwitchAction::kYield);
  internal::unwind_if_cancelled(self);
}

namespace {
absl::Status sleep_to(internal::Fiber* self, int64_t deadline) {
  uint64_t seq = internal::prepare_park(self);
  internal::park(self, seq, deadline, internal::Cancellable::kYes);
  internal::unwind_if_cancelled(self);
  // Woken early only by a cancellation: nothing else claims a sleep.
  if (internal::fiber_cancelled(self) && (deadline < 0 || internal::monotonic_now() < deadline)) {
    return absl::CancelledError("sleep cancelled");
  }
  return absl::OkStatus();
}
}  // namespace

absl::Status sleep_until(absl::Time deadline) {
  internal::Fiber* self = fiber_or_die("weft::this_fiber::sleep_until()");
  return sleep_to(self, internal::to_monotonic(deadline));
}

absl::Status sleep_for(absl::Duration d) {
  internal::Fiber* self = fiber_or_die("weft::this_fiber::sleep_for()");
  if (d <= absl::ZeroDuration()) {
    if (internal::fiber_cancelled(self)) return absl::CancelledError("sleep cancelled");
    yield();
    return absl::OkStatus();
  }
  int64_t deadline = internal::deadline_after(d);
  return sleep_to(self, deadline);
}

CancellationToken cancellation() {
  internal::Fiber* self = internal::current_fiber();
  if (self == nullptr) return CancellationToken();
  return CancellationToken::from_state(internal::fiber_current_token(self));
}

bool cancelled() { return internal::current_fiber_cancelled(); }

CancellationShield::CancellationShield() : fiber_(internal::current_fiber()) {
  if (fiber_ != nullptr) ++fiber_->cancel_shield;
}

CancellationShield::~CancellationShield() {
  if (fiber_ != nullptr) --fiber_->cancel_shield;
}

uint64_t id() { return internal::current_fiber_id(); }

int worker_id() {
  internal::Worker* w = internal::current_worker();
  return w != nullptr ? w->id() : -1;
}

bool on_fiber() { return internal::current_fiber() != nullptr; }

}  // namespace this_fiber

}  // namespace weft
