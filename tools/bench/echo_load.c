// tools/bench/echo_load.c
//
// Load generator for the echo benchmark: plain C, one thread, edge-triggered
// epoll. tools/bench/net_bench.sh drives raw_epoll_server and weft's
// echo_server with it, back to back in the same run.
//
//   echo_load --host 127.0.0.1 --port P --connections 100 --size 64
//             --duration 5 --warmup 1 [--server-pid PID]
//
// Each connection plays ping-pong: it sends `size` bytes, waits until
// `size` bytes have come back and match what it sent, then sends the next
// message. Every message's bytes depend on the connection and the message
// number, so a server that mixes up connections or replays a message is
// caught. Latency is measured from the first byte sent to the last byte
// received, into a log-linear histogram (1/32 relative resolution); nothing
// is allocated per message.
//
// Output: one line on stdout, after `warmup` seconds unmeasured and
// `duration` seconds measured:
//   msgs_per_sec=<f> p50_us=<f> p99_us=<f> p999_us=<f> errors=<n> connections=<n>
// With --server-pid, the line goes on with the server's CPU time (user +
// system, all its threads, from /proc/PID/stat) over the measured window
// and the messages per server CPU-second (this load generator saturates
// its own core, so the rate alone hides how much work the server spends):
//   ... server_cpu_s=<f> msgs_per_server_cpu_s=<f>
//
// Exit status: 1 (at once, with a message on stderr) on a connect failure or
// on content that does not match; 2 after printing the line if any
// connection failed during the run (reset or closed by the server) or no
// message completed at all; 0 otherwise.
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
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
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

enum {
  kRxSize = 65536,
  kMaxEvents = 1024,
  // Histogram of nanoseconds: values below 2*kSub are exact; above, each
  // power of two is split into kSub buckets.
  kSubBits = 5,
  kSub = 1 << kSubBits,
  kBuckets = (64 - kSubBits) * kSub,
};

// One client connection; epoll's data.ptr points at it.
typedef struct Conn {
  int fd;
  uint32_t id;
  uint64_t seq;     // number of the message in flight
  uint32_t sent;    // bytes of it written so far
  uint32_t recvd;   // bytes of it read back so far
  uint32_t off;     // it is pattern[off, off + size)
  int64_t t_start;  // when its first byte was written
  bool dead;
} Conn;

static uint32_t g_size = 64;
static uint8_t* g_pattern;  // g_size + 256 bytes; pattern[j] = 7 * j
static uint8_t g_rx[kRxSize];
static uint64_t g_hist[kBuckets];
static uint64_t g_msgs;
static int64_t g_errors;
static bool g_measuring;

static int64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static int bucket_of(uint64_t v) {
  if (v < 2 * kSub) return (int)v;
  int shift = 63 - __builtin_clzll(v) - kSubBits;  // v >> shift is in [kSub, 2*kSub)
  return shift * kSub + (int)(v >> shift);
}

// bucket_mid() is the middle of bucket b's range of values.
static double bucket_mid(int b) {
  if (b < 2 * kSub) return b;
  int shift = b / kSub - 1;
  uint64_t mant = (uint64_t)(b - shift * kSub);
  return ((double)(mant << shift) + (double)((mant + 1) << shift)) / 2.0;
}

// percentile_us() is the q-quantile (0 < q < 1) of the histogram, in us.
static double percentile_us(uint64_t total, double q) {
  if (total == 0) return 0;
  double want = q * (double)total;
  uint64_t rank = (uint64_t)want;  // rounded up, at least 1
  if ((double)rank < want || rank == 0) ++rank;
  uint64_t seen = 0;
  for (int b = 0; b < kBuckets; ++b) {
    seen += g_hist[b];
    if (seen >= rank) return bucket_mid(b) / 1000.0;
  }
  return 0;
}

static void usage(void) {
  fprintf(stderr,
          "usage: echo_load --host 127.0.0.1 --port P [--connections 100] [--size 64]\n"
          "                 [--duration 5] [--warmup 1] [--server-pid PID]\n");
  exit(2);
}

// message_offset() picks where in the pattern message `seq` of connection
// `id` starts, so consecutive messages and neighbouring connections differ.
static uint32_t message_offset(uint32_t id, uint64_t seq) {
  return (uint32_t)((id * 131u + seq * 31u + 1u) & 255u);
}

static void conn_fail(Conn* c, const char* what, int err) {
  if (c->dead) return;
  fprintf(stderr, "echo_load: connection %u: %s: %s\n", c->id, what, err ? strerror(err) : "closed by peer");
  ++g_errors;
  c->dead = true;
  close(c->fd);  // also removes it from the epoll set
}

