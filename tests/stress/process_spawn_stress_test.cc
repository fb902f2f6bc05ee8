// 1,000 children (cat), 50 at a time, each echoing 64 KiB of checksummed
// bytes written by one fiber and read back by another. Afterwards: no
// child left (running or zombie) and no descriptor left open.
// --scale=N multiplies the number of children.
#include <doctest/doctest.h>
#include <sys/wait.h>

#include <atomic>
#include <cstdint>
#include <string>
#include <vector>

#include "process/process.h"
#include "runtime/runtime.h"
#include "sync/sync.h"
#include "tests/net_util.h"
#include "tests/stress_util.h"

namespace weft {
namespace {

bool no_children() {
  siginfo_t info{};
  return ::waitid(P_ALL, 0, &info, WEXITED | WNOHANG | WNOWAIT) < 0 && errno == ECHILD;
}

uint64_t checksum(std::string_view s) {
  uint64_t h = 1469598103934665603ull;
  for (unsigned char c : s) h = (h ^ c) * 1099511628211ull;
  return h;
}

TEST_CASE("1,000 cat children, 50 at a time, 64 KiB each, checksummed") {
  const int64_t children = testing::stress_size(1000);
  constexpr int kConcurrent = 50;
  constexpr size_t kBytes = 64 * 1024;
  auto rt = *Runtime::create({.workers = 2});
  // Warm up once so lazily created process-wide descriptors (the reaper's
  // epoll set, the runtime's) are counted in the baseline.
  rt->block_on([] { (void)process::output({"true"}); });
  const int fds_before = testing::open_fds();
  std::atomic<int64_t> ok{0};
  std::atomic<int64_t> next{0};
  rt->block_on([&] {
    std::vector<JoinHandle<void>> workers;
    for (int w = 0; w < kConcurrent; ++w) {
      workers.push_back(spawn([&] {
        for (int64_t i = next.fetch_add(1); i < children; i = next.fetch_add(1)) {
          std::string data(kBytes, '\0');
          uint64_t x = static_cast<uint64_t>(i) * 0x9e3779b97f4a7c15ull + 1;
          for (char& c : data) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            c = static_cast<char>(x);
          }
          process::Options o;
          o.in = process::Stdio::pipe();
          o.out = process::Stdio::pipe();
          auto c = process::spawn({"cat"}, o);
          REQUIRE(c.ok());
          auto writer = spawn([&] {
            CHECK(c->stdin_pipe->write_all(data).ok());
            CHECK(c->stdin_pipe->close().ok());
          });
          auto got = c->stdout_pipe->read_to_end();
          writer.join();
          auto st = c->wait();
          REQUIRE(got.ok());
          REQUIRE(st.ok());
          CHECK(st->success());
          if (got->size() == kBytes && checksum(*got) == checksum(data)) ok.fetch_add(1);
        }
      }));
    }
    for (auto& h : workers) h.join();
  });
  CHECK(ok.load() == children);
  CHECK(no_children());
  CHECK(testing::open_fds() == fds_before);
  MESSAGE(children << " children, " << ok.load() << " checksums matched");
}

}  // namespace
}  // namespace weft
