// http_fetch: a small curl. Fetches every URL given, all at once, one fiber
// each, and prints one line per URL (in the order given):
//
//   bazel run -c opt //examples:http_fetch -- http://127.0.0.1:8080/ http://127.0.0.1:8080/a
//   http://127.0.0.1:8080/ 200 14 bytes 1.2 ms
//   http://127.0.0.1:8080/a 200 14 bytes 0.9 ms
//
// A URL that fails prints "URL error: STATUS" instead. Exit status 0 if
// every URL got a response (any HTTP status), 1 otherwise, 2 on bad flags.
//
// Shows: weft::http::Client shared by many fibers (one connection pool),
// per-call timeouts, and that concurrent requests overlap: the whole run
// takes about as long as the slowest URL.
#include <cstdio>
#include <string>
#include <string_view>
#include <vector>

#include "examples/example_util.h"
#include "net/http/client.h"
#include "runtime/runtime.h"

int main(int argc, char** argv) {
  int workers = 2;
  int64_t timeout_ms = 10000;
  int max_redirects = 0;
  bool print_body = false;
  weft::examples::Flags flags("http_fetch", "Fetches URLs concurrently: http_fetch [flags] URL...");
  flags.add("workers", &workers, "worker threads");
  flags.add("timeout_ms", &timeout_ms, "per-URL timeout (connect and whole request), in milliseconds");
  flags.add("max_redirects", &max_redirects, "redirects to follow (0: print the 3xx)");
  flags.add("body", &print_body, "print each body after its line");
  // Flags take "--"; everything else is a URL.
  std::vector<std::string> urls;
  std::vector<char*> flag_args{argv[0]};
  for (int i = 1; i < argc; ++i) {
    std::string_view a = argv[i];
    if (a.substr(0, 2) == "--") {
      flag_args.push_back(argv[i]);
      bool has_value = a.find('=') != std::string_view::npos || a == "--body" || a == "--help";
      if (!has_value && i + 1 < argc) flag_args.push_back(argv[++i]);
    } else {
      urls.emplace_back(a);
    }
  }
  flags.parse(static_cast<int>(flag_args.size()), flag_args.data());
  if (urls.empty()) flags.usage_error("no URL given");
  if (timeout_ms <= 0) flags.usage_error("--timeout_ms must be positive");

  auto rt = weft::Runtime::create({.workers = workers});
  if (!rt.ok()) {
    std::fprintf(stderr, "http_fetch: %s\n", rt.status().ToString().c_str());
    return 1;
  }
  struct Result {
    absl::StatusOr<weft::http::Response> res;
    absl::Duration took;
  };
  std::vector<Result> results(urls.size(), Result{absl::UnknownError("not run"), absl::ZeroDuration()});
  (*rt)->block_on([&] {
    weft::http::Client client({.max_redirects = max_redirects});
    weft::http::CallOptions call{.connect_timeout = absl::Milliseconds(timeout_ms),
                                 .request_timeout = absl::Milliseconds(timeout_ms)};
    std::vector<weft::JoinHandle<void>> fetches;
    for (size_t i = 0; i < urls.size(); ++i) {
      fetches.push_back(weft::spawn([&, i] {
        absl::Time start = absl::Now();
        results[i].res = client.get(urls[i], {}, call);
        results[i].took = absl::Now() - start;
      }));
    }
    for (auto& f : fetches) f.join();
    client.close();
  });
  int failed = 0;
  for (size_t i = 0; i < urls.size(); ++i) {
    const Result& r = results[i];
    if (r.res.ok()) {
      std::printf("%s %u %zu bytes %.1f ms\n", urls[i].c_str(), r.res->result_int(), r.res->body().size(),
                  absl::ToDoubleMilliseconds(r.took));
      if (print_body) std::fwrite(r.res->body().data(), 1, r.res->body().size(), stdout);
    } else {
      ++failed;
      std::printf("%s error: %s\n", urls[i].c_str(), r.res.status().ToString().c_str());
    }
  }
  return failed == 0 ? 0 : 1;
}
