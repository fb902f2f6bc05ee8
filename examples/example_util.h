// examples/example_util.h
//
// What every example program shares: a tiny flag parser, the --host/--port/
// --workers flags of a server, clean shutdown on SIGINT/SIGTERM and the
// accept loop.
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
//   1. ShutdownSignal blocks SIGINT and SIGTERM in the calling thread before
//      the runtime exists, so every worker thread inherits the mask and only
//      its own sigwait() thread ever sees them.
//   2. On a signal that thread sets an Event (Event works from plain
//      threads). A second signal exits at once (_exit(130)).
//   3. serve() runs a closer fiber that waits for the Event and closes the
//      listener; closing wakes the fiber parked in accept() with kCancelled,
//      so the accept loop ends. The listener lives on the accepting fiber's
//      stack, which joins the closer before the listener goes away.
//   4. run_server() returns from block_on() and calls quiesce(), so the
//      signal thread is out of Event::set() (which touches the runtime)
//      before the runtime goes; destroying the Runtime cancels
//      the connection fibers still running (their streams close as their
//      stacks unwind), and main returns 0.
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
#include "net/net.h"
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

  // parse() sets the registered variables from argv or exits.
  void parse(int argc, char** argv);
  // usage_error() prints `message` and the usage, then exits 2.
  [[noreturn]] void usage_error(std::string_view message) const;

 private:
  enum class Kind { kString, kInt64, kInt, kBool };
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
  void add_to(Flags& flags);
};

// parse_host_port() splits "HOST:PORT" or "[V6]:PORT".
absl::StatusOr<std::pair<std::string, uint16_t>> parse_host_port(std::string_view text);

// resolve_one() is the first address of `host` (numeric or a name).
// Suspends.
absl::StatusOr<net::SocketAddress> resolve_one(const std::string& host, uint16_t port);

// ShutdownSignal: SIGINT/SIGTERM turned into a weft::Event (see the file
// comment). Construct it in main before Runtime::create(), and keep it
// alive longer than the runtime. One per process.
class ShutdownSignal {
 public:
  ShutdownSignal();
  ~ShutdownSignal();
  ShutdownSignal(const ShutdownSignal&) = delete;
  ShutdownSignal& operator=(const ShutdownSignal&) = delete;

  // requested() is set on the first signal; anyone may also set() it to
  // stop the server from inside.
  Event& requested() { return requested_; }

  // ShutdownSignal::quiesce()
  //
  // Waits until the signal thread is not inside requested().set(), and
  // stops it from touching the Event again. Call it before destroying the
  // runtime whose fibers wait on requested(): waking a fiber from a plain
  // thread touches that fiber's runtime (the wake-up goes through its
  // inject queue and idle workers), and the woken fiber may otherwise
  // finish, and the runtime be destroyed, while the set() is still running.
  void quiesce();

 private:
  void run();
  Event requested_;
  std::mutex set_mu_;
  bool quiesced_ ABSL_GUARDED_BY(set_mu_) = false;
  std::atomic<bool> quitting_{false};
  std::thread thread_;
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
// first accept. Returns the bind error, or OK once stopped. Must run on a
// fiber. Suspends.
absl::Status serve(const ServerFlags& flags, Event& stop, const ConnectionHandler& on_conn,
                   net::ListenOptions opts = {},
                   const std::function<void(const net::SocketAddress&)>& on_listening = nullptr);

// run_server()
//
// The whole life of a simple server: creates the runtime with
// flags.workers, runs serve() on it until `signal` fires, destroys the
// runtime and returns main's exit code (0 after a clean stop, 1 if the
// runtime or the listener could not start). `after_stop`, if given, runs on
// a fiber once the listener is closed, while the runtime still runs: the
// place to close sockets that shared state holds, since every socket must
// be closed before its runtime is destroyed.
int run_server(const char* program, const ServerFlags& flags, ShutdownSignal& signal,
               const ConnectionHandler& on_conn, const std::function<void()>& after_stop = nullptr,
               net::ListenOptions opts = {});

}  // namespace weft::examples
