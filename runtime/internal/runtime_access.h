// runtime/internal/runtime_access.h
//
// RuntimeAccess: the scheduler behind a Runtime, for tests that drive
// workers directly. NOT for users, and not for production code.
#pragma once

#include "runtime/internal/scheduler.h"
#include "runtime/runtime.h"

namespace weft::internal {

struct RuntimeAccess {
  static Scheduler* scheduler(const Runtime& rt) { return rt.sched_.get(); }
};

}  // namespace weft::internal
