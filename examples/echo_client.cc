// echo_client: a load generator and checker for echo_server. It opens
// --connections connections, each on its own fiber; each sends --messages
// messages of --size bytes, one at a time, and checks that exactly the same
// bytes come back. It prints one summary line and exits 1 on any mismatch
// or error.
//
//   bazel run -c opt //examples:echo_client -- --port 7000 --connections 100 --messages 10000
//
// Shows: TcpStream::connect, read_exact(), many client fibers on a few
// workers, totals gathered through atomics and join().
#include <atomic>
#include <cstdio>
#include <string>
#include <vector>

#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "examples/example_util.h"
#include "net/net.h"
#include "runtime/runtime.h"

namespace {

constexpr int64_t kInlineWrite = 64 * 1024;  // larger messages are written by a second fiber

// The message `i` of connection `conn`: bytes that differ per connection and
// per message, so a byte delivered to the wrong place is caught.
void fill(std::string& msg, int64_t conn, int64_t i) {
  uint64_t x = static_cast<uint64_t>(conn) * 0x9E3779B97F4A7C15ull + static_cast<uint64_t>(i) + 1;
  for (char& c : msg) {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    c = static_cast<char>(x);
  }
}

}  // namespace

int main(int argc, char** argv) {
  std::string host = "127.0.0.1";
  int port = 0;
  int workers = 0;
  int64_t connections = 10;
  int64_t messages = 1000;
  int64_t size = 64;
  weft::examples::Flags flags("echo_client", "Sends messages to an echo server and checks every echoed byte.");
  flags.add("host", &host, "server address");
  flags.add("port", &port, "server port");
  flags.add("workers", &workers, "worker threads; 0 means one per CPU");
  flags.add("connections", &connections, "connections, each on its own fiber");
  flags.add("messages", &messages, "messages per connection");
  flags.add("size", &size, "bytes per message");
  flags.parse(argc, argv);
  if (port <= 0 || port > 65535) flags.usage_error("--port must be 1..65535");
  if (connections < 1 || messages < 0 || size < 1) {
    flags.usage_error("--connections and --size must be >= 1, --messages >= 0");
  }

  auto rt = weft::Runtime::create({.workers = workers});
  if (!rt.ok()) {
    std::fprintf(stderr, "echo_client: %s\n", rt.status().ToString().c_str());
    return 1;
  }
  std::atomic<int64_t> round_trips{0};
  std::atomic<int64_t> failures{0};
  const absl::Time start = absl::Now();
  (*rt)->block_on([&] {
    auto addr = weft::examples::resolve_one(host, static_cast<uint16_t>(port));
    if (!addr.ok()) {
      std::fprintf(stderr, "echo_client: %s\n", addr.status().ToString().c_str());
      failures.fetch_add(1);
      return;
    }
    std::vector<weft::JoinHandle<void>> clients;
    for (int64_t c = 0; c < connections; ++c) {
      clients.push_back(weft::spawn([&, c] {
        auto fail = [&](const std::string& what) {
          std::fprintf(stderr, "echo_client: connection %lld: %s\n", static_cast<long long>(c), what.c_str());
          failures.fetch_add(1);
        };
        auto s = weft::net::TcpStream::connect(*addr, absl::Seconds(10));
        if (!s.ok()) return fail(s.status().ToString());
        (void)s->set_nodelay(true);
        s->set_read_timeout(absl::Seconds(10));
        std::string msg(static_cast<size_t>(size), '\0');
        std::string back(static_cast<size_t>(size), '\0');
        for (int64_t i = 0; i < messages; ++i) {
          fill(msg, c, i);
          // A message larger than the socket buffers must be read while it
          // is being written, or both sides would wait for each other.
          weft::JoinHandle<absl::Status> writer;
          if (size > kInlineWrite) {
            writer = weft::spawn([&] { return s->write_all(msg); });
          } else if (auto st = s->write_all(msg); !st.ok()) {
            return fail("write: " + st.ToString());
          }
          absl::Status read = s->read_exact({back.data(), back.size()});
          if (writer.joinable()) {
            if (!read.ok()) (void)s->shutdown(weft::net::Shutdown::kBoth);  // unblock the writer
            if (auto st = writer.join(); !st.ok()) return fail("write: " + st.ToString());
          }
          if (!read.ok()) return fail("read: " + read.ToString());
          if (back != msg) return fail("message " + std::to_string(i) + " came back different");
          round_trips.fetch_add(1, std::memory_order_relaxed);
        }
        // Half-close and expect a clean end of stream: nothing extra may come back.
        (void)s->shutdown(weft::net::Shutdown::kWrite);
        char extra;
        auto n = s->read({&extra, 1});
        if (!n.ok()) return fail("waiting for end of stream: " + n.status().ToString());
        if (*n != 0) return fail("unexpected bytes after the last echo");
      }));
    }
    for (auto& h : clients) h.join();
  });
  const double secs = absl::ToDoubleSeconds(absl::Now() - start);
  const int64_t rts = round_trips.load();
  const int64_t bad = failures.load();
  std::printf("echo_client: %lld connections x %lld messages x %lld bytes: %lld round trips in %.3f s (%.0f/s), %s\n",
              static_cast<long long>(connections), static_cast<long long>(messages), static_cast<long long>(size),
              static_cast<long long>(rts), secs, secs > 0 ? static_cast<double>(rts) / secs : 0.0,
              bad == 0 ? "all echoes ok" : (std::to_string(bad) + " connections FAILED").c_str());
  return bad == 0 && rts == connections * messages ? 0 : 1;
}
