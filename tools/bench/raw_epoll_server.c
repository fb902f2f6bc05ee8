// tools/bench/raw_epoll_server.c
//
// The same-run baseline for weft's network examples: a plain C,
// single-threaded, edge-triggered epoll server with no runtime under it.
// tools/bench/net_bench.sh runs it back to back with weft's echo_server,
// http_hello and the same load generator, and prints the ratio.
//
//   raw_epoll_server --mode echo|http [--short-read] --host 127.0.0.1 --port 0
//
// It prints exactly `listening on HOST:PORT` (flushed) once it listens, and
// exits with status 0 on SIGINT or SIGTERM.
//
// Modes:
//   echo  writes every byte it reads back to the same connection.
//   http  HTTP/1.1 keep-alive: every request (everything up to and including
//         "\r\n\r\n"; request bodies are not supported) is answered with a
//         fixed 200 response whose body is "Hello, World!". Pipelined
//         requests are answered in order, batched into one write.
//
// What keeps it a fair (efficient) baseline:
//   1. One epoll_ctl per connection: each socket is registered once for
//      EPOLLIN | EPOLLOUT | EPOLLET and never modified. With edge triggering
//      a permanent EPOLLOUT costs nothing until a write has hit a full send
//      buffer, which is exactly when we want it.
//   2. Each connection owns two fixed buffers, allocated once at accept; no
//      allocation per message. Echo reads straight into the output buffer
//      and writes from it.
//   3. Reads go on until EAGAIN (edge triggering requires it), unless output
//      is pending: then the connection stops reading (back-pressure) and
//      resumes after EPOLLOUT drains the output.
//      With --short-read (echo mode), a read that returns less than the
//      buffer's size is taken as the end of the readable data, as weft's
//      sockets do: the connection waits for the next edge instead of paying
//      a read() that would fail with EAGAIN. That is safe with EPOLLET
//      because data that arrives after the short read raises a new edge.
//   4. TCP_NODELAY on every accepted socket; SIGPIPE is ignored.
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include "tools/bench/bench_listen.h"
enum {
  kInSize = 16384,   // http: unparsed request bytes
  kOutSize = 16384,  // pending output (echo reads into it too)
  kMaxEvents = 512,
};

static const char kResponse[] =
    "HTTP/1.1 200 OK\r\n"
    "Content-Length: 13\r\n"
    "Content-Type: text/plain\r\n"
    "\r\n"
    "Hello, World!";
enum { kResponseLen = sizeof(kResponse) - 1 };

typedef enum { kModeEcho, kModeHttp } Mode;

// One accepted connection. Lives from accept to close; epoll's data.ptr
// points at it.
typedef struct Conn {
  int fd;
  uint32_t in_len;   // http: in[0, in_len) holds unparsed request bytes
  uint32_t scan;     // http: no request ends before in[scan]
  uint32_t out_off;  // output still to write: out[out_off, out_len)
  uint32_t out_len;
  char in[kInSize];
  char out[kOutSize];
} Conn;

// Tags for the two non-connection fds in the epoll set.
static char listener_tag;
static char signal_tag;

// --short-read: a short read ends the read loop (see 3. above).
static bool short_read;

static void die(const char* what) {
  fprintf(stderr, "raw_epoll_server: %s: %s\n", what, strerror(errno));
  exit(1);
}

static void usage(void) {
  fprintf(stderr, "usage: raw_epoll_server [--mode echo|http] [--short-read] [--host 127.0.0.1] [--port 0]\n");
  exit(2);
}

// flush() writes pending output. Returns 1 when all is written, 0 when the
// socket's send buffer is full (EPOLLOUT will call again), -1 on error.
static int flush(Conn* c) {
  while (c->out_off < c->out_len) {
    ssize_t w = write(c->fd, c->out + c->out_off, c->out_len - c->out_off);
    if (w > 0) {
      c->out_off += (uint32_t)w;
    } else if (w < 0 && errno == EINTR) {
      continue;
    } else if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      return 0;
    } else {
      return -1;
    }
  }
  c->out_off = c->out_len = 0;
  return 1;
}

// echo_on_event() handles readiness for an echo connection; false = close it.
static bool echo_on_event(Conn* c) {
  int f = flush(c);
  if (f <= 0) return f == 0;
  for (;;) {
    ssize_t n = read(c->fd, c->out, kOutSize);
    if (n > 0) {
      c->out_len = (uint32_t)n;
      f = flush(c);
      if (f <= 0) return f == 0;  // back-pressure: resume after EPOLLOUT
      if (short_read && n < kOutSize) return true;  // the next edge brings more
    } else if (n == 0) {
      return false;
    } else if (errno == EINTR) {
      continue;
    } else {
      return errno == EAGAIN || errno == EWOULDBLOCK;
    }
  }
}

