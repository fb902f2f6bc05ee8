// tools/loadgen/loadgen_lib.h
//
// weft::loadgen: a closed-loop load generator built on weft itself. Each
// connection is a fiber that sends a batch of requests, waits for every
// reply, checks them, and sends the next batch, until the run's time is up.
//
//   weft::loadgen::Options o;
//   o.port = 9000;
//   o.mode = weft::loadgen::Mode::kEcho;
//   o.connections = 100;
//   o.duration = absl::Seconds(3);
//   auto report = (*rt)->block_on([&] { return weft::loadgen::run(o); });
//   if (report.ok()) std::cout << weft::loadgen::format_report(*report);
//
// Protocols (Options::mode):
//   kEcho  Sends message_size bytes and reads exactly message_size bytes
//          back, which must equal what was sent, byte for byte. The content
//          changes from message to message and from connection to
//          connection (printable letters).
//   kHttp  Sends "GET <http_path> HTTP/1.1\r\nHost: <host>\r\n\r\n". Each
//          response must have status 200 and a Content-Length (chunked
//          bodies are not supported); the body is read and discarded.
//          message_size is not used.
//   kResp  Redis protocol. Commands alternate SET key:<c> <value> and
//          GET key:<c>, where <c> is the connection's index and <value> is
//          message_size bytes (0 makes an empty value) that change with
//          every SET. A SET reply must be +OK; a GET reply must be the bulk
//          string last SET on that connection. Each command is a request.
//
// Pipelining: with pipeline = k, a connection writes k requests, then reads
// the k replies; there are never more than k in flight. Latency is measured
// per batch, from just before the write of the batch to the end of its last
// reply, and recorded once for each of the batch's k requests; with k = 1
// that is the latency of each request.
//
// Counting: requests and bytes (sent plus received) count batches that
// started after the warmup; a batch that started before the end of the run
// is finished and counted. Errors are counted from the start, warmup
// included. An error is: a failed connect (refused, timed out), a failed
// read or write (reset, EOF in the middle of a reply), and any reply that
// does not match what was expected (a mismatch is always an error). After
// an error the connection is closed and, if the run is not over, opened
// again after reconnect_delay. A reply that has not come stop_grace after
// the end of the run is an error too (the read deadline passes).
//
// Threads and fibers: run() must be called on a fiber of a weft Runtime; it
// spawns one fiber per connection (weft::spawn) and one for progress, and
// joins every one of them before it returns, with every connection closed.
#pragma once

#include <cstddef>
#include <cstdint>
#include <ostream>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace weft::loadgen {

enum class Mode { kEcho, kHttp, kResp };

// mode_name() is "echo", "http" or "resp"; parse_mode() is the reverse
// (kInvalidArgument for anything else).
const char* mode_name(Mode m);
absl::StatusOr<Mode> parse_mode(std::string_view name);

struct Options {
  // Host name or numeric address, resolved once (weft::net::resolve); each
  // connect tries the addresses in turn.
  std::string host = "127.0.0.1";
  uint16_t port = 0;  // required
  Mode mode = Mode::kEcho;
  int connections = 100;
  // kEcho: bytes per message (>= 1). kResp: bytes per SET value (>= 0).
  size_t message_size = 64;
  // Requests in flight per connection (>= 1): write `pipeline`, read as many.
  int pipeline = 1;
  // Measured time, after `warmup` (load runs but is not counted).
  absl::Duration duration = absl::Seconds(5);
  absl::Duration warmup = absl::ZeroDuration();
  // kHttp: the request path.
  std::string http_path = "/";
  // A progress line every progress_interval while running, to
  // progress_out (nullptr: std::cerr).
  bool progress = true;
  std::ostream* progress_out = nullptr;
  absl::Duration progress_interval = absl::Seconds(1);
  // Per connect attempt (also bounded by the end of the run).
  absl::Duration connect_timeout = absl::Seconds(5);
  // Pause before reopening a connection that failed.
  absl::Duration reconnect_delay = absl::Milliseconds(100);
  // How long after the end of the run a reply still in flight may take.
  absl::Duration stop_grace = absl::Seconds(1);
};

struct Report {
  // What ran, e.g. "echo 127.0.0.1:9000, 100 connections, 64 B messages,
  // pipeline 1".
  std::string description;
  uint64_t requests = 0;  // completed and checked, in the measured window
  uint64_t bytes = 0;     // sent plus received, in the measured window
  uint64_t errors = 0;    // over the whole run, warmup included
  uint64_t connects = 0;  // successful connects, warmup included
  double seconds = 0;     // measured window: end of warmup to last counted reply
  double requests_per_sec = 0;
  // Latency in microseconds (histogram precision: < 1% above the true value).
  double p50_us = 0, p99_us = 0, p999_us = 0, max_us = 0, mean_us = 0;
  // The message of the earliest error, "" if none.
  std::string first_error;
};

// run()
//
// Validates `options` (kInvalidArgument), resolves the host (its status on
// failure), runs the load for warmup + duration and returns the report.
// Connection failures and mismatches do not fail run(): they are counted in
// Report::errors (see the file comment). Must be called on a fiber of a
// weft Runtime (aborts otherwise). Suspends.
absl::StatusOr<Report> run(const Options& options);

// format_report()
//
// A human-readable block, several lines, followed by the line of
// format_machine_line(); ends with a newline.
std::string format_report(const Report& report);

// format_machine_line()
//
// One line, no newline: "requests_per_sec=<r> p50_us=<> p99_us=<>
// p999_us=<> errors=<n>", then "max_us=<> requests=<n>".
std::string format_machine_line(const Report& report);

}  // namespace weft::loadgen
