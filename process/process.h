// process/process.h
//
// weft::process: child processes for code on fibers. spawn() starts a
// program (posix_spawn); its piped stdin/stdout/stderr are fiber streams
// (Readable/Writable as in net/io.h, registered with a worker's poller),
// and Child::wait() parks on a pidfd registered the same way. No worker
// thread blocks.
//
//   auto out = weft::process::output({"git", "rev-parse", "HEAD"});  // StatusOr<Output>
//   if (out.ok() && out->status.success()) use(out->out);
//
//   weft::process::Options o;
//   o.in = weft::process::Stdio::pipe();
//   o.out = weft::process::Stdio::pipe();
//   auto child = weft::process::spawn({"sort"}, o);
//   (void)child->stdin_pipe->write_all("b\na\n");
//   (void)child->stdin_pipe->close();                    // sort sees EOF
//   weft::net::BufferedReader r(*child->stdout_pipe);
//   ...
//   auto st = child->wait();                             // StatusOr<ExitStatus>
//
// Rules:
//   - spawn() and output() run on a fiber (or a worker thread) of a
//     runtime; elsewhere they abort (they need a worker's poller).
//   - A program that cannot be started (no such file, not executable, a bad
//     working directory) is an error status from spawn(), never exit 127.
//   - No descriptor leaks into children: weft opens everything O_CLOEXEC,
//     and the child closes every descriptor above 2 before exec.
//   - Children start with an empty signal mask and default dispositions
//     for SIGPIPE. The first spawn() sets SIGPIPE to SIG_IGN in this
//     process if it was SIG_DFL, so that writing to a child that exited is
//     an EPIPE status, not a dead process.
//   - No zombies: a Child destroyed without a successful wait() is reaped
//     by a process-wide reaper thread once it exits (it is not killed).
//   - Children are reaped through their pidfd (Linux 5.3+). A process that
//     sets SIGCHLD to SIG_IGN, or reaps with waitpid(-1), takes exit
//     statuses away from weft: wait() then fails with ECHILD.
#pragma once

#include <signal.h>
#include <sys/types.h>

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace weft::internal {
class SocketCore;
}  // namespace weft::internal

namespace weft::process {

// Stdio: what one of the child's standard streams is connected to.
struct Stdio {
  enum class Kind : uint8_t { kInherit, kNull, kPipe, kFile };
  static Stdio inherit() { return {Kind::kInherit, {}, false}; }
  static Stdio null() { return {Kind::kNull, {}, false}; }
  static Stdio pipe() { return {Kind::kPipe, {}, false}; }
  // file(): stdin reads the file; stdout/stderr create or truncate it (or
  // append to it).
  static Stdio file(std::string path, bool append = false) {
    return {Kind::kFile, std::move(path), append};
  }
  Kind kind = Kind::kInherit;
  std::string path;
  bool append = false;
};

struct Options {
  // Environment: the parent's (unless clear_env), then `env` applied in
  // order: a value sets the variable, nullopt removes it.
  bool clear_env = false;
  std::map<std::string, std::optional<std::string>> env;
  // Working directory of the child; empty: the parent's.
  std::string cwd;
  Stdio in = Stdio::inherit();
  Stdio out = Stdio::inherit();
  Stdio err = Stdio::inherit();
};

// ExitStatus: how a child ended.
struct ExitStatus {
  bool exited = false;  // exited normally: code is valid
  int code = 0;         // exit code (0..255)
  int signal = 0;       // terminating signal if !exited
  bool core_dumped = false;
  bool success() const { return exited && code == 0; }
  // to_string() is "exit code 3" or "killed by signal 9 (Killed)".
  std::string to_string() const;
};

class Child;
absl::StatusOr<Child> spawn(const std::vector<std::string>& argv, const Options& options);

// PipeReader: the parent's end of a child's stdout or stderr. Readable.
// One reader fiber at a time. Destroying it closes the pipe.
class PipeReader {
 public:
  PipeReader();
  ~PipeReader();
  PipeReader(PipeReader&&) noexcept;
  PipeReader& operator=(PipeReader&&) noexcept;

  // PipeReader::read() reads up to buf.size() bytes, waiting for at least
  // one; 0 once the child (and everyone else) closed the write end.
  // Suspends.
  absl::StatusOr<size_t> read(std::span<char> buf);
  // PipeReader::read_to_end() reads until end of stream. Suspends.
  absl::StatusOr<std::string> read_to_end();
  // PipeReader::close() closes the parent's end. Suspends.
  absl::Status close();

  // PipeReader::set_read_timeout()
  //
  // A read() that waits longer than `timeout` for the child fails with
  // kDeadlineExceeded; the pipe stays usable (read_to_end() applies it to
  // each of its reads). absl::InfiniteDuration() (the default) waits
  // forever.
  void set_read_timeout(absl::Duration timeout);
  // PipeReader::set_read_deadline()
  //
  // An absolute deadline: once it passes, parked and later reads fail with
  // kDeadlineExceeded until a new one is set; absl::InfiniteFuture()
  // clears it. kFailedPrecondition on a closed pipe. Suspends.
  absl::Status set_read_deadline(absl::Time deadline);

