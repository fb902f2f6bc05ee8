// net/io.cc
//
// prefix_status() and the in-memory DuplexPipe. The other adapters are
// templates in io.h.
//
// Pipe protocol. A pipe is two directions; end `s` writes into dir_[s] and
// reads from dir_[1 - s]. Each direction has one weft::Mutex guarding a
// ring buffer and three flags, and two condition variables:
//   1. write() copies what fits into the ring under the mutex, then wakes
//      parked readers; with the ring full it parks on can_write.
//   2. read() copies out of the ring under the mutex, then wakes parked
//      writers; with the ring empty it returns 0 if write_shut is set, else
//      parks on can_read.
//   3. shutdown_write() on end s sets dir_[s].write_shut: the peer reads
//      what is buffered, then 0.
//   4. close() on end s sets write_shut and writer_closed on dir_[s] (the
//      peer drains, then reads 0; this end's writers fail) and
//      reader_closed on dir_[1 - s], discarding what is buffered there (the
//      peer's writes fail: broken pipe; this end's reads fail). It wakes
//      every waiter of both directions, which re-check the flags.
//   5. write_all() holds the direction's write_all_mu for its whole
//      duration, so write_all() calls on one end never interleave; it is
//      released on every exit, so a close() wakes the holder, which fails,
//      and then each queued write_all() in turn, which sees the flag.
// Notifications are sent after the mutex is released; the state outlives
// them because the notifying end holds a reference to it.
#include "net/io.h"

#include <atomic>
#include <mutex>
#include <string>

#include "absl/strings/cord.h"
#include "absl/strings/str_cat.h"
#include "sync/condition_variable.h"
#include "sync/mutex.h"

namespace weft::internal {

absl::Status prefix_status(std::string_view prefix, const absl::Status& s) {
  if (s.ok()) return s;
  // absl::string_view may not be std::string_view (Debian's abseil).
  std::string message(prefix);
  message.append(s.message().data(), s.message().size());
  absl::Status out(s.code(), message);
  s.ForEachPayload([&out](absl::string_view url, const absl::Cord& payload) {
    out.SetPayload(url, payload);
  });
  return out;
}

// One direction of a pipe: bytes written by one end for the other.
struct PipeDirection {
  explicit PipeDirection(size_t capacity)
      : cap(capacity), ring(std::make_unique_for_overwrite<char[]>(capacity)) {}

  const size_t cap;
  weft::Mutex mu;
  weft::ConditionVariable can_read;   // bytes arrived, end of stream, or closed
  weft::ConditionVariable can_write;  // room was made, or closed
  weft::Mutex write_all_mu;           // held by a write_all() call throughout
  std::unique_ptr<char[]> ring ABSL_PT_GUARDED_BY(mu);
  size_t head ABSL_GUARDED_BY(mu) = 0;  // first buffered byte
  size_t size ABSL_GUARDED_BY(mu) = 0;  // bytes buffered
  bool write_shut ABSL_GUARDED_BY(mu) = false;     // writer shut down or closed: EOF after drain
  bool writer_closed ABSL_GUARDED_BY(mu) = false;  // writer called close()
  bool reader_closed ABSL_GUARDED_BY(mu) = false;  // reader called close(): broken pipe
  int readers_waiting ABSL_GUARDED_BY(mu) = 0;
  int writers_waiting ABSL_GUARDED_BY(mu) = 0;
};

class PipeState {
 public:
  explicit PipeState(size_t capacity) : dir_{PipeDirection(capacity), PipeDirection(capacity)} {}

  PipeDirection& out(int side) { return dir_[side]; }
  PipeDirection& in(int side) { return dir_[1 - side]; }
  size_t capacity() const { return dir_[0].cap; }

  std::atomic<int64_t> read_timeout_ns[2] = {-1, -1};  // -1: none
  std::atomic<int64_t> write_timeout_ns[2] = {-1, -1};

 private:
  PipeDirection dir_[2];
};

}  // namespace weft::internal

