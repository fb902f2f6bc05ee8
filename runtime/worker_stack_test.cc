// on_worker_stack() (runtime/internal/worker_stack.h, protocol in
// worker_stack.cc): the call runs on one stack per worker, shared by its
// fibers; results, move-only results and exceptions come back; off a fiber
// and inside a call it runs in place; suspending there, or overflowing the
// stack, aborts with a message; and many fibers on two workers calling it
// between yields get exact results (TSan sees every switch).
#include "runtime/internal/worker_stack.h"

#include <doctest/doctest.h>

#include <atomic>
#include <cstdint>
#include <memory>
#include <set>
#include <stdexcept>
#include <string>
#include <vector>

#include "runtime/runtime.h"
#include "tests/test_util.h"

namespace weft {
namespace {

using internal::on_worker_stack;

// The address of a local of the function that calls it: where the stack
// is at that depth. noinline so that every caller's frame is the same.
__attribute__((noinline)) uintptr_t stack_here() {
  volatile char marker = 0;
  asm volatile("" : : "r"(&marker) : "memory");
  return reinterpret_cast<uintptr_t>(&marker);
}

std::unique_ptr<Runtime> make(int workers) {
  auto rt = Runtime::create({.workers = workers});
  REQUIRE(rt.ok());
  return std::move(*rt);
}

TEST_CASE("fibers of one worker share its stack; their own stacks differ") {
  auto rt = make(1);
  rt->block_on([] {
    std::vector<uintptr_t> own, shared;
    std::vector<JoinHandle<void>> hs;
    int arrived = 0;  // one worker: the fibers take turns
    for (int i = 0; i < 4; ++i) {
      hs.push_back(spawn([&] {
        own.push_back(stack_here());
        shared.push_back(on_worker_stack([] { return stack_here(); }));
        // Stay alive until all four have run, so that each has a stack of
        // its own (an exiting fiber hands its stack to the next).
        ++arrived;
        while (arrived < 4) this_fiber::yield();
      }));
    }
    for (auto& h : hs) h.join();
    REQUIRE(own.size() == 4);
    REQUIRE(shared.size() == 4);
    // The same call at the same depth of the same stack: one address.
    CHECK(std::set<uintptr_t>(shared.begin(), shared.end()).size() == 1);
    // On their own stacks, four fibers are at four addresses, and none on
    // the shared stack (a fiber stack is 64 KiB by default).
    CHECK(std::set<uintptr_t>(own.begin(), own.end()).size() == 4);
    for (uintptr_t a : own) {
      const uintptr_t d = a > shared[0] ? a - shared[0] : shared[0] - a;
      CHECK(d > 64 * 1024);
    }
  });
}

TEST_CASE("values, move-only values, void and exceptions come back") {
  auto rt = make(2);
  rt->block_on([] {
    CHECK(on_worker_stack([] { return 42; }) == 42);
    std::unique_ptr<int> p = on_worker_stack([] { return std::make_unique<int>(7); });
    REQUIRE(p != nullptr);
    CHECK(*p == 7);
    struct NoDefault {
      explicit NoDefault(int v) : v(v) {}
      int v;
    };
    CHECK(on_worker_stack([] { return NoDefault(3); }).v == 3);
    int side = 0;
    on_worker_stack([&] { side = 5; });
    CHECK(side == 5);
    // A lambda that is an lvalue, called twice.
    int calls = 0;
    auto count = [&] { return ++calls; };
    CHECK(on_worker_stack(count) == 1);
    CHECK(on_worker_stack(count) == 2);
    // An exception unwinds the worker stack's frames and is rethrown here;
    // the stack serves the next call.
    try {
      on_worker_stack([]() -> int { throw std::runtime_error("parse failed"); });
      FAIL("no exception");
    } catch (const std::runtime_error& e) {
      CHECK(std::string(e.what()) == "parse failed");
    }
    CHECK(on_worker_stack([] { return std::string("after"); }) == "after");
  });
}

TEST_CASE("off a fiber and inside a call, the function runs in place") {
  // On a plain thread: the caller's stack, a few frames down.
  const uintptr_t here = stack_here();
  const uintptr_t there = on_worker_stack([] { return stack_here(); });
  CHECK((here > there ? here - there : there - here) < 4096);
  auto rt = make(1);
  rt->block_on([] {
    // A call made from inside a call stays on the worker's stack.
    auto [outer, inner] = on_worker_stack([] {
      uintptr_t o = stack_here();
      uintptr_t i = on_worker_stack([] { return stack_here(); });
      return std::pair<uintptr_t, uintptr_t>(o, i);
    });
    CHECK((outer > inner ? outer - inner : inner - outer) < 4096);
  });
}

TEST_CASE("suspending on the worker's stack aborts with a message") {
  auto suspend = [] {
    auto rt = Runtime::create({.workers = 1});
    (*rt)->block_on([] { on_worker_stack([] { this_fiber::yield(); }); });
  };
  weft::testing::expect_death(suspend, "a function run by on_worker_stack() tried to suspend");
}

TEST_CASE("an overflow of the worker's stack is reported as such") {
  auto overflow = [] {
    auto rt = Runtime::create({.workers = 1});
    (*rt)->block_on([] {
      on_worker_stack([] { return weft::testing::overflow_stack(); });
    });
  };
#if defined(__SANITIZE_ADDRESS__)
  // ASan owns SIGSEGV (see runtime_test's fiber stack overflow case).
  weft::testing::expect_death(overflow, "");
#else
  weft::testing::expect_death(overflow, "weft: worker stack overflow in a call from on_worker_stack() (fiber ");
#endif
}

TEST_CASE("stress: fibers on two workers interleave calls and yields; exact sums") {
  const int kFibers = 200;
  const int kRounds = 200 * static_cast<int>(weft::testing::scale());
  auto rt = make(2);
  std::atomic<int64_t> total{0};
  std::atomic<int> wrong{0};
  rt->block_on([&] {
    std::vector<JoinHandle<void>> hs;
    for (int f = 0; f < kFibers; ++f) {
      hs.push_back(spawn([&, f] {
        int64_t mine = 0;
        for (int r = 0; r < kRounds; ++r) {
          // A frame as wide as the one the call is for (Beast's parser),
          // filled and summed on the worker's stack.
          const int64_t got = on_worker_stack([f, r] {
            volatile int64_t buf[512];
            for (int i = 0; i < 512; ++i) buf[i] = f + r + i;
            int64_t s = 0;
            for (int i = 0; i < 512; ++i) s += buf[i];
            return s;
          });
          const int64_t want = 512LL * (f + r) + 511LL * 512 / 2;
          if (got != want) wrong.fetch_add(1);
          mine += got;
          if (r % 3 == 0) this_fiber::yield();  // let fibers move between workers
        }
        total.fetch_add(mine);
      }));
    }
    for (auto& h : hs) h.join();
  });
  int64_t want = 0;
  for (int f = 0; f < kFibers; ++f) {
    for (int r = 0; r < kRounds; ++r) want += 512LL * (f + r) + 511LL * 512 / 2;
  }
  CHECK(wrong.load() == 0);
  CHECK(total.load() == want);
}

}  // namespace
}  // namespace weft
