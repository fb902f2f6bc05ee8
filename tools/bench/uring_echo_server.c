// tools/bench/uring_echo_server.c
//
// An echo baseline that makes fewer system calls per message than any epoll
// server can: single-threaded, every socket operation on one io_uring.
// It answers the question of docs/benchmarks.md, "Echo on io_uring": would
// batching the socket calls into the ring pay on this machine?
//
//   uring_echo_server [--host 127.0.0.1] [--port 0] [--buffer-size 2048]
//                     [--buffers 4096] [--direct-send]
//
// It prints exactly `listening on HOST:PORT` (flushed) once it listens, and
// exits with status 3 if the kernel cannot set up the ring. On SIGINT or
// SIGTERM it prints one line of counters to stderr
// (`messages=... enters=... direct_sends=... syscalls_per_message=...`) and
// exits with status 0.
//
// --direct-send sends with send(2) as soon as a recv completes (the ring's
// send only when the socket's buffer is full): the half-way design in which
// the ring receives and the caller sends, as a fiber's write() would.
//
// How it works:
//   1. One multishot accept on the listener; each accepted socket gets
//      TCP_NODELAY and one multishot recv that picks its buffers from a
//      provided-buffer ring (the kernel chooses the buffer when data
//      arrives, so no buffer is tied to an idle connection).
//   2. A recv completion queues its buffer on the connection; the
//      connection sends its queue in order, one send in flight at a time
//      (two sends in flight on one socket may complete out of order), and
//      resends the rest of a short send.
//   3. A buffer goes back to the ring when its bytes are all sent.
//   4. Every completion that needs new work only prepares SQEs; the loop
//      submits them and waits for the next completions in one
//      io_uring_enter. With IORING_SETUP_DEFER_TASKRUN the kernel runs the
//      receive work inside that call, so the server makes one system call
//      per batch of completions, where an epoll server makes two per message
//      (recv and send) and one per batch.
//   5. A recv that ends (no IORING_CQE_F_MORE) is re-armed unless the peer
//      closed or the socket failed; out of buffers (-ENOBUFS), the
//      connection waits on a list, oldest first, and is re-armed when a
//      buffer comes back (at once if one came back earlier in the batch).
//   6. A connection closes when its recv has ended for good and no send is
//      in flight; a failed send shuts the socket down so that its recv ends.
#define _GNU_SOURCE
#include <errno.h>
#include <liburing.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include "tools/bench/bench_listen.h"
enum { kOpAccept = 1, kOpRecv, kOpSend, kOpSignal };
enum { kGroup = 0, kRingEntries = 4096 };

typedef struct Conn {
  int fd;             // -1: free
  bool recv_armed;    // a multishot recv is in flight
  bool recv_done;     // the peer closed or the socket failed: no more recvs
  bool send_busy;     // a send is in flight
  bool starved;       // on the starved list (its recv ended with -ENOBUFS)
  int32_t head;       // first queued buffer id, -1 if none
  int32_t tail;       // last queued buffer id
  uint32_t sent;      // bytes of the head buffer already sent
  int32_t next_starved;
} Conn;

static struct io_uring ring;
static struct io_uring_buf_ring* buf_ring;
static char* buffers;
static uint32_t buffer_size = 2048, buffer_count = 4096;
static uint32_t* buf_len;   // bytes received into each buffer
static int32_t* buf_next;   // the next buffer queued on the same connection
static Conn* conns;         // indexed by fd
static int max_fds;
static int32_t starved_head = -1, starved_tail = -1;  // oldest first
static uint32_t free_buffers;  // in the provided-buffer ring, as far as this thread knows
static int listen_fd, signal_fd;
static struct signalfd_siginfo siginfo;
static uint64_t messages, enters, direct_sends;
static bool direct_send;
static bool stopping;

static void die(const char* what, int err) {
  fprintf(stderr, "uring_echo_server: %s: %s\n", what, strerror(err));
  exit(1);
}

static void usage(void) {
  fprintf(stderr,
          "usage: uring_echo_server [--host 127.0.0.1] [--port 0] [--buffer-size 2048] "
          "[--buffers 4096] [--direct-send]\n");
  exit(2);
}

static uint64_t tag(int op, int fd) { return ((uint64_t)op << 32) | (uint32_t)fd; }

