// runtime/internal/uring.h
//
// Ring: a worker's io_uring, which serves its fibers' file calls (stat,
// open, close) without a blocking-pool thread; RingOp: one such call.
// NOT for users: fs/ calls ring_call(), and falls back to the blocking pool
// when it returns kNoRing. The protocol (submit, park, complete, cancel,
// shutdown) is at the top of uring.cc.
//
// Threads: a Ring belongs to one worker thread. Only that thread submits
// (fibers running on it) and reaps (the worker's loop); a peer that serves
// the worker's driver while it is stuck never touches the ring.
#pragma once

#include <sys/stat.h>

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "runtime/internal/park.h"

namespace weft::internal {

class Ring;

// RingOp: one call, shared by the waiting fiber and the ring through a
// reference count. Everything the kernel reads or writes for the call
// (path, statx buffer, data buffer) lives in this block, so it outlives
// the call even when the waiter has gone. States:
//   kPending    submitted (or about to be); the ring holds a reference
//   kDone       the CQE arrived while the waiter waited: res is the result
//   kAbandoned  the waiter was cancelled first and left; the CQE handler
//               drops the result (closes a descriptor an open returned)
struct RingOp {
  enum class Kind : uint8_t { kStatx, kOpen, kClose, kRead, kWrite };
  enum State : int { kPending, kDone, kAbandoned };

  explicit RingOp(Kind k) : kind(k) {}
  RingOp(const RingOp&) = delete;
  RingOp& operator=(const RingOp&) = delete;
  void ref() { refs.fetch_add(1, std::memory_order_relaxed); }
  void unref() {
    if (refs.fetch_sub(1, std::memory_order_acq_rel) == 1) delete this;
  }

  const Kind kind;
  // In.
  std::string path;          // kStatx, kOpen
  int fd = -1;               // kClose, kRead, kWrite
  int flags = 0;             // kStatx: AT_* flags; kOpen: O_* flags
  unsigned mode = 0;         // kOpen
  unsigned mask = 0;         // kStatx: STATX_* fields
  std::unique_ptr<char[]> buf;  // kRead (filled), kWrite (the data)
  size_t len = 0;            // kRead, kWrite
  uint64_t offset = 0;       // kRead, kWrite: ~0 means the file position
  // Out: the CQE's result (>= 0, or -errno), and statx's fields.
  struct statx stx {};
  int res = 0;

  std::atomic<int> state{kPending};
  std::atomic<int> refs{1};
  Completion done;   // set by the CQE handler when it wins kPending -> kDone
  Ring* ring = nullptr;  // the ring it was submitted to
};

struct RingOpUnref {
  void operator()(RingOp* op) const { op->unref(); }
};
using RingOpPtr = std::unique_ptr<RingOp, RingOpUnref>;
inline RingOpPtr make_ring_op(RingOp::Kind k) { return RingOpPtr(new RingOp(k)); }

enum class RingResult {
  kNoRing,     // not submitted: no ring on this thread, or it is full; use the pool
  kDone,       // op->res holds the result
  kCancelled,  // the fiber was cancelled while it waited; the op is abandoned
};

// ring_call() submits op to the calling worker's ring and parks the fiber
// until its CQE arrives or the fiber is cancelled. On a plain thread, on a
// worker without a ring, or when the ring cannot take the op, returns
// kNoRing at once without submitting. If the runtime unwinds the fiber,
// abandons the op and throws FiberUnwind. Suspends. Fibers only (kNoRing
// elsewhere).
RingResult ring_call(RingOp* op);

// ring_available() is whether ring_call() would submit on this thread now.
bool ring_available();

class Ring {
 public:
  // create() sets up a ring of `entries` submission slots with a
  // completion eventfd (non-blocking, close-on-exec). Fails with the
  // errno of io_uring_queue_init (ENOSYS: no io_uring; EPERM: forbidden by
  // a seccomp filter or by kernel.io_uring_disabled) or of the eventfd.
  // `ops` counts the calls submitted and `dropped` the results of
  // abandoned calls (the worker's counters, written by the owner only).
  static absl::StatusOr<std::unique_ptr<Ring>> create(unsigned entries, std::atomic<uint64_t>* ops,
                                                      std::atomic<uint64_t>* dropped);
  // The destructor requires inflight() == 0 (drain() first).
  ~Ring();
  Ring(const Ring&) = delete;
  Ring& operator=(const Ring&) = delete;

  // --- the owner thread only ---
  int event_fd() const { return event_fd_; }
  size_t inflight() const { return inflight_; }
  // submit() prepares op's SQE and submits it (protocol step 1); false if
  // the ring is full or the kernel refused the submission (op untouched).
  bool submit(RingOp* op);
  // cancel() asks the kernel to cancel an abandoned op (step 4), best
  // effort: ignored when the submission queue is full.
  void cancel(RingOp* op);
  // ready() is whether CQEs wait to be reaped (one load).
  bool ready() const;
  // reap() handles every CQE that is ready (step 3) and returns how many.
  size_t reap();
  // clear_event() reads the completion eventfd's counter (it only wakes
  // the poller; reap() reads the CQ itself).
  void clear_event();
  // drain() cancels every op in flight and waits for all their CQEs
  // (step 5), blocking the thread. After it, the ring may be destroyed.
  void drain();

 private:
  Ring() = default;
  void handle(uint64_t user_data, int res);

  struct Impl;
  std::unique_ptr<Impl> impl_;
  int event_fd_ = -1;
  size_t inflight_ = 0;     // SQEs submitted whose CQE has not been reaped
  size_t max_inflight_ = 0;  // the CQ's size: the CQ never overflows
  std::atomic<uint64_t>* ops_ = nullptr;
  std::atomic<uint64_t>* dropped_ = nullptr;
};

// set_thread_ring() makes r the calling thread's ring (null: none); the
// worker's loop calls it when its ring starts and stops.
void set_thread_ring(Ring* r);

}  // namespace weft::internal
