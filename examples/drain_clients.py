#!/usr/bin/env python3
"""Clients for the drain tests: N connections caught mid-request by SIGTERM.

  drain_clients.py PROTO PORT N DIR

Every client connects and proves the server took the connection (echo:
the first part's echo comes back; http and resp: a whole request is
answered first), then sends the first part of a request. Then the script creates DIR/ready and waits for DIR/go, sends
the rest of each request and checks each full answer. It prints
"clients: N/N answered" and exits 0 only if every answer was complete.

PROTO: echo (echo_server), http (http_hello), resp (resp_server).
"""
import os
import socket
import sys
import time

proto, port, n, workdir = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]

PARTS = {
    "echo": (b"first half of the message, ", b"and the second half\n"),
    "http": (b"GET /drain HTTP/1.1\r\nHost: loca", b"lhost\r\nUser-Agent: drain\r\n\r\n"),
    "resp": (b"*3\r\n$3\r\nSET\r\n$5\r\ndrain\r\n$", b"2\r\nok\r\n"),
}
first, rest = PARTS[proto]


def read_exact(s, size):
    data = b""
    while len(data) < size:
        chunk = s.recv(size - len(data))
        if not chunk:
            break
        data += chunk
    return data


def read_all(s):
    data = b""
    while True:
        chunk = s.recv(65536)
        if not chunk:
            return data
        data += chunk


def answer_ok(s, i):
    if proto == "echo":
        got = read_exact(s, len(rest))
        s.shutdown(socket.SHUT_WR)
        tail = read_all(s)
        return got == rest and tail == b""
    if proto == "resp":
        return read_exact(s, 5) == b"+OK\r\n"
    # http: a whole response; the server closes after it while draining.
    data = read_all(s)
    head, _, body = data.partition(b"\r\n\r\n")
    return head.startswith(b"HTTP/1.1 200") and body == b"Hello, World!\n"


def read_http_response(s):
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = s.recv(4096)
        if not chunk:
            return None
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value.strip())
    return head, body + read_exact(s, length - len(body))


def warm_up(s):
    if proto == "echo":
        return True  # the echo of `first` is the proof, below
    if proto == "resp":
        s.sendall(b"*1\r\n$4\r\nPING\r\n")
        return read_exact(s, 7) == b"+PONG\r\n"
    s.sendall(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
    r = read_http_response(s)
    return r is not None and r[0].startswith(b"HTTP/1.1 200")


socks = []
for i in range(n):
    s = socket.create_connection(("127.0.0.1", port), timeout=30)
    if not warm_up(s):
        print("client %d: the first request was not answered" % i)
        sys.exit(1)
    s.sendall(first)
    if proto == "echo" and read_exact(s, len(first)) != first:
        print("client %d: no echo of the first part" % i)
        sys.exit(1)
    socks.append(s)

open(os.path.join(workdir, "ready"), "w").close()
deadline = time.time() + 60
while not os.path.exists(os.path.join(workdir, "go")):
    if time.time() > deadline:
        print("clients: no go within 60 s")
        sys.exit(1)
    time.sleep(0.02)

answered = 0
for i, s in enumerate(socks):
    try:
        s.sendall(rest)
        if answer_ok(s, i):
            answered += 1
        else:
            print("client %d: incomplete answer" % i)
    except OSError as e:
        print("client %d: %s" % (i, e))
    s.close()
print("clients: %d/%d answered" % (answered, n))
sys.exit(0 if answered == n else 1)
