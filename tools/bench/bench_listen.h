// tools/bench/bench_listen.h
//
// The listening socket of the plain-C echo baselines (raw_epoll_server,
// uring_echo_server): one implementation, so both bind, listen and report
// their address the same way.
#pragma once

#include <stddef.h>

// bench_open_listener() binds host:port (port "0": any free port) with
// SO_REUSEADDR, listens with the kernel's largest backlog, and fills
// `printed` with the bound address as HOST:PORT ([HOST]:PORT for IPv6).
// `sock_flags` is or-ed into SOCK_STREAM | SOCK_CLOEXEC (e.g.
// SOCK_NONBLOCK). On any failure it prints "PROG: what: why" to stderr and
// exits with status 1.
int bench_open_listener(const char* prog, const char* host, const char* port, int sock_flags,
                        char* printed, size_t printed_size);
