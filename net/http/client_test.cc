// http::Client against an in-process http::Server and against raw servers
// that misbehave: close mid-body, short Content-Length, stall, redirect.
#include "net/http/client.h"

#include <doctest/doctest.h>

#include <functional>
#include <string>
#include <utility>

#include "net/net.h"
#include "runtime/runtime.h"
#include "sync/sync.h"

namespace weft::http {
namespace {

namespace bhttp = boost::beast::http;

TEST_CASE("Url::parse") {
  auto u = Url::parse("http://example.com:8080/a/b?c=d#frag");
  REQUIRE(u.ok());
  CHECK(u->host == "example.com");
  CHECK(u->port == 8080);
  CHECK(u->target == "/a/b?c=d");
  u = Url::parse("http://[::1]/");
  REQUIRE(u.ok());
  CHECK(u->host == "::1");
  CHECK(u->port == 80);
  CHECK(u->host_port() == "[::1]:80");
  u = Url::parse("HTTP://h?q");
  REQUIRE(u.ok());
  CHECK(u->target == "/?q");
  CHECK(Url::parse("https://h")->port == 443);
  for (const char* bad : {"h/x", "ftp://h/", "http://", "http://h:0/", "http://h:70000/", "http://h:x/",
                          "http://[::1/", "http://u@h/", "http://h/a b", "http://h:/"}) {
    CAPTURE(bad);
    CHECK(Url::parse(bad).status().code() == absl::StatusCode::kInvalidArgument);
  }
}

Response handle(const Request& req) {
  Response res{bhttp::status::ok, req.version()};
  std::string_view t = req.target();
  if (t == "/echo") {
    res.body() = std::string(bhttp::to_string(req.method())) + " " + req.body();
  } else if (t == "/chunked") {
    res.body() = std::string(50000, 'c');
    res.chunked(true);
  } else if (t == "/close") {
    res.keep_alive(false);
    res.body() = "bye";
  } else if (t == "/redirect") {
    res.result(bhttp::status::found);
    res.set(bhttp::field::location, "/echo");
  } else if (t == "/loop") {
    res.result(bhttp::status::moved_permanently);
    res.set(bhttp::field::location, "loop");
  } else if (t == "/auth") {
    res.body() = std::string(req[bhttp::field::authorization]) + "|" + std::string(req[bhttp::field::cookie]) + "|" +
                 std::string(req["X-Other"]);
  } else if (t.substr(0, 9) == "/away?to=") {
    res.result(bhttp::status::temporary_redirect);
    res.set(bhttp::field::location, t.substr(9));
  } else if (t == "/host") {
    res.body() = std::to_string(req.count(bhttp::field::host)) + " " + std::string(req[bhttp::field::host]);
  } else if (t == "/slow") {
    (void)this_fiber::sleep_for(absl::Milliseconds(500));
    res.body() = "slow";
  } else {
    res.body() = "hello " + std::string(t);
  }
  return res;
}

struct TestServer {
  TestServer() : server(handle) {
    REQUIRE(server.listen(net::SocketAddress::loopback_v4(0)).ok());
    url = "http://" + server.local_address()->to_string();
    loop = spawn([this] { return server.serve(); });
  }
  ~TestServer() {
    CHECK(server.shutdown(absl::Seconds(5)).ok());
    CHECK(loop.join().ok());
  }
  Server server;
  std::string url;
  JoinHandle<absl::Status> loop;
};

TEST_CASE("against http::Server: get, post, keep-alive pool, chunked, HEAD, close") {
  auto rt = *Runtime::create({.workers = 2});
  rt->block_on([] {
    TestServer ts;
    Client client({.max_idle_per_host = 2});
    auto r = client.get(ts.url + "/x");
    REQUIRE(r.ok());
    CHECK(r->result_int() == 200);
    CHECK(r->body() == "hello /x");
    r = client.post(ts.url + "/echo", "payload", "text/plain");
    REQUIRE(r.ok());
    CHECK(r->body() == "POST payload");
    r = client.get(ts.url + "/chunked");
    REQUIRE(r.ok());
    CHECK(r->chunked());
    CHECK(r->body() == std::string(50000, 'c'));
    r = client.request(bhttp::verb::head, ts.url + "/x");
    REQUIRE(r.ok());
    CHECK(r->body().empty());
    CHECK((*r)[bhttp::field::content_length] == "8");
    CHECK(client.stats().connections_opened == 1);
    CHECK(client.stats().connections_reused == 3);
    CHECK(client.idle_connections() == 1);
    // A response with Connection: close leaves the pool empty.
    r = client.get(ts.url + "/close");
    REQUIRE(r.ok());
    CHECK(r->body() == "bye");
    CHECK(client.idle_connections() == 0);

    // Concurrent calls open several connections; the pool keeps two.
    std::vector<JoinHandle<bool>> calls;
    for (int i = 0; i < 6; ++i) {
      calls.push_back(spawn([&] {
        auto res = client.get(ts.url + "/slow");
        return res.ok() && res->body() == "slow";
      }));
    }
    for (auto& c : calls) CHECK(c.join());
    CHECK(client.idle_connections() == 2);

    // The server closes idle connections at shutdown; the client notices
    // on the next call and retries on a new connection.
    client.close();
    CHECK(client.idle_connections() == 0);
  });
}

TEST_CASE("the caller's headers: a Host replaces the URL's, CR, LF or NUL is refused") {
  auto rt = *Runtime::create({.workers = 1});
  rt->block_on([] {
    TestServer ts;
    Client client;
    auto r = client.get(ts.url + "/host");
    REQUIRE(r.ok());
    CHECK(r->body() == "1 " + ts.url.substr(7));
    r = client.get(ts.url + "/host", {{"host", "example.test"}});
    REQUIRE(r.ok());
    CHECK(r->result_int() == 200);
    CHECK(r->body() == "1 example.test");
    // A value or name that would end the line early would add fields (or
    // a whole request) the caller did not mean to send.
    for (const Headers& bad : {Headers{{"X-A", "a\r\nX-Injected: 1"}}, Headers{{"X-A", "a\nb"}},
                               Headers{{"X-A", std::string("a\0b", 3)}}, Headers{{"X-A\r\nX-B", "v"}},
                               Headers{{"X A", "v"}}, Headers{{"", "v"}}}) {
      r = client.get(ts.url + "/host", bad);
      CHECK(r.status().code() == absl::StatusCode::kInvalidArgument);
      CHECK(std::string(r.status().message()).find("http::Client: GET " + ts.url + "/host: ") == 0);
    }
    CHECK(client.stats().requests == 2);
  });
}

TEST_CASE("redirects: credentials go to the origin they were given for, not to another") {
  auto rt = *Runtime::create({.workers = 2});
  rt->block_on([] {
    TestServer a, b;
    Client client({.max_redirects = 3});
    const Headers creds = {{"Authorization", "Bearer secret"}, {"Cookie", "session=1"}, {"X-Other", "kept"}};
    // The same origin: everything is sent again.
    auto r = client.get(a.url + "/away?to=" + a.url + "/auth", creds);
    REQUIRE(r.ok());
    CHECK(r->body() == "Bearer secret|session=1|kept");
    // Another origin (a different port): Authorization and Cookie are not
    // handed to it (as curl and Go do); other fields are.
    r = client.get(a.url + "/away?to=" + b.url + "/auth", creds);
    REQUIRE(r.ok());
    CHECK(r->body() == "||kept");
    // A Host the caller set names the first origin: not sent to another.
    r = client.get(a.url + "/away?to=" + b.url + "/host", {{"Host", a.url.substr(7)}});
    REQUIRE(r.ok());
    CHECK(r->body() == "1 " + b.url.substr(7));
  });
}

TEST_CASE("a pooled connection the server closed is replaced transparently") {
  auto rt = *Runtime::create({.workers = 2});
  rt->block_on([] {
    Server server(handle, {.idle_timeout = absl::Milliseconds(50)});
    REQUIRE(server.listen(net::SocketAddress::loopback_v4(0)).ok());
    std::string url = "http://" + server.local_address()->to_string() + "/x";
    auto loop = spawn([&] { return server.serve(); });
    Client client;
    REQUIRE(client.get(url).ok());
    (void)this_fiber::sleep_for(absl::Milliseconds(200));  // the server closes it
    auto r = client.get(url);
    REQUIRE(r.ok());
    CHECK(r->body() == "hello /x");
    CHECK(client.stats().connections_opened == 2);
    client.close();
    CHECK(server.shutdown(absl::Seconds(5)).ok());
    CHECK(loop.join().ok());
  });
}

TEST_CASE("redirects: off by default, followed when enabled, limited") {
  auto rt = *Runtime::create({.workers = 2});
  rt->block_on([] {
    TestServer ts;
    Client plain;
    auto r = plain.post(ts.url + "/redirect", "x");
    REQUIRE(r.ok());
    CHECK(r->result_int() == 302);
    Client follow({.max_redirects = 3});
    r = follow.post(ts.url + "/redirect", "x");
    REQUIRE(r.ok());
    CHECK(r->result_int() == 200);
    CHECK(r->body() == "GET ");  // 302 after POST becomes GET
    r = follow.get(ts.url + "/loop");
    CHECK(r.status().code() == absl::StatusCode::kFailedPrecondition);
    CHECK(std::string(r.status().message()).find("more than 3 redirects") != std::string::npos);
  });
}

// A raw server that answers each connection's first request with `reply`
// and then does `after` (close, or stall for a while).
struct RawServer {
  RawServer(std::string reply, absl::Duration stall = absl::ZeroDuration()) {
    auto l = net::TcpListener::bind(net::SocketAddress::loopback_v4(0));
    REQUIRE(l.ok());
    listener = std::move(*l);
    url = "http://" + listener.local_address()->to_string() + "/";
    loop = spawn([this, reply = std::move(reply), stall] {
      auto c = listener.accept();
      if (!c.ok()) return;
      std::string got;
      char buf[4096];
      while (got.find("\r\n\r\n") == std::string::npos) {
        auto n = c->stream.read(buf);
        if (!n.ok() || *n == 0) return;
        got.append(buf, *n);
      }
      (void)c->stream.write_all(reply);
      if (stall > absl::ZeroDuration()) (void)this_fiber::sleep_for(stall);
      (void)c->stream.close();
    });
  }
  ~RawServer() {
    (void)listener.close();
    loop.join();
  }
  net::TcpListener listener;
  std::string url;
  JoinHandle<void> loop;
};

TEST_CASE("misbehaving servers give statuses with the URL in them") {
  auto rt = *Runtime::create({.workers = 2});
  rt->block_on([] {
    Client client({.request_timeout = absl::Seconds(10)});
    SUBCASE("closes mid-body") {
      RawServer raw("HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly some");
      auto r = client.get(raw.url);
      CHECK(r.status().code() == absl::StatusCode::kUnavailable);
      CHECK(std::string(r.status().message()).find(raw.url) != std::string::npos);
      CHECK(std::string(r.status().message()).find("partial_message") != std::string::npos);
    }
    SUBCASE("closes before answering") {
      RawServer raw("");
      auto r = client.get(raw.url);
      CHECK(r.status().code() == absl::StatusCode::kUnavailable);
    }
    SUBCASE("more bytes than Content-Length: the extra is not taken as the body, the connection not reused") {
      RawServer raw("HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabcdef");
      auto r = client.get(raw.url);
      REQUIRE(r.ok());
      CHECK(r->body() == "abc");
      CHECK(client.idle_connections() == 0);
    }
    SUBCASE("close-delimited body") {
      RawServer raw("HTTP/1.1 200 OK\r\n\r\nuntil the end");
      auto r = client.get(raw.url);
      REQUIRE(r.ok());
      CHECK(r->body() == "until the end");
      CHECK(client.idle_connections() == 0);
    }
    SUBCASE("chunked, then garbage in a chunk size") {
      RawServer raw("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\nzz\r\n");
      auto r = client.get(raw.url);
      CHECK(r.status().code() == absl::StatusCode::kDataLoss);
    }
    SUBCASE("not HTTP at all") {
      RawServer raw("SSH-2.0-OpenSSH_9.2\r\n\r\n");
      auto r = client.get(raw.url);
      CHECK(r.status().code() == absl::StatusCode::kDataLoss);
    }
    SUBCASE("interim 1xx responses before the final one are skipped") {
      RawServer raw(
          "HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload\r\n\r\n"
          "HTTP/1.1 100 Continue\r\n\r\n"
          "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nfinal");
      auto r = client.get(raw.url);
      REQUIRE(r.ok());
      CHECK(r->result_int() == 200);
      CHECK(r->body() == "final");
      CHECK(r->find("Link") == r->end());
    }
    SUBCASE("stalls: the request timeout") {
      RawServer raw("HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc", absl::Seconds(1));
      absl::Time start = absl::Now();
      auto r = client.get(raw.url, {}, {.request_timeout = absl::Milliseconds(200)});
      CHECK(r.status().code() == absl::StatusCode::kDeadlineExceeded);
      CHECK(absl::Now() - start < absl::Milliseconds(900));
      CHECK(std::string(r.status().message()).find(raw.url) != std::string::npos);
      (void)raw.listener.close();
    }
  });
}

TEST_CASE("connect errors and bad URLs") {
  auto rt = *Runtime::create({.workers = 1});
  rt->block_on([] {
    Client client;
    // A port nobody listens on: bind one, note it, close it.
    std::string url;
    {
      auto l = net::TcpListener::bind(net::SocketAddress::loopback_v4(0));
      REQUIRE(l.ok());
      url = "http://" + l->local_address()->to_string() + "/";
    }
    auto r = client.get(url);
    CHECK(r.status().code() == absl::StatusCode::kUnavailable);
    CHECK(std::string(r.status().message()).find(url) != std::string::npos);
    CHECK(client.get("not a url").status().code() == absl::StatusCode::kInvalidArgument);
    CHECK(client.get("ftp://127.0.0.1:1/").status().code() == absl::StatusCode::kInvalidArgument);
  });
}

}  // namespace
}  // namespace weft::http
