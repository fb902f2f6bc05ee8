#include "sync/oneshot.h"

#include <doctest/doctest.h>

#include <string>
#include <thread>

#include "runtime/runtime.h"

namespace weft {
namespace {

TEST_CASE("oneshot delivers one value across fibers") {
  auto rt = *Runtime::create({.workers = 2});
  rt->block_on([] {
    auto [tx, rx] = make_oneshot<std::string>();
    auto h = spawn([tx = std::move(tx)]() mutable {
      (void)this_fiber::sleep_for(absl::Milliseconds(2));
      CHECK(tx.send(std::string("hello")).ok());
      CHECK(tx.send(std::string("again")).code() == absl::StatusCode::kFailedPrecondition);
    });
    auto v = rx.recv();
    REQUIRE(v.ok());
    CHECK(*v == "hello");
    CHECK(rx.recv().status().code() == absl::StatusCode::kFailedPrecondition);
    h.join();
  });
}

TEST_CASE("oneshot statuses: dropped sender, timeout, try_recv, gone receiver") {
  auto rt = *Runtime::create({.workers = 1});
  rt->block_on([] {
    {
      auto [tx, rx] = make_oneshot<int>();
      CHECK(rx.try_recv().status().code() == absl::StatusCode::kUnavailable);
      CHECK(rx.recv_for(absl::Milliseconds(2)).status().code() == absl::StatusCode::kDeadlineExceeded);
      { auto drop = std::move(tx); }
      CHECK(rx.recv().status().code() == absl::StatusCode::kAborted);
    }
    {
      auto [tx, rx] = make_oneshot<int>();
      { auto drop = std::move(rx); }
      int v = 5;
      CHECK(tx.send(std::move(v)).code() == absl::StatusCode::kCancelled);
    }
  });
}

TEST_CASE("a receiver replaced by move-assignment is gone: send() reports it and keeps the value") {
  auto [tx, rx] = make_oneshot<std::string>();
  auto [tx2, rx2] = make_oneshot<std::string>();
  rx = std::move(rx2);  // the first oneshot's receiver is dropped here
  std::string v = "kept";
  CHECK(tx.send(std::move(v)).code() == absl::StatusCode::kCancelled);
  CHECK(v == "kept");
  CHECK(tx2.send(std::string("x")).ok());
  auto got = rx.recv();
  REQUIRE(got.ok());
  CHECK(*got == "x");
}

TEST_CASE("a plain thread receives from a fiber") {
  auto rt = *Runtime::create({.workers = 1});
  auto [tx, rx] = make_oneshot<int>();
  rt->spawn([tx = std::move(tx)]() mutable { (void)tx.send(7); }).detach();
  auto v = rx.recv();
  REQUIRE(v.ok());
  CHECK(*v == 7);
}

}  // namespace
}  // namespace weft
