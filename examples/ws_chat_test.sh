#!/usr/bin/env bash
# Drives ws_chat with real WebSocket clients (Python's websockets package)
# and checks every message each one sees: welcome, joins, messages (never
# echoed to the sender), a binary message, leaves; plain HTTP and a 404 for
# another path on the same port; a client that stops reading is
# disconnected as too slow while another receives every message in order;
# then SIGTERM closes the remaining clients with 1001 and the server exits 0.
source examples/server_test_lib.sh

# Debian's package installs into the system python3, which may not be the
# first python3 on PATH (a pyenv shim, say).
PY=""
for candidate in python3 /usr/bin/python3; do
  if "$candidate" -c "import websockets" 2>/dev/null; then
    PY="$candidate"
    break
  fi
done
[[ -n "$PY" ]] || skip "python3-websockets is not installed (tools/setup.sh installs it)"

start_server ws_chat --port 0 --workers 2 --queue 16

"$PY" - "$PORT" "$SERVER_PID" <<'PY' || fail "ws_chat checks failed"
import asyncio, os, signal, socket, sys
import websockets

port, server_pid = int(sys.argv[1]), int(sys.argv[2])
url = f"ws://127.0.0.1:{port}/chat"

async def expect(ws, who, want):
    got = await asyncio.wait_for(ws.recv(), 10)
    if got != want:
        raise AssertionError(f"{who}: got {got!r}, want {want!r}")
    print(f"ok: {who} saw {want!r}")

async def quiet(ws, who):
    try:
        got = await asyncio.wait_for(ws.recv(), 0.3)
        raise AssertionError(f"{who}: unexpected {got!r}")
    except asyncio.TimeoutError:
        pass

async def welcome(ws, who):
    l = await asyncio.wait_for(ws.recv(), 10)
    assert l.startswith("* you are [") and l.endswith("]"), l
    print(f"ok: {who} is {l[10:]}")
    return int(l[len("* you are ["):-1])

async def main():
    # Plain HTTP on the same port.
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    resp = b""
    while True:
        d = s.recv(65536)
        if not d:
            break
        resp += d
    assert resp.startswith(b"HTTP/1.1 200"), resp[:40]
    assert b"connect a WebSocket client to /chat" in resp, resp
    print("ok: plain GET / answered")
    try:
        await websockets.connect(f"ws://127.0.0.1:{port}/elsewhere")
        raise AssertionError("upgrade to /elsewhere was accepted")
    except websockets.exceptions.InvalidStatusCode as e:
        assert e.status_code == 404, e
    print("ok: upgrade to another path refused with 404")

    a = await websockets.connect(url); ia = await welcome(a, "A")
    b = await websockets.connect(url); ib = await welcome(b, "B")
    await expect(a, "A", f"* [{ib}] joined")
    c = await websockets.connect(url); ic = await welcome(c, "C")
    await expect(a, "A", f"* [{ic}] joined")
    await expect(b, "B", f"* [{ic}] joined")
    assert len({ia, ib, ic}) == 3

    await a.send("hello from A")
    await expect(b, "B", f"[{ia}] hello from A")
    await expect(c, "C", f"[{ia}] hello from A")
    await quiet(a, "A")
    await b.send("été ✓")  # UTF-8 travels intact
    await expect(a, "A", f"[{ib}] été ✓")
    await expect(c, "C", f"[{ib}] été ✓")
    await c.send(b"\x00\x01\xff")
    for ws, who in ((a, "A"), (b, "B")):
        got = await asyncio.wait_for(ws.recv(), 10)
        assert got == f"[{ic}] ".encode() + b"\x00\x01\xff", got
        print(f"ok: {who} got C's binary message")
    await quiet(c, "C")

    await c.close()
    assert c.close_code == 1000, c.close_code
    await expect(a, "A", f"* [{ic}] left")
    await expect(b, "B", f"* [{ic}] left")
    print("ok: C closed with 1000; its leave announced")

    # D stops reading: websockets stops reading the socket once max_queue
    # messages wait, the socket buffers fill, then D's queue on the server.
    d = await websockets.connect(url, max_queue=1, read_limit=1024)
    idd = await welcome(d, "D")
    await expect(a, "A", f"* [{idd}] joined")
    await expect(b, "B", f"* [{idd}] joined")
    # A sends in lockstep with B, so B never falls behind; D's socket
    # buffers and then its queue on the server fill.
    payload = "x" * 30000
    notice = f"* [{idd}] left (too slow)"
    kicked = False
    sent = 0
    while not kicked and sent < 5000:
        await a.send(f"{sent} {payload}")
        m = await asyncio.wait_for(b.recv(), 20)
        if m == notice:  # queued right after the message that overflowed D
            kicked = True
            m = await asyncio.wait_for(b.recv(), 20)
        want = f"[{ia}] {sent} {payload}"
        if m != want:
            raise AssertionError(f"B message {sent}: got {m[:40]!r}, want {want[:40]!r}")
        sent += 1
    if not kicked:
        await expect(b, "B", notice)
    print(f"ok: slow client D disconnected after {sent} messages; B saw all of them in order")
    await expect(a, "A", notice)
    await quiet(a, "A")
    await quiet(b, "B")
    # D's connection is gone (shut down by the server, no close handshake).
    try:
        while True:
            await asyncio.wait_for(d.recv(), 10)
    except websockets.exceptions.ConnectionClosed:
        pass
    print("ok: D's connection was closed by the server")

    # Shutdown: SIGTERM closes A and B with 1001.
    os.kill(server_pid, signal.SIGTERM)
    for ws, who in ((a, "A"), (b, "B")):
        try:
            m = await asyncio.wait_for(ws.recv(), 10)
            raise AssertionError(f"{who}: unexpected {m[:40]!r}")
        except websockets.exceptions.ConnectionClosed:
            pass
        assert ws.close_code == 1001, (who, ws.close_code)
        assert ws.close_reason == "server shutting down", ws.close_reason
        print(f"ok: {who} closed by the server with 1001")

asyncio.run(main())
PY

rc=0
for _ in $(seq 50); do
  kill -0 "$SERVER_PID" 2>/dev/null || break
  sleep 0.1
done
kill -0 "$SERVER_PID" 2>/dev/null && fail "ws_chat still running 5 s after SIGTERM"
wait "$SERVER_PID" || rc=$?
SERVER_PID=""
[[ "$rc" == 0 ]] || fail "ws_chat exited with code $rc after SIGTERM"
echo "ws_chat: stopped cleanly on SIGTERM"
echo PASS
