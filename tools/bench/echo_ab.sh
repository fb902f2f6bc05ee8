#!/usr/bin/env bash
# Echo servers side by side, in rotated order, with a per-round ratio:
#
#   tools/bench/echo_ab.sh [--rounds 7] [--connections 1000] [--pinned|--unpinned]
#       [--together] [--duration 5] [--load PATH] NAME='SERVER COMMAND' ...
#
# e.g.
#   tools/bench/echo_ab.sh --connections 1000 \
#       weft="$BIN/examples/echo_server --workers 1" \
#       asio="$BIN/tools/bench/asio_echo_server --threads 1"
#
# Each server command must accept --host and --port and print
# "listening on HOST:PORT" (echo_server, asio_echo_server, raw_epoll_server
# do). In round i the servers run in the order rotated by i, so drift of the
# machine falls on every server alike. Pinned (the default): the server on
# CPU 0, echo_load on CPU 1. Per run: msgs/s, k msgs per server
# CPU-second (echo_load --server-pid), p50 and p99. The summary gives each
# server's medians and ranges, and the median and range of its per-round
# ratios of msgs per CPU-second and of p99 against the first server named: the same
# binary swings by up to 1.4x between rounds on a shared host, while the
# ratio within a round is steadier. net_bench.sh is the full table; this is
# the A/B of two or more builds.
#
# --together runs all the servers at once in each round, each driven by its
# own echo_load (pinned: every server on CPU 0, every echo_load on CPU 1),
# so that every server meets the same host in the same seconds: the
# per-round ratio of msgs per server CPU-second then holds to about 1% (the
# same binary against itself: 1.001, 0.98-1.11 over 6 rounds, where one at
# a time it ranged 0.996-1.77). The servers share the CPU and its caches,
# so the absolute figures are lower than alone and cache misses weigh more:
# use it to compare builds, not to quote a server's rate.
set -euo pipefail
rounds=7 conns=1000 pinned=1 duration=5 load="" together=0
names=() cmds=()
while (($#)); do
  case $1 in
    --rounds) rounds=$2; shift 2 ;;
    --connections) conns=$2; shift 2 ;;
    --pinned) pinned=1; shift ;;
    --unpinned) pinned=0; shift ;;
    --duration) duration=$2; shift 2 ;;
    --together) together=1; shift ;;
    --load) load=$2; shift 2 ;;
    *=*) names+=("${1%%=*}"); cmds+=("${1#*=}"); shift ;;
    *) echo "echo_ab.sh: unknown argument '$1' (servers are NAME='COMMAND')" >&2; exit 2 ;;
  esac
