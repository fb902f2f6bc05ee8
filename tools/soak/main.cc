// tools/soak/main.cc
//
// soak: runs weft's workloads together for a long time and fails if a check
// fails or if memory, descriptors or fibers keep growing.
//
//   bazel run -c opt //tools/soak -- --duration=30m
//   bazel run -c opt //tools/soak -- --duration=60s --workloads=tcp,udp --workers=4
//
// Each workload (workloads.cc: spawn, channel, sync, tcp, udp, timers,
// blocking, cancel, scope, timeout) runs on its own fiber in rounds; every round ends with exact
// accounting, and a failed check ends the process at once with a message
// that names the workload, the check and the round, and exit status 1.
//
// Every second the main thread (not a fiber, so a stuck worker cannot
// delay it) prints a sample:
//   t,rss_kb,fds,live_fibers,<ops/s of each workload>
// rss_kb is the resident set from /proc/self/statm at the end of the
// second; fds (the entries of /proc/self/fd) and live_fibers
// (RuntimeStats::live_fibers: the runtime's registry of fibers that exist,
// spawned and not yet finished) are the least of ten readings taken during
// the second. The workloads keep sockets, files and fibers in flight, so a
// single reading jumps with the moment it is taken; the floor is what a
// leak raises.
//
// The run fails (exit status 1) when:
//   1. a check in a workload fails (at once);
//   2. a workload completes no round for --stall_timeout (default 60 s):
//      a deadlock or a lost wake-up;
//   3. the workloads do not all return within --stall_timeout of the end;
//   4. after they return, live_fibers is not back to 0, or the open
//      descriptors are not back to their count before the workloads
//      started (polled for up to 5 s: a fiber's exit trails its join);
//   5. a curve keeps growing. The samples after a warm-up (the first
//      max(2, n/10)) are cut in three equal parts; with B the middle part
//      and C the last, a curve keeps growing if
//        median(C) > median(B) + allowance, where the allowance is
//          rss_kb:       10% of median(B) + 8 MiB
//          fds:          4
//          live_fibers:  25% of median(B) + 32
//      Medians ignore the spikes of a burst; comparing the last third with
//      the middle one, not with the start, ignores the allocator's and the
//      stack cache's fill-up at the start. A run with fewer than 6 samples
//      after the warm-up is too short to judge and says so.
// The summary prints each curve's first and last sample, its minimum and
// maximum, and the two medians.
//
// Flags:
//   --duration=D       how long the workloads run (60s, 30m, 1h; a bare
//                      number is seconds); default 60s
//   --workers=N        runtime worker threads; default 2
//   --seed=N           seeds the workloads' random choices; default 1
//   --workloads=a,b    which workloads (default all); --list names them
//   --stall_timeout=D  see 2 and 3 above; default 60s
//   --judge=a,b        which curves may fail the run by growing (rss,
//                      fds, fibers; default all); the others are printed
//                      and not judged. Under the sanitizers the resident
//                      set is largely theirs (TSan's shadow and history,
//                      ASan's allocator, which keeps freed memory per
//                      size class), so soak_test judges only fds and
//                      fibers there (soak_test.sh says more).
// Flags for the tool's own tests (not in --help):
//   --inject_leak=rss,fds,fibers   leak 10 MiB of touched memory, 10
//                      descriptors or 50 parked fibers a second, so that
//                      the growth judge must fail the run
//   --inject_check_failure         miscount one round of the spawn
//                      workload, so that the run must end at that check
//   --build_info       print "plain", "asan" or "tsan" (how the binary
//                      was built) and exit
#include <dirent.h>
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <climits>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "runtime/runtime.h"
#include "sync/sync.h"
#include "tools/soak/soak.h"

namespace {

using weft::soak::Sample;
using weft::soak::Workload;
using weft::soak::WorkloadContext;

constexpr char kUsage[] =
    R"(usage: soak [flags]
  --duration=D       how long the workloads run: 60s, 30m, 1h, or seconds (default 60s)
  --workers=N        runtime worker threads (default 2)
  --seed=N           seed of the workloads' random choices (default 1)
  --workloads=a,b,c  which workloads to run (default all; --list names them)
  --stall_timeout=D  fail a workload that completes no round for this long (default 60s)
  --judge=a,b        curves whose growth fails the run: rss, fds, fibers (default all)
  --list             list the workloads and exit
)";

