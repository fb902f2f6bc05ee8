#!/usr/bin/env bash
# Drives http_hello with curl (one request, keep-alive, HEAD, POST bodies)
# and with raw bytes from python3 (pipelining, bodies split across reads,
# HTTP/1.0, every kind of malformed request), checking exact responses.
source examples/server_test_lib.sh
require_tool curl

start_server http_hello --port 0 --workers 2
URL="http://127.0.0.1:$PORT/"

# One request: the exact body.
curl -s -o "$TMP/body" -w '%{http_code} %{size_download}' "$URL" >"$TMP/meta" || fail "curl failed"
expect_eq "curl status and size" "$(cat "$TMP/meta")" "200 14"
expect_eq "curl body" "$(od -An -c "$TMP/body")" "$(printf 'Hello, World!\n' | od -An -c)"

# Keep-alive: two URLs in one curl call reuse one connection.
curl -sv "$URL" "${URL}again" >"$TMP/two" 2>"$TMP/two.err" || fail "curl (two URLs) failed"
expect_eq "two bodies" "$(cat "$TMP/two")" "$(printf 'Hello, World!\nHello, World!')"
grep -q 'Re-using existing connection' "$TMP/two.err" || fail "curl did not reuse the connection: $(cat "$TMP/two.err")"
[[ $(grep -c 'Connected to' "$TMP/two.err") == 1 ]] || fail "curl connected more than once"

# HEAD: headers only.
curl -sI "$URL" >"$TMP/head" || fail "curl -I failed"
grep -q $'^HTTP/1.1 200 OK\r$' "$TMP/head" || fail "HEAD status: $(cat "$TMP/head")"
grep -qi $'^content-length: 14\r$' "$TMP/head" || fail "HEAD length: $(cat "$TMP/head")"

# POST bodies are skipped, and the connection stays usable.
head -c 100000 /dev/zero | tr '\0' 'x' >"$TMP/post"
curl -s --data-binary "@$TMP/post" "$URL" --next --data-binary "@$TMP/post" "$URL" >"$TMP/posts" ||
  fail "curl POST failed"
expect_eq "two POST answers" "$(cat "$TMP/posts")" "$(printf 'Hello, World!\nHello, World!')"

python3 - "$PORT" <<'PY' || fail "raw HTTP checks failed"
import socket, sys, time

port = int(sys.argv[1])
OK = (b"HTTP/1.1 200 OK\r\nServer: weft\r\nContent-Type: text/plain\r\nContent-Length: 14\r\n\r\n"
      b"Hello, World!\n")
OK_CLOSE = (b"HTTP/1.1 200 OK\r\nServer: weft\r\nContent-Type: text/plain\r\nContent-Length: 14\r\n"
            b"Connection: close\r\n\r\nHello, World!\n")
OK_KEEP10 = (b"HTTP/1.1 200 OK\r\nServer: weft\r\nContent-Type: text/plain\r\nContent-Length: 14\r\n"
             b"Connection: keep-alive\r\n\r\nHello, World!\n")
HEAD_OK = OK[:-14]
BAD = (b"HTTP/1.1 400 Bad Request\r\nServer: weft\r\nContent-Type: text/plain\r\nContent-Length: 12\r\n"
       b"Connection: close\r\n\r\nBad Request\n")
NOT_IMPL = (b"HTTP/1.1 501 Not Implemented\r\nServer: weft\r\nContent-Type: text/plain\r\n"
            b"Content-Length: 16\r\nConnection: close\r\n\r\nNot Implemented\n")

def connect():
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    return s

def read_all(s):
    """Reads until the server closes the connection."""
    out = b""
    while True:
        d = s.recv(65536)
        if not d:
            return out
        out += d

def read_exactly(s, n):
    out = b""
    while len(out) < n:
        d = s.recv(n - len(out))
        if not d:
            raise AssertionError(f"connection closed after {len(out)} of {n} bytes: {out!r}")
        out += d
    return out

def check(name, got, want):
    if got != want:
        raise AssertionError(f"{name}:\n got  {got!r}\n want {want!r}")
    print(f"ok: {name}")

