#!/usr/bin/env bash
# Drives http_fetch against http_hello: several URLs at once (status, size,
# body), a URL nobody answers (an error line naming it, exit 1), a bad URL,
# and no URL at all (usage, exit 2).
source examples/server_test_lib.sh

start_server http_hello --port 0 --workers 2
URL="http://127.0.0.1:$PORT"

examples/http_fetch "$URL/a" "$URL/b" --workers 2 "$URL/c" >"$TMP/out" 2>"$TMP/err" ||
  fail "http_fetch failed: $(cat "$TMP/out" "$TMP/err")"
[[ $(wc -l <"$TMP/out") == 3 ]] || fail "want 3 lines: $(cat "$TMP/out")"
for p in a b c; do
  grep -Eq "^$URL/$p 200 14 bytes [0-9.]+ ms$" "$TMP/out" || fail "no line for /$p: $(cat "$TMP/out")"
done
echo "ok: three URLs"

examples/http_fetch --body "$URL/" >"$TMP/body" || fail "http_fetch --body failed"
expect_eq "--body" "$(tail -n 1 "$TMP/body")" "Hello, World!"
echo "ok: --body"

# A port with nothing behind it: bind-free port from python, closed again.
DEAD=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
rc=0
examples/http_fetch --timeout_ms 2000 "$URL/ok" "http://127.0.0.1:$DEAD/x" "nonsense" >"$TMP/mixed" 2>&1 || rc=$?
expect_eq "exit status with failures" "$rc" "1"
grep -Eq "^$URL/ok 200 14 bytes" "$TMP/mixed" || fail "good URL missing: $(cat "$TMP/mixed")"
grep -q "^http://127.0.0.1:$DEAD/x error: UNAVAILABLE: http::Client: GET http://127.0.0.1:$DEAD/x: connect" "$TMP/mixed" ||
  fail "refused URL: $(cat "$TMP/mixed")"
grep -q "^nonsense error: INVALID_ARGUMENT: " "$TMP/mixed" || fail "bad URL: $(cat "$TMP/mixed")"
echo "ok: errors"

rc=0
examples/http_fetch >/dev/null 2>&1 || rc=$?
expect_eq "no URL: usage" "$rc" "2"

stop_server
echo PASS
