#!/usr/bin/env bash
# Smoke test of net_bench.sh's echo baselines: raw_epoll_server (reading
# until EAGAIN and with --short-read), uring_echo_server, asio_echo_server (1 and 2 threads)
# the Go echo server (tools/bench/go/echo_server.go, built here with
# go build as net_bench.sh builds it; 1 and 2 threads) and tokio's
# (tools/bench/tokio's tokio_echo_server, built here offline with Debian's
# cargo and librust-tokio-dev as net_bench.sh builds it; 1 and 2 threads)
# each print
# `listening on HOST:PORT`, echo what echo_load sends (echo_load checks
# every byte), report their CPU time through echo_load --server-pid, and
# exit 0 on SIGTERM. Without `go` on PATH the Go server is skipped, and
# without /usr/bin/cargo and librust-tokio-dev the tokio server, each with
# a message, and the test still passes: the build needs neither, and a
# test does not install packages.
set -uo pipefail
RAW=tools/bench/raw_epoll_server
ASIO=tools/bench/asio_echo_server
URING=tools/bench/uring_echo_server
LOAD=tools/bench/echo_load
GO_SRC=tools/bench/go/echo_server.go
TOKIO_BUILD=tools/bench/tokio/build.sh
tmp=${TEST_TMPDIR:-$(mktemp -d)}
fail() { echo "echo_servers_test: $*" >&2; exit 1; }

check() {  # [SIZE=bytes] check NAME CMD...
  local name=$1 pid port line rc out=$tmp/$1.out err=$tmp/$1.err
  shift
  # Files of this server's own: with one shared file, the loop below could
  # read the previous server's port before the new server's shell had
  # truncated it, and connect to a port nobody (or another test) listens on.
  : >"$out"
  "$@" --host 127.0.0.1 --port 0 >"$out" 2>"$err" &
  pid=$!
  for _ in $(seq 200); do
    port=$(sed -n 's/^listening on 127\.0\.0\.1:\([0-9][0-9]*\)$/\1/p' "$out")
    [[ -n $port ]] && break
    if ! kill -0 "$pid" 2>/dev/null; then
      wait "$pid"
      rc=$?
      # Status 3: uring_echo_server found no io_uring of the kind it needs.
      if ((rc == 3)) && [[ $name == uring* ]]; then
        echo "$name skipped: $(cat "$err")"
        return 0
      fi
      fail "$name exited (status $rc) before listening: $(cat "$err")"
    fi
    sleep 0.05
  done
  [[ -n $port ]] || fail "$name printed no 'listening on 127.0.0.1:PORT'"
  line=$("$LOAD" --host 127.0.0.1 --port "$port" --connections 20 --size "${SIZE:-64}" --duration 1 \
    --warmup 0 --server-pid "$pid") || fail "$name: echo_load failed: $line"
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
check uring "$URING"
# Messages of 1 MB through 16 buffers of 4 KiB for 20 connections: the
# server runs out of buffers, queues them per connection and sends in parts.
SIZE=1000000 check uring-starved "$URING" --buffers 16 --buffer-size 4096
check uring-direct "$URING" --direct-send
SIZE=1000000 check uring-direct-starved "$URING" --direct-send --buffers 16 --buffer-size 4096
check asio-1 "$ASIO" --threads 1
check asio-2 "$ASIO" --threads 2
if command -v go >/dev/null; then
  # GOCACHE in the test's own temporary directory, the one place a
  # sandboxed test can count on writing to.
  GOCACHE="$tmp/gocache" GO111MODULE=off go build -o "$tmp/go_echo_server" "$GO_SRC" >"$tmp/go_build.log" 2>&1 ||
    fail "go build $GO_SRC failed: $(cat "$tmp/go_build.log")"
  check go-1 "$tmp/go_echo_server" --threads 1
  check go-2 "$tmp/go_echo_server" --threads 2
else
  echo "go is not installed (Debian package golang-go): Go echo server skipped"
fi
rc=0
"$TOKIO_BUILD" "$tmp/tokio" --bin tokio_echo_server || rc=$?
case $rc in
  0)
    check tokio-1 "$tmp/tokio/target/release/tokio_echo_server" --threads 1
    check tokio-2 "$tmp/tokio/target/release/tokio_echo_server" --threads 2
    ;;
  3) echo "cargo or librust-tokio-dev is not installed (Debian packages cargo, librust-tokio-dev): tokio echo server skipped" ;;
  *) fail "tools/bench/tokio/build.sh failed: $(tail -n 30 "$tmp/tokio/build.log")" ;;
esac
echo PASS
