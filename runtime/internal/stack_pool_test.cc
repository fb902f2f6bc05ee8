#include "runtime/internal/stack_pool.h"

#include <doctest/doctest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <cstring>
#include <string>
#include <vector>

#include "runtime/platform/syscall.h"

namespace weft::internal {
namespace {

TEST_CASE("stacks are page-rounded, writable, and counted") {
  int64_t before = mapped_stack_count();
  auto s = allocate_stack(10000);
  REQUIRE(s.ok());
  CHECK(s->size == kMinStackSize);
  CHECK(mapped_stack_count() == before + 1);
  std::memset(s->bottom(), 0xab, s->size);
  CHECK(s->in_guard(static_cast<char*>(s->bottom()) - 1));
  CHECK_FALSE(s->in_guard(s->bottom()));
  free_stack(*s);
  CHECK(mapped_stack_count() == before);
}

TEST_CASE("the guard page faults") {
  auto s = allocate_stack(kMinStackSize);
  REQUIRE(s.ok());
  pid_t pid = fork();
  if (pid == 0) {
    std::signal(SIGSEGV, SIG_DFL);
    static_cast<volatile char*>(s->bottom())[-1] = 1;
    _exit(0);
  }
  int status = 0;
  waitpid(pid, &status, 0);
  CHECK(WIFSIGNALED(status));
  CHECK(WTERMSIG(status) == SIGSEGV);
  free_stack(*s);
}

TEST_CASE("StackCache reuses default-size stacks up to its capacity") {
  int64_t before = mapped_stack_count();
  {
    StackCache cache(64 * 1024, 2);
    auto a = cache.get(64 * 1024);
    auto b = cache.get(64 * 1024);
    auto c = cache.get(64 * 1024);
    auto big = cache.get(256 * 1024);
    REQUIRE((a.ok() && b.ok() && c.ok() && big.ok()));
    void* a_base = a->base;
    cache.put(*a);
    cache.put(*b);
    cache.put(*c);    // over capacity: unmapped
    cache.put(*big);  // not the default size: unmapped
    CHECK(cache.cached() == 2);
    CHECK(mapped_stack_count() == before + 2);
    auto again = cache.get(64 * 1024 - 100);  // rounds to the default size
    REQUIRE(again.ok());
    CHECK(cache.cached() == 1);
    CHECK((again->base == a_base || again->size == 64 * 1024));
    cache.put(*again);
  }
  CHECK(mapped_stack_count() == before);
}

TEST_CASE("StackCache::release_idle unmaps the stacks no get() took since the last call") {
  const int64_t before = mapped_stack_count();
  {
    StackCache cache(64 * 1024, 100);
    std::vector<Stack> out;
    for (int i = 0; i < 10; ++i) {
      auto s = cache.get(64 * 1024);
      REQUIRE(s.ok());
      out.push_back(*s);
    }
    for (Stack& s : out) cache.put(s);
    out.clear();
    // The first call starts the interval: nothing was measured yet.
    CHECK(cache.release_idle(2, 100) == 0);
    CHECK(cache.cached() == 10);
    // Three taken and given back: the low-water mark is 7.
    for (int i = 0; i < 3; ++i) out.push_back(*cache.get(64 * 1024));
    const void* hot = out.back().base;
    for (Stack& s : out) cache.put(s);
    out.clear();
    CHECK(cache.release_idle(2, 100) == 5);  // 7 idle, 2 kept
    CHECK(cache.cached() == 5);
    CHECK(mapped_stack_count() == before + 5);
    // The front went; the stack used last is still on top (LIFO).
    auto again = cache.get(64 * 1024);  // the low-water mark is now 4
    REQUIRE(again.ok());
    CHECK(again->base == hot);
    cache.put(*again);
    CHECK(cache.release_idle(1, 100) == 3);  // 4 idle, 1 kept
    CHECK(cache.cached() == 2);
    // Untouched for a whole interval: all but `keep`, at most `max_release`.
    CHECK(cache.release_idle(0, 1) == 1);
    CHECK(cache.release_idle(0, 100) == 1);
    CHECK(cache.cached() == 0);
    CHECK(mapped_stack_count() == before);
  }
  CHECK(mapped_stack_count() == before);
}

TEST_CASE("a stack that cannot be mapped for want of mappings says so") {
  // ENOMEM from mmap or mprotect is most often vm.max_map_count: the
  // status keeps the errno and the operation, and names the limit.
  absl::Status s = stack_map_error(ENOMEM, "mprotect(fiber stack)");
  CHECK(s.code() == absl::StatusCode::kResourceExhausted);
  CHECK(errno_of(s) == ENOMEM);
  const std::string m(s.message());
  CAPTURE(m);
  CHECK(m.rfind("mprotect(fiber stack): ", 0) == 0);
  CHECK(m.find("fiber stacks are mapped") != std::string::npos);
  CHECK(m.find("vm.max_map_count is ") != std::string::npos);
  CHECK(m.find("tools/setup.sh") != std::string::npos);
  // Another errno gets the plain message.
  absl::Status other = stack_map_error(EINVAL, "mmap(fiber stack)");
  CHECK(errno_of(other) == EINVAL);
  CHECK(other.message().find("max_map_count") == std::string_view::npos);
}

TEST_CASE("an impossible stack size is an error, not a crash") {
  auto s = allocate_stack(size_t{1} << 50);
  CHECK_FALSE(s.ok());
  CHECK(s.status().message().find("mmap") != std::string_view::npos);
}

}  // namespace
}  // namespace weft::internal