done
((${#names[@]} >= 1)) || { echo "echo_ab.sh: name at least one server, NAME='COMMAND'" >&2; exit 2; }
if [[ -z $load ]]; then
  here=$(cd "$(dirname "$0")/../.." && pwd)
  load=$(cd "$here" && bazel info -c opt bazel-bin 2>/dev/null)/tools/bench/echo_load
fi
[[ -x $load ]] || { echo "echo_ab.sh: no echo_load at $load (bazel build -c opt //tools/bench:echo_load, or --load PATH)" >&2; exit 2; }

out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
server_cpu=() load_cpu=()
if ((pinned)); then server_cpu=(taskset -c 0); load_cpu=(taskset -c 1); fi

# start I CMD: starts server I (output in $out/server.I); sets pid[I] and
# port[I] (empty if it never said where it listens).
pid=() port=()
start() {
  local i=$1 p=""
  : >"$out/server.$i"  # no port of an earlier server in it
  # shellcheck disable=SC2086  # the command is split into words on purpose
  "${server_cpu[@]}" $2 --host 127.0.0.1 --port 0 >>"$out/server.$i" 2>&1 &
  pid[i]=$!
  for _ in $(seq 200); do
    p=$(sed -n 's/^listening on .*:\([0-9]*\)$/\1/p' "$out/server.$i" 2>/dev/null || true)
    [[ -n $p ]] && break
    sleep 0.05
  done
  port[i]=$p
}

# load I: drives server I until the end of the run; writes $out/load.I.
load_run() {
  local i=$1
  : >"$out/load.$i"
  [[ -n ${port[i]} ]] || return 0
  "${load_cpu[@]}" "$load" --host 127.0.0.1 --port "${port[i]}" --connections "$conns" --size 64 \
    --duration "$duration" --warmup 1 --server-pid "${pid[i]}" >"$out/load.$i" 2>&1 || true
}

# finish I: stops server I and waits for it (so not in a subshell: $(...)
# could not wait for it); prints "msgs_per_sec cpu_rate p99_us p50_us" or
# "fail".
finish() {
  local i=$1 line
  kill -TERM "${pid[i]}" 2>/dev/null || true
  wait "${pid[i]}" 2>/dev/null || true
  line=$(grep msgs_per_sec "$out/load.$i" || true)
  if [[ -z $line ]]; then echo fail; return; fi
  echo "$line" | tr ' ' '\n' |
    awk -F= '$1=="msgs_per_sec"{r=$2} $1=="msgs_per_server_cpu_s"{c=$2} $1=="p50_us"{m=$2} $1=="p99_us"{p=$2}
      END {printf "%.0f %.0f %s %s\n", r, c, p, m}'
}

n=${#names[@]}
for ((i = 0; i < rounds; ++i)); do
  if ((together)); then
    for ((j = 0; j < n; ++j)); do start "$j" "${cmds[$j]}"; done
    loads=()
    for ((j = 0; j < n; ++j)); do
      load_run "$j" &
      loads+=($!)
    done
    wait "${loads[@]}"
    for ((j = 0; j < n; ++j)); do
      finish "$j" >"$out/result"
      echo "round $((i + 1)) ${names[$j]} $(<"$out/result")" | tee -a "$out/samples" >&2
    done
  else
    for ((j = 0; j < n; ++j)); do
      k=$(((i + j) % n))
      start 0 "${cmds[$k]}"
      load_run 0
      finish 0 >"$out/result"
      echo "round $((i + 1)) ${names[$k]} $(<"$out/result")" | tee -a "$out/samples" >&2
    done
  fi
done

python3 - "$out/samples" "${names[@]}" <<'PY'
import collections, statistics, sys
path, names = sys.argv[1], sys.argv[2:]
runs = collections.defaultdict(dict)  # name -> round -> (rate, cpu, p99, p50)
for line in open(path):
    f = line.split()
    if len(f) == 7:
        runs[f[2]][int(f[1])] = (float(f[3]), float(f[4]), float(f[5]), float(f[6]))
base = names[0]

def ratio(r, k):
    """Median [range] over the rounds of r's field k against the base's."""
    rs = [r[i][k] / runs[base][i][k] for i in r if i in runs.get(base, {})]
    return f"{statistics.median(rs):.3f} [{min(rs):.3f}-{max(rs):.3f}]" if rs else "-"

print(f"{'server':12s} {'msgs/s':>8s} {'k msgs/CPU-s [range]':>22s} {'p50 ms':>7s} {'p99 ms [range]':>18s}"
      f"  to {base}, median [range] of per-round ratios: k msgs/CPU-s; p99")
for nm in names:
    r = runs.get(nm, {})
    if not r:
        print(f"{nm:12s} no successful run")
        continue
    rate = statistics.median(v[0] for v in r.values())
    cpu = [v[1] for v in r.values()]
    p99 = [v[2] for v in r.values()]
    p50 = statistics.median(v[3] for v in r.values())
    print(f"{nm:12s} {rate:8.0f} {statistics.median(cpu)/1000:7.1f} [{min(cpu)/1000:.1f}-{max(cpu)/1000:.1f}]"
          f" {p50/1000:7.2f} {statistics.median(p99)/1000:6.2f} [{min(p99)/1000:.2f}-{max(p99)/1000:.2f}]"
          f"  {ratio(r, 1)}; {ratio(r, 2)}")
PY
