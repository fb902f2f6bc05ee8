#!/usr/bin/env bash
# Drives http_hello with curl (one request, keep-alive, HEAD, POST bodies)
# and with raw bytes from python3 (pipelining, bodies split across reads,
# chunked bodies, HTTP/1.0, every kind of malformed request, each refused
# with a close within a second), checking exact responses (Date excepted);
# then HTTPS with a certificate made by openssl: curl --cacert, keep-alive,
# ALPN, an untrusted certificate and a wrong name refused, plain HTTP on
# the TLS port refused.
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
import re, socket, sys, time

port = int(sys.argv[1])
# Every response carries a Date field ("Date: " + 29-character IMF-fixdate
# + CRLF); the checks strip it after counting it.
DATE_LEN = 37
DATE = re.compile(rb"Date: [A-Z][a-z]{2}, \d\d [A-Z][a-z]{2} \d{4} \d\d:\d\d:\d\d GMT\r\n")
OK = (b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nServer: weft\r\nContent-Length: 14\r\n\r\n"
      b"Hello, World!\n")
OK_CLOSE = (b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nServer: weft\r\nContent-Length: 14\r\n"
            b"Connection: close\r\n\r\nHello, World!\n")
OK_KEEP10 = (b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nServer: weft\r\nContent-Length: 14\r\n"
             b"Connection: keep-alive\r\n\r\nHello, World!\n")
HEAD_OK = OK[:-14]
def refusal(status, reason):
    body = reason.encode() + b"\n"
    return (b"HTTP/1.1 %d %s\r\nServer: weft\r\nContent-Type: text/plain\r\nConnection: close\r\n"
            b"Content-Length: %d\r\n\r\n%s" % (status, reason.encode(), len(body), body))
BAD = refusal(400, "Bad Request")
NOT_IMPL = refusal(501, "Not Implemented")
TOO_LARGE_HEAD = refusal(431, "Request Header Fields Too Large")

def connect():
    return socket.create_connection(("127.0.0.1", port), timeout=10)

def strip_dates(name, data, want_count):
    got = len(DATE.findall(data))
    if got != want_count:
        raise AssertionError(f"{name}: {got} Date fields, want {want_count}: {data!r}")
    return DATE.sub(b"", data)

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

def responses(s, name, want):
    """Reads the responses in `want` (Date fields excluded) and checks them."""
    n = want.count(b"HTTP/1.1 ")
    check(name, strip_dates(name, read_exactly(s, len(want) + n * DATE_LEN), n), want)

def exchange(name, request, want, within=None):
    """Sends request, expects `want` and then the connection to close."""
    s = connect()
    start = time.monotonic()
    s.sendall(request)
    got = read_all(s)
    took = time.monotonic() - start
    check(name, strip_dates(name, got, want.count(b"HTTP/1.1 ")), want)
    if within is not None and took > within:
        raise AssertionError(f"{name}: took {took:.2f} s, want under {within} s")
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
responses(s, "1000 pipelined requests", OK * 1000)
s.close()

# A request split into small pieces, and a body split across reads.
s = connect()
for b in b"GET / HTTP/1.1\r\nHost: x\r\n\r\n":
    s.send(bytes([b]))
