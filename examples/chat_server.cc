// chat_server: a line-based chat room. Every line a client sends goes to
// every other client as "[ID] line"; joins and leaves are announced.
//
//   bazel run -c opt //examples:chat_server -- --port 7001
//   nc 127.0.0.1 7001    (in several terminals)
//
// What a client sees:
//   * you are [3]              first line, to the new client only
//   * [3] joined               to everyone else
//   [3] hello                  a line from client 3, to everyone else
//   * [3] left                 to everyone else
//   * [3] left (too slow)      client 3 stopped reading and was disconnected
//
// Shows: a registry guarded by weft::Mutex, and one bounded
// weft::Channel<std::string> plus one writer fiber per client, so that a
// client that does not read never blocks the others.
//
// Slow clients: a broadcast uses try_send() and never waits. A client whose
// queue is full (--queue lines behind, after its socket buffers filled) is
// DISCONNECTED, not given a gap in the conversation: dropping lines
// silently would show it a chat that never happened. The queue must absorb
// bursts: one read from a fast sender can carry hundreds of lines, queued
// before any writer fiber runs. Every announcement and message is queued while the registry
// lock is held, so all clients see them in the same order.
#include <atomic>
#include <cstdio>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "examples/example_util.h"
#include "net/net.h"
#include "runtime/runtime.h"
#include "sync/sync.h"

namespace {

constexpr size_t kMaxLine = 4096;         // longer lines are split
constexpr size_t kMaxBatch = 64 * 1024;   // bytes a writer fiber sends in one write

struct Client {
  Client(int id, weft::net::TcpStream s, size_t queue) : id(id), stream(std::move(s)), out(queue) {}
  const int id;
  weft::net::TcpStream stream;     // read by the client's fiber, written by its writer fiber
  weft::Channel<std::string> out;  // lines waiting for the writer fiber
};

// Room: the connected clients. Thread-safe.
class Room {
 public:
  explicit Room(size_t queue) : queue_(queue) {}

  // serve() runs one client from connect to disconnect. Suspends.
  void serve(weft::net::TcpStream s) {
    auto me = std::make_shared<Client>(next_id_.fetch_add(1), std::move(s), queue_);
    // The writer fiber owns the sending side of the socket; it ends when
    // the queue is closed and drained, or on a write error.
    auto writer = weft::spawn([me] {
      std::string batch;
      for (;;) {
        absl::StatusOr<std::string> line = me->out.recv();
        if (!line.ok()) break;
        // Whatever else is queued goes out in the same write.
        batch = std::move(*line);
        while (batch.size() < kMaxBatch) {
          absl::StatusOr<std::string> more = me->out.try_recv();
          if (!more.ok()) break;
          batch += *more;
        }
        if (!me->stream.write_all(batch).ok()) break;
      }
      // Stop reading too: wakes the reader if the peer is gone.
      (void)me->stream.shutdown(weft::net::Shutdown::kBoth);
    });
    if (!join(me)) {  // the server is shutting down
      me->out.close();
      writer.join();
      return;
    }

    weft::net::BufferedReader in(me->stream, 16 * 1024);
    std::string line;
    for (;;) {
      // A line longer than kMaxLine comes out in kMaxLine-byte pieces.
      absl::Status st = in.read_line(&line, kMaxLine);
      if (!st.ok() && st.code() != absl::StatusCode::kResourceExhausted) break;  // end, error, kicked
      broadcast(me->id, "[" + std::to_string(me->id) + "] " + line + "\n");
    }
    leave(me, "");
    writer.join();
  }

  // close_all() disconnects everyone without announcements (shutdown).
  // Suspends.
  void close_all() {
    std::map<int, std::shared_ptr<Client>> all;
    {
      std::lock_guard<weft::Mutex> g(mu_);
      closed_ = true;
      all.swap(clients_);
    }
    for (auto& [id, c] : all) {
      c->out.close();
      (void)c->stream.shutdown(weft::net::Shutdown::kBoth);
    }
  }

 private:
  // join() registers c and announces it; false once close_all() ran.
  bool join(const std::shared_ptr<Client>& c) {
    std::vector<std::shared_ptr<Client>> slow;
    {
      std::lock_guard<weft::Mutex> g(mu_);
      if (closed_) return false;
      (void)c->out.try_send("* you are [" + std::to_string(c->id) + "]\n");
      queue_to_others_locked(c->id, "* [" + std::to_string(c->id) + "] joined\n", slow);
      clients_.emplace(c->id, c);
    }
    kick(slow);
    return true;
  }

  // leave() removes c (if still present) and announces it; `why` is added to
  // the announcement.
  void leave(const std::shared_ptr<Client>& c, const std::string& why) {
    std::vector<std::shared_ptr<Client>> slow;
    {
      std::lock_guard<weft::Mutex> g(mu_);
      if (clients_.erase(c->id) == 0) return;  // already gone
      queue_to_others_locked(c->id, "* [" + std::to_string(c->id) + "] left" + why + "\n", slow);
    }
    c->out.close();  // the writer sends what is queued, then ends
    kick(slow);
  }

  void broadcast(int from, const std::string& line) {
    std::vector<std::shared_ptr<Client>> slow;
    {
      std::lock_guard<weft::Mutex> g(mu_);
      queue_to_others_locked(from, line, slow);
    }
    kick(slow);
  }

  // Queues `line` to every client but `from`, never waiting; collects the
  // clients whose queue is full.
  void queue_to_others_locked(int from, const std::string& line, std::vector<std::shared_ptr<Client>>& slow)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    for (auto& [id, c] : clients_) {
      if (id == from) continue;
      absl::Status st = c->out.try_send(line);
      if (st.code() == absl::StatusCode::kResourceExhausted) slow.push_back(c);
    }
  }

  // kick() disconnects clients that fell --queue lines behind.
  void kick(const std::vector<std::shared_ptr<Client>>& slow) {
    for (const auto& c : slow) {
      leave(c, " (too slow)");
      // Wake its fibers: the reader sees end of stream, a parked write fails.
      (void)c->stream.shutdown(weft::net::Shutdown::kBoth);
    }
  }

  const size_t queue_;
  std::atomic<int> next_id_{1};
  weft::Mutex mu_;
  std::map<int, std::shared_ptr<Client>> clients_ ABSL_GUARDED_BY(mu_);
  bool closed_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace

int main(int argc, char** argv) {
  weft::examples::ServerFlags server;
  int queue = 1024;
  weft::examples::Flags flags("chat_server", "A chat room: every line goes to every other client.");
  server.add_to(flags);
  flags.add("queue", &queue, "lines queued per client before it is disconnected as too slow");
  flags.parse(argc, argv);
  if (queue < 1) flags.usage_error("--queue must be >= 1");

  Room room(static_cast<size_t>(queue));
  weft::examples::ShutdownSignal signal;
  return weft::examples::run_server("chat_server", server, signal,
                                    [&](weft::net::TcpStream s) { room.serve(std::move(s)); },
                                    [&](absl::Time) {
                                      room.close_all();  // chat clients never leave by themselves
                                      return absl::OkStatus();
                                    });
}
