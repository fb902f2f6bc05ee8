// A worker's io_uring (uring.h): file calls served without a pool thread.
//
// # Setup
//   The worker's thread creates its ring when its loop starts (worker.cc,
//   start_ring), unless RuntimeOptions::io_uring is kOff or WEFT_IO_URING=0.
//   If io_uring_queue_init fails (ENOSYS, or EPERM under a seccomp filter),
//   the worker has no ring and every call goes to the blocking pool. The
//   ring's completion eventfd is registered in the worker's epoll poller,
//   edge-triggered, with epoll data Scheduler::kRingData.
//
// # One call (ring_call)
//   1. Submit. A fiber running on the ring's thread takes a reference for
//      the ring, fills one SQE whose user_data is the RingOp, and submits
//      it at once (io_uring_enter). If no SQE is free, the CQ could
//      overflow, or the kernel refuses, nothing was submitted and the call
//      goes to the pool.
//   2. Park. The fiber waits on op->done (a Completion), cancellable. It
//      may resume on another worker; the op stays with the ring it was
//      submitted to.
//   3. Complete. The ring's thread reaps CQEs: before every epoll_wait of
//      its own driver (a CQE that came while it ran fibers is never left
//      behind a blocking wait), when the eventfd fires, and at every turn
//      of the loop when the CQ is not empty. For each CQE it stores res,
//      then moves the op kPending -> kDone and sets op->done (waking the
//      fiber), or finds it kAbandoned and drops the result: an open's
//      descriptor is closed, a close the kernel cancelled is done with
//      close(2). Then it drops the ring's reference.
//   4. Cancel. A cancelled fiber leaves the wait at once and moves the op
//      kPending -> kAbandoned; ring_call returns kCancelled. If it is still
//      on the ring's thread it submits IORING_OP_ASYNC_CANCEL for the op
//      (best effort; never for a close, which must happen). If the CQE won
//      the race (kDone), the result is returned: nothing that completed is
//      lost. The op's block (path, statx buffer, data) lives until the CQE
//      drops the ring's reference, so the kernel never writes to freed
//      memory.
//   5. Shutdown. When the worker leaves its loop it drains its ring before
//      io_uring_queue_exit: one IORING_OP_ASYNC_CANCEL with
//      IORING_ASYNC_CANCEL_ANY, then it blocks in io_uring_wait_cqe until
//      every submitted SQE (ops, cancels) has its CQE, handling each as in
//      step 3. Only then is the thread's ring cleared, the eventfd taken
//      out of the poller and the ring freed. A fiber that runs after that
//      (the reaper unwinding it on its own thread) finds no ring there and
//      uses the pool.
#include "runtime/internal/uring.h"

#include <liburing.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#include "runtime/platform/syscall.h"

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/asan_interface.h>
#endif

