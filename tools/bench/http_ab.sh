#!/usr/bin/env bash
# HTTP servers side by side, all at once, with a per-round ratio:
#
#   tools/bench/http_ab.sh [--rounds 6] [--connections 100] [--duration 5]
#       NAME='SERVER COMMAND' ...
#
# e.g.
#   tools/bench/http_ab.sh --connections 100 \
#       new="$NEW/examples/http_hello --workers 1" \
#       old="$OLD/examples/http_hello --workers 1"
#
# Each server command must accept --host and --port and print
# "listening on HOST:PORT" (examples/http_hello, raw_epoll_server --mode
# http and http_hello_handwritten do). Every round starts all the servers
# on CPU 0 and drives each with its own `wrk -t1 -cCONNS` on CPU 1, at the
# same time (1 s of warm-up, then DURATION seconds measured), so that every
# server meets the same host in the same seconds, as `echo_ab.sh
# --together` does for echo. Per run: requests, the server's user + system
# CPU seconds over the measured run (/proc/PID/stat) and k requests per
# server CPU-second. The summary gives each server's median and range, and
# the median and range of its per-round ratio against the first server
# named. wrk saturates its core, so the request rates say little; the CPU
# second does. The servers share CPU 0 and its caches: compare builds with
# it, do not quote a server's rate from it.
set -euo pipefail
rounds=6 conns=100 duration=5
names=() cmds=()
while (($#)); do
  case $1 in
    --rounds) rounds=$2; shift 2 ;;
    --connections) conns=$2; shift 2 ;;
    --duration) duration=$2; shift 2 ;;
    *=*) names+=("${1%%=*}"); cmds+=("${1#*=}"); shift ;;
    *) echo "http_ab.sh: unknown argument '$1' (servers are NAME='COMMAND')" >&2; exit 2 ;;
  esac
done
((${#names[@]} >= 1)) || { echo "http_ab.sh: name at least one server, NAME='COMMAND'" >&2; exit 2; }
command -v wrk >/dev/null || { echo "http_ab.sh: wrk is not installed (apt-get install wrk)" >&2; exit 2; }

out=$(mktemp -d)
pid=() port=()
cleanup() {
  for p in "${pid[@]}"; do kill "$p" 2>/dev/null || true; done
  rm -rf "$out"
}
trap cleanup EXIT
tck=$(getconf CLK_TCK)
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

# start I: starts server I on CPU 0; sets pid[I] and port[I].
start() {
  local i=$1 p=""
  : >"$out/server.$i"
  # shellcheck disable=SC2086  # the command is split into words on purpose
  taskset -c 0 ${cmds[i]} --host 127.0.0.1 --port 0 >>"$out/server.$i" 2>&1 &
  pid[i]=$!
  for _ in $(seq 200); do
    p=$(sed -n 's/^listening on .*:\([0-9]*\)$/\1/p' "$out/server.$i" 2>/dev/null | head -n 1 || true)
    [[ -n $p ]] && break
    sleep 0.05
  done
  [[ -n $p ]] || { echo "http_ab.sh: ${names[i]} never said where it listens:" >&2; cat "$out/server.$i" >&2; exit 1; }
  port[i]=$p
}

: >"$out/samples"
for ((r = 1; r <= rounds; r++)); do
  for i in "${!names[@]}"; do start "$i"; done
  warm=()
  for i in "${!names[@]}"; do
    taskset -c 1 wrk -t1 -c"$conns" -d1s "http://127.0.0.1:${port[i]}/" >/dev/null 2>&1 &
    warm+=($!)
  done
  wait "${warm[@]}"
  t0=() w=()
  for i in "${!names[@]}"; do
    t0[i]=$(cpu_ticks "${pid[i]}")
    taskset -c 1 wrk -t1 -c"$conns" -d"${duration}s" "http://127.0.0.1:${port[i]}/" >"$out/wrk.$i" 2>&1 &
    w[i]=$!
  done
  for i in "${!names[@]}"; do
    wait "${w[i]}" || true
    t1=$(cpu_ticks "${pid[i]}")
    reqs=$(sed -n 's/^ *\([0-9]*\) requests in.*/\1/p' "$out/wrk.$i")
    [[ -n $reqs ]] || { echo "http_ab.sh: wrk against ${names[i]} failed:" >&2; cat "$out/wrk.$i" >&2; exit 1; }
    awk -v n="${names[i]}" -v r="$r" -v q="$reqs" -v t="$((t1 - t0[i]))" -v hz="$tck" \
      'BEGIN { cpu = t / hz; printf "round %d %s requests %d cpu_s %.2f k_req_per_cpu_s %.1f\n", r, n, q, cpu, (cpu > 0 ? q / cpu / 1000 : 0) }' |
      tee -a "$out/samples"
  done
  for i in "${!names[@]}"; do
    kill "${pid[i]}" 2>/dev/null || true
    wait "${pid[i]}" 2>/dev/null || true
  done
  pid=()
done

# stats: median [min-max] of the numbers on stdin, with FORMAT.
stats() {
  sort -g | awk -v f="$1" '{ a[NR] = $1 } END {
    m = (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2
    printf f " [" f "-" f "]", m, a[1], a[NR] }'
}
echo
printf '%-10s %-26s %s\n' server "k req/CPU-s median [range]" "to ${names[0]}: median [range] of per-round ratios"
for n in "${names[@]}"; do
  own=$(awk -v n="$n" '$3 == n { print $9 }' "$out/samples" | stats %.1f)
  ratio=$(awk -v n="$n" -v ref="${names[0]}" '$3 == ref { b[$2] = $9 } $3 == n { v[$2] = $9 }
    END { for (r in v) if (b[r] > 0) print v[r] / b[r] }' "$out/samples" | stats %.3f)
  printf '%-10s %-26s %s\n' "$n" "$own" "$ratio"
done
