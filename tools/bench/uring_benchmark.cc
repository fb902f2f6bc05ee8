// uring_benchmark: should weft serve file calls from io_uring instead of
// its blocking pool? This measures io_uring's best case, one plain thread
// driving one ring with many requests in flight (no fiber hand-off at all),
// against what weft does today (fibers whose file calls run on the blocking
// pool), on the two workloads of fs_benchmark, in the same run:
//
//   1. Reading 3 files of 64 MiB (--mib) with a cold page cache: 3 fibers
//      on fs::File::read (1 MiB reads) versus one ring with --depth 1 MiB
//      reads in flight per file. Printed as the ring's time over the
//      fibers' time (below 1: the ring is faster).
//   2. --stats stats of 2,000 small files (page cache warm): 64 fibers on
//      fs::stat versus one ring with 64 statx in flight, and a plain loop
//      of stat(2) as the floor. Printed as ns per stat and the same ratio.
//
// A ring inside weft would cost more than this ceiling (a worker submits
// for its fibers and wakes them on completion), so if the ceiling does not
// beat the pool clearly, a ring per worker is not worth its complexity.
//
//   bazel run -c opt //tools/bench:uring_benchmark -- [--dir=/var/tmp] [--mib=64] [--runs=3]
#include <fcntl.h>
#include <liburing.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "fs/fs.h"
#include "runtime/runtime.h"
#include "tools/bench/bench_util.h"
#include "tools/bench/fs_bench_util.h"

namespace {

using weft::bench::drop_cache;
using weft::bench::flag_str;
using weft::bench::kReadChunk;
using weft::bench::now_ns;

[[noreturn]] void die(const char* what, int err) {
  std::fprintf(stderr, "uring_benchmark: %s: %s\n", what, std::strerror(err));
  std::exit(1);
}

// A finished request: the slot it was issued on and its result.
struct Completion {
  size_t slot;
  int res;
};

// submit_and_reap() submits the queued requests, waits for at least one to
// finish and returns every one that has finished. Dies on a failed one,
// naming it `what`.
std::vector<Completion> submit_and_reap(io_uring* ring, const char* what) {
  io_uring_submit(ring);
  io_uring_cqe* cqe;
  int rc = io_uring_wait_cqe(ring, &cqe);
  if (rc < 0) die("io_uring_wait_cqe", -rc);
  std::vector<Completion> done;
  unsigned head;
  io_uring_for_each_cqe(ring, head, cqe) {
    if (cqe->res < 0) die(what, -cqe->res);
    done.push_back({static_cast<size_t>(io_uring_cqe_get_data64(cqe)), cqe->res});
  }
  io_uring_cq_advance(ring, static_cast<unsigned>(done.size()));
  return done;
}

// Reads every file whole through one ring, `depth` reads in flight per file.
uint64_t ring_read(io_uring* ring, const std::vector<std::string>& files, int depth) {
  struct Slot {
    int file;
    uint64_t off;
    std::unique_ptr<char[]> buf;
  };
  std::vector<int> fds;
  std::vector<uint64_t> sizes, next;
  for (auto& f : files) {
    int fd = ::open(f.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) die("open", errno);
    struct stat st;
    ::fstat(fd, &st);
    fds.push_back(fd);
    sizes.push_back(static_cast<uint64_t>(st.st_size));
    next.push_back(0);
  }
  std::vector<Slot> slots(files.size() * static_cast<size_t>(depth));
  uint64_t total = 0;
  int inflight = 0;
  auto issue = [&](size_t s) {
    Slot& sl = slots[s];
    if (next[sl.file] >= sizes[sl.file]) return;
    sl.off = next[sl.file];
    next[sl.file] += kReadChunk;
    io_uring_sqe* sqe = io_uring_get_sqe(ring);
    io_uring_prep_read(sqe, fds[sl.file], sl.buf.get(), kReadChunk, sl.off);
    io_uring_sqe_set_data64(sqe, s);
    ++inflight;
  };
  for (size_t s = 0; s < slots.size(); ++s) {
    slots[s].file = static_cast<int>(s % files.size());
    slots[s].buf = std::make_unique<char[]>(kReadChunk);
    issue(s);
  }
  while (inflight > 0) {
    std::vector<Completion> done = submit_and_reap(ring, "ring read");
    inflight -= static_cast<int>(done.size());
    for (const Completion& c : done) {
      total += static_cast<uint64_t>(c.res);
      issue(c.slot);
    }
  }
  for (int fd : fds) ::close(fd);
  return total;
}

// stats `n` paths through one ring, `depth` statx in flight.
uint64_t ring_stats(io_uring* ring, const std::vector<std::string>& paths, int64_t n, int depth) {
  std::vector<struct statx> bufs(static_cast<size_t>(depth));
  int64_t issued = 0, done = 0;
  uint64_t sum = 0;
  auto issue = [&](size_t slot) {
    if (issued >= n) return;
    io_uring_sqe* sqe = io_uring_get_sqe(ring);
    io_uring_prep_statx(sqe, AT_FDCWD, paths[static_cast<size_t>(issued % static_cast<int64_t>(paths.size()))].c_str(),
                        0, STATX_SIZE, &bufs[slot]);
    io_uring_sqe_set_data64(sqe, slot);
    ++issued;
  };
  for (int s = 0; s < depth; ++s) issue(static_cast<size_t>(s));
  while (done < n) {
    for (const Completion& c : submit_and_reap(ring, "ring statx")) {
      sum += bufs[c.slot].stx_size;
      ++done;
      issue(c.slot);
    }
  }
  return sum;
}

}  // namespace