responses(s, "request sent byte by byte", OK)
s.sendall(b"PUT / HTTP/1.1\r\nHost: x\r\nContent-Length: 200000\r\n\r\n" + b"a" * 1000)
time.sleep(0.05)
s.sendall(b"b" * 199000 + b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
responses(s, "body across reads, then another request", OK + OK)
s.sendall(b"HEAD / HTTP/1.1\r\nHost: x\r\n\r\n")
responses(s, "HEAD", HEAD_OK)
# A chunked request body is decoded and the connection stays usable.
s.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n")
responses(s, "chunked body", OK)
s.close()

# HTTP/1.0: closes unless asked to keep the connection; Host is optional.
exchange("HTTP/1.0", b"GET / HTTP/1.0\r\n\r\n", OK_CLOSE)
s = connect()
s.sendall(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
responses(s, "HTTP/1.0 keep-alive", OK_KEEP10)
s.sendall(b"GET / HTTP/1.0\r\n\r\n")
check("HTTP/1.0 second request", strip_dates("HTTP/1.0 second", read_all(s), 1), OK_CLOSE)
s.close()
exchange("Connection: close (mixed case, in a list)",
         b"GET / HTTP/1.1\r\nHost: x\r\nconnection: Upgrade, CLOSE\r\n\r\n", OK_CLOSE)

# Malformed requests: 400 and the connection closes, within a second (the
# server's request timeout is 30 s, so none of these may wait for it).
H = b"Host: x\r\n"
for name, request in [
    ("garbage request line", b"GARBAGE\r\n\r\n"),
    ("missing version", b"GET /\r\n\r\n"),
    ("unknown version", b"GET / HTTP/9.9\r\n" + H + b"\r\n"),
    ("two spaces", b"GET  / HTTP/1.1\r\n" + H + b"\r\n"),
    ("header without colon", b"GET / HTTP/1.1\r\nHost x\r\n\r\n"),
    ("space before colon", b"GET / HTTP/1.1\r\nHost : x\r\n\r\n"),
    ("NUL in a header value", b"GET / HTTP/1.1\r\n" + H + b"X-A: a\x00b\r\n\r\n"),
    ("HTTP/1.1 without Host", b"GET / HTTP/1.1\r\n\r\n"),
    ("two Host fields", b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n"),
    ("bare CR inside a header line", b"GET / HTTP/1.1\r\nHost: x\rX-B: y\r\n\r\n"),
    ("TLS ClientHello", bytes.fromhex("160301020001000001fc0303") + bytes(range(64))),
    ("non-numeric content-length", b"POST / HTTP/1.1\r\n" + H + b"Content-Length: 12abc\r\n\r\n"),
    ("negative content-length", b"POST / HTTP/1.1\r\n" + H + b"Content-Length: -1\r\n\r\n"),
    ("conflicting content-lengths",
     b"POST / HTTP/1.1\r\n" + H + b"Content-Length: 1\r\nContent-Length: 2\r\n\r\nab"),
]:
    exchange(name, request, BAD, within=1.0)
exchange("oversized headers", b"GET / HTTP/1.1\r\nX-Big: " + b"a" * 9000 + b"\r\n\r\n", TOO_LARGE_HEAD)
exchange("oversized head without end", b"GET / HTTP/1.1\r\nX-Big: " + b"a" * 20000, TOO_LARGE_HEAD)
exchange("unknown transfer coding", b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: gzip\r\n\r\n", NOT_IMPL)
exchange("unknown method", b"BREW / HTTP/1.1\r\n" + H + b"\r\n", NOT_IMPL)
# A good request before a bad one is answered first.
exchange("good then bad", b"GET / HTTP/1.1\r\n" + H + b"\r\nBAD\r\n\r\nGET / HTTP/1.1\r\n\r\n", OK + BAD)
# A client that goes away mid-request must not disturb the server.
s = connect()
s.sendall(b"GET / HTTP/1.1\r\nHost: x")
s.close()
PY

# Still serving after all that.
expect_eq "curl after the raw checks" "$(curl -s "$URL")" "Hello, World!"
stop_server

# HTTPS: a certificate made now, curl trusting exactly it.
require_tool openssl
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj /CN=localhost \
  -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" -keyout "$TMP/key.pem" -out "$TMP/cert.pem" 2>/dev/null ||
  fail "openssl req failed"
start_server http_hello --port 0 --workers 2 --tls-cert "$TMP/cert.pem" --tls-key "$TMP/key.pem"
HTTPS="https://localhost:$PORT/"
RESOLVE=(--resolve "localhost:$PORT:127.0.0.1")
expect_eq "curl https" "$(curl -s --cacert "$TMP/cert.pem" "${RESOLVE[@]}" "$HTTPS")" "Hello, World!"
curl -sv --cacert "$TMP/cert.pem" "${RESOLVE[@]}" "$HTTPS" "${HTTPS}again" >"$TMP/tls2" 2>"$TMP/tls2.err" ||
  fail "curl https (two URLs) failed: $(cat "$TMP/tls2.err")"
grep -q 'Re-using existing connection' "$TMP/tls2.err" || fail "no keep-alive over TLS: $(cat "$TMP/tls2.err")"
grep -q 'ALPN: server accepted http/1.1' "$TMP/tls2.err" || fail "no ALPN: $(cat "$TMP/tls2.err")"
# Without the certificate curl must refuse (exit 60: peer certificate cannot be authenticated).
rc=0
curl -s "${RESOLVE[@]}" "$HTTPS" >/dev/null 2>&1 || rc=$?
expect_eq "curl without --cacert" "$rc" "60"
# A name the certificate does not have fails too (exit 60).
rc=0
curl -s --cacert "$TMP/cert.pem" --resolve "other.test:$PORT:127.0.0.1" "https://other.test:$PORT/" >/dev/null 2>&1 || rc=$?
expect_eq "curl with a wrong host name" "$rc" "60"
# Plain HTTP on the TLS port is refused without harm.
python3 - "$PORT" <<'PY' || fail "plain HTTP to the TLS port"
import socket, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=10)
s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
data = b""
while True:
    d = s.recv(4096)
    if not d:
        break
    data += d
assert not data.startswith(b"HTTP/"), data
print("ok: plain HTTP on the TLS port is refused")
PY
expect_eq "curl https after that" "$(curl -s --cacert "$TMP/cert.pem" "${RESOLVE[@]}" "$HTTPS")" "Hello, World!"
stop_server
echo PASS
