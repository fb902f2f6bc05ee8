#!/usr/bin/env bash
# Drives resp_server with redis-cli (every command, errors) and with raw
# bytes from python3 (pipelining, inline commands, binary values, and
# malformed framing, which must get "-ERR Protocol error" and a close),
# then checks that the server still answers.
source examples/server_test_lib.sh
require_tool redis-cli

start_server resp_server --port 0 --workers 2

cli() { redis-cli -p "$PORT" "$@"; }
expect_cli() {  # expect_cli WANT ARGS...
  local want="$1"
  shift
  local got
  got=$(cli "$@" 2>&1) || fail "redis-cli $* failed: $got"
  expect_eq "redis-cli $*" "$got" "$want"
}

expect_cli PONG PING
expect_cli "hi there" PING "hi there"
expect_cli "hello world" ECHO "hello world"
expect_cli OK SET k v
expect_cli v GET k
expect_cli "" GET missing
expect_cli 1 EXISTS k
expect_cli 2 EXISTS k k
expect_cli 0 EXISTS missing
expect_cli 1 INCR counter
expect_cli 2 INCR counter
expect_cli 2 GET counter
expect_cli OK SET big 9223372036854775806
expect_cli 9223372036854775807 INCR big
expect_cli "ERR increment or decrement would overflow" INCR big
expect_cli "ERR value is not an integer or out of range" INCR k
expect_cli OK SET spaced " 1"
expect_cli "ERR value is not an integer or out of range" INCR spaced
expect_cli 2 DEL k counter missing
expect_cli 0 EXISTS k counter
expect_cli "ERR unknown command 'FOO'" FOO bar
expect_cli "ERR wrong number of arguments for 'get' command" GET
expect_cli "ERR wrong number of arguments for 'get' command" GET a b
expect_cli "ERR wrong number of arguments for 'set' command" SET a
expect_cli "ERR syntax error" SET a b EX 10
expect_cli "ERR wrong number of arguments for 'del' command" DEL
expect_cli "ERR wrong number of arguments for 'echo' command" ECHO
expect_cli "" CONFIG GET save
expect_cli PONG ping

python3 - "$PORT" <<'PY' || fail "raw RESP checks failed"
import socket, sys

port = int(sys.argv[1])

def connect():
    return socket.create_connection(("127.0.0.1", port), timeout=10)

def read_exactly(s, n):
    out = b""
    while len(out) < n:
        d = s.recv(n - len(out))
        if not d:
            raise AssertionError(f"closed after {len(out)} of {n} bytes: {out[:200]!r}")
        out += d
    return out

def read_all(s):
    out = b""
    while True:
        d = s.recv(1 << 20)
        if not d:
            return out
        out += d

def check(name, got, want):
    if got != want:
        raise AssertionError(f"{name}:\n got  {got[:300]!r}\n want {want[:300]!r}")
    print(f"ok: {name}")

def cmd(*args):
    out = b"*%d\r\n" % len(args)
    for a in args:
        a = a if isinstance(a, bytes) else a.encode()
        out += b"$%d\r\n%s\r\n" % (len(a), a)
    return out

def roundtrip(name, request, want):
    s = connect()
    s.sendall(request)
    check(name, read_exactly(s, len(want)), want)
    s.close()

def protocol_error(name, request, error):
    """The server answers `error` and closes the connection."""
    s = connect()
    s.sendall(request)
    check(name, read_all(s), b"-ERR Protocol error: " + error + b"\r\n")
    s.close()

# Pipelining: multibulk and inline commands in one send, answered in order.
roundtrip("pipelined commands",
          cmd("SET", "p", "1") + b"PING\r\n" + cmd("INCR", "p") + b"GET p\r\n" + cmd("ECHO", "") +
          b"  \r\n" + b"*0\r\n" + cmd("DEL", "p") + b"EXISTS p\n",
          b"+OK\r\n+PONG\r\n:2\r\n$1\r\n2\r\n$0\r\n\r\n:1\r\n:0\r\n")
roundtrip("10000 pipelined PINGs", b"PING\r\n" * 10000, b"+PONG\r\n" * 10000)