// try_send() writes as much of the message in flight as the socket takes.
static void try_send(Conn* c) {
  while (!c->dead && c->sent < g_size) {
    ssize_t w = send(c->fd, g_pattern + c->off + c->sent, g_size - c->sent, MSG_NOSIGNAL);
    if (w > 0) {
      c->sent += (uint32_t)w;
    } else if (w < 0 && errno == EINTR) {
      continue;
    } else if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      return;  // EPOLLOUT resumes it
    } else {
      conn_fail(c, "send", w < 0 ? errno : 0);
    }
  }
}

static void start_message(Conn* c, int64_t now) {
  c->sent = c->recvd = 0;
  c->off = message_offset(c->id, c->seq);
  c->t_start = now;
  try_send(c);
}

static void on_event(Conn* c) {
  try_send(c);
  while (!c->dead) {
    ssize_t n = recv(c->fd, g_rx, kRxSize, 0);
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno != EAGAIN && errno != EWOULDBLOCK) conn_fail(c, "recv", errno);
      return;
    }
    if (n == 0) {
      conn_fail(c, "recv", 0);
      return;
    }
    if (c->recvd + (uint64_t)n > c->sent) {
      fprintf(stderr, "echo_load: connection %u message %llu: got %u bytes back, only %u sent\n", c->id,
              (unsigned long long)c->seq, c->recvd + (uint32_t)n, c->sent);
      exit(1);
    }
    const uint8_t* want = g_pattern + c->off + c->recvd;
    if (memcmp(g_rx, want, (size_t)n) != 0) {
      size_t k = 0;
      while (g_rx[k] == want[k]) ++k;
      fprintf(stderr, "echo_load: connection %u message %llu byte %u: got 0x%02x, want 0x%02x\n", c->id,
              (unsigned long long)c->seq, c->recvd + (uint32_t)k, g_rx[k], want[k]);
      exit(1);
    }
    c->recvd += (uint32_t)n;
    if (c->recvd == g_size) {
      int64_t now = now_ns();
      if (g_measuring) {
        ++g_hist[bucket_of((uint64_t)(now - c->t_start))];
        ++g_msgs;
      }
      ++c->seq;
      start_message(c, now);
    }
  }
}