int main(int argc, char** argv) {
  std::string base = flag_str(argc, argv, "dir", "/var/tmp");
  int64_t mib = weft::bench::flag(argc, argv, "mib", 64);
  int64_t runs = weft::bench::flag(argc, argv, "runs", 3);
  int64_t stats = weft::bench::flag(argc, argv, "stats", 100000);
  int64_t depth = weft::bench::flag(argc, argv, "depth", 4);
  io_uring ring;
  if (int rc = io_uring_queue_init(256, &ring, 0); rc < 0) {
    std::printf("io_uring is not available here (%s): nothing to compare\n", std::strerror(-rc));
    return 0;
  }
  std::string templ = base + "/weft_uring_bench.XXXXXX";
  if (::mkdtemp(templ.data()) == nullptr) die("mkdtemp", errno);
  std::string dir = templ;
  // The fibers' side is the blocking pool: the workers' own rings
  // (fs_ring_benchmark) are off here.
  auto rt = *weft::Runtime::create({.workers = 2, .io_uring = weft::IoUringMode::kOff});
  std::vector<std::string> files = weft::bench::write_big_files(rt.get(), dir, 3, mib);
  const uint64_t want = 3 * (static_cast<uint64_t>(mib) << 20);

  // 1. Cold reads; the order of the two sides alternates between runs.
  std::vector<double> read_ratios;
  for (int64_t r = 0; r < runs; ++r) {
    double fib = 0, ring_ms = 0;
    for (int side = 0; side < 2; ++side) {
      const bool do_ring = (side == 0) == (r % 2 == 0);
      for (auto& f : files) drop_cache(f);
      int64_t t0 = now_ns();
      uint64_t total;
      if (do_ring) {
        total = ring_read(&ring, files, static_cast<int>(depth));
      } else {
        total = weft::bench::read_on_fibers(rt.get(), files);
      }
      double ms = static_cast<double>(now_ns() - t0) / 1e6;
      if (total != want) std::abort();
      (do_ring ? ring_ms : fib) = ms;
    }
    std::printf("run %lld: cold read 3 x %lld MiB: 3 fibers on the pool %.1f ms, one ring (%lld in flight per file) %.1f ms: ring/pool %.2f\n",
                static_cast<long long>(r + 1), static_cast<long long>(mib), fib,
                static_cast<long long>(depth), ring_ms, ring_ms / fib);
    read_ratios.push_back(ring_ms / fib);
  }
  std::printf("cold read: median ring/pool over %lld runs %.2f\n", static_cast<long long>(runs),
              weft::bench::median(&read_ratios));

  // 2. Small-file stats.
  constexpr int kFiles = 2000;
  constexpr int kFibers = 64;
  std::vector<std::string> small = weft::bench::write_small_files(dir, kFiles);
  std::vector<double> stat_ratios;
  for (int64_t r = 0; r < runs; ++r) {
    int64_t t0 = now_ns();
    uint64_t sum = weft::bench::plain_stats(small, stats);
    double plain_ns = static_cast<double>(now_ns() - t0) / static_cast<double>(stats);
    double fib_ns = 0, ring_ns = 0;
    for (int side = 0; side < 2; ++side) {
      const bool do_ring = (side == 0) == (r % 2 == 0);
      t0 = now_ns();
      uint64_t got;
      if (do_ring) {
        got = ring_stats(&ring, small, stats, kFibers);
      } else {
        got = weft::bench::stats_on_fibers(rt.get(), small, stats, kFibers);
      }
      double ns = static_cast<double>(now_ns() - t0) / static_cast<double>(stats);
      if (got != sum) std::abort();
      (do_ring ? ring_ns : fib_ns) = ns;
    }
    std::printf("run %lld: %lld stats: plain loop %.0f ns/stat, %d fibers on the pool %.0f ns/stat, one ring (%d in flight) %.0f ns/stat: ring/pool %.2f\n",
                static_cast<long long>(r + 1), static_cast<long long>(stats), plain_ns, kFibers, fib_ns,
                kFibers, ring_ns, ring_ns / fib_ns);
    stat_ratios.push_back(ring_ns / fib_ns);
  }
  std::printf("stats: median ring/pool over %lld runs %.2f\n", static_cast<long long>(runs),
              weft::bench::median(&stat_ratios));
  io_uring_queue_exit(&ring);
  rt->block_on([&] { (void)weft::fs::remove_all(dir); });
  return 0;
}
