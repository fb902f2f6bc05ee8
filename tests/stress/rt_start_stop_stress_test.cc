// Runtimes started and stopped over and over, with work in flight at
// shutdown: nothing may leak or hang.
#include <doctest/doctest.h>

#include <atomic>
#include <vector>

#include "runtime/internal/stack_pool.h"
#include "runtime/runtime.h"
#include "sync/sync.h"
#include "tests/stress_util.h"

namespace weft {
namespace {

TEST_CASE("repeated start/stop with fibers running, parked and queued") {
  const int64_t kCycles = weft::testing::stress_size(200);
  const int64_t stacks_before = internal::mapped_stack_count();
  int64_t completed = 0, cancelled = 0;
  for (int64_t c = 0; c < kCycles; ++c) {
    std::vector<JoinHandle<int>> hs;
    {
      auto rt = *Runtime::create({.workers = 1 + static_cast<int>(c % 3)});
      auto ch = std::make_shared<Channel<int>>(1);
      for (int i = 0; i < 50; ++i) {
        hs.push_back(rt->spawn([ch, i] {
          if (i % 3 == 0) (void)ch->recv();            // parks until cancelled
          if (i % 3 == 1) (void)this_fiber::sleep_for(absl::Milliseconds(i));
          return i;
        }));
      }
      if (c % 2 == 0) this_fiber::on_fiber();  // no-op; vary timing
    }  // destroyed: shuts down, cancelling what is left
    for (auto& h : hs) {
      try {
        h.join();
        ++completed;
      } catch (const FiberCancelled&) {
        ++cancelled;
      }
    }
  }
  CHECK(completed + cancelled == kCycles * 50);
  CHECK(cancelled >= kCycles * 16);  // the recv() fibers can never finish
  CHECK(internal::mapped_stack_count() == stacks_before);
}

}  // namespace
}  // namespace weft
