// runtime/internal/io_messages.h
//
// The messages a worker's inbox carries, and IoSource, the interface of
// anything registered with a worker's poller (net's SocketCore). A worker
// drains its inbox in poll_once(); senders signal its eventfd if it may be
// blocked in epoll_wait. NOT for users: net/ reaches these through
// Scheduler::io_call().
#pragma once

#include <atomic>
#include <cstdint>

namespace weft::internal {

struct Fiber;
struct Completion;

enum class MessageKind : uint8_t {
  kStub,                 // the inbox's internal stub node
  kSpawn,                // run a new fiber on this worker (Fiber::msg)
  kWake,                 // run a woken fiber on this worker (Fiber::msg)
  kShutdown,             // the runtime is stopping: leave the loop
  kRegisterSocket,       // IoMessage: add an fd to this worker's poller
  kModifySocket,         // IoMessage: change the interest of a registration
  kCloseSocket,          // IoMessage: remove a registration
  kSetSocketTimeout,     // IoMessage: arm a registration's timer
  kCancelSocketTimeout,  // IoMessage: disarm a registration's timer
};

struct WorkerMessage {
  std::atomic<WorkerMessage*> inbox_next{nullptr};
  MessageKind kind = MessageKind::kStub;
  Fiber* fiber = nullptr;  // kSpawn, kWake
};

// IoSource: something registered with one worker's poller. Its callbacks
// run on whichever thread serves that poller (the owning worker, or a peer
// that serves it while the owner is stuck; never two at once), on a fiber
// stack or a worker's own stack. They must not suspend, and should only
// record state and wake fibers.
class IoSource {
 public:
  virtual ~IoSource() = default;
  // on_io_events() receives the epoll events of this registration.
  virtual void on_io_events(uint32_t events) = 0;
  // on_io_timeout() reports that timer `index` (0 or 1) set with
  // kSetSocketTimeout expired.
  virtual void on_io_timeout(int index) = 0;

  // wake_hint() is memory that on_io_events() is likely to touch first
  // beyond this object (for a socket: its last reader to park), for the
  // dispatch loop to prefetch a few events ahead (worker_io.cc, step 3);
  // nullptr: none. Only a hint: it may be stale, and is never
  // dereferenced, only prefetched.
  const void* wake_hint() const { return wake_hint_.load(std::memory_order_relaxed); }

 protected:
  void set_wake_hint(const void* p) { wake_hint_.store(p, std::memory_order_relaxed); }

 private:
  std::atomic<const void*> wake_hint_{nullptr};
};

// IoToken identifies one registration: slot index and generation. Events
// carry it in epoll_data; an event whose generation no longer matches its
// slot (the fd was closed or moved) is dropped.
using IoToken = uint64_t;
inline constexpr IoToken kNoIoToken = ~uint64_t{0};
inline constexpr int kIoTimers = 2;

struct IoMessage : WorkerMessage {
  IoSource* source = nullptr;
  int fd = -1;
  uint32_t events = 0;
  IoToken token = kNoIoToken;     // in: the registration (all but register)
  int timer_index = 0;            // kSet/CancelSocketTimeout
  int64_t deadline_nanos = 0;     // kSetSocketTimeout, monotonic clock
  Completion* done = nullptr;     // signalled with the result, may be null
};

}  // namespace weft::internal