struct Flags {
  absl::Duration duration = absl::Seconds(60);
  int workers = 2;
  uint64_t seed = 1;
  std::vector<std::string> workloads;  // empty: all
  absl::Duration stall_timeout = absl::Seconds(60);
  bool leak_rss = false, leak_fds = false, leak_fibers = false;
  bool inject_check_failure = false;
  bool judge[3] = {true, true, true};  // rss, fds, fibers: the order of kCurves
};

bool parse_duration(absl::string_view text, absl::Duration* d) {
  double secs = 0;
  if (absl::SimpleAtod(text, &secs)) {
    *d = absl::Seconds(secs);
    return secs >= 0;
  }
  return absl::ParseDuration(text, d) && *d >= absl::ZeroDuration();
}

// Parses argv; "" on success, "exit" after --list/--build_info, else an
// error message.
std::string parse_flags(int argc, char** argv, Flags* f) {
  for (int i = 1; i < argc; ++i) {
    absl::string_view arg = argv[i];
    absl::string_view name = arg, value;
    bool has_value = false;
    if (size_t eq = arg.find('='); eq != absl::string_view::npos) {
      name = arg.substr(0, eq);
      value = arg.substr(eq + 1);
      has_value = true;
    } else if (i + 1 < argc && arg != "--list" && arg != "--build_info" && arg != "--inject_check_failure" &&
               arg != "--help" && arg != "-h") {
      value = argv[++i];
      has_value = true;
    }
    if (name == "--help" || name == "-h") return "help";
    if (name == "--list") {
      for (const Workload& w : weft::soak::all_workloads()) std::printf("%-9s %s\n", w.name, w.what);
      return "exit";
    }
    if (name == "--build_info") {
#if defined(__SANITIZE_ADDRESS__)
      std::printf("asan\n");
#elif defined(__SANITIZE_THREAD__)
      std::printf("tsan\n");
#else
      std::printf("plain\n");
#endif
      return "exit";
    }
    if (name == "--inject_check_failure") {
      f->inject_check_failure = true;
      continue;
    }
    if (!has_value) return std::string(name) + " needs a value";
    if (name == "--duration") {
      if (!parse_duration(value, &f->duration)) return "bad --duration: " + std::string(value);
    } else if (name == "--stall_timeout") {
      if (!parse_duration(value, &f->stall_timeout) || f->stall_timeout <= absl::ZeroDuration()) {
        return "bad --stall_timeout: " + std::string(value);
      }
    } else if (name == "--workers") {
      if (!absl::SimpleAtoi(value, &f->workers) || f->workers < 1 || f->workers > 256) {
        return "bad --workers: " + std::string(value);
      }
    } else if (name == "--seed") {
      if (!absl::SimpleAtoi(value, &f->seed)) return "bad --seed: " + std::string(value);
    } else if (name == "--workloads") {
      for (absl::string_view w : absl::StrSplit(value, ',', absl::SkipEmpty())) {
        bool known = false;
        for (const Workload& k : weft::soak::all_workloads()) known |= w == k.name;
        if (!known) return "unknown workload: " + std::string(w) + " (--list names them)";
        f->workloads.emplace_back(w);
      }
    } else if (name == "--judge") {
      f->judge[0] = f->judge[1] = f->judge[2] = false;
      for (absl::string_view w : absl::StrSplit(value, ',', absl::SkipEmpty())) {
        if (w == "rss") {
          f->judge[0] = true;
        } else if (w == "fds") {
          f->judge[1] = true;
        } else if (w == "fibers") {
          f->judge[2] = true;
        } else {
          return "bad --judge: " + std::string(w) + " (rss, fds, fibers)";
        }
      }
    } else if (name == "--inject_leak") {
      for (absl::string_view w : absl::StrSplit(value, ',', absl::SkipEmpty())) {
        if (w == "rss") {
          f->leak_rss = true;
        } else if (w == "fds") {
          f->leak_fds = true;
        } else if (w == "fibers") {
          f->leak_fibers = true;
        } else {
          return "bad --inject_leak: " + std::string(w) + " (rss, fds, fibers)";
        }
      }
    } else {
      return "unknown flag: " + std::string(arg);
    }
  }
  return "";
}

