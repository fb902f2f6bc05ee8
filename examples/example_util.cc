#include "examples/example_util.h"

#include <pthread.h>
#include <signal.h>
#include <unistd.h>

#include <cerrno>
#include <algorithm>
#include <charconv>
#include <climits>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <string>

#include "absl/time/time.h"

#include "net/unix.h"
#include "runtime/runtime.h"

namespace weft::examples {

// ---------------------------------------------------------------------------
// Flags
// ---------------------------------------------------------------------------

Flags::Flags(std::string program, std::string summary)
    : program_(std::move(program)), summary_(std::move(summary)) {}

void Flags::add_flag(std::string name, Kind kind, void* value, std::string help, std::string def) {
  flags_.push_back(Flag{std::move(name), kind, value, std::move(help), std::move(def)});
}
void Flags::add(std::string name, std::string* value, std::string help) {
  add_flag(std::move(name), Kind::kString, value, std::move(help), "\"" + *value + "\"");
}
void Flags::add(std::string name, int64_t* value, std::string help) {
  add_flag(std::move(name), Kind::kInt64, value, std::move(help), std::to_string(*value));
}
void Flags::add(std::string name, int* value, std::string help) {
  add_flag(std::move(name), Kind::kInt, value, std::move(help), std::to_string(*value));
}
void Flags::add(std::string name, bool* value, std::string help) {
  add_flag(std::move(name), Kind::kBool, value, std::move(help), *value ? "true" : "false");
}
void Flags::add(std::string name, absl::Duration* value, std::string help) {
  add_flag(std::move(name), Kind::kDuration, value, std::move(help), absl::FormatDuration(*value));
}

bool Flags::set(const Flag& f, std::string_view text) const {
  switch (f.kind) {
    case Kind::kString:
      *static_cast<std::string*>(f.value) = std::string(text);
      return true;
    case Kind::kBool:
      if (text == "true" || text == "1") {
        *static_cast<bool*>(f.value) = true;
      } else if (text == "false" || text == "0") {
        *static_cast<bool*>(f.value) = false;
      } else {
        return false;
      }
      return true;
    case Kind::kDuration: {
      absl::Duration d;
      if (!absl::ParseDuration(std::string(text), &d) || d < absl::ZeroDuration()) return false;
      *static_cast<absl::Duration*>(f.value) = d;
      return true;
    }
    case Kind::kInt64:
    case Kind::kInt: {
      int64_t v = 0;
      auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
      if (ec != std::errc() || end != text.data() + text.size() || text.empty()) return false;
      if (f.kind == Kind::kInt) {
        if (v < INT32_MIN || v > INT32_MAX) return false;
        *static_cast<int*>(f.value) = static_cast<int>(v);
      } else {
        *static_cast<int64_t*>(f.value) = v;
      }
      return true;
    }
  }
  return false;
}

void Flags::print_usage(FILE* out) const {
  std::fprintf(out, "usage: %s [flags]\n%s\n\nflags:\n", program_.c_str(), summary_.c_str());
  for (const Flag& f : flags_) {
    std::fprintf(out, "  --%-18s %s (default %s)\n", f.name.c_str(), f.help.c_str(), f.default_text.c_str());
  }
}

void Flags::usage_error(std::string_view message) const {
  std::fprintf(stderr, "%s: %.*s\n\n", program_.c_str(), static_cast<int>(message.size()), message.data());
  print_usage(stderr);
  std::exit(2);
}

void Flags::parse(int argc, char** argv) {
  for (int i = 1; i < argc; ++i) {
    std::string_view arg = argv[i];
    if (arg == "--help" || arg == "-h") {
      print_usage(stdout);
      std::exit(0);
    }
    if (arg.size() < 3 || arg.substr(0, 2) != "--") usage_error("unexpected argument '" + std::string(arg) + "'");
    arg.remove_prefix(2);
    std::string_view name = arg;
    std::optional<std::string_view> value;
    if (size_t eq = arg.find('='); eq != std::string_view::npos) {
      name = arg.substr(0, eq);
      value = arg.substr(eq + 1);
    }
    const Flag* flag = nullptr;
    for (const Flag& f : flags_) {
      if (f.name == name) flag = &f;
    }
    if (flag == nullptr) usage_error("unknown flag --" + std::string(name));
    if (!value) {
      if (flag->kind == Kind::kBool) {
        value = "true";
      } else if (i + 1 < argc) {
        value = argv[++i];
      } else {
        usage_error("flag --" + std::string(name) + " needs a value");
      }
    }
    if (!set(*flag, *value)) {
      usage_error("bad value '" + std::string(*value) + "' for flag --" + std::string(name));
    }
  }
}

void ServerFlags::add_to(Flags& flags) {
  flags.add("host", &host, "address to listen on");
  flags.add("port", &port, "port to listen on; 0 picks a free one");
  flags.add("workers", &workers, "worker threads; 0 means one per CPU");
  flags.add("placement", &placement,
            "which worker owns an accepted connection: round_robin, least_loaded or same");
  flags.add("unix", &unix_path,
            "listen on this UNIX socket path (or @NAME, an abstract name) instead of host:port");
  flags.add("drain-timeout", &drain_timeout,
            "after SIGINT/SIGTERM, how long connections may take to finish (e.g. 5s, 500ms)");
  flags.add("stall-threshold", &stall_threshold,
            "the runtime's stall threshold: a worker away from its loop this long is helped by a peer; 0: off");
  flags.add("stats", &stats, "on stop, print the runtime's per-worker counters to stderr");
}

absl::StatusOr<std::pair<std::string, uint16_t>> parse_host_port(std::string_view text) {
  size_t colon = text.rfind(':');
  if (colon == std::string_view::npos || colon == 0) {
    return absl::InvalidArgumentError("expected HOST:PORT, got '" + std::string(text) + "'");
  }
  std::string_view host = text.substr(0, colon);
  std::string_view port = text.substr(colon + 1);
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);
  unsigned v = 0;
  auto [end, ec] = std::from_chars(port.data(), port.data() + port.size(), v);
  if (port.empty() || ec != std::errc() || end != port.data() + port.size() || v > 65535) {
    return absl::InvalidArgumentError("bad port in '" + std::string(text) + "'");
  }
  return std::make_pair(std::string(host), static_cast<uint16_t>(v));
}

