// tools/loadgen/reference_server_main.cc
//
// reference_server: serves one of loadgen's protocols with
// weft::loadgen::ReferenceServer, for measuring loadgen (and weft::net)
// outside the tests.
//
//   bazel run -c opt //tools/loadgen:reference_server -- --mode echo --port 9000
//
// Prints "listening on <address>" once bound, then serves until
// --duration seconds pass (0, the default: until killed).
#include <sys/resource.h>

#include <cstdio>
#include <string>
#include <string_view>

#include "absl/strings/numbers.h"
#include "absl/time/time.h"
#include "net/address.h"
#include "runtime/runtime.h"
#include "tools/loadgen/reference_servers.h"

int main(int argc, char** argv) {
  weft::loadgen::ServerOptions o;
  std::string host = "127.0.0.1";
  int port = 0, workers = 1;
  double duration = 0;
  for (int i = 1; i + 1 < argc; i += 2) {
    absl::string_view name = argv[i], value = argv[i + 1];
    bool ok = true;
    if (name == "--mode") {
      auto m = weft::loadgen::parse_mode(std::string_view(value.data(), value.size()));
      ok = m.ok();
      if (ok) o.mode = *m;
    } else if (name == "--host") {
      host = std::string(value);
    } else if (name == "--port") {
      ok = absl::SimpleAtoi(value, &port) && port >= 0 && port <= 65535;
    } else if (name == "--workers") {
      ok = absl::SimpleAtoi(value, &workers) && workers >= 1;
    } else if (name == "--duration") {
      ok = absl::SimpleAtod(value, &duration) && duration >= 0;
    } else {
      ok = false;
    }
    if (!ok) {
      std::fprintf(stderr,
                   "usage: reference_server [--mode echo|http|resp] [--host IP] [--port N] "
                   "[--workers N] [--duration S]\n");
      return 2;
    }
  }
  auto addr = weft::net::SocketAddress::from_ip(host, static_cast<uint16_t>(port));
  if (!addr.ok()) {
    std::fprintf(stderr, "reference_server: %s\n", addr.status().ToString().c_str());
    return 2;
  }
  o.address = *addr;
  rlimit rl{};
  if (::getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
    rl.rlim_cur = rl.rlim_max;
    (void)::setrlimit(RLIMIT_NOFILE, &rl);
  }
  auto rt = weft::Runtime::create({.workers = workers});
  if (!rt.ok()) {
    std::fprintf(stderr, "reference_server: %s\n", rt.status().ToString().c_str());
    return 2;
  }
  return (*rt)->block_on([&] {
    auto server = weft::loadgen::ReferenceServer::start(o);
    if (!server.ok()) {
      std::fprintf(stderr, "reference_server: %s\n", server.status().ToString().c_str());
      return 1;
    }
    std::printf("listening on %s (%s)\n", (*server)->address().to_string().c_str(),
                weft::loadgen::mode_name(o.mode));
    std::fflush(stdout);
    if (duration > 0) {
      (void)weft::this_fiber::sleep_for(absl::Seconds(duration));
    } else {
      for (;;) (void)weft::this_fiber::sleep_for(absl::Hours(1));
    }
    (*server)->stop();
    std::printf("served %llu connections\n",
                static_cast<unsigned long long>((*server)->accepted()));
    return 0;
  });
}