// http_parse() answers every complete request in c->in while the responses
// fit in c->out, then drops the answered requests from c->in.
static void http_parse(Conn* c) {
  uint32_t pos = 0;  // start of the first unanswered request
  while (c->out_len + kResponseLen <= kOutSize) {
    uint32_t from = c->scan > pos ? c->scan : pos;
    const char* end = memmem(c->in + from, c->in_len - from, "\r\n\r\n", 4);
    if (end == NULL) {
      // A terminator may straddle the end: rescan the last 3 bytes later.
      c->scan = c->in_len >= pos + 3 ? c->in_len - 3 : pos;
      break;
    }
    memcpy(c->out + c->out_len, kResponse, kResponseLen);
    c->out_len += kResponseLen;
    pos = (uint32_t)(end - c->in) + 4;
    c->scan = pos;
  }
  if (pos > 0) {
    memmove(c->in, c->in + pos, c->in_len - pos);
    c->in_len -= pos;
    c->scan -= pos;
  }
}

// http_on_event() handles readiness for an http connection; false = close it.
static bool http_on_event(Conn* c) {
  for (;;) {
    int f = flush(c);
    if (f <= 0) return f == 0;  // back-pressure: resume after EPOLLOUT
    http_parse(c);
    if (c->out_len > 0) continue;  // answered buffered requests: write them
    if (c->in_len == kInSize) return false;  // a request larger than in[]
    ssize_t n = read(c->fd, c->in + c->in_len, kInSize - c->in_len);
    if (n > 0) {
      c->in_len += (uint32_t)n;
    } else if (n == 0) {
      return false;
    } else if (errno == EINTR) {
      continue;
    } else {
      return errno == EAGAIN || errno == EWOULDBLOCK;
    }
  }
}

static void accept_all(int ep, int lfd) {
  for (;;) {
    int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) {
      if (errno == EINTR || errno == ECONNABORTED) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) return;
      if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
        // Out of fds: the rest wait in the backlog until the next connection.
        fprintf(stderr, "raw_epoll_server: accept4: %s\n", strerror(errno));
        return;
      }
      die("accept4");
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    Conn* c = malloc(sizeof *c);
    if (c == NULL) die("malloc");
    c->fd = fd;
    c->in_len = c->scan = c->out_off = c->out_len = 0;
    struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT | EPOLLET, .data.ptr = c};
    if (epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) < 0) die("epoll_ctl");
  }
}

int main(int argc, char** argv) {
  Mode mode = kModeEcho;
  const char* host = "127.0.0.1";
  const char* port = "0";
  for (int i = 1; i < argc; ++i) {
    const char* name = argv[i];
    const char* value = NULL;
    if (strcmp(name, "--short-read") == 0) {
      short_read = true;
      continue;
    }
    const char* eq = strchr(name, '=');
    size_t name_len = eq ? (size_t)(eq - name) : strlen(name);
    if (eq) {
      value = eq + 1;
    } else if (i + 1 < argc) {
      value = argv[++i];
    } else {
      usage();
    }
    if (name_len == 6 && strncmp(name, "--mode", 6) == 0) {
      if (strcmp(value, "echo") == 0) {
        mode = kModeEcho;
      } else if (strcmp(value, "http") == 0) {
        mode = kModeHttp;
      } else {
        usage();
      }
    } else if (name_len == 6 && strncmp(name, "--host", 6) == 0) {
      host = value;
    } else if (name_len == 6 && strncmp(name, "--port", 6) == 0) {
      port = value;
    } else {
      usage();
    }
  }

  // As many fds as the hard limit allows (one per connection).
  struct rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
  }
  signal(SIGPIPE, SIG_IGN);

  // SIGINT and SIGTERM arrive through a signalfd in the epoll set.
  sigset_t mask;
  sigemptyset(&mask);
  sigaddset(&mask, SIGINT);
  sigaddset(&mask, SIGTERM);
  if (sigprocmask(SIG_BLOCK, &mask, NULL) < 0) die("sigprocmask");
  int sfd = signalfd(-1, &mask, SFD_NONBLOCK | SFD_CLOEXEC);
  if (sfd < 0) die("signalfd");

  char printed[NI_MAXHOST + NI_MAXSERV + 4];
  int lfd = bench_open_listener("raw_epoll_server", host, port, SOCK_NONBLOCK, printed, sizeof printed);
  int ep = epoll_create1(EPOLL_CLOEXEC);
  if (ep < 0) die("epoll_create1");
  struct epoll_event ev = {.events = EPOLLIN | EPOLLET, .data.ptr = &listener_tag};
  if (epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &ev) < 0) die("epoll_ctl listener");
  ev = (struct epoll_event){.events = EPOLLIN, .data.ptr = &signal_tag};
  if (epoll_ctl(ep, EPOLL_CTL_ADD, sfd, &ev) < 0) die("epoll_ctl signalfd");

  printf("listening on %s\n", printed);
  fflush(stdout);

  struct epoll_event events[kMaxEvents];
  for (;;) {
    int n = epoll_wait(ep, events, kMaxEvents, -1);
    if (n < 0) {
      if (errno == EINTR) continue;
      die("epoll_wait");
    }
    for (int i = 0; i < n; ++i) {
      void* p = events[i].data.ptr;
      if (p == &listener_tag) {
        accept_all(ep, lfd);
      } else if (p == &signal_tag) {
        // Connections are left to exit(); the kernel closes their fds.
        close(lfd);
        return 0;
      } else {
        Conn* c = p;
        bool keep = mode == kModeEcho ? echo_on_event(c) : http_on_event(c);
        if (!keep) {
          close(c->fd);  // also removes it from the epoll set
          free(c);
        }
      }
    }
  }
}
