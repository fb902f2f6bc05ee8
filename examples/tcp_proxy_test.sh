#!/usr/bin/env bash
# Drives tcp_proxy in front of echo_server: 1 MiB through the proxy on
# several connections at once (compared byte for byte), half-close passing
# through, many short connections, and an unreachable upstream.
source examples/server_test_lib.sh

rc=0
examples/tcp_proxy --port 0 >/dev/null 2>&1 || rc=$?
expect_eq "exit code without --upstream" "$rc" 2

start_server echo_server --port 0 --workers 2
save_server ECHO
start_server tcp_proxy --port 0 --workers 2 --upstream "127.0.0.1:$ECHO_PORT"

python3 - "$PORT" <<'PY' || fail "proxy checks failed"
import os, socket, sys, threading

port = int(sys.argv[1])
errors = []

def transfer(n, size):
    data = os.urandom(size)
    s = socket.create_connection(("127.0.0.1", port), timeout=20)
    def writer():
        s.sendall(data)
        s.shutdown(socket.SHUT_WR)  # half-close: the echo server ends, the proxy passes it on
    t = threading.Thread(target=writer)
    t.start()
    got = bytearray()
    while True:
        d = s.recv(1 << 20)
        if not d:
            break
        got += d
    t.join()
    s.close()
    if bytes(got) != data:
        errors.append(f"connection {n}: {len(got)} bytes back of {size}, equal prefix "
                      f"{next((i for i in range(min(len(got), size)) if got[i] != data[i]), min(len(got), size))}")

transfer(0, 1 << 20)
print("ok: 1 MiB through the proxy")
threads = [threading.Thread(target=transfer, args=(i, 1 << 20)) for i in range(1, 5)]
for t in threads: t.start()
for t in threads: t.join()
assert not errors, errors
print("ok: 4 x 1 MiB at once")
for i in range(50):
    transfer(100 + i, 1 + i * 37)
assert not errors, errors
print("ok: 50 short connections")
# A connection closed without sending anything.
s = socket.create_connection(("127.0.0.1", port), timeout=10)
s.close()
PY

stop_server
use_server ECHO
stop_server

# An upstream nobody listens on: the client's connection is closed.
start_server tcp_proxy --port 0 --workers 2 --upstream 127.0.0.1:1
python3 - "$PORT" <<'PY' || fail "unreachable upstream check failed"
import socket, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=10)
try:
    s.sendall(b"hello")
    assert s.recv(100) == b""
except ConnectionResetError:
    pass
print("ok: refused upstream closes the client")
PY
grep -q 'upstream 127.0.0.1:1: ' "$SERVER_ERR" || fail "the refused upstream was not logged"
stop_server
echo PASS