# Binary-safe values, a command split byte by byte, a large value.
value = bytes(range(256)) + b"\r\n$-1\r\n*3\r\n"
roundtrip("binary value", cmd("SET", "bin", value) + cmd("GET", "bin"),
          b"+OK\r\n$%d\r\n%s\r\n" % (len(value), value))
s = connect()
for b in cmd("GET", "bin"):
    s.send(bytes([b]))
want = b"$%d\r\n%s\r\n" % (len(value), value)
check("command sent byte by byte", read_exactly(s, len(want)), want)
big = bytes(i % 251 for i in range(3 << 20))
s.sendall(cmd("SET", "big", big) + cmd("GET", "big") + cmd("DEL", "big"))
want = b"+OK\r\n$%d\r\n%s\r\n:1\r\n" % (len(big), big)
check("3 MiB value", read_exactly(s, len(want)), want)
s.close()

# Command errors keep the connection open.
roundtrip("errors then PING",
          cmd("NOPE\r\nx") + cmd("get") + b"PING\r\n",
          b"-ERR unknown command 'NOPE??x'\r\n-ERR wrong number of arguments for 'get' command\r\n+PONG\r\n")

# Broken framing: an error, then the connection closes. Commands before
# the bad one are still answered.
protocol_error("bad multibulk length", b"*abc\r\n", b"invalid multibulk length")
protocol_error("huge multibulk length", b"*99999999999\r\n", b"invalid multibulk length")
protocol_error("bad bulk length", b"*1\r\n$x\r\n", b"invalid bulk length")
protocol_error("negative bulk length", b"*1\r\n$-5\r\n", b"invalid bulk length")
protocol_error("oversized bulk length", b"*1\r\n$600000000\r\n", b"invalid bulk length")
protocol_error("missing $", b"*1\r\n:4\r\n", b"expected '$', got ':'")
protocol_error("bulk without CRLF", b"*1\r\n$4\r\nPINGxx", b"expected CRLF after a bulk string")
protocol_error("too big inline request", b"A" * 70000, b"too big inline request")
protocol_error("too big count string", b"*" + b"1" * 70000, b"too big multibulk count string")
s = connect()
s.sendall(b"PING\r\n" + cmd("ECHO", "x") + b"*1\r\n$zz\r\n" + b"PING\r\n")
check("answers before a protocol error", read_all(s),
      b"+PONG\r\n$1\r\nx\r\n-ERR Protocol error: invalid bulk length\r\n")
s.close()

# QUIT answers and closes.
s = connect()
s.sendall(b"QUIT\r\nPING\r\n")
check("QUIT", read_all(s), b"+OK\r\n")
s.close()

# A client that disappears mid-command.
s = connect()
s.sendall(b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$100\r\nabc")
s.close()
PY

# Still serving on new connections.
expect_cli PONG PING
expect_cli "" GET k

stop_server

# The query buffer limit: a smaller one, reached by one large value.
start_server resp_server --port 0 --workers 2 --max_query_buffer 100000 --max_bulk=50000
python3 - "$PORT" <<'PY' || fail "limit checks failed"
import socket, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=10)
s.sendall(b"*2\r\n$4\r\nECHO\r\n$60000\r\n")
got = b""
while True:
    d = s.recv(4096)
    if not d:
        break
    got += d
want = b"-ERR Protocol error: invalid bulk length\r\n"
assert got == want, got
print("ok: --max_bulk")
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=10)
try:
    # Three bulks of 40000: each fits --max_bulk, together they exceed the buffer.
    s.sendall(b"*4\r\n$3\r\nDEL\r\n" + (b"$40000\r\n" + b"x" * 40000 + b"\r\n") * 2 + b"$40000\r\n" + b"x" * 30000)
except (BrokenPipeError, ConnectionResetError):
    pass
got = b""
while True:
    try:
        d = s.recv(4096)
    except ConnectionResetError:
        break
    if not d:
        break
    got += d
want = b"-ERR Protocol error: query buffer limit exceeded\r\n"
assert got == want, got
print("ok: --max_query_buffer")
PY
expect_cli PONG PING
stop_server
echo PASS
