# examples/server_test_lib.sh: what the example tests share. Source it from
# a test run by Bazel (the working directory is the runfiles root).
#
#   source examples/server_test_lib.sh
#   start_server echo_server --port 0 --workers 2   # sets SERVER_PID and PORT
#   ...drive it...
#   stop_server                                      # SIGTERM; must exit 0 within 5 s
#
# For two servers, save_server NAME keeps the current one's variables in
# NAME_PID, NAME_PORT, ... and use_server NAME brings them back.
#
# Every helper fails the test (exit 1) with a message naming what went
# wrong; the server's output is printed then.

set -euo pipefail

TMP="${TEST_TMPDIR:-$(mktemp -d)}"
SERVER_PID=""
SERVER_NAME=""
SERVER_OUT=""
SERVER_ERR=""
PORT=""
ALL_PIDS=()
STARTS=0

# Whatever happens, no server outlives the test.
cleanup() {
  local pid
  for pid in "${ALL_PIDS[@]}"; do
    kill -KILL "$pid" 2>/dev/null || true
  done
}
trap cleanup EXIT

# fail prints its arguments and the server's output, stops the server and
# exits 1.
fail() {
  echo "FAIL: $*" >&2
  if [[ -n "$SERVER_OUT" ]]; then
    echo "--- $SERVER_NAME stdout:" >&2
    cat "$SERVER_OUT" >&2 || true
    echo "--- $SERVER_NAME stderr:" >&2
    cat "$SERVER_ERR" >&2 || true
  fi
  if [[ -n "$SERVER_PID" ]] && kill -0 "$SERVER_PID" 2>/dev/null; then
    kill -KILL "$SERVER_PID" 2>/dev/null || true
  fi
  exit 1
}

# skip exits 0 with a SKIP message: only for a client tool that is not
# installed (tools/setup.sh installs them).
skip() {
  echo "SKIP: $*"
  exit 0
}

require_tool() {
  command -v "$1" >/dev/null 2>&1 || skip "$1 is not installed (tools/setup.sh installs it)"
}

# python3 drives raw protocol checks; it is not optional.
command -v python3 >/dev/null 2>&1 || fail "python3 is needed to run this test"

# start_server NAME ARGS...: starts examples/NAME and waits (up to 20 s,
# sanitizer builds start slowly) for its "listening on HOST:PORT" line.
# Sets SERVER_PID and PORT ("" for a server started with --unix).
start_server() {
  SERVER_NAME="$1"
  shift
  STARTS=$((STARTS + 1))  # fresh files: never read an earlier run's line
  SERVER_OUT="$TMP/$SERVER_NAME.$STARTS.out"
  SERVER_ERR="$TMP/$SERVER_NAME.$STARTS.err"
  rm -f "$SERVER_OUT" "$SERVER_ERR"
  "examples/$SERVER_NAME" "$@" >"$SERVER_OUT" 2>"$SERVER_ERR" &
  SERVER_PID=$!
  ALL_PIDS+=("$SERVER_PID")
  local line=""
  for _ in $(seq 200); do
    line=$(grep -m1 '^listening on ' "$SERVER_OUT" || true)
    [[ -n "$line" ]] && break
    kill -0 "$SERVER_PID" 2>/dev/null || fail "$SERVER_NAME exited before listening"
    sleep 0.1
  done
  [[ -n "$line" ]] || fail "$SERVER_NAME printed no 'listening on' line within 20 s"
  if [[ "$line" =~ ^listening\ on\ unix:(.+)$ ]]; then  # --unix PATH
    PORT=""
  else
    [[ "$line" =~ ^listening\ on\ 127\.0\.0\.1:([0-9]+)$ ]] || fail "unexpected listening line: '$line'"
    PORT="${BASH_REMATCH[1]}"
    [[ "$PORT" != 0 ]] || fail "listening line shows port 0, not the bound port"
  fi
  echo "$SERVER_NAME: $line"
}

# stop_server: SIGTERM, then the server must exit with code 0 within 5 s.
stop_server() {
  kill -TERM "$SERVER_PID" || fail "$SERVER_NAME was not running at the end"
  for _ in $(seq 50); do
    kill -0 "$SERVER_PID" 2>/dev/null || break
    sleep 0.1
  done
  if kill -0 "$SERVER_PID" 2>/dev/null; then
    fail "$SERVER_NAME still running 5 s after SIGTERM"
  fi
  local rc=0
  wait "$SERVER_PID" || rc=$?
  SERVER_PID=""
  [[ "$rc" == 0 ]] || fail "$SERVER_NAME exited with code $rc after SIGTERM"
  echo "$SERVER_NAME: stopped cleanly on SIGTERM"
}

# expect_eq WHAT ACTUAL EXPECTED
expect_eq() {
  if [[ "$2" != "$3" ]]; then
    fail "$1: got $(printf '%q' "$2"), want $(printf '%q' "$3")"
  fi
}

# save_server VAR / use_server VAR: juggle two servers (see the top).
save_server() {
  printf -v "$1_PID" '%s' "$SERVER_PID"
  printf -v "$1_NAME" '%s' "$SERVER_NAME"
  printf -v "$1_OUT" '%s' "$SERVER_OUT"
  printf -v "$1_ERR" '%s' "$SERVER_ERR"
  printf -v "$1_PORT" '%s' "$PORT"
}
use_server() {
  local v
  v="$1_PID"; SERVER_PID="${!v}"
  v="$1_NAME"; SERVER_NAME="${!v}"
  v="$1_OUT"; SERVER_OUT="${!v}"
  v="$1_ERR"; SERVER_ERR="${!v}"
  v="$1_PORT"; PORT="${!v}"
}