static struct io_uring_sqe* sqe_get(void) {
  struct io_uring_sqe* sqe = io_uring_get_sqe(&ring);
  if (sqe) return sqe;
  // The submission queue is full: hand it to the kernel and take a slot.
  ++enters;
  int r = io_uring_submit(&ring);
  if (r < 0) die("io_uring_submit", -r);
  sqe = io_uring_get_sqe(&ring);
  if (!sqe) die("io_uring_get_sqe", EBUSY);
  return sqe;
}

static void arm_accept(void) {
  struct io_uring_sqe* sqe = sqe_get();
  io_uring_prep_multishot_accept(sqe, listen_fd, NULL, NULL, SOCK_CLOEXEC);
  io_uring_sqe_set_data64(sqe, tag(kOpAccept, listen_fd));
}

static void arm_signal(void) {
  struct io_uring_sqe* sqe = sqe_get();
  io_uring_prep_read(sqe, signal_fd, &siginfo, sizeof siginfo, 0);
  io_uring_sqe_set_data64(sqe, tag(kOpSignal, signal_fd));
}

static void arm_recv(Conn* c) {
  struct io_uring_sqe* sqe = sqe_get();
  io_uring_prep_recv_multishot(sqe, c->fd, NULL, 0, 0);
  sqe->flags |= IOSQE_BUFFER_SELECT;
  sqe->buf_group = kGroup;
  io_uring_sqe_set_data64(sqe, tag(kOpRecv, c->fd));
  c->recv_armed = true;
}

static void send_head(Conn* c) {
  int32_t b = c->head;
  struct io_uring_sqe* sqe = sqe_get();
  io_uring_prep_send(sqe, c->fd, buffers + (size_t)b * buffer_size + c->sent, buf_len[b] - c->sent,
                     MSG_NOSIGNAL);
  io_uring_sqe_set_data64(sqe, tag(kOpSend, c->fd));
  c->send_busy = true;
}

static void maybe_close(Conn* c);
static void flush_direct(Conn* c);

// Step 3: the buffer goes back to the ring; a starved connection may re-arm.
static void give_back(int32_t b) {
  io_uring_buf_ring_add(buf_ring, buffers + (size_t)b * buffer_size, buffer_size, (unsigned short)b,
                        io_uring_buf_ring_mask(buffer_count), 0);
  io_uring_buf_ring_advance(buf_ring, 1);
  ++free_buffers;
  // The buffer re-arms the oldest starved connection that still reads; one
  // that failed while it waited only closes, and the next one is tried.
  while (starved_head >= 0) {
    Conn* c = &conns[starved_head];
    starved_head = c->next_starved;
    if (starved_head < 0) starved_tail = -1;
    c->starved = false;
    if (c->recv_done) {
      maybe_close(c);
      continue;
    }
    if (!c->recv_armed) arm_recv(c);
    break;
  }
}

// Step 6.
static void maybe_close(Conn* c) {
  // A connection on the starved list stays open until give_back() takes it
  // off: the list is linked through fds, which a new socket could reuse.
  if (c->fd < 0 || c->recv_armed || c->send_busy || !c->recv_done || c->starved) return;
  while (c->head >= 0) {
    int32_t b = c->head;
    c->head = buf_next[b];
    give_back(b);
  }
  close(c->fd);
  c->fd = -1;
}

static void on_accept(struct io_uring_cqe* cqe) {
  if (!(cqe->flags & IORING_CQE_F_MORE) && !stopping) arm_accept();
  if (cqe->res < 0) {
    if (cqe->res != -ECANCELED) fprintf(stderr, "uring_echo_server: accept: %s\n", strerror(-cqe->res));
    return;
  }
  int fd = cqe->res;
  if (fd >= max_fds) {
    fprintf(stderr, "uring_echo_server: fd %d above the table's %d\n", fd, max_fds);
    close(fd);
    return;
  }
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  Conn* c = &conns[fd];
  *c = (Conn){.fd = fd, .head = -1, .tail = -1, .next_starved = -1};
  arm_recv(c);
}

