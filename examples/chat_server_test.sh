#!/usr/bin/env bash
# Drives chat_server with three python3 clients and checks every line each
# one sees: welcome, joins, messages (never echoed to the sender), leaves;
# then a client that stops reading is disconnected as too slow while the
# others keep chatting.
source examples/server_test_lib.sh

start_server chat_server --port 0 --workers 2 --queue 256

python3 - "$PORT" <<'PY' || fail "chat checks failed"
import socket, sys, threading, time

port = int(sys.argv[1])

class Client:
    def __init__(self):
        self.s = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.buf = b""
    def line(self):
        while b"\n" not in self.buf:
            d = self.s.recv(65536)
            if not d:
                raise AssertionError(f"connection closed; pending {self.buf!r}")
            self.buf += d
        l, self.buf = self.buf.split(b"\n", 1)
        return l.decode()
    def expect(self, who, want):
        got = self.line()
        if got != want:
            raise AssertionError(f"{who}: got {got!r}, want {want!r}")
        print(f"ok: {who} saw {want!r}")
    def send(self, text):
        self.s.sendall(text.encode())
    def expect_quiet(self, who):
        """Nothing more arrives for a moment."""
        self.s.settimeout(0.3)
        try:
            d = self.s.recv(65536)
            raise AssertionError(f"{who}: unexpected {self.buf + d!r}")
        except socket.timeout:
            pass
        finally:
            self.s.settimeout(10)
        if self.buf:
            raise AssertionError(f"{who}: unexpected {self.buf!r}")

def welcome(c, who):
    l = c.line()
    assert l.startswith("* you are [") and l.endswith("]"), l
    print(f"ok: {who} is {l[10:]}")
    return int(l[len("* you are ["):-1])

a = Client(); ia = welcome(a, "A")
b = Client(); ib = welcome(b, "B")
a.expect("A", f"* [{ib}] joined")
c = Client(); ic = welcome(c, "C")
a.expect("A", f"* [{ic}] joined")
b.expect("B", f"* [{ic}] joined")
assert len({ia, ib, ic}) == 3

a.send("hello\n")
b.expect("B", f"[{ia}] hello")
c.expect("C", f"[{ia}] hello")
# CRLF, two lines in one send, and a line sent in pieces.
b.send("one\r\ntwo\n")
a.send("split ")
time.sleep(0.05)
a.send("line\n")
a.expect("A", f"[{ib}] one")
a.expect("A", f"[{ib}] two")
c.expect("C", f"[{ib}] one")
c.expect("C", f"[{ib}] two")
b.expect("B", f"[{ia}] split line")
c.expect("C", f"[{ia}] split line")
c.send("\n")  # an empty line is a message too
a.expect("A", f"[{ic}] ")
b.expect("B", f"[{ic}] ")
for who, cl in (("A", a), ("B", b), ("C", c)):
    cl.expect_quiet(who)  # nobody hears their own messages

c.s.close()
a.expect("A", f"* [{ic}] left")
b.expect("B", f"* [{ic}] left")

# A client that never reads: once its queue (--queue 256) is full behind
# full socket buffers, it is disconnected and the others are told. (The
# queue must absorb bursts: one read of A's socket may carry many lines.)
d = socket.socket()
d.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
d.connect(("127.0.0.1", port))
a.expect("A", "* [" + str(ic + 1) + "] joined")
b.expect("B", "* [" + str(ic + 1) + "] joined")
idd = ic + 1
stop = threading.Event()
seen = []
def reader(cl, name):
    try:
        while not stop.is_set():
            l = cl.line()
            seen.append((name, l))
            if l == f"* [{idd}] left (too slow)":
                return
    except Exception as e:
        seen.append((name, f"error {e}"))
threads = [threading.Thread(target=reader, args=(b, "B"))]
for t in threads:
    t.start()
payload = "x" * 1000
sent = 0
deadline = time.time() + 30
while threads[0].is_alive() and time.time() < deadline:
    # Batches of 50 lines, and B catches up before the next: only the
    # client that does not read at all falls behind.
    a.send("".join(f"{sent + i} {payload}\n" for i in range(50)))
    sent += 50
    while len(seen) < sent and threads[0].is_alive() and time.time() < deadline:
        time.sleep(0.001)
stop.set()
for t in threads:
    t.join(5)
assert not threads[0].is_alive(), "B never heard that the slow client left"
assert seen[-1] == ("B", f"* [{idd}] left (too slow)"), seen[-3:]
# B got every line A sent before the announcement, in order.
msgs = [l for (_, l) in seen[:-1]]
for i, l in enumerate(msgs):
    want = f"[{ia}] {i} {payload}"
    if l != want:
        raise AssertionError(f"B line {i}: got {l[:40]!r}, want {want[:40]!r}")
print(f"ok: slow client disconnected after {sent} lines; B saw {len(msgs)} lines in order")
# The slow client's connection is closed by the server.
d.settimeout(10)
try:
    while d.recv(1 << 20):
        pass
except ConnectionResetError:
    pass
print("ok: slow client's connection closed")
PY

stop_server
echo PASS
