// weft::process.
//
// # spawn()
//   1. Check argv, env and cwd (no NUL bytes, argv not empty).
//   2. Prepare the child's stdio: pipes (pipe2 O_CLOEXEC; the parent's end
//      made non-blocking), /dev/null or a file (opened O_CLOEXEC in the
//      parent, so an open error names the file). Every child-side fd is
//      kept >= 3 so the dup2s onto 0, 1, 2 cannot clobber each other.
//   3. On the blocking pool: posix_spawnp with dup2 onto 0/1/2, chdir, and
//      closefrom(3) as file actions, an empty signal mask and SIGPIPE at
//      its default. glibc runs the child on a CLONE_VFORK stack and
//      reports any failure before exec (file action or exec) as the
//      return value, so "no such program" is a status here, not exit 127.
//   4. pidfd_open(pid): from here the child is tracked by its pidfd (no
//      pid-reuse races for kill, no SIGCHLD needed).
//   5. The pidfd and the parent's pipe ends are registered with the
//      calling worker's poller through SocketCore (edge-triggered; the
//      pidfd becomes readable when the child exits).
//   6. The child-side fds are closed in the parent.
//
// # wait()
//   waitid(P_PIDFD, WEXITED | WNOHANG) inside SocketCore::io(): "not yet"
//   is EAGAIN, so the fiber parks until the pidfd's edge (or the timeout).
//
// # Destruction
//   A Child not reaped hands a dup of its pidfd to the reaper thread
//   (internal/reaper.h), which reaps the child when it exits.
#include "process/process.h"

#include <fcntl.h>
#include <spawn.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <memory>
#include <mutex>
#include <utility>

#include "absl/strings/cord.h"
#include "net/internal/socket_core.h"
#include "process/internal/reaper.h"
#include "runtime/blocking.h"
#include "runtime/platform/syscall.h"
#include "runtime/runtime.h"

#ifndef P_PIDFD
#define P_PIDFD 3
#endif

extern char** environ;

