// examples/example_util.h
//
// What every example program shares: a tiny flag parser, the --host/--port/
// --workers/--drain-timeout flags of a server, graceful shutdown on
// SIGINT/SIGTERM and the accept loop.
//
//   int main(int argc, char** argv) {
//     weft::examples::ServerFlags server;
//     weft::examples::Flags flags("echo_server", "Echoes every byte back.");
//     server.add_to(flags);
//     flags.parse(argc, argv);                      // exits 2 on a bad flag
//     weft::examples::ShutdownSignal signal;        // before the runtime
//     return weft::examples::run_server("echo_server", server, signal,
//                                       [](weft::net::TcpStream s) { ... });
//   }
//
// Shutdown, step by step:
//   1. ShutdownSignal opens a weft::signal::SignalSet for SIGINT and SIGTERM
//      in main, before the runtime exists, so the main thread and every
//      thread started afterwards block them and they reach the set's
//      signalfd (signal/signal.h says why this order matters).
//   2. run_server() starts ShutdownSignal::watch() on a fiber. The first
//      signal sets requested(); a second one prints a line and exits at
//      once (_exit(130)).
//   3. serve() runs a closer fiber that waits for requested() and closes
//      the listener, so new connections are refused; closing wakes the fiber
//      parked in accept() with kCancelled and the accept loop ends. The
//      listener lives on the accepting fiber's stack, which joins the closer
//      before the listener goes away.
//   4. Draining: run_server() calls `after_stop` with the drain deadline
//      (--drain-timeout after the signal; http_hello shuts its http::Server
//      down there) and waits until every connection handler has returned or
//      the deadline passes. Connections still open then are counted in a
//      line on stderr ("echo_server: drain timeout: closing 3 connections
//      still open").
//   5. run_server() returns 0 from block_on(); destroying the Runtime
//      cancels the fibers still running (the watcher, connections cut at
//      the deadline: their streams close as their stacks unwind), and
//      main's ShutdownSignal closes the set last, which restores SIGINT's
//      and SIGTERM's dispositions.
#pragma once

#include <atomic>
#include <cstdint>
#include <cstdio>
#include <functional>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "net/net.h"
#include "runtime/options.h"
#include "signal/signal.h"
#include "sync/sync.h"

namespace weft::examples {

// Flags: "--name value" and "--name=value"; a bool flag also takes plain
// "--name". Unknown flags, missing or malformed values print the usage and
// exit 2; --help prints it and exits 0.
class Flags {
 public:
  Flags(std::string program, std::string summary);

  void add(std::string name, std::string* value, std::string help);
  void add(std::string name, int64_t* value, std::string help);
  void add(std::string name, int* value, std::string help);
  void add(std::string name, bool* value, std::string help);
  // A duration in absl's syntax: "5s", "250ms", "1m30s".
  void add(std::string name, absl::Duration* value, std::string help);

  // parse() sets the registered variables from argv or exits.
  void parse(int argc, char** argv);
  // usage_error() prints `message` and the usage, then exits 2.
  [[noreturn]] void usage_error(std::string_view message) const;

 private:
  enum class Kind { kString, kInt64, kInt, kBool, kDuration };
  struct Flag {
    std::string name;
    Kind kind;
    void* value;
    std::string help;
    std::string default_text;
  };
  void add_flag(std::string name, Kind kind, void* value, std::string help, std::string def);
  bool set(const Flag& f, std::string_view text) const;
  void print_usage(FILE* out) const;

