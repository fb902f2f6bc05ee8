// echo_server: the smallest weft server. Every connection gets a fiber that
// reads and writes back what it read, in blocking style; the fiber parks in
// read() and write_all(), never the worker thread.
//
//   bazel run -c opt //examples:echo_server -- --port 7000 --workers 2
//   bazel run -c opt //examples:echo_client -- --port 7000
//
// Shows: TcpListener/TcpStream, one fiber per connection, a graceful drain
// on SIGINT/SIGTERM (examples/example_util.h, docs/signal.md).
#include <vector>

#include "examples/example_util.h"
#include "net/net.h"

int main(int argc, char** argv) {
  weft::examples::ServerFlags server;
  weft::examples::Flags flags("echo_server", "Echoes every byte it receives back to the sender.");
  server.add_to(flags);
  flags.parse(argc, argv);

  weft::examples::ShutdownSignal signal;
  return weft::examples::run_server("echo_server", server, signal, [](weft::net::TcpStream s) {
    (void)s.set_nodelay(true);
    std::vector<char> buf(16 * 1024);
    for (;;) {
      auto n = s.read(buf);
      if (!n.ok() || *n == 0) return;  // error or end of stream: the stream closes here
      if (!s.write_all({buf.data(), *n}).ok()) return;
    }
  });
}
