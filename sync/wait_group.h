// sync/wait_group.h
//
// weft::WaitGroup: waits for a collection of fibers to finish, as Go's
// sync.WaitGroup. add(n) before starting work, done() when each piece
// ends, wait() until the count is zero. The count going negative aborts.
#pragma once

#include <cstdint>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "runtime/internal/park.h"
#include "runtime/internal/spin_lock.h"

namespace weft {

class WaitGroup {
 public:
  explicit WaitGroup(int64_t initial = 0);
  WaitGroup(const WaitGroup&) = delete;
  WaitGroup& operator=(const WaitGroup&) = delete;
  ~WaitGroup();

  void add(int64_t n = 1);
  void done() { add(-1); }
  // wait() suspends until the count is zero: OK, or kCancelled if the
  // waiting fiber is cancelled first.
  absl::Status wait();
  // wait_for()/wait_until() also give up at the deadline with
  // kDeadlineExceeded.
  absl::Status wait_until(absl::Time deadline);
  absl::Status wait_for(absl::Duration d) { return wait_until(absl::Now() + d); }
  int64_t count() const;

 private:
  absl::Status wait_impl(int64_t deadline_nanos);
  mutable internal::SpinLock lock_;
  int64_t count_ ABSL_GUARDED_BY(lock_);
  internal::WaitList waiters_ ABSL_GUARDED_BY(lock_);
};

}  // namespace weft
