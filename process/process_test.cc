#include "process/process.h"

#include <doctest/doctest.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <thread>
#include <vector>

#include "lifecycle/timeout.h"
#include "net/io.h"
#include "process/internal/reaper.h"
#include "runtime/blocking.h"
#include "runtime/runtime.h"

namespace weft::process {
namespace {

static_assert(net::Readable<PipeReader>);
static_assert(net::Writable<PipeWriter>);

template <class Fn>
void on_fiber(Fn&& fn) {
  auto rt = *Runtime::create({.workers = 2});
  rt->block_on(std::forward<Fn>(fn));
}

std::string temp_dir() {
  const char* base = std::getenv("TEST_TMPDIR");
  std::string templ = std::string(base != nullptr ? base : "/tmp") + "/process_test.XXXXXX";
  REQUIRE(::mkdtemp(templ.data()) != nullptr);
  return templ;
}

// True when this process has no child left (zombie or running).
bool no_children() {
  siginfo_t info{};
  return ::waitid(P_ALL, 0, &info, WEXITED | WNOHANG | WNOWAIT) < 0 && errno == ECHILD;
}

TEST_CASE("output collects stdout, stderr and the exit code") {
  on_fiber([] {
    auto o = output({"sh", "-c", "echo out; echo err >&2; exit 3"});
    REQUIRE(o.ok());
    CHECK(o->out == "out\n");
    CHECK(o->err == "err\n");
    CHECK(o->status.exited);
    CHECK(o->status.code == 3);
    CHECK_FALSE(o->status.success());
    CHECK(o->status.to_string() == "exit code 3");
    auto t = output({"true"});
    REQUIRE(t.ok());
    CHECK(t->status.success());
  });
}

TEST_CASE("output does not deadlock when both pipes fill") {
  on_fiber([] {
    // 3 x 300 KB, alternating streams: each write blocks until the other
    // stream's reader has drained its 64 KiB pipe.
    auto o = output({"sh", "-c",
                     "head -c 300000 /dev/zero >&2; head -c 300000 /dev/zero; "
                     "head -c 300000 /dev/zero >&2"});
    REQUIRE(o.ok());
    CHECK(o->out.size() == 300000);
    CHECK(o->err.size() == 600000);
    CHECK(o->status.success());
  });
}

TEST_CASE("spawn errors are statuses, not exit 127") {
  on_fiber([] {
    auto nf = spawn({"weft-no-such-program-xyz"});
    CHECK(nf.status().code() == absl::StatusCode::kNotFound);
    CHECK(error_number(nf.status()) == ENOENT);
    CHECK(std::string(nf.status().message()).find("weft-no-such-program-xyz") !=
          std::string::npos);
    auto dir = spawn({"/tmp"});
    CHECK(error_number(dir.status()) == EACCES);
    Options bad_cwd;
    bad_cwd.cwd = "/weft/no/such/dir";
    CHECK(error_number(spawn({"true"}, bad_cwd).status()) == ENOENT);
    CHECK(spawn({}).status().code() == absl::StatusCode::kInvalidArgument);
    CHECK(spawn({std::string("a\0b", 3)}).status().code() == absl::StatusCode::kInvalidArgument);
    Options bad_env;
    bad_env.env["A=B"] = "x";
    CHECK(spawn({"true"}, bad_env).status().code() == absl::StatusCode::kInvalidArgument);
    Options bad_file;
    bad_file.out = Stdio::file("/weft/no/such/dir/out");
    auto bf = spawn({"true"}, bad_file);
    CHECK(error_number(bf.status()) == ENOENT);
    CHECK(std::string(bf.status().message()).find("stdout file") != std::string::npos);
  });
  CHECK(no_children());
}

TEST_CASE("environment: inherit, set, unset, clear; working directory") {
  ::setenv("WEFT_PROCESS_TEST_KEEP", "kept", 1);
  ::setenv("WEFT_PROCESS_TEST_DROP", "dropped", 1);
  on_fiber([] {
    Options o;
    o.env["WEFT_PROCESS_TEST_SET"] = "set";
    o.env["WEFT_PROCESS_TEST_DROP"] = std::nullopt;
    auto r = output({"sh", "-c",
                     "echo $WEFT_PROCESS_TEST_KEEP-$WEFT_PROCESS_TEST_SET-"
                     "${WEFT_PROCESS_TEST_DROP:-unset}"},
                    o);
    REQUIRE(r.ok());
    CHECK(r->out == "kept-set-unset\n");
    Options clear;
    clear.clear_env = true;
    clear.env["ONLY"] = "this";
    auto e = output({"/usr/bin/env"}, clear);
    REQUIRE(e.ok());
    CHECK(e->out == "ONLY=this\n");
    Options cwd;
    cwd.cwd = "/usr";
    auto p = output({"pwd"}, cwd);
    REQUIRE(p.ok());
    CHECK(p->out == "/usr\n");
  });
}

TEST_CASE("stdin pipe, stdout pipe: cat echoes, through BufferedReader") {
  on_fiber([] {
    Options o;
    o.in = Stdio::pipe();
    o.out = Stdio::pipe();
    auto c = spawn({"cat"}, o);
    REQUIRE(c.ok());
    CHECK(c->id() > 0);
    CHECK_FALSE(c->stderr_pipe.has_value());
    std::string data;
    for (int i = 0; i < 2000; ++i) data += "line " + std::to_string(i) + "\n";
    // Write on another fiber while this one reads: more than a pipe's worth.
    auto writer = weft::spawn([&] {
      CHECK(c->stdin_pipe->write_all(data).ok());
      CHECK(c->stdin_pipe->close().ok());
    });
    net::BufferedReader r(*c->stdout_pipe);
    std::string line;
    int n = 0;
    while (r.read_line(&line).ok()) {
      CHECK(line == "line " + std::to_string(n));
      ++n;
    }
    writer.join();
    CHECK(n == 2000);
    auto st = c->wait();
    REQUIRE(st.ok());
    CHECK(st->success());
  });
}

TEST_CASE("stdio to files and /dev/null") {
  std::string dir = temp_dir();
  on_fiber([&] {
    int fd = ::open((dir + "/in").c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
    REQUIRE(::write(fd, "from a file\n", 12) == 12);
    ::close(fd);
    Options o;
    o.in = Stdio::file(dir + "/in");
    o.out = Stdio::file(dir + "/out");
    o.err = Stdio::null();
    auto c = spawn({"sh", "-c", "cat; echo noise >&2"}, o);
    REQUIRE(c.ok());
    REQUIRE(c->wait().ok());
    o.out = Stdio::file(dir + "/out", /*append=*/true);
    auto c2 = spawn({"cat"}, o);
    REQUIRE(c2.ok());
    REQUIRE(c2->wait().ok());
    char buf[64];
    fd = ::open((dir + "/out").c_str(), O_RDONLY | O_CLOEXEC);
    ssize_t n = ::read(fd, buf, sizeof buf);
    ::close(fd);
    CHECK(std::string(buf, static_cast<size_t>(n)) == "from a file\nfrom a file\n");
    Options null_in;
    null_in.in = Stdio::null();
    auto e = output({"cat"}, null_in);
    REQUIRE(e.ok());
    CHECK(e->out.empty());
  });
  std::error_code ec;
  std::filesystem::remove_all(dir, ec);
}

TEST_CASE("wait_for, try_wait, kill, signals") {
  on_fiber([] {
    auto c = spawn({"sleep", "10"});
    REQUIRE(c.ok());
    auto t0 = std::chrono::steady_clock::now();
    auto w = c->wait_for(absl::Milliseconds(50));
    CHECK(w.status().code() == absl::StatusCode::kDeadlineExceeded);
    CHECK(std::chrono::steady_clock::now() - t0 < std::chrono::seconds(5));
    CHECK(c->wait_until(absl::Now() + absl::Milliseconds(20)).status().code() ==
          absl::StatusCode::kDeadlineExceeded);
    auto tw = c->try_wait();
    REQUIRE(tw.ok());
    CHECK_FALSE(tw->has_value());
    REQUIRE(c->kill(SIGTERM).ok());
    auto st = c->wait();
    REQUIRE(st.ok());
    CHECK_FALSE(st->exited);
    CHECK(st->signal == SIGTERM);
    CHECK(st->to_string() == "killed by signal 15 (SIGTERM)");
    auto again = c->wait();  // the same status
    REQUIRE(again.ok());
    CHECK(again->signal == SIGTERM);
    CHECK(c->kill().code() == absl::StatusCode::kFailedPrecondition);
    auto self = output({"sh", "-c", "kill -KILL $$"});
    REQUIRE(self.ok());
    CHECK(self->status.signal == SIGKILL);
    // try_wait on an exited child.
    auto q = spawn({"true"});
    REQUIRE(q.ok());
    std::optional<ExitStatus> got;
    for (int i = 0; i < 5000 && !got; ++i) {
      auto r = q->try_wait();
      REQUIRE(r.ok());
      got = *r;
      if (!got) (void)this_fiber::sleep_for(absl::Milliseconds(1));
    }
    REQUIRE(got.has_value());
    CHECK(got->success());
    Child moved = std::move(*q);
    CHECK(q->wait().status().code() == absl::StatusCode::kFailedPrecondition);
    CHECK(moved.wait()->success());
  });
  CHECK(no_children());
}

TEST_CASE("pipe timeouts and deadlines: kDeadlineExceeded, and the pipe stays usable") {
  on_fiber([] {
    // A child that writes one line only once it reads one: its stdout is
    // silent until we write.
    Options o;
    o.in = Stdio::pipe();
    o.out = Stdio::pipe();
    auto c = spawn({"sh", "-c", "read line; echo \"got $line\"; exec sleep 10"}, o);
    REQUIRE(c.ok());
    PipeReader& out = *c->stdout_pipe;
    char buf[64];
    out.set_read_timeout(absl::Milliseconds(30));
    auto r = out.read(buf);
    CHECK(r.status().code() == absl::StatusCode::kDeadlineExceeded);
    // A deadline in the past fails at once, also with the timeout cleared;
    // clearing it makes the pipe usable again.
    out.set_read_timeout(absl::InfiniteDuration());
    REQUIRE(out.set_read_deadline(absl::Now() - absl::Seconds(1)).ok());
    CHECK(out.read(buf).status().code() == absl::StatusCode::kDeadlineExceeded);
    REQUIRE(out.set_read_deadline(absl::InfiniteFuture()).ok());
    REQUIRE(c->stdin_pipe->write_all(std::string_view("hi\n")).ok());
    std::string got;
    while (got.find('\n') == std::string::npos) {
      auto n = out.read(buf);
      REQUIRE(n.ok());
      REQUIRE(*n > 0);
      got.append(buf, *n);
    }
    CHECK(got == "got hi\n");
    // Writes: the child no longer reads, so a large write fills the pipe
    // and then waits for room until the timeout.
    PipeWriter& in = *c->stdin_pipe;
    in.set_write_timeout(absl::Milliseconds(30));
    absl::Status w = in.write_all(std::string(1 << 20, 'x'));
    CHECK(w.code() == absl::StatusCode::kDeadlineExceeded);
    in.set_write_timeout(absl::InfiniteDuration());
    REQUIRE(in.set_write_deadline(absl::Now() + absl::Milliseconds(30)).ok());
    CHECK(in.write_all(std::string(1 << 16, 'y')).code() == absl::StatusCode::kDeadlineExceeded);
    REQUIRE(c->kill(SIGKILL).ok());
    REQUIRE(c->wait().ok());
    REQUIRE(in.close().ok());
    CHECK(in.set_write_deadline(absl::InfiniteFuture()).code() == absl::StatusCode::kFailedPrecondition);
    // After the child is gone its stdout reaches end of stream.
    REQUIRE(out.set_read_deadline(absl::InfiniteFuture()).ok());
    auto rest = out.read_to_end();
    REQUIRE(rest.ok());
    CHECK(rest->empty());
  });
  CHECK(no_children());
}

TEST_CASE("writing to a child that exited is EPIPE, not SIGPIPE") {
  on_fiber([] {
    Options o;
    o.in = Stdio::pipe();
    auto c = spawn({"true"}, o);
    REQUIRE(c.ok());
    REQUIRE(c->wait().ok());
    absl::Status s = c->stdin_pipe->write_all(std::string(100000, 'x'));
    CHECK(error_number(s) == EPIPE);
    // Children get SIGPIPE at its default even though we ignore it.
    auto o2 = output({"sh", "-c", "trap - PIPE; yes | head -c 10 >/dev/null; echo ok"});
    REQUIRE(o2.ok());
    CHECK(o2->out == "ok\n");
  });
}

// output() under a deadline: the caller's cancellation is a status (no
// exception out of output()), and output() neither waits for the child nor
// leaves it (or its stderr reader) running.
TEST_CASE("output under a deadline returns kDeadlineExceeded at once and stops the child") {
  on_fiber([] {
    struct Case {
      const char* name;
      std::vector<std::string> argv;
    };
    const Case cases[] = {
        // Parked reading stdout when the deadline fires.
        {"stdout open", {"sleep", "3"}},
        // stdout at end of file, parked joining the stderr reader: a
        // grandchild keeps stderr open.
        {"stderr open", {"sh", "-c", "sleep 3 >/dev/null & exit 0"}},
    };
    for (const Case& c : cases) {
      std::string name = c.name;
      CAPTURE(name);
      auto start = std::chrono::steady_clock::now();
      absl::StatusOr<Output> r = absl::UnknownError("not run");
      bool threw = false;
      try {
        r = with_timeout(absl::Milliseconds(200), [&] { return output(c.argv); });
      } catch (const WaitCancelled&) {
        threw = true;
      }
      auto took = std::chrono::steady_clock::now() - start;
      CHECK_FALSE(threw);
      CHECK(absl::IsDeadlineExceeded(r.status()));
      CHECK(took < std::chrono::seconds(2));
    }
    // The `sleep 3` child was killed: it is reaped long before it would
    // have exited.
    auto start = std::chrono::steady_clock::now();
    while (!(no_children() && internal::reaper_pending() == 0) &&
           std::chrono::steady_clock::now() - start < std::chrono::seconds(2)) {
      (void)this_fiber::sleep_for(absl::Milliseconds(1));
    }
    CHECK(no_children());
  });
}

// spawn() parks on the blocking pool (posix_spawnp, opening stdio files);
// a caller cancelled while that call waits in the pool's queue gets a
// kCancelled status, not an exception out of a StatusOr function.
TEST_CASE("spawn in a cancelled fiber returns a status, not an exception") {
  auto rt = *Runtime::create({.workers = 1});
  REQUIRE(rt->configure_blocking({.max_threads = 1}).ok());
  rt->block_on([] {
    auto release = std::make_shared<std::atomic<bool>>(false);
    // The pool's only thread is busy: spawn()'s calls stay queued.
    auto busy = spawn_blocking([release] {
      while (!release->load()) std::this_thread::sleep_for(std::chrono::milliseconds(1));
    });
    std::string dir = temp_dir();
    Options with_file;
    with_file.out = Stdio::file(dir + "/out");
    for (const Options& o : {Options{}, with_file}) {
      bool threw = false;
      absl::Status st;
      try {
        auto r = with_timeout(absl::ZeroDuration(), [&] { return spawn({"true"}, o); });
        st = r.status();
      } catch (const WaitCancelled&) {
        threw = true;
      }
      CHECK_FALSE(threw);
      CHECK(absl::IsDeadlineExceeded(st));
    }
    release->store(true);
    busy.join();
    std::filesystem::remove_all(dir);
  });
}

TEST_CASE("no descriptor leaks into children") {
  // A descriptor opened without O_CLOEXEC (by some library, say).
  int leaky = ::open("/dev/null", O_RDONLY);
  REQUIRE(leaky >= 3);
  on_fiber([&] {
    Options o;
    o.in = Stdio::pipe();
    auto r = output({"ls", "/proc/self/fd"}, o);
    REQUIRE(r.ok());
    // 0, 1, 2 and the directory ls reads.
    CHECK(r->out == "0\n1\n2\n3\n");
  });
  ::close(leaky);
}

TEST_CASE("a Child dropped without wait() is reaped: no zombie") {
  on_fiber([] {
    {
      auto c = spawn({"sleep", "0.1"});
      REQUIRE(c.ok());
    }
    {
      auto c = spawn({"true"});
      REQUIRE(c.ok());
    }
  });
  for (int i = 0; i < 5000 && !(no_children() && internal::reaper_pending() == 0); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  CHECK(internal::reaper_pending() == 0);
  CHECK(no_children());
}

}  // namespace
}  // namespace weft::process
