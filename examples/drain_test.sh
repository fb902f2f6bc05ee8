#!/usr/bin/env bash
# Graceful drain on SIGTERM (examples/example_util.h, shutdown steps 3-5),
# for echo_server, http_hello and resp_server: 100 clients are each in the
# middle of a request when SIGTERM arrives. Checks that
#   - a new connection is refused right after the signal, while the
#     server is still draining;
#   - every client then completes its request and gets the whole answer;
#   - the server exits 0 well within --drain-timeout, saying "drained";
# and, with one client that never finishes, that the server exits 0 at the
# deadline and counts the connection it cut.
source examples/server_test_lib.sh

CLIENTS=100
DRAIN=10s

# refused PORT: true once a connect to PORT is refused.
refused() {
  python3 - "$1" <<'PY'
import socket, sys
try:
    socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=2).close()
except ConnectionRefusedError:
    sys.exit(0)
sys.exit(1)
PY
}

# wait_exit SECONDS: the server must exit within SECONDS; sets RC.
wait_exit() {
  for _ in $(seq $(($1 * 10))); do
    kill -0 "$SERVER_PID" 2>/dev/null || break
    sleep 0.1
  done
  kill -0 "$SERVER_PID" 2>/dev/null && fail "$SERVER_NAME still running $1 s after SIGTERM"
  RC=0
  wait "$SERVER_PID" || RC=$?
  SERVER_PID=""
}

drain() {  # drain SERVER PROTO
  local name="$1" proto="$2" dir="$TMP/$1.drain"
  rm -rf "$dir" && mkdir -p "$dir"
  start_server "$name" --port 0 --workers 2 --drain-timeout "$DRAIN"
  python3 examples/drain_clients.py "$proto" "$PORT" "$CLIENTS" "$dir" >"$dir/clients.out" 2>&1 &
  local clients=$!
  ALL_PIDS+=("$clients")
  for _ in $(seq 600); do
    [[ -e "$dir/ready" ]] && break
    kill -0 "$clients" 2>/dev/null || { cat "$dir/clients.out" >&2; fail "$name: clients ended early"; }
    sleep 0.1
  done
  [[ -e "$dir/ready" ]] || fail "$name: clients not ready within 60 s"
  sleep 1  # the last partial requests reach their connection fibers
  kill -TERM "$SERVER_PID"
  local ok=""
  for _ in $(seq 50); do
    if refused "$PORT"; then ok=1; break; fi
    sleep 0.1
  done
  [[ -n "$ok" ]] || fail "$name: a new connection was not refused within 5 s of SIGTERM"
  kill -0 "$SERVER_PID" 2>/dev/null || fail "$name: exited before its clients finished"
  touch "$dir/go"
  local rc=0
  wait "$clients" || rc=$?
  cat "$dir/clients.out"
  [[ "$rc" == 0 ]] || fail "$name: not every accepted request got its whole answer"
  wait_exit 5  # well before the 10 s deadline
  [[ "$RC" == 0 ]] || fail "$name exited with code $RC after draining"
  grep -q "^$name: drained$" "$SERVER_ERR" || fail "$name: no 'drained' line on stderr"
  echo "$name: $CLIENTS requests in flight at SIGTERM all answered; new connection refused; exit 0"
}

drain echo_server echo
drain http_hello http
drain resp_server resp

# A connection that never finishes is cut at the deadline and counted.
start_server echo_server --port 0 --workers 2 --drain-timeout 1s
exec 3<>"/dev/tcp/127.0.0.1/$PORT"
echo hello >&3
read -r -t 10 line <&3
expect_eq "echo before SIGTERM" "$line" hello
started=$(date +%s%N)
kill -TERM "$SERVER_PID"
wait_exit 5
exec 3>&-
elapsed_ms=$((($(date +%s%N) - started) / 1000000))
[[ "$RC" == 0 ]] || fail "echo_server exited with code $RC after the drain timeout"
((elapsed_ms >= 900)) || fail "echo_server exited after $elapsed_ms ms, before its 1 s drain timeout"
grep -q "^echo_server: drain timeout: closing 1 connections still open$" "$SERVER_ERR" ||
  fail "echo_server: no count of the connection cut at the deadline"
echo "echo_server: the idle connection was cut at the 1 s deadline and counted (exit 0 after $elapsed_ms ms)"

# A second SIGTERM while draining exits at once.
start_server echo_server --port 0 --workers 2 --drain-timeout 60s
exec 3<>"/dev/tcp/127.0.0.1/$PORT"
kill -TERM "$SERVER_PID"
for _ in $(seq 50); do
  grep -q "draining" "$SERVER_ERR" && break
  sleep 0.1
done
kill -TERM "$SERVER_PID"
wait_exit 5
exec 3>&-
expect_eq "exit code after a second SIGTERM" "$RC" 130
grep -q "second signal: exiting now" "$SERVER_ERR" || fail "echo_server: no line for the second signal"
echo PASS
