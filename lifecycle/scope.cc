#include "lifecycle/scope.h"

#include <cstdio>
#include <cstdlib>
#include <exception>
#include <string>

namespace weft {

void TaskScope::fail(absl::Status st, std::exception_ptr e) {
  {
    std::lock_guard<Mutex> g(mu_);
    if (failed_) return;  // only the first failure is reported
    failed_ = true;
    observed_ = false;
    first_status_ = std::move(st);
    first_exception_ = std::move(e);
  }
  token_.cancel();  // the siblings' waits return kCancelled
}

absl::Status TaskScope::join() {
  bool cancelled = false;
  absl::Status waited = running_.wait();
  if (!waited.ok()) {
    // The joining fiber was cancelled: its children must not outlive the
    // scope, so cancel them and wait for them regardless.
    cancelled = true;
    token_.cancel();
    this_fiber::CancellationShield shield;
    (void)running_.wait();
  }
  std::lock_guard<Mutex> g(mu_);
  if (failed_) {
    observed_ = true;
    if (first_exception_) std::rethrow_exception(first_exception_);
    return first_status_;
  }
  if (cancelled) return absl::CancelledError("TaskScope::join: the joining fiber was cancelled");
  if (token_.cancelled()) return absl::CancelledError("TaskScope::join: the scope was cancelled");
  return absl::OkStatus();
}

TaskScope::~TaskScope() noexcept(false) {
  {
    this_fiber::CancellationShield shield;  // no child outlives the scope
    (void)running_.wait();
  }
  std::lock_guard<Mutex> g(mu_);
  if (failed_ && !observed_ && std::uncaught_exceptions() == 0) {
    std::string what = first_exception_ ? "an exception" : first_status_.ToString();
    std::fprintf(stderr,
                 "weft: TaskScope destroyed without join() after a fiber failed with %s; call "
                 "join() (or use weft::scoped()) to observe failures\n",
                 what.c_str());
    std::abort();
  }
}

}  // namespace weft
