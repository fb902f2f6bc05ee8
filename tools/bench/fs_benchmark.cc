// fs_benchmark: weft::fs against plain blocking calls.
//
//   1. Reading 3 files of 64 MiB (--mib) with a cold page cache
//      (posix_fadvise DONTNEED on each file before each run): one plain
//      thread reading them one after the other, versus 3 fibers reading one
//      each through fs::File (the reads run on the blocking pool in
//      parallel). Printed as the speed-up of the fibers.
//   2. 100,000 stats (--stats) of 2,000 small files (page cache warm): a
//      plain loop of stat(2) versus 64 fibers calling fs::stat. This
//      measures the cost of the pool hop per call (io_uring kOff; the
//      workers' rings are measured by fs_ring_benchmark).
//
//   bazel run -c opt //tools/bench:fs_benchmark -- [--dir=/var/tmp] [--mib=64] [--runs=3]
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

#include "fs/fs.h"
#include "runtime/blocking.h"
#include "runtime/runtime.h"
#include "tools/bench/bench_util.h"
#include "tools/bench/fs_bench_util.h"

namespace {

using weft::bench::drop_cache;
using weft::bench::flag_str;
using weft::bench::kReadChunk;
using weft::bench::now_ns;

uint64_t plain_read(const std::string& path, char* buf, size_t cap) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) std::abort();
  uint64_t total = 0;
  for (;;) {
    ssize_t n = ::read(fd, buf, cap);
    if (n <= 0) break;
    total += static_cast<uint64_t>(n);
  }
  ::close(fd);
  return total;
}

}  // namespace

int main(int argc, char** argv) {
  std::string base = flag_str(argc, argv, "dir", "/var/tmp");
  int64_t mib = weft::bench::flag(argc, argv, "mib", 64);
  int64_t runs = weft::bench::flag(argc, argv, "runs", 3);
  int64_t stats = weft::bench::flag(argc, argv, "stats", 100000);
  std::string templ = base + "/weft_fs_bench.XXXXXX";
  if (::mkdtemp(templ.data()) == nullptr) {
    std::perror("mkdtemp");
    return 1;
  }
  std::string dir = templ;
  // The blocking pool only: the workers' rings have their own benchmark
  // (fs_ring_benchmark), and these numbers stay comparable with earlier runs.
  auto rt = *weft::Runtime::create({.workers = 2, .io_uring = weft::IoUringMode::kOff});
  std::vector<std::string> files = weft::bench::write_big_files(rt.get(), dir, 3, mib);

  // 1. Cold reads.
  double best_seq = 1e30, best_fib = 1e30;
  std::vector<double> ratios;
  auto buf = std::make_unique<char[]>(kReadChunk);
  for (int64_t r = 0; r < runs; ++r) {
    for (auto& f : files) drop_cache(f);
    int64_t t0 = now_ns();
    uint64_t total = 0;
    for (auto& f : files) total += plain_read(f, buf.get(), kReadChunk);
    double seq = static_cast<double>(now_ns() - t0) / 1e6;
    if (total != 3 * (static_cast<uint64_t>(mib) << 20)) std::abort();
    for (auto& f : files) drop_cache(f);
    t0 = now_ns();
    total = weft::bench::read_on_fibers(rt.get(), files);
    double fib = static_cast<double>(now_ns() - t0) / 1e6;
    if (total != 3 * (static_cast<uint64_t>(mib) << 20)) std::abort();
    std::printf("run %lld: cold read 3 x %lld MiB: sequential %.1f ms, 3 fibers %.1f ms (x%.2f)\n",
                static_cast<long long>(r + 1), static_cast<long long>(mib), seq, fib, seq / fib);
    ratios.push_back(seq / fib);
    best_seq = std::min(best_seq, seq);
    best_fib = std::min(best_fib, fib);
  }
  std::printf("cold read, best of %lld: sequential %.1f ms (%.0f MiB/s), 3 fibers %.1f ms (%.0f MiB/s): speed-up x%.2f\n",
              static_cast<long long>(runs), best_seq, 3.0 * mib / (best_seq / 1e3), best_fib,
              3.0 * mib / (best_fib / 1e3), best_seq / best_fib);
  std::sort(ratios.begin(), ratios.end());
  std::printf("cold read: median speed-up over %zu runs x%.2f\n", ratios.size(),
              ratios[ratios.size() / 2]);

  // 2. Small-file stats.
  constexpr int kFiles = 2000;
  std::vector<std::string> small = weft::bench::write_small_files(dir, kFiles);
  int64_t t0 = now_ns();
  uint64_t sum = weft::bench::plain_stats(small, stats);
  double plain_ns = static_cast<double>(now_ns() - t0) / static_cast<double>(stats);
  constexpr int kFibers = 64;
  t0 = now_ns();
  uint64_t fsum = weft::bench::stats_on_fibers(rt.get(), small, stats, kFibers);
  double fib_ns = static_cast<double>(now_ns() - t0) / static_cast<double>(stats);
  if (sum != fsum) std::abort();
  std::printf("%lld stats of %d small files: plain loop %.0f ns/stat, %d fibers on fs::stat %.0f ns/stat (x%.2f of the loop's time)\n",
              static_cast<long long>(stats), kFiles, plain_ns, kFibers, fib_ns, fib_ns / plain_ns);
  auto ps = rt->stats().blocking.lane(weft::BlockingLane::kDefault);
  std::printf("blocking pool: %lld threads started, %llu calls served\n",
              static_cast<long long>(ps.threads_started),
              static_cast<unsigned long long>(ps.calls_served));
  rt->block_on([&] { (void)weft::fs::remove_all(dir); });
  return 0;
}