int64_t rss_kb() {
  FILE* f = std::fopen("/proc/self/statm", "re");
  if (f == nullptr) return -1;
  long long size = 0, resident = 0;
  int n = std::fscanf(f, "%lld %lld", &size, &resident);
  std::fclose(f);
  if (n != 2) return -1;
  return resident * (::sysconf(_SC_PAGESIZE) / 1024);
}

// open_fds() counts /proc/self/fd without the descriptor that reads it.
int64_t open_fds() {
  DIR* d = ::opendir("/proc/self/fd");
  if (d == nullptr) return -1;
  int64_t n = 0;
  while (dirent* e = ::readdir(d)) {
    if (e->d_name[0] != '.') ++n;
  }
  ::closedir(d);
  return n - 1;
}

// The leaks of --inject_leak, held until the end checks have seen them.
struct Leaks {
  weft::Mutex mu;
  std::vector<std::unique_ptr<char[]>> memory;
  std::vector<int> fds;
  weft::Event release;  // the leaked fibers park on it
  std::vector<weft::JoinHandle<void>> fibers;
};

void run_leaks(const Flags& flags, const std::atomic<bool>& stop, Leaks* leaks) {
  constexpr size_t kChunk = 1 << 20;
  while (!stop.load()) {
    if (!weft::this_fiber::sleep_for(absl::Milliseconds(100)).ok()) return;  // cancelled: the runtime stops
    std::lock_guard<weft::Mutex> g(leaks->mu);
    if (flags.leak_rss) {
      leaks->memory.emplace_back(new char[kChunk]);
      std::memset(leaks->memory.back().get(), 0x5a, kChunk);
    }
    if (flags.leak_fds) leaks->fds.push_back(::open("/dev/null", O_RDONLY | O_CLOEXEC));
    if (flags.leak_fibers) {
      // Parked until release_leaks(); kCancelled (the runtime stops) ends
      // the leak just as well.
      for (int i = 0; i < 5; ++i) {
        leaks->fibers.push_back(weft::spawn([leaks] { (void)leaks->release.wait(); }));
      }
    }
  }
}

void release_leaks(weft::Runtime* rt, Leaks* leaks) {
  rt->block_on([leaks] {
    leaks->release.set();
    for (auto& h : leaks->fibers) h.join();
    leaks->fibers.clear();
  });
  for (int fd : leaks->fds) ::close(fd);
  leaks->fds.clear();
  leaks->memory.clear();
}

struct Curve {
  const char* name;
  int64_t Sample::*field;
};
constexpr Curve kCurves[] = {
    {"rss_kb", &Sample::rss_kb},
    {"fds", &Sample::fds},
    {"live_fibers", &Sample::live_fibers},
};

void print_curve(const std::vector<Sample>& samples, const Curve& c, const weft::soak::MetricVerdict* v,
                 bool judged) {
  int64_t lo = samples.front().*c.field, hi = lo;
  for (const Sample& s : samples) {
    lo = std::min(lo, s.*c.field);
    hi = std::max(hi, s.*c.field);
  }
  std::printf("soak: %-11s first %lld last %lld min %lld max %lld", c.name,
              static_cast<long long>(samples.front().*c.field), static_cast<long long>(samples.back().*c.field),
              static_cast<long long>(lo), static_cast<long long>(hi));
  if (v != nullptr) {
    std::printf("; median middle third %lld, last third %lld (allowed up to %lld): %s",
                static_cast<long long>(v->middle_median), static_cast<long long>(v->last_median),
                static_cast<long long>(v->middle_median + v->allowance),
                !judged ? (v->growing ? "grows (not judged, --judge)" : "ok (not judged, --judge)")
                        : (v->growing ? "KEEPS GROWING" : "ok"));
  }
  std::printf("\n");
}

[[noreturn]] void die(const std::string& msg) {
  std::fflush(stdout);
  std::fprintf(stderr, "soak: FAIL %s\n", msg.c_str());
  std::fflush(stderr);
  std::_Exit(1);
}

