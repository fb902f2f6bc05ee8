// The socket messages of the worker inbox, driven with a pipe: register,
// readiness, modify, socket timeouts, close, and the generation tag that
// drops events for a closed registration.
#include <doctest/doctest.h>
#include <fcntl.h>
#include <unistd.h>

#include <atomic>
#include <thread>

#include "runtime/internal/runtime_access.h"
#include "runtime/internal/scheduler.h"
#include "runtime/runtime.h"

namespace weft {
namespace {

using internal::Completion;
using internal::IoMessage;
using internal::MessageKind;

struct Recorder : internal::IoSource {
  std::atomic<int> events{0};
  std::atomic<uint32_t> last{0};
  std::atomic<int> timeouts[2] = {0, 0};
  std::atomic<int> wrong_worker{0};
  int owner = -1;
  void on_io_events(uint32_t ev) override {
    if (this_fiber::worker_id() != owner) wrong_worker.fetch_add(1);
    last.store(ev);
    events.fetch_add(1);
  }
  void on_io_timeout(int index) override { timeouts[index].fetch_add(1); }
};

template <class Pred>
bool eventually(Pred p) {
  for (int i = 0; i < 5000; ++i) {
    if (p()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  return false;
}

absl::Status send(internal::Worker* w, IoMessage* m, internal::IoToken* token = nullptr) {
  Completion done;
  m->done = &done;
  w->send(m);
  absl::Status s = done.wait();
  if (token != nullptr) *token = done.token;
  return s;
}

TEST_CASE("socket messages register, report, time out and close") {
  auto rt = *Runtime::create({.workers = 2});
  internal::Worker* w = internal::RuntimeAccess::scheduler(*rt)->worker(1);
  int fds[2];
  REQUIRE(pipe2(fds, O_NONBLOCK | O_CLOEXEC) == 0);
  Recorder rec;
  rec.owner = 1;

  IoMessage reg;
  reg.kind = MessageKind::kRegisterSocket;
  reg.source = &rec;
  reg.fd = fds[0];
  reg.events = EPOLLIN | EPOLLET;
  internal::IoToken token = internal::kNoIoToken;
  REQUIRE(send(w, &reg, &token).ok());
  CHECK(token != internal::kNoIoToken);

  REQUIRE(write(fds[1], "x", 1) == 1);
  CHECK(eventually([&] { return rec.events.load() >= 1; }));
  CHECK((rec.last.load() & EPOLLIN) != 0);
  CHECK(rec.wrong_worker.load() == 0);

  IoMessage mod;
  mod.kind = MessageKind::kModifySocket;
  mod.token = token;
  mod.events = EPOLLIN | EPOLLRDHUP | EPOLLET;
  CHECK(send(w, &mod).ok());

  IoMessage arm;
  arm.kind = MessageKind::kSetSocketTimeout;
  arm.token = token;
  arm.timer_index = 1;
  arm.deadline_nanos = internal::monotonic_now() + 5'000'000;
  CHECK(send(w, &arm).ok());
  CHECK(eventually([&] { return rec.timeouts[1].load() == 1; }));

  IoMessage arm2;
  arm2.kind = MessageKind::kSetSocketTimeout;
  arm2.token = token;
  arm2.timer_index = 0;
  arm2.deadline_nanos = internal::monotonic_now() + 50'000'000;
  CHECK(send(w, &arm2).ok());
  IoMessage disarm;
  disarm.kind = MessageKind::kCancelSocketTimeout;
  disarm.token = token;
  disarm.timer_index = 0;
  CHECK(send(w, &disarm).ok());

  IoMessage close_msg;
  close_msg.kind = MessageKind::kCloseSocket;
  close_msg.token = token;
  CHECK(send(w, &close_msg).ok());
  int before = rec.events.load();
  REQUIRE(write(fds[1], "y", 1) == 1);
  std::this_thread::sleep_for(std::chrono::milliseconds(80));
  CHECK(rec.events.load() == before);       // no events after close
  CHECK(rec.timeouts[0].load() == 0);       // cancelled timer never fired

  // A stale token (old generation) is refused, even once the slot is reused.
  IoMessage reg2;
  reg2.kind = MessageKind::kRegisterSocket;
  reg2.token = internal::kNoIoToken;
  reg2.source = &rec;
  reg2.fd = fds[0];
  reg2.events = EPOLLIN | EPOLLET;
  internal::IoToken token2 = internal::kNoIoToken;
  REQUIRE(send(w, &reg2, &token2).ok());
  CHECK(token2 != token);
  CHECK((token2 & 0xffffffffu) == (token & 0xffffffffu));  // same slot, new generation
  IoMessage stale;
  stale.kind = MessageKind::kModifySocket;
  stale.token = token;
  stale.events = EPOLLIN;
  absl::Status s = send(w, &stale);
  CHECK(s.code() == absl::StatusCode::kNotFound);
  IoMessage close2;
  close2.kind = MessageKind::kCloseSocket;
  close2.token = token2;
  CHECK(send(w, &close2).ok());

  // Registering a bad fd is a status with the errno text.
  IoMessage bad;
  bad.kind = MessageKind::kRegisterSocket;
  bad.token = internal::kNoIoToken;
  bad.source = &rec;
  bad.events = EPOLLIN;
  bad.fd = 987654;
  s = send(w, &bad);
  CHECK(s.code() == absl::StatusCode::kFailedPrecondition);  // EBADF
  CHECK(s.message().find("epoll_ctl") != std::string_view::npos);
  close(fds[0]);
  close(fds[1]);
  CHECK(rt->stats().workers[1].messages >= 8);
}

TEST_CASE("a socket message sent while the runtime stops is handled or cancelled, never lost") {
  // The only worker is busy in a fiber when the message arrives and the
  // runtime stops: the message is either handled or, if the worker left
  // its loop first, completed as cancelled by the shutdown. Never lost.
  auto rt2 = *Runtime::create({.workers = 1});
  std::atomic<bool> hold{true};
  auto h = rt2->spawn([&] {
    while (hold.load()) {
    }
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(10));
  int fds[2];
  REQUIRE(pipe2(fds, O_NONBLOCK | O_CLOEXEC) == 0);
  Recorder rec;
  IoMessage reg;
  reg.kind = MessageKind::kRegisterSocket;
  reg.source = &rec;
  reg.fd = fds[0];
  reg.events = EPOLLIN;
  Completion done;
  reg.done = &done;
  internal::RuntimeAccess::scheduler(*rt2)->worker(0)->send(&reg);
  std::thread stopper([&] { rt2->shutdown(); });
  std::this_thread::sleep_for(std::chrono::milliseconds(10));
  hold.store(false);
  stopper.join();
  absl::Status s = done.wait();
  CHECK((s.ok() || s.code() == absl::StatusCode::kCancelled));
  h.join();
  close(fds[0]);
  close(fds[1]);
}

}  // namespace
}  // namespace weft