namespace weft::internal {

namespace {

// user_data of SQEs that are not RingOps: their CQEs are only counted.
constexpr uint64_t kCancelTag = 1;
constexpr uint64_t kNopTag = 2;

__attribute__((tls_model("initial-exec"))) thread_local Ring* t_ring = nullptr;

// Never inlined, so a fiber that migrated reads the new thread's value.
__attribute__((noinline)) Ring* thread_ring() {
  Ring* r = t_ring;
  asm volatile("" ::: "memory");
  return r;
}

}  // namespace

struct Ring::Impl {
  io_uring ring;
};

void set_thread_ring(Ring* r) { t_ring = r; }

bool ring_available() { return current_fiber() != nullptr && thread_ring() != nullptr; }

absl::StatusOr<std::unique_ptr<Ring>> Ring::create(unsigned entries, std::atomic<uint64_t>* ops,
                                                   std::atomic<uint64_t>* dropped) {
  std::unique_ptr<Ring> r(new Ring());
  r->impl_ = std::make_unique<Impl>();
  int rc = io_uring_queue_init(entries, &r->impl_->ring, 0);
  if (rc < 0) {
    r->impl_.reset();
    return errno_status(-rc, "io_uring_queue_init");
  }
#if defined(__SANITIZE_ADDRESS__)
  // liburing maps the rings with its own mmap system call, which ASan does
  // not see: the shadow of those pages may still hold the poison of an
  // earlier mapping at the same address (a fiber stack's redzones).
  io_uring& u = r->impl_->ring;
  __asan_unpoison_memory_region(u.sq.ring_ptr, u.sq.ring_sz);
  __asan_unpoison_memory_region(u.cq.ring_ptr, u.cq.ring_sz);
  __asan_unpoison_memory_region(u.sq.sqes, u.sq.ring_entries * sizeof(io_uring_sqe));
#endif
  r->event_fd_ = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (r->event_fd_ < 0) return errno_status(errno, "eventfd");
  rc = io_uring_register_eventfd(&r->impl_->ring, r->event_fd_);
  if (rc < 0) return errno_status(-rc, "io_uring_register_eventfd");
  r->max_inflight_ = r->impl_->ring.cq.ring_entries;
  r->ops_ = ops;
  r->dropped_ = dropped;
  return r;
}

Ring::~Ring() {
  if (impl_ != nullptr) io_uring_queue_exit(&impl_->ring);
  if (event_fd_ >= 0) ::close(event_fd_);
}

bool Ring::submit(RingOp* op) {
  // Step 1. One slot is kept for a cancel (step 4) or the drain (step 5).
  if (inflight_ + 2 > max_inflight_) return false;
  io_uring_sqe* sqe = io_uring_get_sqe(&impl_->ring);
  if (sqe == nullptr) return false;
  switch (op->kind) {
    case RingOp::Kind::kStatx:
      io_uring_prep_statx(sqe, AT_FDCWD, op->path.c_str(), op->flags, op->mask, &op->stx);
      break;
    case RingOp::Kind::kOpen:
      io_uring_prep_openat(sqe, AT_FDCWD, op->path.c_str(), op->flags, op->mode);
      break;
    case RingOp::Kind::kClose:
      io_uring_prep_close(sqe, op->fd);
      break;
    case RingOp::Kind::kRead:
      io_uring_prep_read(sqe, op->fd, op->buf.get(), static_cast<unsigned>(op->len), op->offset);
      break;
    case RingOp::Kind::kWrite:
      io_uring_prep_write(sqe, op->fd, op->buf.get(), static_cast<unsigned>(op->len), op->offset);
      break;
  }
  io_uring_sqe_set_data64(sqe, reinterpret_cast<uint64_t>(op));
  int rc;
  do {
    rc = io_uring_submit(&impl_->ring);
  } while (rc == -EINTR);
  if (rc < 1) {
    // The SQE is still queued and would be submitted with the next one:
    // make it a no-op that names no RingOp.
    io_uring_prep_nop(sqe);
    io_uring_sqe_set_data64(sqe, kNopTag);
    ++inflight_;
    return false;
  }
  op->ring = this;
  op->ref();  // the ring's reference, dropped in handle()
  ++inflight_;
  ops_->store(ops_->load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
  return true;
}

void Ring::cancel(RingOp* op) {
  // Step 4, best effort.
  if (op->kind == RingOp::Kind::kClose || inflight_ + 1 > max_inflight_) return;
  io_uring_sqe* sqe = io_uring_get_sqe(&impl_->ring);
  if (sqe == nullptr) return;
  io_uring_prep_cancel64(sqe, reinterpret_cast<uint64_t>(op), 0);
  io_uring_sqe_set_data64(sqe, kCancelTag);
  ++inflight_;
  (void)io_uring_submit(&impl_->ring);  // if refused, it goes with the next submit
}

bool Ring::ready() const { return io_uring_cq_ready(&impl_->ring) > 0; }

void Ring::clear_event() {
  uint64_t v;
  (void)!::read(event_fd_, &v, sizeof v);
}

size_t Ring::reap() {
  size_t n = 0;
  for (;;) {
    io_uring_cqe* cqe = nullptr;
    if (io_uring_peek_cqe(&impl_->ring, &cqe) != 0 || cqe == nullptr) break;
    uint64_t data = io_uring_cqe_get_data64(cqe);
    int res = cqe->res;
    io_uring_cqe_seen(&impl_->ring, cqe);
    --inflight_;
    ++n;
    handle(data, res);
  }
  return n;
}

void Ring::handle(uint64_t data, int res) {
  // Step 3.
  if (data == kCancelTag || data == kNopTag) return;
  auto* op = reinterpret_cast<RingOp*>(data);
  if (op->kind == RingOp::Kind::kClose && res == -ECANCELED) {
    // Cancelled before it ran (the drain, step 5): the descriptor must be
    // closed all the same.
    res = ::close(op->fd) == 0 ? 0 : -errno;
  }
  op->res = res;
  int expect = RingOp::kPending;
  if (op->state.compare_exchange_strong(expect, RingOp::kDone, std::memory_order_acq_rel)) {
    op->done.set(absl::OkStatus());
  } else {
    // The waiter left: nobody will own an open's descriptor.
    if (op->kind == RingOp::Kind::kOpen && res >= 0) ::close(res);
    dropped_->store(dropped_->load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
  }
  op->unref();
}

void Ring::drain() {
  // Step 5.
  if (inflight_ == 0) return;
  io_uring_sqe* sqe = io_uring_get_sqe(&impl_->ring);
  if (sqe != nullptr) {
    io_uring_prep_cancel64(sqe, 0, IORING_ASYNC_CANCEL_ANY);
    io_uring_sqe_set_data64(sqe, kCancelTag);
    ++inflight_;
  }
  (void)io_uring_submit(&impl_->ring);
  while (inflight_ > 0) {
    io_uring_cqe* cqe = nullptr;
    int rc = io_uring_wait_cqe(&impl_->ring, &cqe);
    if (rc == -EINTR) continue;
    if (rc < 0) {
      std::fprintf(stderr, "weft: io_uring_wait_cqe failed while draining a worker's ring: %s\n",
                   std::strerror(-rc));
      std::abort();
    }
    reap();
  }
}

namespace {

// abandon() is step 4 for a waiter that leaves: true if it won the op
// (kPending -> kAbandoned; the CQE handler drops the result). False if the
// CQE came first (kDone).
bool abandon(RingOp* op) {
  int expect = RingOp::kPending;
  return op->state.compare_exchange_strong(expect, RingOp::kAbandoned, std::memory_order_acq_rel);
}

// drop_result() drops the result of an op that completed while its waiter
// is leaving anyway (the runtime unwinds it).
void drop_result(RingOp* op) {
  if (op->kind == RingOp::Kind::kOpen && op->res >= 0) ::close(op->res);
}

}  // namespace

RingResult ring_call(RingOp* op) {
  Fiber* self = current_fiber();
  if (self == nullptr) return RingResult::kNoRing;
  Ring* r = thread_ring();
  if (r == nullptr) return RingResult::kNoRing;
  // A cancelled fiber starts nothing, except a close, which must happen.
  if (op->kind != RingOp::Kind::kClose && fiber_cancelled(self)) return RingResult::kCancelled;
  if (!r->submit(op)) return RingResult::kNoRing;
  // Step 2. The ring's thread is the only one that reaps, and it is this
  // one until the fiber parks, so op->done cannot be set before the wait
  // starts; Completion handles it either way.
  absl::Status s;
  try {
    s = op->done.wait(Cancellable::kYes);
  } catch (const FiberUnwind&) {
    // The runtime unwinds the fiber (shutdown): leave; the ring's drain
    // (step 5) completes the op.
    if (!abandon(op)) drop_result(op);
    throw;
  }
  self = current_fiber();  // the fiber may have moved to another worker
  if (unwind_pending(self)) {
    // Woken by the CQE (perhaps the drain's), but the runtime unwinds the
    // fiber now: the result has no taker.
    if (!abandon(op)) drop_result(op);
    unwind_if_cancelled(self);
  }
  if (s.ok()) return RingResult::kDone;
  // Step 4.
  if (!abandon(op)) return RingResult::kDone;  // the CQE won: its result stands
  if (thread_ring() == op->ring) op->ring->cancel(op);
  return RingResult::kCancelled;
}

}  // namespace weft::internal