static void on_recv(Conn* c, struct io_uring_cqe* cqe) {
  bool more = cqe->flags & IORING_CQE_F_MORE;
  if (!more) c->recv_armed = false;
  if (cqe->res > 0) {
    // Step 2.
    int32_t b = (int32_t)(cqe->flags >> IORING_CQE_BUFFER_SHIFT);
    --free_buffers;
    buf_len[b] = (uint32_t)cqe->res;
    buf_next[b] = -1;
    if (c->head < 0) {
      c->head = c->tail = b;
      c->sent = 0;
    } else {
      buf_next[c->tail] = b;
      c->tail = b;
    }
    ++messages;
    if (!c->send_busy) {
      if (direct_send) {
        flush_direct(c);
      } else {
        send_head(c);
      }
    }
    if (!more && !c->recv_done) arm_recv(c);
    return;
  }
  // Step 5.
  if (cqe->res == -ENOBUFS) {
    // Buffers may have come back since the kernel found none (completions
    // of this batch that were handled first): then re-arm at once, as no
    // later give_back() might come to do it.
    if (!more && free_buffers > 0) {
      arm_recv(c);
    } else if (!more && !c->starved) {
      c->starved = true;
      c->next_starved = -1;
      if (starved_tail >= 0) {
        conns[starved_tail].next_starved = c->fd;
      } else {
        starved_head = c->fd;
      }
      starved_tail = c->fd;
    }
    return;
  }
  c->recv_done = true;  // 0: the peer closed; < 0: the socket failed
  maybe_close(c);
}

// Step 6: a send failed: no more sends; the shutdown ends the recv, and
// the connection closes when it has.
static void fail_sends(Conn* c) {
  while (c->head >= 0) {
    int32_t b = c->head;
    c->head = buf_next[b];
    give_back(b);
  }
  shutdown(c->fd, SHUT_RDWR);
  c->recv_done = true;
  maybe_close(c);
}

// --direct-send: the queue goes out through send(2) at once, as an epoll
// server (or a weft fiber) would send it; the ring's send is only the
// fallback when the socket's buffer is full.
static void flush_direct(Conn* c) {
  while (c->head >= 0) {
    int32_t b = c->head;
    ssize_t n = send(c->fd, buffers + (size_t)b * buffer_size + c->sent, buf_len[b] - c->sent,
                     MSG_NOSIGNAL | MSG_DONTWAIT);
    ++direct_sends;
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      send_head(c);
      return;
    }
    if (n < 0) {
      fail_sends(c);
      return;
    }
    c->sent += (uint32_t)n;
    if (c->sent < buf_len[b]) continue;
    c->head = buf_next[b];
    c->sent = 0;
    give_back(b);
  }
}

static void on_send(Conn* c, struct io_uring_cqe* cqe) {
  c->send_busy = false;
  if (cqe->res < 0) {
    fail_sends(c);
    return;
  }
  int32_t b = c->head;
  c->sent += (uint32_t)cqe->res;
  if (c->sent < buf_len[b]) {
    send_head(c);  // the rest of a short send
    return;
  }
  c->head = buf_next[b];
  c->sent = 0;
  give_back(b);
  if (c->head < 0) {
    maybe_close(c);
  } else if (direct_send) {
    flush_direct(c);
  } else {
    send_head(c);
  }
}

static uint32_t parse_count(const char* value, uint32_t lo, uint32_t hi) {
  char* end = NULL;
  unsigned long v = strtoul(value, &end, 10);
  if (!end || *end || v < lo || v > hi) usage();
  return (uint32_t)v;
}

