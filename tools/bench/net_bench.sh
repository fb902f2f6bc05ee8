#!/usr/bin/env bash
# tools/bench/net_bench.sh: weft's network examples against same-run baselines.
#
#   tools/bench/net_bench.sh [--duration SECS] [--warmup SECS] [--rounds N]
#                            [--long] [--sections echo,http,http_server,resp]
#                            [--no-build]
#
# Each section runs a baseline and the weft example back to back, with the
# same load generator, and prints both and the ratio weft/raw. Each pair
# runs --rounds times, alternating baseline and weft, and the tables show
# the median of each side: on a shared machine one run of either can be
# 15% off.
#   echo  raw_epoll_server --mode echo (reads until EAGAIN), the same with
#         --short-read (a short read ends the read loop, as in weft),
#         uring_echo_server (one thread, every socket call on one io_uring;
#         skipped where the kernel cannot set up its ring), asio_echo_server (Boost.Asio, one io_context per thread),
#         tools/bench/go/echo_server.go (a goroutine per connection, built
#         with Debian's golang-go, installed if missing; skipped if Go or
#         the build is missing), tools/bench/tokio's tokio_echo_server (a
#         task per connection on tokio 1.24's multi-thread runtime, built
#         offline with Debian's cargo and librust-tokio-dev, installed if
#         missing; skipped if the build fails) and weft echo_server, load: echo_load
#         (64-byte ping-pong), at 100 and 1000 connections, pinned (server
#         on CPU 0, asio, go and tokio --threads 1, weft --workers 1, load on
#         CPU 1) and unpinned (asio, go and tokio --threads 2, weft --workers
#         2; raw and uring are single-threaded). All seven run in each round, the order rotated
#         per round; next to msgs/s and p50/p99 it shows k msgs per server
#         CPU-second (the server's user + system time over the measured
#         window, from /proc/PID/stat).
#   http  raw_epoll_server --mode http  vs  weft http_hello,   load: wrk -t1
#         --latency, at 100 and 1000 connections, pinned.
#   http_server  tools/bench:http_hello_handwritten (the hand-written
#         http_hello from before weft::http::Server)  vs  weft http_hello
#         (on http::Server, Beast parsing), load: wrk -t1 --latency, at 100
#         and 1000 connections, pinned, both --workers 1.
#   resp  redis-server                  vs  weft resp_server,  load:
#         redis-benchmark -t ping_inline,set,get -c 50 -q, pinned.
#   https nginx (one process, TLS, return 200 "Hello, World!\n")  vs
#         weft http_hello --tls-cert/--tls-key, the same certificate
#         (ECDSA P-256, made per run) and OpenSSL's default TLS 1.3 suite
#         on both; load: wrk -t1 --latency over https, at 100 and 1000
#         connections, pinned, both on one CPU (weft --workers 1).
# A weft example that is not built yet is reported as skipped; the baseline
# still runs.
#
# Flags (and the environment variables they override):
#   --duration SECS   measured seconds per run (NET_BENCH_DURATION, default 5)
#   --warmup SECS     unmeasured seconds before each run (NET_BENCH_WARMUP, 1)
#   --rounds N        runs of each side per row, median shown (NET_BENCH_ROUNDS, 3)
#   --long            --duration 30, and 10x the redis-benchmark requests
#   --sections LIST   comma-separated subset of echo,http,http_server,resp,https (all)
#   --no-build        use the binaries as they are; do not run bazel. The Go
#                     and tokio echo servers are still built (go build, under
#                     a second; cargo build, about 30 s; into this run's
#                     temporary directory, so there is no earlier binary to
#                     use) unless GO_ECHO_SERVER / TOKIO_ECHO_SERVER is set
# Environment:
#   NET_BENCH_CONNECTIONS      connection counts for echo and http ("100 1000")
#   NET_BENCH_REDIS_REQUESTS   redis-benchmark -n (200000)
#   WEFT_ECHO_SERVER, WEFT_HTTP_SERVER, WEFT_RESP_SERVER   weft binaries
#       (default: <bazel-bin>/examples/{echo_server,http_hello,resp_server};
#       each takes --host --port 0 --workers N, prints `listening on
#       HOST:PORT` and exits on SIGTERM)
#   RAW_EPOLL_SERVER, ECHO_LOAD, HTTP_HANDWRITTEN, ASIO_ECHO_SERVER   the
#       baseline binaries (default: bazel-bin)
#   GO_ECHO_SERVER   a built tools/bench/go/echo_server.go (default: go build
#       it for this run)
#   TOKIO_ECHO_SERVER   a built tokio_echo_server (default: cargo build it
#       for this run, about 30 s)
#   SERVER_CPU, CLIENT_CPU        CPUs for pinned runs (0 and 1)
#   BAZEL, BAZEL_STARTUP_FLAGS    e.g. BAZEL_STARTUP_FLAGS=--output_base=/tmp/ob
#
# Exit status: 0 if every run that was attempted succeeded, 1 otherwise.
set -euo pipefail
# Binaries given relative to the caller's directory stay valid after the cd.
for v in RAW_EPOLL_SERVER ECHO_LOAD HTTP_HANDWRITTEN ASIO_ECHO_SERVER GO_ECHO_SERVER TOKIO_ECHO_SERVER WEFT_ECHO_SERVER WEFT_HTTP_SERVER WEFT_RESP_SERVER; do
  if [[ -n ${!v:-} && ${!v} != /* ]]; then printf -v "$v" '%s' "$PWD/${!v}"; fi
done
cd "$(dirname "$0")/../.."

duration=${NET_BENCH_DURATION:-5}
warmup=${NET_BENCH_WARMUP:-1}
rounds=${NET_BENCH_ROUNDS:-3}
redis_requests=${NET_BENCH_REDIS_REQUESTS:-200000}
connections=${NET_BENCH_CONNECTIONS:-100 1000}
sections=echo,http,http_server,resp,https
build=1
server_cpu=${SERVER_CPU:-0}
client_cpu=${CLIENT_CPU:-1}
bazel=${BAZEL:-bazel}
read -r -a bazel_startup <<<"${BAZEL_STARTUP_FLAGS:-}"

usage() {
  sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//' >&2
  exit 2
}
while (($#)); do
  case $1 in
    --duration) duration=$2; shift ;;
    --duration=*) duration=${1#*=} ;;
    --warmup) warmup=$2; shift ;;
    --warmup=*) warmup=${1#*=} ;;
    --rounds) rounds=$2; shift ;;
    --rounds=*) rounds=${1#*=} ;;
    --long) duration=30; redis_requests=$((redis_requests * 10)) ;;
    --sections) sections=$2; shift ;;
    --sections=*) sections=${1#*=} ;;
    --no-build) build=0 ;;
    -h | --help) usage ;;
    *) echo "net_bench: unknown argument: $1" >&2; usage ;;
  esac
  shift
done
[[ $duration =~ ^[0-9]+$ && $duration -gt 0 ]] || { echo "net_bench: --duration must be whole seconds" >&2; exit 2; }
[[ $warmup =~ ^[0-9]+$ ]] || { echo "net_bench: --warmup must be whole seconds" >&2; exit 2; }
[[ $rounds =~ ^[0-9]+$ && $rounds -gt 0 ]] || { echo "net_bench: --rounds must be a positive integer" >&2; exit 2; }
want() { [[ ,$sections, == *,$1,* ]]; }

failed=0
tmp=$(mktemp -d "${TMPDIR:-/tmp}/net_bench.XXXXXX")
pids=()  # every process started in the background and not yet reaped

# ---- process handling ------------------------------------------------------

forget() {  # forget PID: drop it from pids
  local p keep=()
  for p in "${pids[@]}"; do [[ $p == "$1" ]] || keep+=("$p"); done
  pids=("${keep[@]}")
}

alive() {  # alive PID: running and not yet a zombie
  local st
  st=$(ps -o stat= -p "$1" 2>/dev/null) || return 1
  [[ $st != Z* ]]
}

# stop PID: SIGTERM, then SIGKILL after 5 s; reaps it and returns its status
# (0 for a clean exit on SIGTERM).
stop() {
  local pid=$1 i rc=0
  kill -TERM "$pid" 2>/dev/null || true
  for ((i = 0; i < 100; i++)); do alive "$pid" || break; sleep 0.05; done
  if alive "$pid"; then
    echo "net_bench: pid $pid ignored SIGTERM for 5 s; killing it" >&2
    kill -KILL "$pid" 2>/dev/null || true
  fi
  wait "$pid" 2>/dev/null || rc=$?
  forget "$pid"
  return "$rc"
}

# shellcheck disable=SC2317  # invoked by the EXIT trap
cleanup() {
  local p
  trap - EXIT INT TERM
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do
    for ((i = 0; i < 40; i++)); do alive "$p" || break; sleep 0.05; done
    kill -KILL "$p" 2>/dev/null || true
    wait "$p" 2>/dev/null || true
  done
  rm -rf "$tmp"
}
trap cleanup EXIT
trap 'echo "net_bench: interrupted" >&2; exit 130' INT TERM

pin() {  # pin CPU|-: the command prefix that pins to CPU ("-": none)
  if [[ $1 == - ]]; then pin_cmd=(); else pin_cmd=(taskset -c "$1"); fi
}

# start_server CPU|- CMD...: starts a server that prints `listening on
# HOST:PORT`; sets server_pid and server_port. Returns 1 (and says why) if it
# exits or stays silent for 15 s.
server_seq=0
start_server() {
  pin "$1"; shift
  local out=$tmp/server.$((++server_seq))
  : >"$out.out"  # exists before the server's shell opens it, for the polling below
  "${pin_cmd[@]}" "$@" >"$out.out" 2>"$out.err" </dev/null &
  server_pid=$!
  pids+=("$server_pid")
  server_port=
  local deadline=$((SECONDS + 15))
  while :; do
    server_port=$(sed -n 's/^listening on .*:\([0-9][0-9]*\)$/\1/p' "$out.out" | head -n 1)
    [[ -n $server_port ]] && return 0
    if ! alive "$server_pid"; then
      echo "net_bench: $* exited before listening:" >&2
      sed 's/^/    /' "$out.err" >&2
      stop "$server_pid" || true
      return 1
    fi
    if ((SECONDS >= deadline)); then
      echo "net_bench: $* printed no 'listening on HOST:PORT' in 15 s" >&2
      stop "$server_pid" || true
      return 1
    fi
    sleep 0.05
  done
}

# stop_server: stops the server started last; warns if it did not exit
# cleanly on SIGTERM (a benchmark result from it still stands).
stop_server() {
  local rc=0
  stop "$server_pid" || rc=$?
  ((rc == 0)) || echo "net_bench: warning: server exited with status $rc after SIGTERM" >&2
}

# run_client CPU|- TIMEOUT OUT CMD...: runs a load generator to completion
# (in the background, so that a signal to this script interrupts it),
# output to OUT; returns its status.
run_client() {
  pin "$1"
  local limit=$2 out=$3 rc=0
  shift 3
  timeout -k 5 "$limit" "${pin_cmd[@]}" "$@" >"$out" 2>&1 </dev/null &
  local pid=$!
  pids+=("$pid")
  wait "$pid" || rc=$?
  forget "$pid"
  return "$rc"
}

ratio() {  # ratio A B: A/B to 2 places, or "-" unless both are numbers
  awk -v a="$1" -v b="$2" 'BEGIN {
    if (a ~ /^[0-9.]+$/ && b ~ /^[0-9.]+$/ && b > 0) printf "%.2f", a / b; else print "-" }'
}
# median V...: the median of the values, or FAIL if any is not a number.
median() {
  local v
  for v in "$@"; do [[ $v =~ ^[0-9.]+$ ]] || { echo FAIL; return; }; done
  (($#)) || { echo FAIL; return; }
  printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 }
    END { if (NR % 2) print v[(NR + 1) / 2]; else printf "%.1f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}
kv() { sed -n "s/.*\\b$1=\\([^ ]*\\).*/\\1/p" <<<"$2"; }

# ensure_tool BINARY PACKAGE: installs PACKAGE with apt-get if BINARY is
# missing; returns 1 if it is still missing.
ensure_tool() {
  command -v "$1" >/dev/null && return 0
  if command -v apt-get >/dev/null && [[ $(id -u) == 0 ]]; then
    echo "net_bench: $1 is missing; installing Debian package $2" >&2
    { apt-get install -y -q "$2" || { apt-get update -q && apt-get install -y -q "$2"; }; } >"$tmp/apt.log" 2>&1 || true
  fi
  command -v "$1" >/dev/null && return 0
  echo "net_bench: $1 is missing (Debian package $2)" >&2
  return 1
}

# ---- build -----------------------------------------------------------------

base_targets=() weft_targets=()
[[ -n ${RAW_EPOLL_SERVER:-} ]] || base_targets+=(//tools/bench:raw_epoll_server)
[[ -n ${ECHO_LOAD:-} ]] || base_targets+=(//tools/bench:echo_load)
if want http_server && [[ -z ${HTTP_HANDWRITTEN:-} ]]; then base_targets+=(//tools/bench:http_hello_handwritten); fi
if want echo && [[ -z ${ASIO_ECHO_SERVER:-} ]]; then base_targets+=(//tools/bench:asio_echo_server); fi
if want echo && [[ -z ${URING_ECHO_SERVER:-} ]]; then base_targets+=(//tools/bench:uring_echo_server); fi
declare -A weft_var=([echo_server]=WEFT_ECHO_SERVER [http_hello]=WEFT_HTTP_SERVER [resp_server]=WEFT_RESP_SERVER)
for name in echo_server http_hello resp_server; do
  var=${weft_var[$name]}
  # An example that has not landed yet has no source file (or no target).
  if [[ -z ${!var:-} && -f examples/$name.cc ]] && grep -Fq "\"$name\"" examples/BUILD.bazel 2>/dev/null; then
    weft_targets+=("//examples:$name")
  fi
done
bin="bazel-bin"
targets=("${base_targets[@]}" "${weft_targets[@]}")
if ((build)) && ((${#targets[@]})); then
  echo "building ${targets[*]} (-c opt)"
  if ! "$bazel" "${bazel_startup[@]}" build -c opt "${targets[@]}" >"$tmp/build.log" 2>&1; then
    # Without the weft examples, so that the baselines still run.
    if ((${#weft_targets[@]})); then
      echo "net_bench: warning: building the weft examples failed; their columns will be skipped:" >&2
      tail -n 20 "$tmp/build.log" | sed 's/^/    /' >&2
    fi
    if ((${#base_targets[@]})) && ! "$bazel" "${bazel_startup[@]}" build -c opt "${base_targets[@]}" \
      >"$tmp/build.log" 2>&1; then
      echo "net_bench: bazel build failed:" >&2
      tail -n 30 "$tmp/build.log" >&2
      exit 1
    fi
    # Stale binaries from an earlier build must not stand in for them.
    for t in "${weft_targets[@]}"; do
      name=${t#//examples:}
      printf -v "${weft_var[$name]}" '%s' "(not built: bazel build -c opt $t failed)"
    done
  fi
  # bazel-bin is a symlink that the last build of any configuration moves;
  # ask for the -c opt output directory instead.
  bin=$("$bazel" "${bazel_startup[@]}" info -c opt bazel-bin 2>/dev/null) || bin="bazel-bin"
fi
# The Go echo server is not a bazel target (the WORKSPACE has no Go rules):
# go build it into $tmp, with its build cache there too. Debian's Go 1.19
# ships the standard library compiled, so a cold build takes under a second;
# a cache kept between runs would save little and leave a directory behind.
# A missing Go or a failed build skips the go rows, as for asio.
go_echo=${GO_ECHO_SERVER:-}
if want echo && [[ -z $go_echo ]]; then
  go_echo="(not built: go is missing)"
  if ensure_tool go golang-go; then
    echo "building tools/bench/go/echo_server.go (go build)"
    if (cd tools/bench/go && GOCACHE="$tmp/gocache" GO111MODULE=off go build -o "$tmp/go_echo_server" echo_server.go) \
      >"$tmp/go_build.log" 2>&1; then
      go_echo=$tmp/go_echo_server
    else
      echo "net_bench: warning: go build of tools/bench/go/echo_server.go failed; the go rows will be skipped:" >&2
      tail -n 20 "$tmp/go_build.log" | sed 's/^/    /' >&2
      go_echo="(not built: go build failed)"
    fi
  fi
fi
# tokio's echo server: tools/bench/tokio/build.sh (Debian's cargo, offline,
# from Debian's crate sources, into $tmp). A failed build skips the tokio rows.
tokio_echo=${TOKIO_ECHO_SERVER:-}
if want echo && [[ -z $tokio_echo ]]; then
  if [[ ! -x /usr/bin/cargo ]] || ! compgen -G "/usr/share/cargo/registry/tokio-1.*" >/dev/null; then
    if command -v apt-get >/dev/null && [[ $(id -u) == 0 ]]; then
      echo "net_bench: installing Debian packages cargo and librust-tokio-dev" >&2
      apt-get install -y -q --no-install-recommends cargo librust-tokio-dev >"$tmp/apt.log" 2>&1 || true
    fi
  fi
  echo "building tools/bench/tokio (cargo build --release, offline)"
  rc=0
  tools/bench/tokio/build.sh "$tmp/tokio" --bin tokio_echo_server || rc=$?
  case $rc in
    0) tokio_echo=$tmp/tokio/target/release/tokio_echo_server ;;
    3) tokio_echo="(not built: cargo or librust-tokio-dev is missing)" ;;
    *)
      echo "net_bench: warning: cargo build of tools/bench/tokio failed; the tokio rows will be skipped:" >&2
      tail -n 20 "$tmp/tokio/build.log" | sed 's/^/    /' >&2
      tokio_echo="(not built: cargo build failed)"
      ;;
  esac
fi
raw_server=${RAW_EPOLL_SERVER:-$bin/tools/bench/raw_epoll_server}
echo_load=${ECHO_LOAD:-$bin/tools/bench/echo_load}
http_handwritten=${HTTP_HANDWRITTEN:-$bin/tools/bench/http_hello_handwritten}
asio_echo=${ASIO_ECHO_SERVER:-$bin/tools/bench/asio_echo_server}
uring_echo=${URING_ECHO_SERVER:-$bin/tools/bench/uring_echo_server}
weft_echo=${WEFT_ECHO_SERVER:-$bin/examples/echo_server}
weft_http=${WEFT_HTTP_SERVER:-$bin/examples/http_hello}
weft_resp=${WEFT_RESP_SERVER:-$bin/examples/resp_server}
for b in "$raw_server" "$echo_load"; do
  [[ -x $b ]] || { echo "net_bench: $b is not built" >&2; exit 1; }
done

ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
if (($(nproc) < 2)); then
  echo "net_bench: warning: fewer than 2 CPUs; pinned runs share CPU $server_cpu" >&2
  client_cpu=$server_cpu
fi
echo "net_bench: $(nproc) CPUs, load average $(cut -d' ' -f1-3 /proc/loadavg) (anything else running skews the numbers)"
echo "net_bench: ${duration} s per run after ${warmup} s warm-up; pinned = server on CPU $server_cpu, load on CPU $client_cpu"

# ---- echo ------------------------------------------------------------------

# echo_run SERVER_CPU|- CLIENT_CPU|- CONNS SERVER...: sets res_rate (msgs/s,
# or FAIL), res_p50 and res_p99 (us) and res_kcpu (thousand messages per
# second of the server's CPU time, user + system over the measured window,
# read by echo_load from /proc/PID/stat). Not to be run in a subshell: the
# processes it starts must stay visible to cleanup.
echo_run() {
  local scpu=$1 ccpu=$2 conns=$3
  shift 3
  res_rate=FAIL res_p50=- res_p99=- res_kcpu=-
  start_server "$scpu" "$@" || return 0
  local out=$tmp/echo_load.out rc=0
  run_client "$ccpu" $((duration + warmup + 60)) "$out" \
    "$echo_load" --host 127.0.0.1 --port "$server_port" --connections "$conns" --size 64 \
    --duration "$duration" --warmup "$warmup" --server-pid "$server_pid" || rc=$?
  stop_server
  local line
  line=$(grep '^msgs_per_sec=' "$out" || true)
  if ((rc != 0)) || [[ -z $line ]]; then
    echo "net_bench: echo_load against $1 at $conns connections failed (status $rc):" >&2
    sed 's/^/    /' "$out" >&2
    return 0
  fi
  res_rate=$(kv msgs_per_sec "$line") res_p50=$(kv p50_us "$line") res_p99=$(kv p99_us "$line")
  res_kcpu=$(awk -v v="$(kv msgs_per_server_cpu_s "$line")" 'BEGIN { if (v ~ /^[0-9.]+$/) printf "%.1f", v / 1000; else print "-" }')
}

# range V...: "min-max" of the values, or "-" if any is not a number.
range() {
  local v
  for v in "$@"; do [[ $v =~ ^[0-9.]+$ ]] || { echo -; return; }; done
  printf '%s\n' "$@" | sort -g | awk '
    function f(x) { return x >= 100 ? sprintf("%.0f", x) : sprintf("%.1f", x) }
    NR == 1 { lo = $1 } { hi = $1 } END { printf "%s-%s", f(lo), f(hi) }'
}

if want echo; then
  echo
  echo "## echo: 64-byte ping-pong (echo_load)"
  echo
  echo "Servers: raw = raw_epoll_server, edge-triggered, reads until EAGAIN; raw-short = the same,"
  echo "a short read ends the read loop (as weft does); both one thread. uring = uring_echo_server,"
  echo "one thread, multishot recv and batched sends on one io_uring. asio = asio_echo_server,"
  echo "one io_context per thread (--threads = weft's --workers). go = tools/bench/go/echo_server.go,"
  echo "a goroutine per connection (--threads sets GOMAXPROCS). tokio = tools/bench/tokio's"
  echo "tokio_echo_server, a task per connection (--threads worker threads). weft = examples/echo_server."
  echo "Pinned: server on CPU $server_cpu with 1 thread/worker, load on CPU $client_cpu. Unpinned:"
  echo "2 threads/workers (raw and uring stay single-threaded), no pinning. Each round runs every server"
  echo "once, in an order rotated per round; cells are medians over $rounds rounds [min-max]."
  echo "k msgs/CPU-s = messages per second of the server's own CPU time (user + system)."
  [[ -x $weft_echo ]] || echo "weft echo_server not built ($weft_echo): weft rows skipped"
  [[ -x $asio_echo ]] || echo "asio_echo_server not built ($asio_echo): asio rows skipped"
  # Exit status 3: the kernel cannot set up the server's ring (Linux < 6.1,
  # or io_uring forbidden); its rows are skipped rather than failed.
  if [[ -x $uring_echo ]]; then
    rc=0
    timeout 1 "$uring_echo" --host 127.0.0.1 --port 0 >/dev/null 2>"$tmp/uring_probe.err" || rc=$?
    if ((rc == 3)); then
      echo "uring_echo_server cannot run here ($(cat "$tmp/uring_probe.err")): uring rows skipped"
      uring_echo="(no io_uring)"
    fi
  else
    echo "uring_echo_server not built ($uring_echo): uring rows skipped"
  fi
  [[ -x $go_echo ]] || echo "Go echo_server not built ($go_echo): go rows skipped"
  [[ -x $tokio_echo ]] || echo "tokio_echo_server not built ($tokio_echo): tokio rows skipped"
  echo
  echo "| placement | conns | server | msgs/s | p50 us | p99 us | k msgs/CPU-s | /raw msgs/s | /raw k msgs/CPU-s | /raw p99 |"
  echo "|---|---|---|---|---|---|---|---|---|---|"
  echo_names=(raw raw-short uring asio go tokio weft)
  for placement in pinned unpinned; do
    if [[ $placement == pinned ]]; then scpu=$server_cpu ccpu=$client_cpu workers=1; else scpu=- ccpu=- workers=2; fi
    for conns in $connections; do
      declare -A er=() e50=() e99=() ec=()
      for ((round = 0; round < rounds; round++)); do
        for ((k = 0; k < ${#echo_names[@]}; k++)); do
          name=${echo_names[$(((k + round) % ${#echo_names[@]}))]}
          case $name in
            raw) cmd=("$raw_server" --mode echo) ;;
            raw-short) cmd=("$raw_server" --mode echo --short-read) ;;
            uring) [[ -x $uring_echo ]] || continue; cmd=("$uring_echo") ;;
            asio) [[ -x $asio_echo ]] || continue; cmd=("$asio_echo" --threads "$workers") ;;
            go) [[ -x $go_echo ]] || continue; cmd=("$go_echo" --threads "$workers") ;;
            tokio) [[ -x $tokio_echo ]] || continue; cmd=("$tokio_echo" --threads "$workers") ;;
            weft) [[ -x $weft_echo ]] || continue; cmd=("$weft_echo" --workers "$workers") ;;
          esac
          echo_run "$scpu" "$ccpu" "$conns" "${cmd[@]}" --host 127.0.0.1 --port 0
          er[$name]+="$res_rate " e50[$name]+="$res_p50 " e99[$name]+="$res_p99 " ec[$name]+="$res_kcpu "
        done
      done
      base_rate='' base_kcpu='' base_p99=''
      for name in "${echo_names[@]}"; do
        [[ -n ${er[$name]:-} ]] || continue
        read -r -a vr <<<"${er[$name]}"; read -r -a v50 <<<"${e50[$name]}"
        read -r -a v99 <<<"${e99[$name]}"; read -r -a vc <<<"${ec[$name]}"
        m_rate=$(median "${vr[@]}") m_p50=$(median "${v50[@]}") m_p99=$(median "${v99[@]}") m_kcpu=$(median "${vc[@]}")
        [[ $m_rate == FAIL ]] && failed=1
        if [[ $name == raw ]]; then base_rate=$m_rate base_kcpu=$m_kcpu base_p99=$m_p99; fi
        printf '| %s%s | %s | %s | %s [%s] | %s | %s [%s] | %s [%s] | %s | %s | %s |\n' "$placement" \
          "$([[ $placement == pinned ]] && echo " (1)" || echo " (2)")" "$conns" "$name" \
          "$m_rate" "$(range "${vr[@]}")" "$m_p50" "$m_p99" "$(range "${v99[@]}")" \
          "$m_kcpu" "$(range "${vc[@]}")" \
          "$(ratio "$m_rate" "$base_rate")" "$(ratio "$m_kcpu" "$base_kcpu")" "$(ratio "$m_p99" "$base_p99")"
      done
      unset er e50 e99 ec
    done
  done
fi

# ---- http ------------------------------------------------------------------

# to_us VALUE: converts wrk's "812.00us", "1.23ms", "2.01s" to microseconds.
to_us() {
  awk -v v="$1" 'BEGIN {
    if (v ~ /us$/) m = 1; else if (v ~ /ms$/) m = 1000; else if (v ~ /m$/) m = 60e6; else if (v ~ /s$/) m = 1e6; else { print "-"; exit }
    sub(/[a-z]+$/, "", v); printf "%.1f", v * m }'
}

# cpu_ticks PID: the process's user + system time in clock ticks (all its
# threads), from /proc/PID/stat; empty if it cannot be read.
cpu_ticks() {
  local stat
  stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 0
  # Fields after the ")" that ends the command name: utime is the 12th, stime the 13th.
  awk '{ print $12 + $13 }' <<<"${stat##*) }"
}
clk_tck=$(getconf CLK_TCK 2>/dev/null || echo 100)

# http_run CONNS SERVER...: sets res_rate (req/s, or FAIL), res_p99 (us) and
# res_kcpu (see wrk_run).
http_run() {
  local conns=$1
  shift
  res_rate=FAIL res_p99=-
  start_server "$server_cpu" "$@" || return 0
  wrk_run "$conns" "http://127.0.0.1:$server_port/" "$1"
}

# wrk_run CONNS URL NAME: loads the server started last (server_pid) with
# wrk, then stops it; sets res_rate (req/s, or FAIL), res_p99 (us) and
# res_kcpu: thousand requests per second of the server's own CPU time (user
# + system over the measured run, from /proc/PID/stat), or "-".
wrk_run() {
  local conns=$1 url=$2
  shift 2
  res_rate=FAIL res_p99=- res_kcpu=-
  local out=$tmp/wrk.out rc=0 t0 t1 w0 w1
  if ((warmup > 0)); then
    run_client "$client_cpu" $((warmup + 60)) "$out" wrk -t1 -c"$conns" -d"${warmup}s" "$url" || rc=$?
  fi
  t0=$(cpu_ticks "$server_pid") w0=$(date +%s.%N)
  ((rc == 0)) && { run_client "$client_cpu" $((duration + 60)) "$out" \
    wrk -t1 -c"$conns" -d"${duration}s" --latency "$url" || rc=$?; }
  t1=$(cpu_ticks "$server_pid") w1=$(date +%s.%N)
  stop_server
  local rps p99
  rps=$(awk '/^Requests\/sec:/ { print $2 }' "$out")
  p99=$(awk '$1 == "99%" { print $2 }' "$out")
  if ((rc != 0)) || [[ -z $rps || -z $p99 ]]; then
    echo "net_bench: wrk against $1 at $conns connections failed (status $rc):" >&2
    sed 's/^/    /' "$out" >&2
    return 0
  fi
  if grep -Eq '^ *(Socket errors|Non-2xx)' "$out"; then
    echo "net_bench: warning: wrk against $1 at $conns connections reported errors:" >&2
    grep -E '^ *(Socket errors|Non-2xx)' "$out" | sed 's/^ */    /' >&2
  fi
  res_rate=$rps res_p99=$(to_us "$p99")
  # wrk's rate times the window it was measured over (which includes wrk's
  # start and exit, a few ms), over the server's CPU seconds in that window.
  if [[ -n $t0 && -n $t1 ]]; then
    res_kcpu=$(awk -v r="$rps" -v a="$t0" -v b="$t1" -v hz="$clk_tck" -v w0="$w0" -v w1="$w1" \
      'BEGIN { if (b > a) printf "%.1f", r * (w1 - w0) / ((b - a) / hz) / 1000; else print "-" }')
  fi
}

if want http; then
  echo
  echo "## http: wrk -t1 --latency, GET / -> 13-byte body, pinned"
  if ensure_tool wrk wrk; then
    [[ -x $weft_http ]] || echo "weft http_hello not built ($weft_http): weft columns skipped"
    echo
    echo "k req/CPU-s = requests per second of the server's own CPU time (user + system)."
    echo
    echo "| conns | raw req/s | raw p99 us | raw k req/CPU-s | weft req/s | weft p99 us | weft k req/CPU-s | weft/raw req/s | weft/raw p99 | weft/raw k req/CPU-s |"
    echo "|---|---|---|---|---|---|---|---|---|---|"
    for conns in $connections; do
      rr=() rp=() rc=() wr=() wp=() wc=()
      for ((round = 0; round < rounds; round++)); do
        http_run "$conns" "$raw_server" --mode http --host 127.0.0.1 --port 0
        rr+=("$res_rate") rp+=("$res_p99") rc+=("$res_kcpu")
        if [[ -x $weft_http ]]; then
          http_run "$conns" "$weft_http" --host 127.0.0.1 --port 0 --workers 1
          wr+=("$res_rate") wp+=("$res_p99") wc+=("$res_kcpu")
        fi
      done
      raw_rate=$(median "${rr[@]}") raw_p99=$(median "${rp[@]}") raw_kcpu=$(median "${rc[@]}")
      weft_rate=skipped weft_p99=- weft_kcpu=-
      if [[ -x $weft_http ]]; then
        weft_rate=$(median "${wr[@]}") weft_p99=$(median "${wp[@]}") weft_kcpu=$(median "${wc[@]}")
      fi
      [[ $raw_rate == FAIL || $weft_rate == FAIL ]] && failed=1
      printf '| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n' "$conns" "$raw_rate" "${raw_p99:--}" "$raw_kcpu" \
        "$weft_rate" "${weft_p99:--}" "$weft_kcpu" "$(ratio "$weft_rate" "$raw_rate")" \
        "$(ratio "$weft_p99" "$raw_p99")" "$(ratio "$weft_kcpu" "$raw_kcpu")"
    done
  else
    echo "http section skipped: wrk is not installed"
  fi
fi

# ---- http_server -----------------------------------------------------------

if want http_server; then
  echo
  echo "## http_server: hand-written http_hello vs http_hello on http::Server (Beast), wrk -t1 --latency, pinned"
  if ensure_tool wrk wrk; then
    if [[ ! -x $http_handwritten || ! -x $weft_http ]]; then
      echo "http_server section skipped: $http_handwritten or $weft_http is not built"
      failed=1
    else
      echo
      echo "k req/CPU-s = requests per second of the server's own CPU time (user + system); cells are"
      echo "medians over $rounds rounds [min-max]."
      echo
      echo "| conns | hand-written req/s | p99 us | k req/CPU-s | Beast req/s | p99 us | k req/CPU-s | Beast/hand-written req/s | p99 | k req/CPU-s |"
      echo "|---|---|---|---|---|---|---|---|---|---|"
      for conns in $connections; do
        hr=() hp=() hc=() br=() bp=() bc=()
        for ((round = 0; round < rounds; round++)); do
          http_run "$conns" "$http_handwritten" --host 127.0.0.1 --port 0 --workers 1
          hr+=("$res_rate") hp+=("$res_p99") hc+=("$res_kcpu")
          http_run "$conns" "$weft_http" --host 127.0.0.1 --port 0 --workers 1
          br+=("$res_rate") bp+=("$res_p99") bc+=("$res_kcpu")
        done
        h_rate=$(median "${hr[@]}") h_p99=$(median "${hp[@]}") h_kcpu=$(median "${hc[@]}")
        b_rate=$(median "${br[@]}") b_p99=$(median "${bp[@]}") b_kcpu=$(median "${bc[@]}")
        [[ $h_rate == FAIL || $b_rate == FAIL ]] && failed=1
        printf '| %s | %s [%s] | %s | %s | %s [%s] | %s | %s | %s | %s | %s |\n' "$conns" \
          "$h_rate" "$(range "${hr[@]}")" "${h_p99:--}" "$h_kcpu" "$b_rate" "$(range "${br[@]}")" "${b_p99:--}" \
          "$b_kcpu" "$(ratio "$b_rate" "$h_rate")" "$(ratio "$b_p99" "$h_p99")" "$(ratio "$b_kcpu" "$h_kcpu")"
      done
    fi
  else
    echo "http_server section skipped: wrk is not installed"
  fi
fi

# ---- https -----------------------------------------------------------------

# start_nginx CERT KEY: nginx in the foreground (no master process, one
# worker) on a free port, pinned, serving the hello body over TLS; sets
# server_pid and server_port.
start_nginx() {
  pin "$server_cpu"
  local cert=$1 key=$2 port conf=$tmp/nginx.conf
  mkdir -p "$tmp/nginx"
  for _ in 1 2 3 4 5; do
    port=$((20000 + RANDOM % 10000))  # below the ephemeral range, as for redis
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then continue; fi  # in use
    cat >"$conf" <<EOF
daemon off;
master_process off;
worker_processes 1;
pid $tmp/nginx/nginx.pid;
error_log $tmp/nginx/error.log;
events { worker_connections 8192; }
http {
  access_log off;
  client_body_temp_path $tmp/nginx/body;
  proxy_temp_path $tmp/nginx/proxy;
  fastcgi_temp_path $tmp/nginx/fastcgi;
  uwsgi_temp_path $tmp/nginx/uwsgi;
  scgi_temp_path $tmp/nginx/scgi;
  keepalive_requests 100000000;
  server {
    listen 127.0.0.1:$port ssl;
    ssl_certificate $cert;
    ssl_certificate_key $key;
    ssl_protocols TLSv1.2 TLSv1.3;
    location / { default_type text/plain; return 200 "Hello, World!\n"; }
  }
}
EOF
    "${pin_cmd[@]}" nginx -e "$tmp/nginx/error.log" -p "$tmp/nginx" -c "$conf" >"$tmp/nginx.out" 2>&1 </dev/null &
    server_pid=$!
    pids+=("$server_pid")
    local deadline=$((SECONDS + 10))
    while alive "$server_pid" && ((SECONDS < deadline)); do
      if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
        server_port=$port
        return 0
      fi
      sleep 0.05
    done
    echo "net_bench: nginx on port $port did not start:" >&2
    tail -n 5 "$tmp/nginx/error.log" "$tmp/nginx.out" 2>/dev/null | sed 's/^/    /' >&2
    stop "$server_pid" || true
  done
  return 1
}

if want https; then
  echo
  echo "## https: nginx vs weft http_hello over TLS (same certificate), wrk -t1 --latency, pinned"
  if ensure_tool wrk wrk && ensure_tool nginx nginx-light && ensure_tool openssl openssl; then
    if [[ ! -x $weft_http ]]; then
      echo "https section skipped: $weft_http is not built"
      failed=1
    elif ! openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
        -subj /CN=127.0.0.1 -keyout "$tmp/key.pem" -out "$tmp/cert.pem" >"$tmp/openssl.log" 2>&1; then
      echo "net_bench: openssl could not make a certificate:" >&2
      sed 's/^/    /' "$tmp/openssl.log" >&2
      failed=1
    else
      echo
      echo "k req/CPU-s = requests per second of the server's own CPU time (user + system)."
      echo
      echo "| conns | nginx req/s | nginx p99 us | nginx k req/CPU-s | weft req/s | weft p99 us | weft k req/CPU-s | weft/nginx req/s | weft/nginx p99 | weft/nginx k req/CPU-s |"
      echo "|---|---|---|---|---|---|---|---|---|---|"
      for conns in $connections; do
        nr=() np=() nc=() wr=() wp=() wc=()
        for ((round = 0; round < rounds; round++)); do
          res_rate=FAIL res_p99=- res_kcpu=-
          if start_nginx "$tmp/cert.pem" "$tmp/key.pem"; then
            wrk_run "$conns" "https://127.0.0.1:$server_port/" nginx
          fi
          nr+=("$res_rate") np+=("$res_p99") nc+=("$res_kcpu")
          res_rate=FAIL res_p99=- res_kcpu=-
          if start_server "$server_cpu" "$weft_http" --host 127.0.0.1 --port 0 --workers 1 \
              --tls-cert "$tmp/cert.pem" --tls-key "$tmp/key.pem"; then
            wrk_run "$conns" "https://127.0.0.1:$server_port/" "$weft_http"
          fi
          wr+=("$res_rate") wp+=("$res_p99") wc+=("$res_kcpu")
        done
        n_rate=$(median "${nr[@]}") n_p99=$(median "${np[@]}") n_kcpu=$(median "${nc[@]}")
        w_rate=$(median "${wr[@]}") w_p99=$(median "${wp[@]}") w_kcpu=$(median "${wc[@]}")
        [[ $n_rate == FAIL || $w_rate == FAIL ]] && failed=1
        printf '| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n' "$conns" "$n_rate" "${n_p99:--}" "$n_kcpu" \
          "$w_rate" "${w_p99:--}" "$w_kcpu" "$(ratio "$w_rate" "$n_rate")" "$(ratio "$w_p99" "$n_p99")" \
          "$(ratio "$w_kcpu" "$n_kcpu")"
      done
    fi
  else
    echo "https section skipped: wrk, nginx or openssl is missing"
  fi
fi

# ---- resp ------------------------------------------------------------------

# start_redis: redis-server on a free port, pinned; sets server_pid and
# server_port. redis-server needs a concrete port, so pick one below the
# ephemeral range and retry if another process takes it first.
start_redis() {
  pin "$server_cpu"
  local port out=$tmp/redis.out
  for _ in 1 2 3 4 5; do
    port=$((20000 + RANDOM % 10000))
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then continue; fi  # in use
    "${pin_cmd[@]}" redis-server --port "$port" --bind 127.0.0.1 --save '' --appendonly no \
      >"$out" 2>&1 </dev/null &
    server_pid=$!
    pids+=("$server_pid")
    local deadline=$((SECONDS + 10))
    while alive "$server_pid" && ((SECONDS < deadline)); do
      if [[ $(redis-cli -h 127.0.0.1 -p "$port" ping 2>/dev/null) == PONG ]]; then
        server_port=$port
        return 0
      fi
      sleep 0.05
    done
    echo "net_bench: redis-server on port $port did not start:" >&2
    tail -n 5 "$out" | sed 's/^/    /' >&2
    stop "$server_pid" || true
  done
  return 1
}

# resp_bench NAME: runs redis-benchmark against server_port; stores
# "TEST req/s" lines in $tmp/resp.NAME, or returns 1.
resp_bench() {
  local out=$tmp/redis_benchmark.out rc=0
  run_client "$client_cpu" 600 "$out" redis-benchmark -h 127.0.0.1 -p "$server_port" \
    -t ping_inline,set,get -c 50 -n "$redis_requests" -q || rc=$?
  # -q prints progress lines ending in \r, then "SET: 123.45 requests per second, p50=..."
  tr '\r' '\n' <"$out" | awk '/requests per second/ { sub(/:$/, "", $1); print $1, $2 }' >"$tmp/resp.$1"
  if ((rc != 0)) || [[ $(wc -l <"$tmp/resp.$1") -ne 3 ]]; then
    echo "net_bench: redis-benchmark against $1 failed (status $rc):" >&2
    tr '\r' '\n' <"$out" | grep -v 'rps=' | sed 's/^/    /' >&2
    return 1
  fi
}

if want resp; then
  echo
  echo "## resp: redis-benchmark -c 50 -n $redis_requests -q, pinned"
  if ensure_tool redis-benchmark redis-tools && ensure_tool redis-server redis-server &&
    ensure_tool redis-cli redis-tools; then
    [[ -x $weft_resp ]] || echo "weft resp_server not built ($weft_resp): weft column skipped"
    : >"$tmp/resp.redis" && : >"$tmp/resp.weft"
    for ((round = 0; round < rounds; round++)); do
      if start_redis; then
        resp_bench "redis.$round" && cat "$tmp/resp.redis.$round" >>"$tmp/resp.redis" || failed=1
        stop "$server_pid" >/dev/null 2>&1 || true  # redis-server may exit non-zero on SIGTERM
      else
        failed=1
      fi
      if [[ -x $weft_resp ]]; then
        if start_server "$server_cpu" "$weft_resp" --host 127.0.0.1 --port 0 --workers 1; then
          resp_bench "weft.$round" && cat "$tmp/resp.weft.$round" >>"$tmp/resp.weft" || failed=1
          stop_server
        else
          failed=1
        fi
      fi
    done
    echo
    echo "| test | redis-server req/s | weft req/s | weft/redis |"
    echo "|---|---|---|---|"
    for t in PING_INLINE SET GET; do
      # The median over the rounds; a failed round makes the cell FAIL.
      mapfile -t rv < <(awk -v t="$t" '$1 == t { print $2 }' "$tmp/resp.redis")
      ((${#rv[@]} == rounds)) || rv+=(FAIL)
      r=$(median "${rv[@]}") w=skipped
      if [[ -x $weft_resp ]]; then
        mapfile -t wv < <(awk -v t="$t" '$1 == t { print $2 }' "$tmp/resp.weft")
        ((${#wv[@]} == rounds)) || wv+=(FAIL)
        w=$(median "${wv[@]}")
      fi
      printf '| %s | %s | %s | %s |\n' "$t" "$r" "$w" "$(ratio "$w" "$r")"
    done
  else
    echo "resp section skipped: redis-tools / redis-server are not installed"
  fi
fi

exit "$failed"