def exchange(name, request, want):
    """Sends request, expects `want` and then the connection to close."""
    s = connect()
    s.sendall(request)
    check(name, read_all(s), want)
    s.close()

# Pipelining: three requests in one send (a body in the middle); the last
# asks to close.
exchange("three pipelined requests",
         b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"
         b"POST /p HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello"
         b"GET /q HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
         OK + OK + OK_CLOSE)

# Many pipelined requests, more than one read's worth.
s = connect()
req = b"GET / HTTP/1.1\r\nHost: x\r\nUser-Agent: pipeline-test\r\n\r\n"
s.sendall(req * 1000)
check("1000 pipelined requests", read_exactly(s, len(OK) * 1000), OK * 1000)
s.close()

# A request split into small pieces, and a body split across reads.
s = connect()
for b in b"GET / HTTP/1.1\r\nHost: x\r\n\r\n":
    s.send(bytes([b]))
check("request sent byte by byte", read_exactly(s, len(OK)), OK)
s.sendall(b"PUT / HTTP/1.1\r\nContent-Length: 200000\r\n\r\n" + b"a" * 1000)
time.sleep(0.05)
s.sendall(b"b" * 199000 + b"GET / HTTP/1.1\r\n\r\n")
check("body across reads, then another request", read_exactly(s, 2 * len(OK)), OK + OK)
s.sendall(b"HEAD / HTTP/1.1\r\n\r\n")
check("HEAD", read_exactly(s, len(HEAD_OK)), HEAD_OK)
s.close()

# HTTP/1.0: closes unless asked to keep the connection.
exchange("HTTP/1.0", b"GET / HTTP/1.0\r\n\r\n", OK_CLOSE)
s = connect()
s.sendall(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
check("HTTP/1.0 keep-alive", read_exactly(s, len(OK_KEEP10)), OK_KEEP10)
s.sendall(b"GET / HTTP/1.0\r\n\r\n")
check("HTTP/1.0 second request", read_all(s), OK_CLOSE)
s.close()
exchange("Connection: close (mixed case, in a list)",
         b"GET / HTTP/1.1\r\nconnection: Upgrade, CLOSE\r\n\r\n", OK_CLOSE)

# Malformed requests: 400 and the connection closes.
exchange("garbage request line", b"GARBAGE\r\n\r\n", BAD)
exchange("missing version", b"GET /\r\n\r\n", BAD)
exchange("unknown version", b"GET / HTTP/9.9\r\n\r\n", BAD)
exchange("two spaces", b"GET  / HTTP/1.1\r\n\r\n", BAD)
exchange("header without colon", b"GET / HTTP/1.1\r\nHost x\r\n\r\n", BAD)
exchange("space before colon", b"GET / HTTP/1.1\r\nHost : x\r\n\r\n", BAD)
exchange("non-numeric content-length", b"POST / HTTP/1.1\r\nContent-Length: 12abc\r\n\r\n", BAD)
exchange("negative content-length", b"POST / HTTP/1.1\r\nContent-Length: -1\r\n\r\n", BAD)
exchange("conflicting content-lengths",
         b"POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab", BAD)
exchange("oversized headers", b"GET / HTTP/1.1\r\nX-Big: " + b"a" * 9000 + b"\r\n\r\n", BAD)
exchange("oversized head without end", b"GET / HTTP/1.1\r\nX-Big: " + b"a" * 20000, BAD)
exchange("chunked body", b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", NOT_IMPL)
# A good request before a bad one is answered first.
exchange("good then bad", b"GET / HTTP/1.1\r\n\r\nBAD\r\n\r\nGET / HTTP/1.1\r\n\r\n", OK + BAD)
# A client that goes away mid-request must not disturb the server.
s = connect()
s.sendall(b"GET / HTTP/1.1\r\nHost: x")
s.close()
PY

# Still serving after all that.
expect_eq "curl after the raw checks" "$(curl -s "$URL")" "Hello, World!"
stop_server
echo PASS