namespace weft::net {
namespace {

using internal::PipeDirection;
using internal::PipeState;

int64_t to_timeout_ns(absl::Duration d) {
  if (d == absl::InfiniteDuration()) return -1;
  if (d < absl::ZeroDuration()) return 0;
  return absl::ToInt64Nanoseconds(d);
}

absl::Time deadline_after(int64_t timeout_ns) {
  if (timeout_ns < 0) return absl::InfiniteFuture();
  return absl::Now() + absl::Nanoseconds(timeout_ns);
}

absl::Status not_connected(const char* call) {
  return absl::FailedPreconditionError(absl::StrCat(call, ": pipe end is not connected"));
}

// wait_on() parks on cv until notified (OK), `deadline` (kDeadlineExceeded)
// or the fiber's cancellation (kCancelled).
absl::Status wait_on(weft::ConditionVariable& cv, std::unique_lock<weft::Mutex>& lk, absl::Time deadline) {
  if (deadline == absl::InfiniteFuture()) return cv.wait(lk);
  return cv.wait_until(lk, deadline);
}

// wait_failure() is the status a pipe call returns after a failed wait.
absl::Status wait_failure(const absl::Status& waited, const char* call, const char* op) {
  if (absl::IsDeadlineExceeded(waited)) return absl::DeadlineExceededError(absl::StrCat(call, ": ", op, " timed out"));
  return absl::CancelledError(absl::StrCat(call, ": the waiting fiber was cancelled"));
}

// write_some() writes what fits of data into d, waiting for room until
// `deadline`; at least one byte of a non-empty data.
absl::StatusOr<size_t> write_some(PipeDirection& d, std::string_view data, absl::Time deadline,
                                  const char* call) {
  std::unique_lock<weft::Mutex> lk(d.mu);
  absl::Status waited;
  for (;;) {
    if (d.writer_closed) {
      return absl::FailedPreconditionError(absl::StrCat(call, ": pipe end is closed"));
    }
    if (d.write_shut) {
      return absl::FailedPreconditionError(absl::StrCat(call, ": write after shutdown_write()"));
    }
    if (d.reader_closed) {
      return absl::FailedPreconditionError(absl::StrCat(call, ": broken pipe (the peer end is closed)"));
    }
    if (data.empty()) return 0;
    if (d.size < d.cap) {
      size_t n = std::min(d.cap - d.size, data.size());
      size_t tail = (d.head + d.size) % d.cap;  // first free byte
      size_t first = std::min(n, d.cap - tail);
      std::memcpy(d.ring.get() + tail, data.data(), first);
      if (n > first) std::memcpy(d.ring.get(), data.data() + first, n - first);
      d.size += n;
      bool wake = d.readers_waiting > 0;
      lk.unlock();
      if (wake) d.can_read.notify_all();
      return n;
    }
    if (!waited.ok()) return wait_failure(waited, call, "write");
    ++d.writers_waiting;
    waited = wait_on(d.can_write, lk, deadline);
    --d.writers_waiting;
  }
}

}  // namespace

std::pair<PipeEnd, PipeEnd> DuplexPipe::create(size_t capacity) {
  WEFT_CHECK(capacity > 0, "DuplexPipe::create: capacity must be at least 1");
  auto state = std::make_shared<PipeState>(capacity);
  return {PipeEnd(state, 0), PipeEnd(state, 1)};
}

PipeEnd::PipeEnd() = default;
PipeEnd::PipeEnd(std::shared_ptr<internal::PipeState> state, int side)
    : state_(std::move(state)), side_(side) {}
PipeEnd::~PipeEnd() { close(); }
PipeEnd::PipeEnd(PipeEnd&& o) noexcept : state_(std::move(o.state_)), side_(o.side_) {}
PipeEnd& PipeEnd::operator=(PipeEnd&& o) noexcept {
  if (this != &o) {
    close();
    state_ = std::move(o.state_);
    side_ = o.side_;
  }
  return *this;
}

absl::StatusOr<size_t> PipeEnd::read(std::span<char> buf) {
  if (!state_) return not_connected("PipeEnd::read");
  PipeDirection& d = state_->in(side_);
  const absl::Time deadline =
      deadline_after(state_->read_timeout_ns[side_].load(std::memory_order_relaxed));
  std::unique_lock<weft::Mutex> lk(d.mu);
  absl::Status waited;
  for (;;) {
    if (d.reader_closed) return absl::FailedPreconditionError("PipeEnd::read: pipe end is closed");
    if (buf.empty()) return 0;
    if (d.size > 0) {
      size_t n = std::min(d.size, buf.size());
      size_t first = std::min(n, d.cap - d.head);
      std::memcpy(buf.data(), d.ring.get() + d.head, first);
      if (n > first) std::memcpy(buf.data() + first, d.ring.get(), n - first);
      d.head = (d.head + n) % d.cap;
      d.size -= n;
      bool wake = d.writers_waiting > 0;
      lk.unlock();
      if (wake) d.can_write.notify_all();
      return n;
    }
    if (d.write_shut) return 0;  // end of stream
    if (!waited.ok()) return wait_failure(waited, "PipeEnd::read", "read");
    ++d.readers_waiting;
    waited = wait_on(d.can_read, lk, deadline);
    --d.readers_waiting;
  }
}

absl::StatusOr<size_t> PipeEnd::write(std::string_view data) {
  if (!state_) return not_connected("PipeEnd::write");
  return write_some(state_->out(side_), data,
                    deadline_after(state_->write_timeout_ns[side_].load(std::memory_order_relaxed)),
                    "PipeEnd::write");
}

absl::Status PipeEnd::write_all(std::string_view data) {
  if (!state_) return not_connected("PipeEnd::write_all");
  PipeDirection& d = state_->out(side_);
  const absl::Time deadline =
      deadline_after(state_->write_timeout_ns[side_].load(std::memory_order_relaxed));
  std::lock_guard<weft::Mutex> whole(d.write_all_mu);
  // An empty write still reports a closed or broken pipe.
  do {
    absl::StatusOr<size_t> n = write_some(d, data, deadline, "PipeEnd::write_all");
    if (!n.ok()) return n.status();
    data.remove_prefix(*n);
  } while (!data.empty());
  return absl::OkStatus();
}

absl::Status PipeEnd::shutdown_write() {
  if (!state_) return not_connected("PipeEnd::shutdown_write");
  PipeDirection& d = state_->out(side_);
  {
    std::lock_guard<weft::Mutex> g(d.mu);
    if (d.writer_closed) {
      return absl::FailedPreconditionError("PipeEnd::shutdown_write: pipe end is closed");
    }
    d.write_shut = true;
  }
  d.can_read.notify_all();   // the peer's readers: end of stream after the drain
  d.can_write.notify_all();  // this end's writers: write after shutdown
  return absl::OkStatus();
}

void PipeEnd::close() {
  if (!state_) return;
  PipeDirection& out = state_->out(side_);
  {
    std::lock_guard<weft::Mutex> g(out.mu);
    out.writer_closed = true;
    out.write_shut = true;
  }
  out.can_read.notify_all();
  out.can_write.notify_all();
  PipeDirection& in = state_->in(side_);
  {
    std::lock_guard<weft::Mutex> g(in.mu);
    in.reader_closed = true;
    in.head = 0;
    in.size = 0;  // nobody can read it any more
  }
  in.can_read.notify_all();
  in.can_write.notify_all();
}

bool PipeEnd::is_open() const {
  if (!state_) return false;
  PipeDirection& out = state_->out(side_);
  std::lock_guard<weft::Mutex> g(out.mu);
  return !out.writer_closed;
}

void PipeEnd::set_read_timeout(absl::Duration timeout) {
  if (state_) state_->read_timeout_ns[side_].store(to_timeout_ns(timeout), std::memory_order_relaxed);
}

void PipeEnd::set_write_timeout(absl::Duration timeout) {
  if (state_) state_->write_timeout_ns[side_].store(to_timeout_ns(timeout), std::memory_order_relaxed);
}

size_t PipeEnd::readable() const {
  if (!state_) return 0;
  PipeDirection& in = state_->in(side_);
  std::lock_guard<weft::Mutex> g(in.mu);
  return in.size;
}

size_t PipeEnd::capacity() const { return state_ ? state_->capacity() : 0; }

}  // namespace weft::net