// server_cpu_ticks() is the utime + stime of process `pid` in clock ticks,
// or -1 if /proc/PID/stat cannot be read.
static long long server_cpu_ticks(long pid) {
  char path[64], buf[1024];
  snprintf(path, sizeof path, "/proc/%ld/stat", pid);
  FILE* f = fopen(path, "r");
  if (f == NULL) return -1;
  size_t n = fread(buf, 1, sizeof buf - 1, f);
  fclose(f);
  buf[n] = '\0';
  // Field 2 (comm) may hold spaces: fields 3.. start after the last ')'.
  const char* p = strrchr(buf, ')');
  if (p == NULL) return -1;
  unsigned long long utime = 0, stime = 0;
  // state ppid pgrp session tty_nr tpgid flags minflt cminflt majflt cmajflt utime stime
  if (sscanf(p + 1, " %*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &utime, &stime) != 2) return -1;
  return (long long)(utime + stime);
}

static double parse_double(const char* name, const char* v) {
  char* end;
  double d = strtod(v, &end);
  if (*v == '\0' || *end != '\0' || d < 0) {
    fprintf(stderr, "echo_load: bad value for %s: %s\n", name, v);
    exit(2);
  }
  return d;
}

int main(int argc, char** argv) {
  const char* host = "127.0.0.1";
  const char* port = NULL;
  long connections = 100;
  double duration = 5, warmup = 1;
  long server_pid = 0;
  for (int i = 1; i < argc; ++i) {
    char name[64];
    const char* value;
    const char* eq = strchr(argv[i], '=');
    if (eq != NULL) {
      snprintf(name, sizeof name, "%.*s", (int)(eq - argv[i]), argv[i]);
      value = eq + 1;
    } else if (i + 1 < argc) {
      snprintf(name, sizeof name, "%s", argv[i]);
      value = argv[++i];
    } else {
      usage();
    }
    if (strcmp(name, "--host") == 0) {
      host = value;
    } else if (strcmp(name, "--port") == 0) {
      port = value;
    } else if (strcmp(name, "--connections") == 0) {
      connections = (long)parse_double(name, value);
    } else if (strcmp(name, "--size") == 0) {
      g_size = (uint32_t)parse_double(name, value);
    } else if (strcmp(name, "--duration") == 0) {
      duration = parse_double(name, value);
    } else if (strcmp(name, "--warmup") == 0) {
      warmup = parse_double(name, value);
    } else if (strcmp(name, "--server-pid") == 0) {
      server_pid = (long)parse_double(name, value);
    } else {
      usage();
    }
  }
  if (port == NULL || connections < 1 || connections > 1000000 || g_size < 1 || g_size > (64u << 20) ||
      duration <= 0) {
    usage();
  }

  struct rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
  }
  signal(SIGPIPE, SIG_IGN);

  g_pattern = malloc(g_size + 256);
  Conn* conns = calloc((size_t)connections, sizeof(Conn));
  if (g_pattern == NULL || conns == NULL) {
    fprintf(stderr, "echo_load: out of memory\n");
    return 1;
  }
  for (uint32_t j = 0; j < g_size + 256; ++j) g_pattern[j] = (uint8_t)(7 * j);

  struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
  struct addrinfo* res = NULL;
  int rc = getaddrinfo(host, port, &hints, &res);
  if (rc != 0) {
    fprintf(stderr, "echo_load: %s:%s: %s\n", host, port, gai_strerror(rc));
    return 1;
  }

  // Connect all first (blocking: on loopback each connect completes when
  // the SYN is answered, whether or not the server has accepted yet).
  int ep = epoll_create1(EPOLL_CLOEXEC);
  if (ep < 0) {
    perror("echo_load: epoll_create1");
    return 1;
  }
  for (long i = 0; i < connections; ++i) {
    Conn* c = &conns[i];
    c->id = (uint32_t)i;
    c->fd = socket(res->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (c->fd < 0) {
      fprintf(stderr, "echo_load: socket #%ld: %s\n", i, strerror(errno));
      return 1;
    }
    int r;
    do {
      r = connect(c->fd, res->ai_addr, res->ai_addrlen);
    } while (r < 0 && errno == EINTR);
    if (r < 0) {
      fprintf(stderr, "echo_load: connect #%ld to %s:%s: %s\n", i, host, port, strerror(errno));
      return 1;
    }
    int one = 1;
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    int fl = fcntl(c->fd, F_GETFL);
    if (fl < 0 || fcntl(c->fd, F_SETFL, fl | O_NONBLOCK) < 0) {
      perror("echo_load: fcntl");
      return 1;
    }
    struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT | EPOLLET, .data.ptr = c};
    if (epoll_ctl(ep, EPOLL_CTL_ADD, c->fd, &ev) < 0) {
      perror("echo_load: epoll_ctl");
      return 1;
    }
  }
  freeaddrinfo(res);

  int64_t t0 = now_ns();
  int64_t measure_from = t0 + (int64_t)(warmup * 1e9);
  int64_t measure_to = measure_from + (int64_t)(duration * 1e9);
  g_measuring = warmup == 0;
  int64_t measured_since = t0;
  long long cpu_from = server_pid > 0 ? server_cpu_ticks(server_pid) : -1;
  for (long i = 0; i < connections; ++i) start_message(&conns[i], t0);

  static struct epoll_event events[kMaxEvents];
  int64_t now = t0;
  for (;;) {
    now = now_ns();
    if (!g_measuring && now >= measure_from) {
      memset(g_hist, 0, sizeof g_hist);
      g_msgs = 0;
      g_measuring = true;
      measured_since = now;
      if (server_pid > 0) cpu_from = server_cpu_ticks(server_pid);
    }
    if (now >= measure_to) break;
    int64_t next = g_measuring ? measure_to : measure_from;
    int timeout_ms = (int)((next - now) / 1000000) + 1;
    int n = epoll_wait(ep, events, kMaxEvents, timeout_ms);
    if (n < 0) {
      if (errno == EINTR) continue;
      perror("echo_load: epoll_wait");
      return 1;
    }
    for (int i = 0; i < n; ++i) on_event(events[i].data.ptr);
  }

  long long cpu_to = server_pid > 0 ? server_cpu_ticks(server_pid) : -1;
  double secs = (double)(now - measured_since) / 1e9;
  printf("msgs_per_sec=%.1f p50_us=%.2f p99_us=%.2f p999_us=%.2f errors=%lld connections=%ld",
         (double)g_msgs / secs, percentile_us(g_msgs, 0.50), percentile_us(g_msgs, 0.99),
         percentile_us(g_msgs, 0.999), (long long)g_errors, connections);
  if (server_pid > 0) {
    if (cpu_from < 0 || cpu_to < 0) {
      fprintf(stderr, "echo_load: cannot read /proc/%ld/stat\n", server_pid);
      printf(" server_cpu_s=- msgs_per_server_cpu_s=-");
    } else {
      double cpu = (double)(cpu_to - cpu_from) / (double)sysconf(_SC_CLK_TCK);
      printf(" server_cpu_s=%.2f msgs_per_server_cpu_s=%.1f", cpu, cpu > 0 ? (double)g_msgs / cpu : 0.0);
    }
  }
  printf("\n");
  fflush(stdout);
  if (g_msgs == 0) fprintf(stderr, "echo_load: no message completed in %.1f s\n", secs);
  return g_errors > 0 || g_msgs == 0 ? 2 : 0;
}