 private:
  friend class Child;
  friend absl::StatusOr<Child> spawn(const std::vector<std::string>&, const Options&);
  explicit PipeReader(std::unique_ptr<internal::SocketCore> core, const char* name);
  std::unique_ptr<internal::SocketCore> core_;
  const char* name_ = "PipeReader";
  int64_t timeout_ns_ = -1;
};

// PipeWriter: the parent's end of a child's stdin. Writable. One writer
// fiber at a time. Close it to send the child end of file.
class PipeWriter {
 public:
  PipeWriter();
  ~PipeWriter();
  PipeWriter(PipeWriter&&) noexcept;
  PipeWriter& operator=(PipeWriter&&) noexcept;

  // PipeWriter::write() writes some of data (at least one byte), waiting
  // while the pipe is full. EPIPE once the child closed its end. Suspends.
  absl::StatusOr<size_t> write(std::string_view data);
  // PipeWriter::write_all() writes all of data or fails. Suspends.
  absl::Status write_all(std::string_view data);
  template <class S>
    requires(std::is_convertible_v<const S&, std::span<const char>> &&
             !std::is_convertible_v<const S&, std::string_view>)
  absl::Status write_all(const S& data) {
    std::span<const char> s(data);
    return write_all(std::string_view(s.data(), s.size()));
  }
  // PipeWriter::close() closes the parent's end: the child reads EOF.
  // Suspends.
  absl::Status close();

  // PipeWriter::set_write_timeout()
  //
  // A write() that waits longer than `timeout` for room in the pipe fails
  // with kDeadlineExceeded (write_all(): each of its waits; on failure an
  // unknown prefix was written). absl::InfiniteDuration() (the default)
  // waits forever.
  void set_write_timeout(absl::Duration timeout);
  // PipeWriter::set_write_deadline()
  //
  // An absolute deadline for writes, as PipeReader::set_read_deadline().
  // Suspends.
  absl::Status set_write_deadline(absl::Time deadline);

 private:
  friend absl::StatusOr<Child> spawn(const std::vector<std::string>&, const Options&);
  explicit PipeWriter(std::unique_ptr<internal::SocketCore> core);
  std::unique_ptr<internal::SocketCore> core_;
  int64_t timeout_ns_ = -1;
};

// Child: a started process. Movable. One fiber at a time may wait.
class Child {
 public:
  Child();
  ~Child();
  Child(Child&&) noexcept;
  Child& operator=(Child&&) noexcept;

  // The parent's ends of the pipes asked for in Options (else nullopt).
  std::optional<PipeWriter> stdin_pipe;
  std::optional<PipeReader> stdout_pipe;
  std::optional<PipeReader> stderr_pipe;

  // Child::id() is the process id (valid until reaped by wait()).
  pid_t id() const { return pid_; }

  // Child::wait()
  //
  // Waits for the child to exit and reaps it; returns how it ended. After
  // the first success, returns the same status again. Does not close the
  // pipes (a child blocked writing to a full stdout pipe nobody reads never
  // exits: read the pipes, or use output()). Suspends.
  absl::StatusOr<ExitStatus> wait();
  // wait_for()/wait_until(): kDeadlineExceeded if the child is still
  // running then (it is not killed). Suspend.
  absl::StatusOr<ExitStatus> wait_for(absl::Duration timeout);
  absl::StatusOr<ExitStatus> wait_until(absl::Time deadline);
  // try_wait() reaps the child if it has exited; nullopt if it runs.
  absl::StatusOr<std::optional<ExitStatus>> try_wait();

  // Child::kill() sends `sig` (default SIGKILL) through the pidfd, so it
  // never reaches a recycled pid. kFailedPrecondition once reaped.
  absl::Status kill(int sig = SIGKILL);

 private:
  friend absl::StatusOr<Child> spawn(const std::vector<std::string>&, const Options&);
  absl::StatusOr<ExitStatus> wait_impl(int64_t timeout_nanos);
  void release();

  pid_t pid_ = -1;
  std::unique_ptr<internal::SocketCore> pidfd_;  // the pidfd, readable on exit
  std::optional<ExitStatus> status_;             // once reaped
};

// process::spawn()
//
// Starts argv[0] (looked up in the parent's PATH unless it contains a '/')
// with arguments argv[1..]. Errors: kInvalidArgument for an empty argv or
// an argument or variable with a NUL byte; the errno of a failed start
// (ENOENT no such program or cwd, EACCES not executable, ENOEXEC, E2BIG,
// EMFILE for the pipes), named "process::spawn(\"prog\"): ...";
// kCancelled if the calling fiber is cancelled while the start (or the
// open of a stdio file) waits for the blocking pool, and then nothing was
// started. Suspends briefly (pipe and pidfd registration).
absl::StatusOr<Child> spawn(const std::vector<std::string>& argv, const Options& options);
inline absl::StatusOr<Child> spawn(const std::vector<std::string>& argv) {
  return spawn(argv, Options{});
}

struct Output {
  ExitStatus status;
  std::string out;
  std::string err;
};

// process::output()
//
// Runs argv to completion with stdout and stderr piped and collected (read
// concurrently, so a child that fills both pipes never deadlocks) and
// stdin from /dev/null unless options.in says otherwise (a pipe there is
// closed at once). If reading stdout fails or the calling fiber is
// cancelled (e.g. under with_timeout()), the child is killed (SIGKILL) and
// the status returned at once (kCancelled, or what with_timeout() makes of
// it); output() never throws for a cancellation and leaves nothing
// running. Suspends.
absl::StatusOr<Output> output(const std::vector<std::string>& argv, Options options = {});

// error_number() is the errno a status from weft::process carries, if any.
std::optional<int> error_number(const absl::Status& s);

}  // namespace weft::process
