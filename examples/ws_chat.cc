// ws_chat: the chat room of chat_server over WebSocket. Every text message
// a client sends goes to every other client as "[ID] message"; joins and
// leaves are announced. One port serves both: http::Server answers plain
// HTTP and hands WebSocket upgrades for /chat to the room
// (ServerOptions::upgrade).
//
//   bazel run -c opt //examples:ws_chat -- --port 7003
//   python3 -m websockets ws://127.0.0.1:7003/chat    (in several terminals)
//   curl http://127.0.0.1:7003/                       (what to connect to)
//
// What a client receives, one WebSocket text message each:
//   * you are [3]              first, to the new client only
//   * [3] joined               to everyone else
//   [3] hello                  a message from client 3, to everyone else
//   * [3] left                 to everyone else
//   * [3] left (too slow)      client 3 stopped reading and was disconnected
// A binary message is relayed as binary, with the same "[ID] " prefix.
//
// Shows: weft::http::WebSocket with one reader fiber (the connection's)
// and one writer fiber per client, writing while the reader waits.
//
// Slow clients: a broadcast uses try_send() and never waits. A client whose
// queue is full (--queue messages behind, after its socket buffers filled)
// is DISCONNECTED, not given a gap in the conversation, as in chat_server:
// its socket is shut down, which ends its parked write and its read. A
// write that waits longer than --write-timeout for the client fails the
// same way.
//
// Shutdown (SIGINT/SIGTERM): the room closes every WebSocket with 1001
// "server shutting down" (the close handshake, run by each client's
// reader fiber), then the http::Server drains.
#include <atomic>
#include <cstdio>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "examples/example_util.h"
#include "net/http/server.h"
#include "net/http/websocket.h"
#include "net/net.h"
#include "runtime/runtime.h"
#include "sync/sync.h"

namespace {

using weft::http::MessageKind;
using weft::http::WebSocket;
using weft::http::WebSocketMessage;

struct Client {
  Client(int id, WebSocket& ws, size_t queue) : id(id), ws(ws), out(queue) {}
  const int id;
  WebSocket& ws;                          // read by the connection's fiber, written by the writer fiber
  weft::Channel<WebSocketMessage> out;    // messages waiting for the writer fiber
  std::atomic<uint16_t> close_code{1000};  // what the writer's close() sends

  // disconnect() shuts the socket down, unless serve() has returned (the
  // WebSocket is gone).
  void disconnect() {
    std::lock_guard<weft::Mutex> g(mu);
    if (ws_alive) (void)ws.tcp().shutdown(weft::net::Shutdown::kBoth);
  }
  void retire() {
    std::lock_guard<weft::Mutex> g(mu);
    ws_alive = false;
  }

  weft::Mutex mu;
  bool ws_alive ABSL_GUARDED_BY(mu) = true;
};

// Room: the connected clients. Thread-safe.
class Room {
 public:
  explicit Room(size_t queue) : queue_(queue) {}

  // serve() runs one client from its handshake to its end. Suspends.
  void serve(WebSocket& ws) {
    auto me = std::make_shared<Client>(next_id_.fetch_add(1), ws, queue_);
    // The writer fiber sends the queue; once it is closed and drained, the
    // close handshake (1000, or 1001 at shutdown; a no-op if the client
    // has closed already).
    auto writer = weft::spawn([me] {
      for (auto m = me->out.recv(); m.ok(); m = me->out.recv()) {
        if (!me->ws.write(m->data, m->kind).ok()) break;
      }
      const uint16_t code = me->close_code.load();
      (void)me->ws.close(code, code == 1001 ? "server shutting down" : "");
    });
    if (!join(me)) {  // the server is shutting down
      me->close_code.store(1001);
      me->out.close();
      writer.join();
      me->retire();
      return;
    }
    for (;;) {
      absl::StatusOr<WebSocketMessage> m = ws.read();
      if (!m.ok()) break;  // closed by the client or by us, gone, kicked
      m->data = "[" + std::to_string(me->id) + "] " + m->data;
      broadcast(me->id, *m);
    }
    leave(me, "");
    writer.join();
    me->retire();
  }

  // close_all() closes everyone's WebSocket with 1001, without
  // announcements (shutdown).
  void close_all() {
    std::map<int, std::shared_ptr<Client>> all;
    {
      std::lock_guard<weft::Mutex> g(mu_);
      closed_ = true;
      all.swap(clients_);
    }
    for (auto& [id, c] : all) {
      c->close_code.store(1001);
      c->out.close();
    }
  }

