#include "tools/bench/bench_util.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include <boost/context/detail/fcontext.hpp>
#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <vector>

namespace weft::bench {

namespace bctx = boost::context::detail;

int64_t now_ns() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<int64_t>(ts.tv_sec) * 1000000000LL + ts.tv_nsec;
}

int64_t rss_bytes() {
  std::ifstream f("/proc/self/status");
  std::string line;
  while (std::getline(f, line)) {
    if (line.rfind("VmRSS:", 0) == 0) return std::atoll(line.c_str() + 6) * 1024;
  }
  return 0;
}

namespace {

void* map_stack(size_t size) {
  void* p = mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (p == MAP_FAILED) {
    std::perror("mmap");
    std::exit(1);
  }
  return p;
}

void bouncer(bctx::transfer_t t) {
  for (;;) t = bctx::jump_fcontext(t.fctx, nullptr);
}

void finisher(bctx::transfer_t t) {
  // Return to the starter for good; it never resumes this context.
  bctx::jump_fcontext(t.fctx, nullptr);
}

void parker(bctx::transfer_t t) {
  volatile char frame[256];
  frame[0] = 1;
  bctx::jump_fcontext(t.fctx, nullptr);
  (void)frame[0];
}

}  // namespace

double raw_switch_ns(int64_t n) {
  const size_t size = 64 * 1024;
  void* stack = map_stack(size);
  bctx::fcontext_t ctx = bctx::make_fcontext(static_cast<char*>(stack) + size, size, bouncer);
  ctx = bctx::jump_fcontext(ctx, nullptr).fctx;  // warm up
  int64_t t0 = now_ns();
  for (int64_t i = 0; i < n; ++i) ctx = bctx::jump_fcontext(ctx, nullptr).fctx;
  int64_t t1 = now_ns();
  munmap(stack, size);
  return static_cast<double>(t1 - t0) / static_cast<double>(2 * n);  // two switches per loop
}

double raw_start_ns(int64_t n) {
  const size_t size = 64 * 1024;
  void* stack = map_stack(size);
  int64_t t0 = now_ns();
  for (int64_t i = 0; i < n; ++i) {
    bctx::fcontext_t ctx = bctx::make_fcontext(static_cast<char*>(stack) + size, size, finisher);
    bctx::jump_fcontext(ctx, nullptr);
  }
  int64_t t1 = now_ns();
  munmap(stack, size);
  return static_cast<double>(t1 - t0) / static_cast<double>(n);
}

double raw_parked_bytes(int64_t n) {
  const size_t size = 64 * 1024;
  std::vector<void*> stacks;
  stacks.reserve(static_cast<size_t>(n));
  int64_t before = rss_bytes();
  for (int64_t i = 0; i < n; ++i) {
    void* s = map_stack(size);
    stacks.push_back(s);
    bctx::fcontext_t ctx = bctx::make_fcontext(static_cast<char*>(s) + size, size, parker);
    bctx::jump_fcontext(ctx, nullptr);  // runs parker until it suspends
  }
  int64_t after = rss_bytes();
  for (void* s : stacks) munmap(s, size);
  return static_cast<double>(after - before) / static_cast<double>(n);
}

int64_t flag(int argc, char** argv, const std::string& name, int64_t def) {
  std::string prefix = "--" + name + "=";
  for (int i = 1; i < argc; ++i) {
    if (std::strncmp(argv[i], prefix.c_str(), prefix.size()) == 0) return std::atoll(argv[i] + prefix.size());
  }
  return def;
}

std::string flag_str(int argc, char** argv, const std::string& name, const std::string& def) {
  std::string prefix = "--" + name + "=";
  for (int i = 1; i < argc; ++i) {
    if (std::strncmp(argv[i], prefix.c_str(), prefix.size()) == 0) return std::string(argv[i] + prefix.size());
  }
  return def;
}

void drop_cache(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return;
  ::fdatasync(fd);
  ::posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
  ::close(fd);
}

double median(std::vector<double>* v) {
  std::sort(v->begin(), v->end());
  size_t n = v->size();
  return n % 2 == 1 ? (*v)[n / 2] : ((*v)[n / 2 - 1] + (*v)[n / 2]) / 2;
}

void report(const std::string& name, double value, const std::string& unit, const std::string& baseline_name,
            double baseline, double target, const std::string& target_desc) {
  std::printf("%-28s %10.1f %-6s | baseline %-26s %8.1f %-6s | ratio %6.2fx | target %s\n", name.c_str(),
              value, unit.c_str(), baseline_name.c_str(), baseline, unit.c_str(), value / baseline,
              target_desc.c_str());
  (void)target;
  std::fflush(stdout);
}

}  // namespace weft::bench