  std::string program_;
  std::string summary_;
  std::vector<Flag> flags_;
};

// ServerFlags: the listening side of every server example.
struct ServerFlags {
  std::string host = "127.0.0.1";
  int port = 0;     // 0: the kernel picks a free port
  int workers = 0;  // 0: one per CPU
  // Which worker's poller owns an accepted connection: "round_robin"
  // (spreads connections, each worker polls its own), "least_loaded" or
  // "same" (the accepting worker's).
  std::string placement = "round_robin";
  // A UNIX socket path (or "@NAME", an abstract name) to listen on instead
  // of host:port. A stale socket file is replaced; the file is removed on a
  // clean stop.
  std::string unix_path;
  // How long connections may take to finish after SIGINT/SIGTERM before
  // the server closes them and exits (run_server, shutdown step 4).
  absl::Duration drain_timeout = absl::Seconds(5);
  // On stop, print the runtime's counters (Runtime::stats(): runs, steals,
  // polls, idle sleeps, wake-ups per worker) to stderr, one line per worker.
  bool stats = false;
  // RuntimeOptions::stall_threshold: how long a worker may stay away from
  // its loop before the monitor hands its driver to a peer; zero turns the
  // monitor off (for measurements, docs/benchmarks.md).
  absl::Duration stall_threshold = RuntimeOptions{}.stall_threshold;
  void add_to(Flags& flags);
};

// parse_host_port() splits "HOST:PORT" or "[V6]:PORT".
absl::StatusOr<std::pair<std::string, uint16_t>> parse_host_port(std::string_view text);

// resolve_one() is the first address of `host` (numeric or a name).
// Suspends.
absl::StatusOr<net::SocketAddress> resolve_one(const std::string& host, uint16_t port);

// ShutdownSignal: SIGINT/SIGTERM turned into a weft::Event (see the file
// comment). Construct it in main before Runtime::create() (it exits 1 if
// the signals cannot be reserved), and keep it alive longer than the
// runtime. One per process.
class ShutdownSignal {
 public:
  ShutdownSignal();
  ShutdownSignal(const ShutdownSignal&) = delete;
  ShutdownSignal& operator=(const ShutdownSignal&) = delete;

  // requested() is set on the first signal; anyone may also set() it to
  // stop the server from inside.
  Event& requested() { return requested_; }

  // ShutdownSignal::watch()
  //
  // Receives the signals for as long as the runtime runs: the first sets
  // requested(), the second exits the process at once (_exit(130)).
  // run_server() runs it on a detached fiber; the runtime's destruction
  // ends it. Must be called on a fiber. Suspends.
  void watch();

 private:
  signal::SignalSet set_;
  Event requested_;
};

using ConnectionHandler = std::function<void(net::TcpStream)>;

// serve()
//
// Binds host:port (or flags.unix_path), prints "listening on HOST:PORT"
// (the bound port; "listening on unix:PATH" for a UNIX socket) to
// stdout and flushes, then accepts until `stop` is set, running
// on_conn(stream) on a new detached fiber per connection. The listener
// uses `opts` with the placement that flags.placement names. `on_conn` must
// outlive the runtime (connection fibers may still run when serve()
// returns). `on_listening`, if given, gets the bound address before the
// first accept. `connections`, if given, counts the handlers still
// running (add(1) at accept, done() when on_conn returns or its fiber is
// cancelled). Returns the bind error, or OK once stopped. Must run on a
// fiber. Suspends.
absl::Status serve(const ServerFlags& flags, Event& stop, const ConnectionHandler& on_conn,
                   net::ListenOptions opts = {},
                   const std::function<void(const net::SocketAddress&)>& on_listening = nullptr,
                   WaitGroup* connections = nullptr);

// run_server()
//
// The whole life of a simple server: creates the runtime with
// flags.workers, watches `signal` on a fiber, runs serve() until the first
// signal, then drains (shutdown step 4): `after_stop`, if given, runs on a
// fiber with the drain deadline, while the runtime still runs: the place to
// close sockets that shared state holds (every socket must be closed before
// its runtime is destroyed) and to shut down a server that tracks its own
// connections; it returns OK, or a status naming what it had to cut at the
// deadline. Then run_server() waits for the connection handlers until the
// deadline, destroys the runtime and returns main's exit code: 0 after a
// stop (drained or not), 1 if the runtime or the listener could not start.
int run_server(const char* program, const ServerFlags& flags, ShutdownSignal& signal,
               const ConnectionHandler& on_conn,
               const std::function<absl::Status(absl::Time drain_deadline)>& after_stop = nullptr,
               net::ListenOptions opts = {});

}  // namespace weft::examples
