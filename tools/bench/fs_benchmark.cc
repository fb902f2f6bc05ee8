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
#include <sys/stat.h>
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

namespace {

using weft::bench::drop_cache;
using weft::bench::flag_str;
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
  constexpr size_t kChunk = 1 << 20;
  std::vector<std::string> files;
  rt->block_on([&] {
    std::string data(static_cast<size_t>(mib) << 20, '\0');
    for (size_t i = 0; i < data.size(); i += 4096) data[i] = static_cast<char>(i >> 12);
    for (int i = 0; i < 3; ++i) {
      files.push_back(dir + "/big" + std::to_string(i));
      if (!weft::fs::write_file(files.back(), data, {.sync = true}).ok()) std::abort();
    }
  });

  // 1. Cold reads.
  double best_seq = 1e30, best_fib = 1e30;
  std::vector<double> ratios;
  auto buf = std::make_unique<char[]>(kChunk);
  for (int64_t r = 0; r < runs; ++r) {
    for (auto& f : files) drop_cache(f);
    int64_t t0 = now_ns();
    uint64_t total = 0;
    for (auto& f : files) total += plain_read(f, buf.get(), kChunk);
    double seq = static_cast<double>(now_ns() - t0) / 1e6;
    if (total != 3 * (static_cast<uint64_t>(mib) << 20)) std::abort();
    for (auto& f : files) drop_cache(f);
    t0 = now_ns();
    total = rt->block_on([&] {
      std::vector<weft::JoinHandle<uint64_t>> hs;
      for (auto& f : files) {
        hs.push_back(weft::spawn([&f] {
          auto file = weft::fs::File::open(f);
          if (!file.ok()) std::abort();
          auto b = std::make_unique<char[]>(kChunk);
          uint64_t n = 0;
          for (;;) {
            auto got = file->read(std::span<char>(b.get(), kChunk));
            if (!got.ok()) std::abort();
            if (*got == 0) break;
            n += *got;
          }
          return n;
        }));
      }
      uint64_t t = 0;
      for (auto& h : hs) t += h.join();
      return t;
    });
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
  std::vector<std::string> small;
  for (int i = 0; i < kFiles; ++i) {
    small.push_back(dir + "/s" + std::to_string(i));
    int fd = ::open(small.back().c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0 || ::write(fd, "x", 1) != 1) std::abort();
    ::close(fd);
  }
  int64_t t0 = now_ns();
  uint64_t sum = 0;
  for (int64_t i = 0; i < stats; ++i) {
    struct stat st;
    if (::stat(small[static_cast<size_t>(i % kFiles)].c_str(), &st) != 0) std::abort();
    sum += static_cast<uint64_t>(st.st_size);
  }
  double plain_ns = static_cast<double>(now_ns() - t0) / static_cast<double>(stats);
  constexpr int kFibers = 64;
  t0 = now_ns();
  uint64_t fsum = rt->block_on([&] {
    std::vector<weft::JoinHandle<uint64_t>> hs;
    for (int f = 0; f < kFibers; ++f) {
      hs.push_back(weft::spawn([&, f] {
        uint64_t s = 0;
        for (int64_t i = f; i < stats; i += kFibers) {
          auto st = weft::fs::stat(small[static_cast<size_t>(i % kFiles)]);
          if (!st.ok()) std::abort();
          s += st->size;
        }
        return s;
      }));
    }
    uint64_t t = 0;
    for (auto& h : hs) t += h.join();
    return t;
  });
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
