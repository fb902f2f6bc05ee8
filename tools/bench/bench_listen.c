#define _GNU_SOURCE
#include "tools/bench/bench_listen.h"

#include <errno.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

static void fail(const char* prog, const char* what, const char* why) {
  fprintf(stderr, "%s: %s: %s\n", prog, what, why);
  exit(1);
}

int bench_open_listener(const char* prog, const char* host, const char* port, int sock_flags,
                        char* printed, size_t printed_size) {
  struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE};
  struct addrinfo* res = NULL;
  int rc = getaddrinfo(host, port, &hints, &res);
  if (rc != 0) {
    char where[512];
    snprintf(where, sizeof where, "%s:%s", host, port);
    fail(prog, where, gai_strerror(rc));
  }
  int fd = socket(res->ai_family, SOCK_STREAM | SOCK_CLOEXEC | sock_flags, 0);
  if (fd < 0) fail(prog, "socket", strerror(errno));
  int one = 1;
  if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) < 0) fail(prog, "SO_REUSEADDR", strerror(errno));
  if (bind(fd, res->ai_addr, res->ai_addrlen) < 0) fail(prog, "bind", strerror(errno));
  freeaddrinfo(res);
  if (listen(fd, 65535) < 0) fail(prog, "listen", strerror(errno));  // the kernel caps it at somaxconn

  struct sockaddr_storage ss;
  socklen_t len = sizeof ss;
  if (getsockname(fd, (struct sockaddr*)&ss, &len) < 0) fail(prog, "getsockname", strerror(errno));
  char h[NI_MAXHOST], p[NI_MAXSERV];
  rc = getnameinfo((struct sockaddr*)&ss, len, h, sizeof h, p, sizeof p, NI_NUMERICHOST | NI_NUMERICSERV);
  if (rc != 0) fail(prog, "getnameinfo", gai_strerror(rc));
  snprintf(printed, printed_size, ss.ss_family == AF_INET6 ? "[%s]:%s" : "%s:%s", h, p);
  return fd;
}