int main(int argc, char** argv) {
  const char* host = "127.0.0.1";
  const char* port = "0";
  for (int i = 1; i < argc; ++i) {
    const char* name = argv[i];
    if (strcmp(name, "--direct-send") == 0) {
      direct_send = true;
      continue;
    }
    const char* eq = strchr(name, '=');
    size_t name_len = eq ? (size_t)(eq - name) : strlen(name);
    const char* value = eq ? eq + 1 : (i + 1 < argc ? argv[++i] : NULL);
    if (!value) usage();
    if (name_len == 6 && strncmp(name, "--host", 6) == 0) {
      host = value;
    } else if (name_len == 6 && strncmp(name, "--port", 6) == 0) {
      port = value;
    } else if (name_len == 13 && strncmp(name, "--buffer-size", 13) == 0) {
      buffer_size = parse_count(value, 64, 1u << 20);
    } else if (name_len == 9 && strncmp(name, "--buffers", 9) == 0) {
      buffer_count = parse_count(value, 2, 32768);  // a power of two: checked below
    } else {
      usage();
    }
  }
  if (buffer_count & (buffer_count - 1)) usage();

  struct rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
  }
  if (getrlimit(RLIMIT_NOFILE, &rl) != 0) die("getrlimit", errno);
  max_fds = rl.rlim_cur > 1u << 20 ? 1 << 20 : (int)rl.rlim_cur;
  conns = calloc((size_t)max_fds, sizeof *conns);
  buf_len = calloc(buffer_count, sizeof *buf_len);
  buf_next = calloc(buffer_count, sizeof *buf_next);
  buffers = malloc((size_t)buffer_count * buffer_size);
  if (!conns || !buf_len || !buf_next || !buffers) die("calloc", ENOMEM);
  for (int i = 0; i < max_fds; ++i) conns[i].fd = -1;
  signal(SIGPIPE, SIG_IGN);

  sigset_t mask;
  sigemptyset(&mask);
  sigaddset(&mask, SIGINT);
  sigaddset(&mask, SIGTERM);
  if (sigprocmask(SIG_BLOCK, &mask, NULL) < 0) die("sigprocmask", errno);
  signal_fd = signalfd(-1, &mask, SFD_CLOEXEC);
  if (signal_fd < 0) die("signalfd", errno);

  struct io_uring_params params = {
      .flags = IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN | IORING_SETUP_SUBMIT_ALL,
  };
  int r = io_uring_queue_init_params(kRingEntries, &ring, &params);
  if (r < 0) {
    // Exit status 3: no ring of this kind here (it needs Linux 6.1), which
    // echo_servers_test.sh reports as a skip rather than a failure.
    fprintf(stderr, "uring_echo_server: io_uring_queue_init_params (needs Linux 6.1): %s\n", strerror(-r));
    exit(3);
  }
  io_uring_register_ring_fd(&ring);  // an optimisation only: failure is fine

  // The provided-buffer ring: its entries must sit in page-aligned memory.
  size_t ring_bytes = buffer_count * sizeof(struct io_uring_buf);
  void* mem = mmap(NULL, ring_bytes, PROT_READ | PROT_WRITE, MAP_ANONYMOUS | MAP_PRIVATE, -1, 0);
  if (mem == MAP_FAILED) die("mmap", errno);
  buf_ring = mem;
  struct io_uring_buf_reg reg = {.ring_addr = (uint64_t)(uintptr_t)mem, .ring_entries = buffer_count,
                                 .bgid = kGroup};
  r = io_uring_register_buf_ring(&ring, &reg, 0);
  if (r < 0) die("io_uring_register_buf_ring", -r);
  io_uring_buf_ring_init(buf_ring);
  for (uint32_t b = 0; b < buffer_count; ++b) {
    io_uring_buf_ring_add(buf_ring, buffers + (size_t)b * buffer_size, buffer_size, (unsigned short)b,
                          io_uring_buf_ring_mask(buffer_count), (int)b);
  }
  io_uring_buf_ring_advance(buf_ring, (int)buffer_count);
  free_buffers = buffer_count;

  char printed[NI_MAXHOST + NI_MAXSERV + 4];
  listen_fd = bench_open_listener("uring_echo_server", host, port, 0, printed, sizeof printed);
  arm_accept();
  arm_signal();
  printf("listening on %s\n", printed);
  fflush(stdout);

  while (!stopping) {
    // Step 4: submit what the last batch prepared, wait for one completion.
    ++enters;
    r = io_uring_submit_and_wait(&ring, 1);
    if (r < 0 && r != -EINTR) die("io_uring_submit_and_wait", -r);
    unsigned head, seen = 0;
    struct io_uring_cqe* cqe;
    io_uring_for_each_cqe(&ring, head, cqe) {
      ++seen;
      uint64_t t = io_uring_cqe_get_data64(cqe);
      int op = (int)(t >> 32), fd = (int)(uint32_t)t;
      switch (op) {
        case kOpAccept:
          on_accept(cqe);
          break;
        case kOpRecv:
          on_recv(&conns[fd], cqe);
          break;
        case kOpSend:
          on_send(&conns[fd], cqe);
          break;
        case kOpSignal:
          if (cqe->res == (int)sizeof siginfo) {
            stopping = true;
          } else {
            arm_signal();
          }
          break;
        default:
          break;
      }
    }
    io_uring_cq_advance(&ring, seen);
  }
  fprintf(stderr, "messages=%llu enters=%llu direct_sends=%llu syscalls_per_message=%.4f\n",
          (unsigned long long)messages, (unsigned long long)enters, (unsigned long long)direct_sends,
          messages ? (double)(enters + direct_sends) / (double)messages : 0.0);
  return 0;
}
