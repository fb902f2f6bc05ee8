// fs_ring_benchmark: the workers' own io_uring rings (RuntimeOptions::
// io_uring = kAuto) against the blocking pool (kOff), inside weft, same
// workloads, two runtimes of 2 workers in the same process, the order of
// the two sides alternating between runs. Each line prints ring time /
// pool time (below 1: the ring is faster); the summary prints the median
// and the range over --runs.
//
//   1. stat: --stats fs::stat calls from 64 fibers over 2,000 small files
//      (page cache warm).
//   2. open+close: --opens fs::File::open + close pairs from 64 fibers.
//   3. pread 4 KiB: --ios reads of 4 KiB at scattered offsets of a warm
//      16 MiB file, 64 fibers with a descriptor each. Pool: File::pread.
//      Ring: a read op on the worker's ring into the op's own buffer,
//      copied out (as File::pread on the ring would have to, so that a
//      cancelled read never writes into the caller's freed buffer).
//   4. pwrite 4 KiB: the same with writes (no sync), copied in.
//   4b. pread of 64 KiB (--ios / 4 reads) and of 1 MiB (--ios / 64), warm:
//      where the copy and the kernel's copy outweigh the hand-off.
//   5. cold read: 3 files of --mib MiB after posix_fadvise(DONTNEED), 3
//      fibers reading 1 MiB at a time. Pool: File::read. Ring: read ops at
//      the file position, copied out.
//
// Workloads 3-5 use the ring through weft::internal::ring_call (what
// File::read/pread/write/pwrite would do if they were routed to the ring);
// 1-2 use the public fs calls, which take the ring when there is one.
//
//   bazel run -c opt //tools/bench:fs_ring_benchmark -- [--dir=/var/tmp] [--runs=5] [--mib=64]
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "fs/fs.h"
#include "runtime/internal/uring.h"
#include "runtime/runtime.h"
#include "tools/bench/bench_util.h"

namespace {

using weft::bench::now_ns;
using weft::internal::RingOp;
using weft::internal::RingResult;

constexpr int kFibers = 64;
constexpr size_t kSmallIo = 4096;
constexpr uint64_t kIoFile = 16 << 20;
constexpr size_t kChunk = 1 << 20;

// ring_rw() reads or writes through the calling worker's ring; the data
// goes through the op's own buffer. Aborts if there is no ring.
size_t ring_rw(RingOp::Kind kind, int fd, char* buf, size_t len, uint64_t offset) {
  weft::internal::RingOpPtr op = weft::internal::make_ring_op(kind);
  op->fd = fd;
  op->len = len;
  op->offset = offset;
  op->buf = std::make_unique_for_overwrite<char[]>(len);
  if (kind == RingOp::Kind::kWrite) std::memcpy(op->buf.get(), buf, len);
  if (weft::internal::ring_call(op.get()) != RingResult::kDone || op->res < 0) {
    std::fprintf(stderr, "fs_ring_benchmark: ring %s failed: %s\n", kind == RingOp::Kind::kRead ? "read" : "write",
                 op->res < 0 ? std::strerror(-op->res) : "no ring or cancelled");
    std::abort();
  }
  if (kind == RingOp::Kind::kRead) std::memcpy(buf, op->buf.get(), static_cast<size_t>(op->res));
  return static_cast<size_t>(op->res);
}

// on_fibers() runs body(fiber index) on n fibers and waits for them all.
void on_fibers(weft::Runtime* rt, int n, const std::function<void(int)>& body) {
  rt->block_on([&] {
    std::vector<weft::JoinHandle<void>> hs;
    for (int f = 0; f < n; ++f) hs.push_back(weft::spawn([&body, f] { body(f); }));
    for (auto& h : hs) h.join();
  });
}

uint64_t scatter(uint64_t i) { return ((i * 2654435761u) % (kIoFile / kSmallIo)) * kSmallIo; }

struct Workload {
  std::string name;
  std::string unit;  // per-op unit for the printed times
  double ops;        // divisor for the per-op time
  std::function<void(weft::Runtime*, bool ring)> run;
  std::function<void()> before;  // before each side (cold cache), or null
  std::vector<double> ratios;
};

}  // namespace