absl::StatusOr<net::SocketAddress> resolve_one(const std::string& host, uint16_t port) {
  auto addrs = net::resolve(host, port);
  if (!addrs.ok()) return addrs.status();
  if (addrs->empty()) return absl::NotFoundError("no address for " + host);
  return addrs->front();
}

// ---------------------------------------------------------------------------
// ShutdownSignal
// ---------------------------------------------------------------------------

ShutdownSignal::ShutdownSignal() {
  auto set = signal::SignalSet::open({SIGINT, SIGTERM});
  if (!set.ok()) {
    std::fprintf(stderr, "cannot receive SIGINT/SIGTERM: %s\n", set.status().ToString().c_str());
    std::exit(1);
  }
  set_ = std::move(*set);
}

void ShutdownSignal::watch() {
  bool first = true;
  for (;;) {
    auto sig = set_.recv();
    if (!sig.ok()) return;  // closed
    if (first) {
      first = false;
      requested_.set();
      continue;
    }
    // A second signal while shutting down: give up at once.
    static const char kMsg[] = "second signal: exiting now\n";
    (void)!::write(STDERR_FILENO, kMsg, sizeof(kMsg) - 1);
    ::_exit(130);
  }
}

// ---------------------------------------------------------------------------
// serve() and run_server()
// ---------------------------------------------------------------------------

namespace {

// accept_loop() prints the listening line and accepts until stop is set;
// to_tcp turns an accepted stream into the TcpStream handlers take.
template <class Listener, class ToTcp>
absl::Status accept_loop(Listener& listener, Event& stop, const ConnectionHandler& on_conn,
                         const std::function<void(const net::SocketAddress&)>& on_listening,
                         WaitGroup* connections, ToTcp to_tcp) {
  auto local = listener.local_address();
  if (!local.ok()) return local.status();
  std::printf("listening on %s\n", local->to_string().c_str());
  std::fflush(stdout);
  if (on_listening) on_listening(*local);

  // The closer fiber is the only one that closes the listener; it is
  // joined below, before the listener leaves this stack.
  auto closer = spawn([&] {
    (void)stop.wait();
    (void)listener.close();
  });
  for (;;) {
    auto conn = listener.accept();
    if (!conn.ok()) {
      const absl::StatusCode code = conn.status().code();
      if (code == absl::StatusCode::kCancelled || code == absl::StatusCode::kFailedPrecondition) break;
      // kResourceExhausted: accept() itself backs off before the next try.
      if (code != absl::StatusCode::kResourceExhausted) {
        std::fprintf(stderr, "accept: %s\n", conn.status().ToString().c_str());
        (void)this_fiber::sleep_for(absl::Milliseconds(10));
      }
      continue;
    }
    if (connections != nullptr) connections->add(1);  // before the fiber runs: drained counts it
    spawn([&on_conn, connections, s = to_tcp(std::move(conn->stream))]() mutable {
      struct Done {
        WaitGroup* wg;
        ~Done() {  // also when the runtime cancels the fiber
          if (wg != nullptr) wg->done();
        }
      } done{connections};
      on_conn(std::move(s));
    }).detach();
  }
  stop.set();  // in case the loop ended for another reason
  closer.join();
  return absl::OkStatus();
}

}  // namespace

