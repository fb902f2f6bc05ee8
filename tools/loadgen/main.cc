// tools/loadgen/main.cc
//
// loadgen: drives an echo, HTTP or RESP server with one weft fiber per
// connection and reports throughput and latency.
//
//   bazel run -c opt //tools/loadgen -- --port 9000 --mode echo --connections 100 --duration 3
//
// Prints a human-readable report and one machine-readable line
// (requests_per_sec=... p50_us=... p99_us=... p999_us=... errors=...).
// Exit status: 0 when requests completed without errors, 1 when there were
// errors or nothing completed, 2 for bad flags or a run that could not
// start.
#include <sys/resource.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <iostream>
#include <string>
#include <string_view>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "runtime/runtime.h"
#include "tools/loadgen/loadgen_lib.h"

namespace {

constexpr char kUsage[] =
    R"(usage: loadgen --port N [flags]
  --host H          server host or address (default 127.0.0.1)
  --port N          server port (required)
  --mode M          echo | http | resp (default echo)
  --connections N   concurrent connections, one fiber each (default 100)
  --size N          echo: message bytes; resp: SET value bytes (default 64)
  --pipeline N      requests in flight per connection (default 1)
  --duration S      measured seconds, fractions allowed (default 5)
  --warmup S        seconds of load before measuring (default 0)
  --path P          http: request path (default /)
  --workers N       weft runtime worker threads (default 1)
  --no-progress     no progress line on stderr
)";

struct Flags {
  weft::loadgen::Options options;
  int workers = 1;
};

// Parses argv; an error message, or "" on success.
std::string parse_flags(int argc, char** argv, Flags* f) {
  weft::loadgen::Options& o = f->options;
  bool have_port = false;
  for (int i = 1; i < argc; ++i) {
    absl::string_view arg = argv[i];
    if (arg == "--help" || arg == "-h") return "help";
    if (arg == "--no-progress") {
      o.progress = false;
      continue;
    }
    if (arg.substr(0, 2) != "--") return absl::StrCat("unexpected argument '", arg, "'");
    absl::string_view name = arg.substr(2);
    absl::string_view value;
    if (size_t eq = name.find('='); eq != absl::string_view::npos) {
      value = name.substr(eq + 1);
      name = name.substr(0, eq);
    } else if (i + 1 < argc) {
      value = argv[++i];
    } else {
      return absl::StrCat("--", name, " needs a value");
    }
    auto bad = [&] { return absl::StrCat("bad value '", value, "' for --", name); };
    auto positive_int = [&](int* out) {
      return absl::SimpleAtoi(value, out) && *out >= 1;
    };
    auto seconds = [&](absl::Duration* out) {
      double s;
      if (!absl::SimpleAtod(value, &s) || !(s >= 0) || s > 1e7) return false;
      *out = absl::Seconds(s);
      return true;
    };
    if (name == "host") {
      o.host = std::string(value);
    } else if (name == "port") {
      int p;
      if (!absl::SimpleAtoi(value, &p) || p < 1 || p > 65535) return bad();
      o.port = static_cast<uint16_t>(p);
      have_port = true;
    } else if (name == "mode") {
      auto m = weft::loadgen::parse_mode(std::string_view(value.data(), value.size()));
      if (!m.ok()) return std::string(m.status().message());
      o.mode = *m;
    } else if (name == "connections") {
      if (!positive_int(&o.connections)) return bad();
    } else if (name == "size") {
      uint64_t n;
      if (!absl::SimpleAtoi(value, &n)) return bad();
      o.message_size = n;
    } else if (name == "pipeline") {
      if (!positive_int(&o.pipeline)) return bad();
    } else if (name == "duration") {
      if (!seconds(&o.duration) || o.duration == absl::ZeroDuration()) return bad();
    } else if (name == "warmup") {
      if (!seconds(&o.warmup)) return bad();
    } else if (name == "path") {
      o.http_path = std::string(value);
    } else if (name == "workers") {
      if (!positive_int(&f->workers)) return bad();
    } else {
      return absl::StrCat("unknown flag --", name);
    }
  }
  if (!have_port) return "--port is required";
  return "";
}

// Raises the soft RLIMIT_NOFILE to fit `want` descriptors, up to the hard
// limit; warns when it cannot.
void raise_fd_limit(uint64_t want) {
  rlimit rl{};
  if (::getrlimit(RLIMIT_NOFILE, &rl) != 0) return;
  if (rl.rlim_cur >= want) return;
  rlim_t old = rl.rlim_cur;
  rl.rlim_cur = rl.rlim_max == RLIM_INFINITY || rl.rlim_max >= want ? want : rl.rlim_max;
  if (::setrlimit(RLIMIT_NOFILE, &rl) != 0) {
    std::fprintf(stderr, "loadgen: setrlimit(RLIMIT_NOFILE, %llu): %s\n",
                 static_cast<unsigned long long>(rl.rlim_cur), std::strerror(errno));
    rl.rlim_cur = old;
  }
  if (rl.rlim_cur < want) {
    std::fprintf(stderr,
                 "loadgen: warning: open-file limit %llu is below the %llu descriptors wanted; "
                 "some connections will fail\n",
                 static_cast<unsigned long long>(rl.rlim_cur),
                 static_cast<unsigned long long>(want));
  }
}

}  // namespace

int main(int argc, char** argv) {
  Flags flags;
  if (std::string err = parse_flags(argc, argv, &flags); !err.empty()) {
    if (err == "help") {
      std::fputs(kUsage, stdout);
      return 0;
    }
    std::fprintf(stderr, "loadgen: %s\n%s", err.c_str(), kUsage);
    return 2;
  }
  // One descriptor per connection, plus the runtime's epoll and eventfd
  // descriptors and some slack.
  raise_fd_limit(static_cast<uint64_t>(flags.options.connections) + 64 +
                 4 * static_cast<uint64_t>(flags.workers));

  auto rt = weft::Runtime::create({.workers = flags.workers});
  if (!rt.ok()) {
    std::fprintf(stderr, "loadgen: cannot start the runtime: %s\n",
                 rt.status().ToString().c_str());
    return 2;
  }
  auto report = (*rt)->block_on([&] { return weft::loadgen::run(flags.options); });
  if (!report.ok()) {
    std::fprintf(stderr, "loadgen: %s\n", report.status().ToString().c_str());
    return 2;
  }
  std::cout << weft::loadgen::format_report(*report) << std::flush;
  return report->errors > 0 || report->requests == 0 ? 1 : 0;
}
