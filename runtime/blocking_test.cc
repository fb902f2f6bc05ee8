#include "runtime/blocking.h"

#include <doctest/doctest.h>
#include <unistd.h>

#include <atomic>
#include <stdexcept>

#include "runtime/runtime.h"

namespace weft {
namespace {

TEST_CASE("run_blocking returns the value and rethrows exceptions") {
  auto rt = *Runtime::create({.workers = 2});
  int v = rt->block_on([] { return run_blocking([] { return 41 + 1; }); });
  CHECK(v == 42);
  bool thrown = rt->block_on([] {
    try {
      run_blocking([]() -> int { throw std::runtime_error("boom"); });
    } catch (const std::runtime_error& e) {
      return std::string(e.what()) == "boom";
    }
    return false;
  });
  CHECK(thrown);
  int calls = 0;
  rt->block_on([&] { run_blocking([&] { ++calls; }); });
  CHECK(calls == 1);
}

TEST_CASE("a blocking call parks its fiber, not the worker") {
  // One worker: while a fiber waits for a call that blocks its pool thread
  // until released, another fiber on the same worker keeps running.
  auto rt = *Runtime::create({.workers = 1});
  std::atomic<bool> release{false};
  std::atomic<int> progress{0};
  rt->block_on([&] {
    auto blocked = spawn([&] {
      return run_blocking([&] {
        while (!release.load()) ::usleep(100);
        return progress.load();
      });
    });
    for (int i = 0; i < 100; ++i) {
      progress.fetch_add(1);
      this_fiber::yield();
    }
    release.store(true);
    CHECK(blocked.join() == 100);
  });
}

TEST_CASE("run_blocking runs many calls, exactly once each") {
  auto rt = *Runtime::create({.workers = 2});
  std::atomic<int> ran{0};
  rt->block_on([&] {
    std::vector<JoinHandle<int>> hs;
    for (int i = 0; i < 64; ++i) {
      hs.push_back(spawn([&, i] {
        return run_blocking([&, i] {
          ::usleep(1000);
          ran.fetch_add(1);
          return i;
        });
      }));
    }
    int sum = 0;
    for (auto& h : hs) sum += h.join();
    CHECK(sum == 63 * 64 / 2);
  });
  CHECK(ran.load() == 64);
  CHECK(internal::blocking_threads() <= kMaxBlockingThreads);
  CHECK(internal::blocking_threads() >= 1);
}

}  // namespace
}  // namespace weft