int main(int argc, char** argv) {
  std::string base = weft::bench::flag_str(argc, argv, "dir", "/var/tmp");
  const int64_t runs = weft::bench::flag(argc, argv, "runs", 5);
  const int64_t stats = weft::bench::flag(argc, argv, "stats", 100000);
  const int64_t opens = weft::bench::flag(argc, argv, "opens", 50000);
  const int64_t ios = weft::bench::flag(argc, argv, "ios", 100000);
  const int64_t mib = weft::bench::flag(argc, argv, "mib", 64);
  std::string templ = base + "/weft_fs_ring_bench.XXXXXX";
  if (::mkdtemp(templ.data()) == nullptr) {
    std::perror("mkdtemp");
    return 1;
  }
  const std::string dir = templ;
  auto ring_rt = *weft::Runtime::create({.workers = 2, .io_uring = weft::IoUringMode::kAuto});
  auto pool_rt = *weft::Runtime::create({.workers = 2, .io_uring = weft::IoUringMode::kOff});
  if (ring_rt->block_on([&] { return ring_rt->stats().rings_active(); }) != 2) {
    std::printf("the workers have no io_uring here: nothing to compare\n");
    return 0;
  }

  constexpr int kSmallFiles = 2000;
  std::vector<std::string> small;
  for (int i = 0; i < kSmallFiles; ++i) small.push_back(dir + "/s" + std::to_string(i));
  const std::string io_file = dir + "/io";
  std::vector<std::string> big;
  for (int i = 0; i < 3; ++i) big.push_back(dir + "/big" + std::to_string(i));
  pool_rt->block_on([&] {
    for (auto& s : small) {
      if (!weft::fs::write_file(s, "x").ok()) std::abort();
    }
    std::string data(kIoFile, 'i');
    if (!weft::fs::write_file(io_file, data).ok()) std::abort();
    std::string bigdata(static_cast<size_t>(mib) << 20, '\0');
    for (size_t i = 0; i < bigdata.size(); i += 4096) bigdata[i] = static_cast<char>(i >> 12);
    for (auto& b : big) {
      if (!weft::fs::write_file(b, bigdata, {.sync = true}).ok()) std::abort();
    }
  });

  std::vector<Workload> loads;
  loads.push_back({"stat (warm)", "ns/stat", static_cast<double>(stats),
                   [&](weft::Runtime* rt, bool) {
                     on_fibers(rt, kFibers, [&](int f) {
                       for (int64_t i = f; i < stats; i += kFibers) {
                         if (!weft::fs::stat(small[static_cast<size_t>(i % kSmallFiles)]).ok()) std::abort();
                       }
                     });
                   },
                   nullptr, {}});
  loads.push_back({"open+close", "ns/pair", static_cast<double>(opens),
                   [&](weft::Runtime* rt, bool) {
                     on_fibers(rt, kFibers, [&](int f) {
                       for (int64_t i = f; i < opens; i += kFibers) {
                         auto file = weft::fs::File::open(small[static_cast<size_t>(i % kSmallFiles)]);
                         if (!file.ok() || !file->close().ok()) std::abort();
                       }
                     });
                   },
                   nullptr, {}});
  auto small_io = [&](bool write, size_t size, int64_t count) {
    return [&, write, size, count](weft::Runtime* rt, bool ring) {
      on_fibers(rt, kFibers, [&, write, ring, size, count](int f) {
        auto file = weft::fs::File::open(io_file, {.read = true, .write = write});
        if (!file.ok()) std::abort();
        auto buf = std::make_unique<char[]>(size);
        std::memset(buf.get(), 'w', size);
        for (int64_t i = f; i < count; i += kFibers) {
          uint64_t off = scatter(static_cast<uint64_t>(i)) % (kIoFile - size + 1) / kSmallIo * kSmallIo;
          if (ring) {
            ring_rw(write ? RingOp::Kind::kWrite : RingOp::Kind::kRead, file->native_handle(), buf.get(), size, off);
          } else if (write) {
            if (!file->pwrite(std::string_view(buf.get(), size), off).ok()) std::abort();
          } else {
            auto n = file->pread(std::span<char>(buf.get(), size), off);
            if (!n.ok() || *n != size) std::abort();
          }
        }
      });
    };
  };
  loads.push_back({"pread 4 KiB (warm)", "ns/read", static_cast<double>(ios), small_io(false, kSmallIo, ios), nullptr, {}});
  loads.push_back({"pwrite 4 KiB (warm)", "ns/write", static_cast<double>(ios), small_io(true, kSmallIo, ios), nullptr, {}});
  loads.push_back({"pread 64 KiB (warm)", "ns/read", static_cast<double>(ios / 4),
                   small_io(false, 64 << 10, ios / 4), nullptr, {}});
  loads.push_back({"pread 1 MiB (warm)", "ns/read", static_cast<double>(ios / 64),
                   small_io(false, 1 << 20, ios / 64), nullptr, {}});
  loads.push_back({"cold read 3 x " + std::to_string(mib) + " MiB", "ms", 1e6,
                   [&](weft::Runtime* rt, bool ring) {
                     std::atomic<uint64_t> total{0};
                     on_fibers(rt, 3, [&, ring](int f) {
                       auto file = weft::fs::File::open(big[static_cast<size_t>(f)]);
                       if (!file.ok()) std::abort();
                       auto b = std::make_unique<char[]>(kChunk);
                       uint64_t n = 0;
                       for (;;) {
                         size_t got;
                         if (ring) {
                           got = ring_rw(RingOp::Kind::kRead, file->native_handle(), b.get(), kChunk, ~uint64_t{0});
                         } else {
                           auto r = file->read(std::span<char>(b.get(), kChunk));
                           if (!r.ok()) std::abort();
                           got = *r;
                         }
                         if (got == 0) break;
                         n += got;
                       }
                       total += n;
                     });
                     if (total != 3 * (static_cast<uint64_t>(mib) << 20)) std::abort();
                   },
                   [&] {
                     for (auto& b : big) weft::bench::drop_cache(b);
                   },
                   {}});

  for (int64_t r = 0; r < runs; ++r) {
    for (Workload& w : loads) {
      double t[2] = {0, 0};  // [0] pool, [1] ring
      for (int side = 0; side < 2; ++side) {
        const bool ring = (side == 0) == (r % 2 == 0);
        if (w.before) w.before();
        int64_t t0 = now_ns();
        w.run(ring ? ring_rt.get() : pool_rt.get(), ring);
        t[ring ? 1 : 0] = static_cast<double>(now_ns() - t0) / w.ops;
      }
      w.ratios.push_back(t[1] / t[0]);
      std::printf("run %lld: %-22s pool %9.1f %-8s ring %9.1f %-8s ring/pool %.2f\n", static_cast<long long>(r + 1),
                  w.name.c_str(), t[0], w.unit.c_str(), t[1], w.unit.c_str(), t[1] / t[0]);
    }
  }
  std::printf("\nring/pool over %lld runs (below 1: the ring is faster)\n", static_cast<long long>(runs));
  for (Workload& w : loads) {
    std::vector<double> v = w.ratios;
    double lo = *std::min_element(v.begin(), v.end());
    double hi = *std::max_element(v.begin(), v.end());
    std::printf("  %-22s median %.2f  range %.2f-%.2f\n", w.name.c_str(), weft::bench::median(&v), lo, hi);
  }
  auto st = ring_rt->stats();
  std::printf("ring runtime: %d rings, %llu ring ops; pool runtime: %llu pool calls\n", st.rings_active(),
              static_cast<unsigned long long>(st.total(&weft::WorkerStats::ring_ops)),
              static_cast<unsigned long long>(pool_rt->stats().blocking.lane(weft::BlockingLane::kDefault).calls_served));
  pool_rt->block_on([&] { (void)weft::fs::remove_all(dir); });
  return 0;
}