int run(const Flags& flags) {
  std::vector<const Workload*> selected;
  for (const Workload& w : weft::soak::all_workloads()) {
    if (flags.workloads.empty() ||
        std::find(flags.workloads.begin(), flags.workloads.end(), w.name) != flags.workloads.end()) {
      selected.push_back(&w);
    }
  }
  auto rt_or = weft::Runtime::create({.workers = flags.workers, .seed = flags.seed});
  if (!rt_or.ok()) {
    std::fprintf(stderr, "soak: Runtime::create: %s\n", rt_or.status().ToString().c_str());
    return 2;
  }
  weft::Runtime* rt = rt_or->get();

  std::atomic<bool> stop{false};
  std::vector<std::unique_ptr<WorkloadContext>> ctxs;
  std::vector<std::unique_ptr<std::atomic<bool>>> finished;
  for (const Workload* w : selected) {
    uint64_t seed = flags.seed * 0x9E3779B97F4A7C15ull ^ std::hash<std::string>()(w->name);
    ctxs.push_back(std::make_unique<WorkloadContext>(w->name, seed, rt, flags.workers, &stop,
                                                     flags.inject_check_failure));
    finished.push_back(std::make_unique<std::atomic<bool>>(false));
  }
  Leaks leaks;
  const bool leaking = flags.leak_rss || flags.leak_fds || flags.leak_fibers;

  const int64_t base_fds = open_fds();
  const int64_t base_fibers = rt->stats().live_fibers;
  std::vector<std::string> names;
  for (const Workload* w : selected) names.push_back(w->name);
  std::printf("soak: workers=%d seed=%llu duration=%s workloads=%s%s\n", flags.workers,
              static_cast<unsigned long long>(flags.seed), absl::FormatDuration(flags.duration).c_str(),
              absl::StrJoin(names, ",").c_str(), leaking ? " (leaking on purpose)" : "");
  std::printf("soak: before: rss_kb %lld fds %lld live_fibers %lld\n", static_cast<long long>(rss_kb()),
              static_cast<long long>(base_fds), static_cast<long long>(base_fibers));
  std::printf("t,rss_kb,fds,live_fibers,%s\n", absl::StrJoin(names, ",").c_str());
  std::fflush(stdout);

  auto driver = rt->spawn([&] {
    std::vector<weft::JoinHandle<void>> hs;
    for (size_t i = 0; i < selected.size(); ++i) {
      hs.push_back(weft::spawn([&, i] {
        selected[i]->run(*ctxs[i]);
        finished[i]->store(true);
      }));
    }
    if (leaking) hs.push_back(weft::spawn([&] { run_leaks(flags, stop, &leaks); }));
    for (auto& h : hs) h.join();
  });

  // The sampler: one line a second; the stall check.
  const absl::Time start = absl::Now();
  const absl::Time end = start + flags.duration;
  std::vector<Sample> samples;
  std::vector<uint64_t> last_ops(selected.size(), 0), last_rounds(selected.size(), 0);
  std::vector<absl::Time> progressed(selected.size(), start);
  absl::Time prev = start;
  for (int64_t tick = 1;; ++tick) {
    absl::Time next = start + absl::Seconds(tick);
    if (next > end) next = end;
    // Ten readings a second; the sample keeps the least descriptors and
    // fibers among them: a leak raises that floor, a burst of sockets or
    // spawns in flight does not.
    int64_t fds = INT64_MAX, fibers = INT64_MAX;
    for (;;) {
      fds = std::min(fds, open_fds());
      fibers = std::min(fibers, rt->stats().live_fibers);
      absl::Duration left = next - absl::Now();
      if (left <= absl::ZeroDuration()) break;
      absl::SleepFor(std::min(left, absl::Milliseconds(100)));
    }
    absl::Time now = absl::Now();
    Sample s{absl::ToDoubleSeconds(now - start), rss_kb(), fds, fibers};
    samples.push_back(s);
    std::string line = absl::StrFormat("%.1f,%lld,%lld,%lld", s.t, static_cast<long long>(s.rss_kb),
                                       static_cast<long long>(s.fds), static_cast<long long>(s.live_fibers));
    const double dt = std::max(1e-3, absl::ToDoubleSeconds(now - prev));
    for (size_t i = 0; i < selected.size(); ++i) {
      uint64_t ops = ctxs[i]->ops(), rounds = ctxs[i]->rounds();
      absl::StrAppendFormat(&line, ",%.0f", static_cast<double>(ops - last_ops[i]) / dt);
      last_ops[i] = ops;
      if (rounds != last_rounds[i]) {
        last_rounds[i] = rounds;
        progressed[i] = now;
      } else if (now - progressed[i] > flags.stall_timeout) {
        die(absl::StrFormat("workload '%s' completed no round for %s (%llu rounds so far): stuck", selected[i]->name,
                            absl::FormatDuration(now - progressed[i]), static_cast<unsigned long long>(rounds)));
      }
    }
    prev = now;
    std::printf("%s\n", line.c_str());
    std::fflush(stdout);
    if (now >= end) break;
  }

  // The end: workloads finish their round and return.
  const absl::Time stop_at = absl::Now();
  stop.store(true, std::memory_order_release);
  while (!driver.is_finished()) {
    if (absl::Now() - stop_at > flags.stall_timeout) {
      std::vector<std::string> running;
      for (size_t i = 0; i < selected.size(); ++i) {
        if (!finished[i]->load()) running.push_back(selected[i]->name);
      }
      die(absl::StrFormat("workloads did not return within %s of the end: %s",
                          absl::FormatDuration(flags.stall_timeout), absl::StrJoin(running, ",")));
    }
    absl::SleepFor(absl::Milliseconds(10));
  }
  driver.join();
  std::printf("soak: workloads returned %.2f s after the end\n", absl::ToDoubleSeconds(absl::Now() - stop_at));

  std::vector<std::string> failures;
  // End state: fibers and descriptors back to where they started.
  int64_t end_fibers = 0, end_fds = 0;
  const absl::Time settle = absl::Now() + absl::Seconds(5);
  do {
    end_fibers = rt->stats().live_fibers;
    end_fds = open_fds();
    if (end_fibers == base_fibers && end_fds == base_fds) break;
    absl::SleepFor(absl::Milliseconds(10));
  } while (absl::Now() < settle);
  std::printf("soak: after: live_fibers %lld (before %lld), fds %lld (before %lld)\n",
              static_cast<long long>(end_fibers), static_cast<long long>(base_fibers),
              static_cast<long long>(end_fds), static_cast<long long>(base_fds));
  if (end_fibers != base_fibers) {
    failures.push_back(absl::StrFormat("live_fibers did not return to %lld after the workloads: %lld",
                                       static_cast<long long>(base_fibers), static_cast<long long>(end_fibers)));
  }
  if (end_fds != base_fds) {
    failures.push_back(absl::StrFormat("fds did not return to %lld after the workloads: %lld",
                                       static_cast<long long>(base_fds), static_cast<long long>(end_fds)));
  }

  for (size_t i = 0; i < selected.size(); ++i) {
    std::printf("soak: %-9s %llu rounds, %llu ops\n", selected[i]->name,
                static_cast<unsigned long long>(ctxs[i]->rounds()), static_cast<unsigned long long>(ctxs[i]->ops()));
  }
  weft::soak::GrowthVerdict v = weft::soak::judge_growth(samples, weft::soak::GrowthLimits{});
  if (!v.judged) {
    std::printf("soak: %zu samples: too few to judge growth (need %d after a warm-up of %d)\n", samples.size(),
                weft::soak::kMinJudgedSamples, v.warmup);
  } else {
    std::printf("soak: %zu samples, warm-up %d\n", samples.size(), v.warmup);
  }
  const weft::soak::MetricVerdict* verdicts[] = {&v.rss, &v.fds, &v.fibers};
  for (size_t i = 0; i < 3; ++i) {
    print_curve(samples, kCurves[i], v.judged ? verdicts[i] : nullptr, flags.judge[i]);
    if (v.judged && flags.judge[i] && verdicts[i]->growing) {
      failures.push_back(absl::StrFormat("%s keeps growing: median %lld in the last third, %lld in the middle "
                                         "third (allowed up to %lld)",
                                         kCurves[i].name, static_cast<long long>(verdicts[i]->last_median),
                                         static_cast<long long>(verdicts[i]->middle_median),
                                         static_cast<long long>(verdicts[i]->middle_median + verdicts[i]->allowance)));
    }
  }
  if (leaking) release_leaks(rt, &leaks);
  rt->shutdown();
  std::fflush(stdout);
  for (const std::string& f : failures) std::fprintf(stderr, "soak: FAIL %s\n", f.c_str());
  if (!failures.empty()) return 1;
  std::printf("soak: PASS\n");
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  Flags flags;
  std::string err = parse_flags(argc, argv, &flags);
  if (err == "exit") return 0;
  if (err == "help") {
    std::fputs(kUsage, stdout);
    return 0;
  }
  if (!err.empty()) {
    std::fprintf(stderr, "soak: %s\n%s", err.c_str(), kUsage);
    return 2;
  }
  return run(flags);
}