 private:
  static WebSocketMessage text(std::string s) { return {MessageKind::kText, std::move(s)}; }

  bool join(const std::shared_ptr<Client>& c) {
    std::vector<std::shared_ptr<Client>> slow;
    {
      std::lock_guard<weft::Mutex> g(mu_);
      if (closed_) return false;
      (void)c->out.try_send(text("* you are [" + std::to_string(c->id) + "]"));
      queue_to_others_locked(c->id, text("* [" + std::to_string(c->id) + "] joined"), slow);
      clients_.emplace(c->id, c);
    }
    kick(slow);
    return true;
  }

  void leave(const std::shared_ptr<Client>& c, const std::string& why) {
    std::vector<std::shared_ptr<Client>> slow;
    {
      std::lock_guard<weft::Mutex> g(mu_);
      if (clients_.erase(c->id) == 0) return;  // already gone
      queue_to_others_locked(c->id, text("* [" + std::to_string(c->id) + "] left" + why), slow);
    }
    c->out.close();  // the writer sends what is queued, then closes
    kick(slow);
  }

  void broadcast(int from, const WebSocketMessage& m) {
    std::vector<std::shared_ptr<Client>> slow;
    {
      std::lock_guard<weft::Mutex> g(mu_);
      queue_to_others_locked(from, m, slow);
    }
    kick(slow);
  }

  // Queues `m` to every client but `from`, never waiting; collects the
  // clients whose queue is full. Queued under the lock, so every client
  // sees the same order.
  void queue_to_others_locked(int from, const WebSocketMessage& m, std::vector<std::shared_ptr<Client>>& slow)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    for (auto& [id, c] : clients_) {
      if (id == from) continue;
      absl::Status st = c->out.try_send(m);
      if (st.code() == absl::StatusCode::kResourceExhausted) slow.push_back(c);
    }
  }

  // kick() disconnects clients that fell --queue messages behind: no close
  // handshake (it would queue behind a write the client does not read);
  // the socket's shutdown ends the parked write and the read.
  void kick(const std::vector<std::shared_ptr<Client>>& slow) {
    for (const auto& c : slow) {
      leave(c, " (too slow)");
      c->disconnect();
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
  weft::examples::ServerFlags server_flags;
  int queue = 256;
  int64_t max_message = 64 * 1024;
  absl::Duration write_timeout = absl::Seconds(10);
  weft::examples::Flags flags("ws_chat", "A chat room over WebSocket (ws://HOST:PORT/chat).");
  server_flags.add_to(flags);
  flags.add("queue", &queue, "messages queued per client before it is disconnected as too slow");
  flags.add("max-message", &max_message, "longest message accepted; longer ones close with 1009");
  flags.add("write-timeout", &write_timeout, "how long one write may wait for a client");
  flags.parse(argc, argv);
  if (queue < 1) flags.usage_error("--queue must be >= 1");
  if (max_message < 1) flags.usage_error("--max-message must be >= 1");

  Room room(static_cast<size_t>(queue));
  weft::http::WebSocketOptions ws_opts;
  ws_opts.max_message_bytes = static_cast<size_t>(max_message);
  ws_opts.write_timeout = write_timeout;

  weft::http::ServerOptions opts;
  opts.upgrade = [&](const weft::http::Request& req, weft::net::TcpStream& stream,
                     std::string_view buffered) -> std::optional<weft::http::Response> {
    if (req.target() != "/chat") {
      weft::http::Response res{boost::beast::http::status::not_found, req.version()};
      res.body() = "ws_chat: the room is at /chat\n";
      return res;
    }
    absl::StatusOr<WebSocket> ws = WebSocket::upgrade(stream, req, buffered, ws_opts);
    if (ws.ok()) room.serve(*ws);
    return std::nullopt;
  };
  weft::http::Server server(
      [](const weft::http::Request& req) {
        weft::http::Response res{boost::beast::http::status::ok, req.version()};
        res.set(boost::beast::http::field::content_type, "text/plain");
        res.body() = "ws_chat: connect a WebSocket client to /chat\n";
        return res;
      },
      opts);

  weft::examples::ShutdownSignal signal;
  return weft::examples::run_server(
      "ws_chat", server_flags, signal,
      [&server](weft::net::TcpStream s) { server.serve_connection(std::move(s)); },
      [&](absl::Time deadline) {
        room.close_all();
        return server.shutdown(deadline - absl::Now());
      });
}