namespace weft::process {

using weft::internal::Dir;
using weft::internal::errno_status;
using weft::internal::SocketCore;

namespace {

int pidfd_open(pid_t pid) { return static_cast<int>(::syscall(SYS_pidfd_open, pid, 0)); }

int pidfd_send_signal(int pidfd, int sig) {
  return static_cast<int>(::syscall(SYS_pidfd_send_signal, pidfd, sig, nullptr, 0));
}

// Owns descriptors until released.
struct FdList {
  std::vector<int> fds;
  ~FdList() {
    for (int fd : fds) ::close(fd);
  }
  int add(int fd) {
    fds.push_back(fd);
    return fd;
  }
};

bool has_nul(std::string_view s) { return s.find('\0') != std::string_view::npos; }

void ignore_sigpipe_once() {
  static std::once_flag once;
  std::call_once(once, [] {
    struct sigaction cur;
    if (::sigaction(SIGPIPE, nullptr, &cur) == 0 && !(cur.sa_flags & SA_SIGINFO) &&
        cur.sa_handler == SIG_DFL) {
      struct sigaction ign {};
      ign.sa_handler = SIG_IGN;
      sigemptyset(&ign.sa_mask);
      ::sigaction(SIGPIPE, &ign, nullptr);
    }
  });
}

// A descriptor number >= 3 (CLOEXEC) for fd, which is closed if moved.
int above_stdio(int fd) {
  if (fd >= 3) return fd;
  int moved = ::fcntl(fd, F_DUPFD_CLOEXEC, 3);
  int err = errno;
  ::close(fd);
  errno = err;
  return moved;
}

absl::StatusOr<std::unique_ptr<SocketCore>> register_fd(int fd, uint32_t interest,
                                                         const char* kind) {
  weft::internal::Scheduler* sched =
      weft::internal::current_scheduler_or_die("weft::process::spawn");
  return SocketCore::open(sched, fd, -1, interest, kind);
}

ExitStatus from_siginfo(const siginfo_t& info) {
  ExitStatus s;
  switch (info.si_code) {
    case CLD_EXITED:
      s.exited = true;
      s.code = info.si_status;
      break;
    case CLD_DUMPED:
      s.core_dumped = true;
      s.signal = info.si_status;
      break;
    default:  // CLD_KILLED
      s.signal = info.si_status;
      break;
  }
  return s;
}

// timeout_nanos(): a per-call timeout as SocketCore::io() takes it (-1:
// none).
int64_t timeout_nanos(absl::Duration d) {
  if (d == absl::InfiniteDuration()) return -1;
  if (d < absl::ZeroDuration()) return 0;
  return absl::ToInt64Nanoseconds(d);
}

// reap_now() reaps a child that was just killed. Not cancellable: a
// dropped waitpid would leave a zombie.
void reap_now(pid_t pid) {
  this_fiber::CancellationShield shield;
  run_blocking([&] { ::waitpid(pid, nullptr, 0); });
}

}  // namespace

std::optional<int> error_number(const absl::Status& s) { return weft::internal::errno_of(s); }

std::string ExitStatus::to_string() const {
  if (exited) return "exit code " + std::to_string(code);
  const char* name = ::sigabbrev_np(signal);
  std::string out = "killed by signal " + std::to_string(signal);
  if (name != nullptr) out += std::string(" (SIG") + name + ")";
  if (core_dumped) out += ", core dumped";
  return out;
}

// ===========================================================================
// Pipes
// ===========================================================================

PipeReader::PipeReader() = default;
PipeReader::~PipeReader() = default;
PipeReader::PipeReader(PipeReader&&) noexcept = default;
PipeReader& PipeReader::operator=(PipeReader&&) noexcept = default;
PipeReader::PipeReader(std::unique_ptr<SocketCore> core, const char* name)
    : core_(std::move(core)), name_(name) {}

absl::StatusOr<size_t> PipeReader::read(std::span<char> buf) {
  if (!core_) {
    return absl::FailedPreconditionError(std::string(name_) + "::read: not open");
  }
  if (buf.empty()) return size_t{0};
  const int fd = core_->fd();
  return core_->io(
      Dir::kRead, "read", timeout_ns_, [&] { return ::read(fd, buf.data(), buf.size()); }, buf.size());
}

void PipeReader::set_read_timeout(absl::Duration timeout) { timeout_ns_ = timeout_nanos(timeout); }

absl::Status PipeReader::set_read_deadline(absl::Time deadline) {
  if (!core_) return absl::FailedPreconditionError(std::string(name_) + "::set_read_deadline: not open");
  return core_->set_deadline(Dir::kRead, deadline);
}

absl::StatusOr<std::string> PipeReader::read_to_end() {
  std::string out;
  char buf[16384];
  for (;;) {
    auto n = read(buf);
    if (!n.ok()) return n.status();
    if (*n == 0) return out;
    out.append(buf, *n);
  }
}

absl::Status PipeReader::close() { return core_ ? core_->close() : absl::OkStatus(); }

PipeWriter::PipeWriter() = default;
PipeWriter::~PipeWriter() = default;
PipeWriter::PipeWriter(PipeWriter&&) noexcept = default;
PipeWriter& PipeWriter::operator=(PipeWriter&&) noexcept = default;
PipeWriter::PipeWriter(std::unique_ptr<SocketCore> core) : core_(std::move(core)) {}

absl::StatusOr<size_t> PipeWriter::write(std::string_view data) {
  if (!core_) return absl::FailedPreconditionError("PipeWriter::write: not open");
  if (data.empty()) return size_t{0};
  const int fd = core_->fd();
  return core_->io(Dir::kWrite, "write", timeout_ns_,
                   [&] { return ::write(fd, data.data(), data.size()); });
}

void PipeWriter::set_write_timeout(absl::Duration timeout) { timeout_ns_ = timeout_nanos(timeout); }

absl::Status PipeWriter::set_write_deadline(absl::Time deadline) {
  if (!core_) return absl::FailedPreconditionError("PipeWriter::set_write_deadline: not open");
  return core_->set_deadline(Dir::kWrite, deadline);
}

absl::Status PipeWriter::write_all(std::string_view data) {
  while (!data.empty()) {
    auto n = write(data);
    if (!n.ok()) return n.status();
    data.remove_prefix(*n);
  }
  return absl::OkStatus();
}

absl::Status PipeWriter::close() { return core_ ? core_->close() : absl::OkStatus(); }

// ===========================================================================
// Child
// ===========================================================================

Child::Child() = default;
Child::~Child() { release(); }
Child::Child(Child&& o) noexcept
    : stdin_pipe(std::move(o.stdin_pipe)),
      stdout_pipe(std::move(o.stdout_pipe)),
      stderr_pipe(std::move(o.stderr_pipe)),
      pid_(std::exchange(o.pid_, -1)),
      pidfd_(std::move(o.pidfd_)),
      status_(std::exchange(o.status_, std::nullopt)) {}
Child& Child::operator=(Child&& o) noexcept {
  if (this != &o) {
    release();
    stdin_pipe = std::move(o.stdin_pipe);
    stdout_pipe = std::move(o.stdout_pipe);
    stderr_pipe = std::move(o.stderr_pipe);
    pid_ = std::exchange(o.pid_, -1);
    pidfd_ = std::move(o.pidfd_);
    status_ = std::exchange(o.status_, std::nullopt);
  }
  return *this;
}

void Child::release() {
  if (pidfd_ && !status_) {
    // Not reaped: the reaper takes a copy of the pidfd; ours is closed
    // with the registration.
    int dup = ::fcntl(pidfd_->fd(), F_DUPFD_CLOEXEC, 3);
    if (dup >= 0) {
      internal::reap_later(dup);
    } else {
      std::fprintf(stderr, "weft: process %d: cannot hand it to the reaper (dup: %s)\n",
                   static_cast<int>(pid_), ::strerror(errno));
    }
  }
  pidfd_.reset();
  pid_ = -1;
}

absl::StatusOr<ExitStatus> Child::wait_impl(int64_t timeout_nanos) {
  if (status_) return *status_;
  if (!pidfd_) return absl::FailedPreconditionError("Child::wait: no child (moved from)");
  const int fd = pidfd_->fd();
  siginfo_t info;
  auto r = pidfd_->io(Dir::kRead, "wait", timeout_nanos, [&]() -> ssize_t {
    std::memset(&info, 0, sizeof info);
    int rc = ::waitid(static_cast<idtype_t>(P_PIDFD), static_cast<id_t>(fd), &info,
                      WEXITED | WNOHANG);
    if (rc < 0) return -1;
    if (info.si_pid == 0) {
      errno = EAGAIN;  // still running: park until the pidfd is readable
      return -1;
    }
    return 0;
  });
  if (!r.ok()) {
    std::string msg = "process " + std::to_string(pid_) + ": " + std::string(r.status().message());
    absl::Status s(r.status().code(), msg);
    r.status().ForEachPayload([&](auto url, const absl::Cord& p) { s.SetPayload(url, p); });
    return s;
  }
  status_ = from_siginfo(info);
  return *status_;
}

absl::StatusOr<ExitStatus> Child::wait() { return wait_impl(-1); }

absl::StatusOr<ExitStatus> Child::wait_for(absl::Duration timeout) {
  if (timeout < absl::ZeroDuration()) timeout = absl::ZeroDuration();
  if (timeout == absl::InfiniteDuration()) return wait_impl(-1);
  return wait_impl(absl::ToInt64Nanoseconds(timeout));
}

absl::StatusOr<ExitStatus> Child::wait_until(absl::Time deadline) {
  if (deadline == absl::InfiniteFuture()) return wait_impl(-1);
  return wait_for(deadline - absl::Now());
}

absl::StatusOr<std::optional<ExitStatus>> Child::try_wait() {
  if (status_) return status_;
  auto r = wait_impl(0);
  if (r.ok()) return std::optional<ExitStatus>(*r);
  if (r.status().code() == absl::StatusCode::kDeadlineExceeded) return std::nullopt;
  return r.status();
}

absl::Status Child::kill(int sig) {
  if (status_) {
    return absl::FailedPreconditionError("Child::kill: the process was already waited for");
  }
  if (!pidfd_) return absl::FailedPreconditionError("Child::kill: no child (moved from)");
  weft::internal::SocketCore::Use use(pidfd_.get());
  if (!use.ok()) return absl::FailedPreconditionError("Child::kill: closed");
  if (pidfd_send_signal(pidfd_->fd(), sig) < 0) {
    return errno_status(errno, "Child::kill(" + std::to_string(pid_) + ", " + std::to_string(sig) +
                                  "): pidfd_send_signal");
  }
  return absl::OkStatus();
}

// ===========================================================================
// spawn
// ===========================================================================

absl::StatusOr<Child> spawn(const std::vector<std::string>& argv, const Options& options) {
  if (argv.empty()) return absl::InvalidArgumentError("process::spawn: empty argv");
  const std::string what = "process::spawn(\"" + argv[0] + "\")";
  if (argv[0].empty()) return absl::InvalidArgumentError(what + ": empty program name");
  for (const auto& a : argv) {
    if (has_nul(a)) return absl::InvalidArgumentError(what + ": an argument contains a NUL byte");
  }
  for (const auto& [k, v] : options.env) {
    if (k.empty() || has_nul(k) || k.find('=') != std::string::npos || (v && has_nul(*v))) {
      return absl::InvalidArgumentError(what + ": bad environment variable name or value \"" + k +
                                        "\"");
    }
  }
  if (has_nul(options.cwd)) return absl::InvalidArgumentError(what + ": cwd contains a NUL byte");
  // Abort off a runtime before anything is started.
  (void)weft::internal::current_scheduler_or_die("weft::process::spawn");
  ignore_sigpipe_once();

  FdList child_side;   // closed when spawn() returns
  FdList parent_side;  // handed to SocketCores below (then released)
  int child_fd[3] = {-1, -1, -1};
  int parent_fd[3] = {-1, -1, -1};
  const Stdio* specs[3] = {&options.in, &options.out, &options.err};
  static const char* const kNames[3] = {"stdin", "stdout", "stderr"};
  for (int i = 0; i < 3; ++i) {
    const Stdio& s = *specs[i];
    switch (s.kind) {
      case Stdio::Kind::kInherit:
        break;
      case Stdio::Kind::kNull: {
        int fd = ::open("/dev/null", O_RDWR | O_CLOEXEC);
        if (fd < 0) return errno_status(errno, what + ": open /dev/null");
        fd = above_stdio(fd);
        if (fd < 0) return errno_status(errno, what + ": fcntl");
        child_fd[i] = child_side.add(fd);
        break;
      }
      case Stdio::Kind::kFile: {
        if (s.path.empty() || has_nul(s.path)) {
          return absl::InvalidArgumentError(what + ": bad " + kNames[i] + " file path");
        }
        int flags = O_CLOEXEC | (i == 0 ? O_RDONLY
                                        : O_WRONLY | O_CREAT | (s.append ? O_APPEND : O_TRUNC));
        // errno belongs to the pool thread: the status is made there. A
        // status result also makes a cancelled wait a status (kCancelled),
        // not a WaitCancelled exception.
        absl::StatusOr<int> opened = run_blocking([&]() -> absl::StatusOr<int> {
          int r = ::open(s.path.c_str(), flags, 0644);
          if (r < 0) {
            return errno_status(errno, what + ": open " + kNames[i] + " file \"" + s.path + "\"");
          }
          return r;
        });
        if (!opened.ok()) return opened.status();
        int fd = above_stdio(*opened);
        if (fd < 0) return errno_status(errno, what + ": fcntl");
        child_fd[i] = child_side.add(fd);
        break;
      }
      case Stdio::Kind::kPipe: {
        int p[2];
        if (::pipe2(p, O_CLOEXEC) < 0) return errno_status(errno, what + ": pipe2");
        int c = i == 0 ? p[0] : p[1];
        int par = i == 0 ? p[1] : p[0];
        par = above_stdio(par);
        if (par < 0) {
          int e = errno;
          ::close(c);
          return errno_status(e, what + ": fcntl");
        }
        parent_fd[i] = parent_side.add(par);
        c = above_stdio(c);
        if (c < 0) return errno_status(errno, what + ": fcntl");
        child_fd[i] = child_side.add(c);
        if (::fcntl(par, F_SETFL, ::fcntl(par, F_GETFL) | O_NONBLOCK) < 0) {
          return errno_status(errno, what + ": fcntl O_NONBLOCK");
        }
        break;
      }
    }
  }

  // The environment.
  std::vector<std::string> env;
  if (!options.clear_env) {
    for (char** e = environ; e != nullptr && *e != nullptr; ++e) {
      std::string_view kv(*e);
      std::string key(kv.substr(0, kv.find('=')));
      if (options.env.count(key) != 0) continue;
      env.emplace_back(kv);
    }
  }
  for (const auto& [k, v] : options.env) {
    if (v) env.push_back(k + "=" + *v);
  }
  std::vector<char*> envp;
  for (auto& e : env) envp.push_back(e.data());
  envp.push_back(nullptr);
  std::vector<std::string> args(argv);
  std::vector<char*> argp;
  for (auto& a : args) argp.push_back(a.data());
  argp.push_back(nullptr);

  // Start it on the blocking pool: the exec can take a while.
  pid_t pid = -1;
  absl::Status started = run_blocking([&]() -> absl::Status {
    posix_spawn_file_actions_t fa;
    posix_spawnattr_t attr;
    ::posix_spawn_file_actions_init(&fa);
    ::posix_spawnattr_init(&attr);
    for (int i = 0; i < 3; ++i) {
      if (child_fd[i] >= 0) ::posix_spawn_file_actions_adddup2(&fa, child_fd[i], i);
    }
    if (!options.cwd.empty()) ::posix_spawn_file_actions_addchdir_np(&fa, options.cwd.c_str());
    ::posix_spawn_file_actions_addclosefrom_np(&fa, 3);
    sigset_t empty, def;
    sigemptyset(&empty);
    sigemptyset(&def);
    sigaddset(&def, SIGPIPE);
    ::posix_spawnattr_setsigmask(&attr, &empty);
    ::posix_spawnattr_setsigdefault(&attr, &def);
    ::posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
    int r = ::posix_spawnp(&pid, argp[0], &fa, &attr, argp.data(), envp.data());
    ::posix_spawn_file_actions_destroy(&fa);
    ::posix_spawnattr_destroy(&attr);
    if (r != 0) return errno_status(r, what + ": posix_spawn");
    return absl::OkStatus();
  });
  if (!started.ok()) return started;

  Child child;
  child.pid_ = pid;
  int pidfd = pidfd_open(pid);
  if (pidfd < 0) {
    int e = errno;
    ::kill(pid, SIGKILL);
    reap_now(pid);
    child.pid_ = -1;
    return errno_status(e, what + ": pidfd_open (Linux 5.3 or later is required)");
  }
  auto core = register_fd(pidfd, weft::internal::kReadInterest, "Child");
  if (!core.ok()) {
    // The registration closed the pidfd: reap by pid instead.
    ::kill(pid, SIGKILL);
    reap_now(pid);
    child.pid_ = -1;
    return core.status();
  }
  child.pidfd_ = std::move(*core);
  // From here on, a failure kills the child; its destructor reaps it.
  auto fail = [&](absl::Status s) -> absl::StatusOr<Child> {
    (void)child.kill(SIGKILL);
    return s;
  };
  static const char* const kKinds[3] = {"ChildStdin", "ChildStdout", "ChildStderr"};
  parent_side.fds.clear();  // each is closed by its SocketCore from now on
  for (int i = 0; i < 3; ++i) {
    if (parent_fd[i] < 0) continue;
    auto c = register_fd(parent_fd[i],
                         i == 0 ? weft::internal::kDuplexInterest : weft::internal::kReadInterest,
                         kKinds[i]);
    if (!c.ok()) {
      for (int j = i + 1; j < 3; ++j) {
        if (parent_fd[j] >= 0) ::close(parent_fd[j]);
      }
      return fail(c.status());
    }
    if (i == 0) {
      child.stdin_pipe.emplace(PipeWriter(std::move(*c)));
    } else if (i == 1) {
      child.stdout_pipe.emplace(PipeReader(std::move(*c), kKinds[i]));
    } else {
      child.stderr_pipe.emplace(PipeReader(std::move(*c), kKinds[i]));
    }
  }
  return child;
}

absl::StatusOr<Output> output(const std::vector<std::string>& argv, Options options) {
  if (options.in.kind == Stdio::Kind::kInherit) options.in = Stdio::null();
  options.out = Stdio::pipe();
  options.err = Stdio::pipe();
  auto child = spawn(argv, options);
  if (!child.ok()) return child.status();
  if (child->stdin_pipe) (void)child->stdin_pipe->close();
  // stderr on a fiber of its own, stdout here: neither pipe can fill up
  // while we wait on the other. The fiber shares the pipe, so that this
  // call can close it under the fiber if it has to stop early.
  auto err_pipe = std::make_shared<PipeReader>(std::move(*child->stderr_pipe));
  child->stderr_pipe.reset();
  auto err_reader = weft::spawn([err_pipe] { return err_pipe->read_to_end(); });
  auto out = child->stdout_pipe->read_to_end();
  absl::StatusOr<std::string> err = absl::CancelledError("process::output: not read");
  if (out.ok()) err = err_reader.try_join();  // a status if the caller is cancelled
  if (err_reader.joinable()) {
    // Reading stdout failed or the caller was cancelled: nobody can wait
    // for this child after we return, so stop it, and stop the stderr
    // reader (closing the pipe wakes it) rather than leave it running.
    this_fiber::CancellationShield shield;
    (void)child->kill(SIGKILL);
    (void)err_pipe->close();
    (void)err_reader.try_join();
    return out.ok() ? err.status() : out.status();
  }
  auto st = child->wait();
  if (!st.ok()) {
    (void)child->kill(SIGKILL);  // e.g. the caller was cancelled
    return st.status();
  }
  if (!out.ok()) return out.status();
  if (!err.ok()) return err.status();
  return Output{*st, std::move(*out), std::move(*err)};
}

}  // namespace weft::process
