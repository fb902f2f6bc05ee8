#include "future/when.h"

#include <doctest/doctest.h>

#include <atomic>
#include <memory>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "runtime/runtime.h"
#include "sync/wait_group.h"
#include "tests/test_util.h"

namespace weft {
namespace {

// Counts live instances, to check that dropped results are destroyed.
struct Tracked {
  static inline std::atomic<int> live{0};
  int v = 0;
  explicit Tracked(int x) : v(x) { live.fetch_add(1); }
  Tracked(Tracked&& o) noexcept : v(o.v) { live.fetch_add(1); }
  Tracked& operator=(Tracked&&) = default;
  ~Tracked() { live.fetch_sub(1); }
};

TEST_CASE("when_all of a vector: every value in order, set from several threads") {
  auto rt = *Runtime::create({.workers = 2});
  std::vector<Promise<int>> ps;
  std::vector<Future<int>> fs;
  for (int i = 0; i < 10; ++i) {
    ps.emplace_back(*rt);
    fs.push_back(ps.back().get_future());
  }
  auto all = when_all(std::move(fs));
  std::vector<std::thread> ts;
  for (int i = 9; i >= 0; --i) {
    ts.emplace_back([&ps, i] { ps[static_cast<size_t>(i)].set_value(i * i); });
  }
  for (auto& t : ts) t.join();
  auto r = all.get();
  REQUIRE(r.ok());
  REQUIRE(r->size() == 10);
  for (int i = 0; i < 10; ++i) CHECK((*r)[static_cast<size_t>(i)] == i * i);
}

TEST_CASE("when_all of Future<void>s, and of none on a fiber") {
  auto rt = *Runtime::create({.workers = 1});
  Promise<void> a(*rt), b(*rt);
  std::vector<Future<void>> fs;
  fs.push_back(a.get_future());
  fs.push_back(b.get_future());
  auto all = when_all(std::move(fs));
  a.set_value();
  CHECK(all.wait_for(absl::Milliseconds(2)).code() == absl::StatusCode::kDeadlineExceeded);
  b.set_value();
  CHECK(all.get().ok());
  rt->block_on([] {
    CHECK(when_all(std::vector<Future<int>>{}).get()->empty());
    CHECK(when_all(std::vector<Future<void>>{}).get().ok());
  });
}

TEST_CASE("variadic when_all gives a tuple; void is std::monostate") {
  auto rt = *Runtime::create({.workers = 2});
  Promise<int> a(*rt);
  Promise<std::string> b(*rt);
  Promise<void> c(*rt);
  auto all = when_all(a.get_future(), b.get_future(), c.get_future())
                 .then([](std::tuple<int, std::string, std::monostate> t) {
                   return std::get<1>(t) + std::to_string(std::get<0>(t));
                 });
  c.set_value();
  b.set_value("x");
  a.set_value(1);
  CHECK(*all.get() == "x1");
}

TEST_CASE("when_all fails with the first failure at once and drops the other results") {
  auto rt = *Runtime::create({.workers = 2});
  Tracked::live = 0;
  {
    Promise<Tracked> a(*rt), b(*rt), c(*rt);
    auto all = when_all(a.get_future(), b.get_future(), c.get_future());
    a.set_value(Tracked(1));
    b.set_error(absl::NotFoundError("b"));
    auto r = all.get();  // c is still pending
    CHECK(r.status().code() == absl::StatusCode::kNotFound);
    c.set_value(Tracked(3));  // arrives late: dropped
  }
  CHECK(Tracked::live.load() == 0);
  {
    Promise<int> a(*rt), b(*rt);
    std::vector<Future<int>> fs;
    fs.push_back(a.get_future());
    fs.push_back(b.get_future());
    auto all = when_all(std::move(fs));
    b.set_exception(std::make_exception_ptr(std::runtime_error("b threw")));
    CHECK_THROWS_WITH_AS(all.get(), "b threw", std::runtime_error);
    a.set_value(1);
  }
}

TEST_CASE("when_any: the first to complete wins with its index; the others keep running and are dropped") {
  auto rt = *Runtime::create({.workers = 2});
  Tracked::live = 0;
  {
    Promise<Tracked> a(*rt), b(*rt), c(*rt);
    std::vector<Future<Tracked>> fs;
    fs.push_back(a.get_future());
    fs.push_back(b.get_future());
    fs.push_back(c.get_future());
    auto any = when_any(std::move(fs));
    b.set_value(Tracked(20));
    auto r = any.get();
    REQUIRE(r.ok());
    CHECK(r->index == 1);
    CHECK(r->value.v == 20);
    // The losers complete later, on other threads, with no one to take them.
    std::thread ta([&] { a.set_value(Tracked(10)); });
    std::thread tc([&] { c.set_error(absl::InternalError("late")); });
    ta.join();
    tc.join();
  }
  CHECK(Tracked::live.load() == 0);
}

TEST_CASE("when_any: a first failure fails it; variadic and void forms") {
  auto rt = *Runtime::create({.workers = 1});
  Promise<int> a(*rt), b(*rt);
  auto any = when_any(a.get_future(), b.get_future());
  a.set_error(absl::DataLossError("a"));
  CHECK(any.get().status().code() == absl::StatusCode::kDataLoss);
  b.set_value(2);

  Promise<void> c(*rt), d(*rt);
  auto any2 = when_any(c.get_future(), d.get_future());
  d.set_value();
  auto r = any2.get();
  REQUIRE(r.ok());
  CHECK(r->index == 1);
  c.set_value();
}

TEST_CASE("when_any of nothing aborts") {
  weft::testing::expect_death([] { (void)when_any(std::vector<Future<int>>{}); },
                             "weft::when_any() of no futures would never complete");
}

}  // namespace
}  // namespace weft