absl::Status serve(const ServerFlags& flags, Event& stop, const ConnectionHandler& on_conn,
                   net::ListenOptions opts,
                   const std::function<void(const net::SocketAddress&)>& on_listening,
                   WaitGroup* connections) {
  if (flags.port < 0 || flags.port > 65535) return absl::InvalidArgumentError("--port must be 0..65535");
  if (flags.placement == "round_robin") {
    opts.placement = net::AcceptPlacement::kRoundRobin;
  } else if (flags.placement == "least_loaded") {
    opts.placement = net::AcceptPlacement::kLeastLoaded;
  } else if (flags.placement == "same") {
    opts.placement = net::AcceptPlacement::kSameWorker;
  } else {
    return absl::InvalidArgumentError("--placement must be round_robin, least_loaded or same, not '" +
                                      flags.placement + "'");
  }
  if (!flags.unix_path.empty()) {
    auto addr = net::SocketAddress::parse("unix:" + flags.unix_path);
    if (!addr.ok()) return addr.status();
    auto listener = net::UnixListener::bind(*addr, {.backlog = opts.backlog, .placement = opts.placement});
    if (!listener.ok()) return listener.status();
    return accept_loop(*listener, stop, on_conn, on_listening, connections,
                       [](net::UnixStream s) { return std::move(s).into_stream(); });
  }
  auto addr = resolve_one(flags.host, static_cast<uint16_t>(flags.port));
  if (!addr.ok()) return addr.status();
  auto listener = net::TcpListener::bind(*addr, opts);
  if (!listener.ok()) return listener.status();
  return accept_loop(*listener, stop, on_conn, on_listening, connections,
                     [](net::TcpStream s) { return s; });
}

namespace {

// print_stats() writes one line per worker of `s` to stderr (--stats).
void print_stats(const char* program, const RuntimeStats& s) {
  for (const WorkerStats& w : s.workers) {
    std::fprintf(stderr,
                 "%s: stats: worker=%d run=%llu spawned=%llu steal_attempts=%llu steal_successes=%llu "
                 "stolen=%llu parks=%llu unparks=%llu polls=%llu poll_events=%llu messages=%llu "
                 "idle_sleeps=%llu wakeups=%llu inject_taken=%llu largest_poll=%llu\n",
                 program, w.worker, static_cast<unsigned long long>(w.run),
                 static_cast<unsigned long long>(w.spawned), static_cast<unsigned long long>(w.steal_attempts),
                 static_cast<unsigned long long>(w.steal_successes), static_cast<unsigned long long>(w.stolen),
                 static_cast<unsigned long long>(w.parks), static_cast<unsigned long long>(w.unparks),
                 static_cast<unsigned long long>(w.polls), static_cast<unsigned long long>(w.poll_events),
                 static_cast<unsigned long long>(w.messages), static_cast<unsigned long long>(w.idle_sleeps),
                 static_cast<unsigned long long>(w.wakeups), static_cast<unsigned long long>(w.inject_taken),
                 static_cast<unsigned long long>(w.largest_poll));
  }
  std::fprintf(stderr, "%s: stats: monitor_wakeups=%llu hog_episodes=%llu handovers=%llu\n", program,
               static_cast<unsigned long long>(s.monitor_wakeups), static_cast<unsigned long long>(s.hog_episodes),
               static_cast<unsigned long long>(s.handovers));
}

}  // namespace

int run_server(const char* program, const ServerFlags& flags, ShutdownSignal& signal,
               const ConnectionHandler& on_conn,
               const std::function<absl::Status(absl::Time drain_deadline)>& after_stop,
               net::ListenOptions opts) {
  // Declared before the runtime, which is destroyed first: connection
  // fibers it cancels still count themselves out.
  WaitGroup connections;
  auto rt = Runtime::create({.workers = flags.workers, .stall_threshold = flags.stall_threshold});
  if (!rt.ok()) {
    std::fprintf(stderr, "%s: cannot start the runtime: %s\n", program, rt.status().ToString().c_str());
    return 1;
  }
  absl::Status st = (*rt)->block_on([&] {
    spawn([&] { signal.watch(); }).detach();  // step 2
    absl::Status served = serve(flags, signal.requested(), on_conn, opts, nullptr, &connections);
    if (!served.ok()) return served;
    // Step 4: the listener is closed; drain.
    const absl::Time deadline = absl::Now() + flags.drain_timeout;
    if (flags.stats) print_stats(program, (*rt)->stats());
    std::fprintf(stderr, "%s: stopping: listener closed, draining %lld connections for up to %s\n", program,
                 static_cast<long long>(connections.count()), absl::FormatDuration(flags.drain_timeout).c_str());
    if (after_stop) {
      absl::Status s = after_stop(deadline);
      if (!s.ok()) std::fprintf(stderr, "%s: drain timeout: %s\n", program, std::string(s.message()).c_str());
    }
    if (absl::Status drained = connections.wait_for(deadline - absl::Now()); !drained.ok()) {
      // kDeadlineExceeded, or kCancelled if the runtime is being shut down.
      std::fprintf(stderr, "%s: drain %s: closing %lld connections still open\n", program,
                   absl::IsDeadlineExceeded(drained) ? "timeout" : "cancelled",
                   static_cast<long long>(connections.count()));
    } else {
      std::fprintf(stderr, "%s: drained\n", program);
    }
    return absl::OkStatus();
  });
  if (!st.ok()) {
    std::fprintf(stderr, "%s: %s\n", program, st.ToString().c_str());
    return 1;
  }
  return 0;  // *rt goes first: it cancels the connection fibers still running
}

}  // namespace weft::examples
