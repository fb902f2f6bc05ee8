#!/usr/bin/env bash
# Smoke test of net_bench.sh's echo baselines: raw_epoll_server (reading
# until EAGAIN and with --short-read) and asio_echo_server (1 and 2
# threads) each print `listening on HOST:PORT`, echo what echo_load sends
# (echo_load checks every byte), report their CPU time through
# echo_load --server-pid, and exit 0 on SIGTERM.
set -uo pipefail
RAW=tools/bench/raw_epoll_server
ASIO=tools/bench/asio_echo_server
LOAD=tools/bench/echo_load
tmp=${TEST_TMPDIR:-$(mktemp -d)}
fail() { echo "echo_servers_test: $*" >&2; exit 1; }

check() {  # check NAME CMD...
  local name=$1 pid port line rc
  shift
  "$@" --host 127.0.0.1 --port 0 >"$tmp/out" 2>"$tmp/err" &
  pid=$!
  for _ in $(seq 200); do
    port=$(sed -n 's/^listening on 127\.0\.0\.1:\([0-9][0-9]*\)$/\1/p' "$tmp/out")
    [[ -n $port ]] && break
    kill -0 "$pid" 2>/dev/null || fail "$name exited before listening: $(cat "$tmp/err")"
    sleep 0.05
  done
  [[ -n $port ]] || fail "$name printed no 'listening on 127.0.0.1:PORT'"
  line=$("$LOAD" --host 127.0.0.1 --port "$port" --connections 20 --size 64 --duration 1 --warmup 0 \
    --server-pid "$pid") || fail "$name: echo_load failed: $line"
  [[ $line =~ errors=0 ]] || fail "$name: $line"
  [[ $line =~ server_cpu_s=[0-9.]+\ msgs_per_server_cpu_s=[0-9.]+$ ]] || fail "$name: no server CPU time: $line"
  kill -TERM "$pid"
  wait "$pid"
  rc=$?
  ((rc == 0)) || fail "$name exited with status $rc on SIGTERM"
  echo "$name: $line"
}

check raw "$RAW" --mode echo
check raw-short "$RAW" --mode echo --short-read
check asio-1 "$ASIO" --threads 1
check asio-2 "$ASIO" --threads 2
echo PASS
