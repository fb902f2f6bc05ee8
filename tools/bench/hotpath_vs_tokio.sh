#!/usr/bin/env bash
# weft's scheduler benchmarks against tokio's, same shapes, in the same
# run: spawn (one task starts 1,000,000 that each add 1 to an atomic; 2
# workers; ns per task and peak RSS), yield (4 tasks per worker, 2 workers;
# ns per yield per worker), ping-pong through two capacity-1 channels on 1
# worker and on 2 (ns per round trip; weft places the two fibers on
# different workers, tokio places its tasks itself).
#
#   tools/bench/hotpath_vs_tokio.sh [--rounds=R]
#
# tokio's side is tools/bench/tokio (tokio 1.24, multi-thread runtime),
# built offline with Debian's cargo against Debian's librust-tokio-dev,
# which this installs if missing (benchmarks only; the build does not need
# Rust). Each round runs every benchmark of each side once as a fresh
# process, the order alternating between rounds, so that the machine's
# drift falls on both. Prints each side's median [range] and the ratio
# weft/tokio of the medians (below 1: weft is faster or smaller).
set -euo pipefail
cd "$(dirname "$0")/../.."
rounds=5
for a in "$@"; do
  case $a in
    --rounds=*) rounds=${a#*=} ;;
    *) echo "unknown flag $a (--rounds=R)" >&2; exit 2 ;;
  esac
done
if [[ ! -x /usr/bin/cargo ]] || ! compgen -G "/usr/share/cargo/registry/tokio-1.*" >/dev/null; then
  echo "installing cargo and librust-tokio-dev (apt-get)" >&2
  apt-get install -y --no-install-recommends cargo librust-tokio-dev >/dev/null
fi
bazel build -c opt //tools/bench:spawn_benchmark //tools/bench:yield_benchmark //tools/bench:pingpong_benchmark \
  >/dev/null 2>&1 || { echo "weft benchmark build failed" >&2; exit 1; }
bin=$(bazel info -c opt bazel-bin 2>/dev/null)/tools/bench
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
tools/bench/tokio/build.sh "$tmp/tokio" --bin tokio_bench ||
  { echo "tokio benchmark build failed: $(tail -n 20 "$tmp/tokio/build.log" 2>/dev/null)" >&2; exit 1; }
tokio_bin=$tmp/tokio/target/release/tokio_bench

# Each run appends "SIDE BENCH VALUE" lines to $tmp/samples.
run_weft() {
  "$bin/spawn_benchmark" 2>/dev/null | awk '/^spawn/ {print "weft spawn", $4} /peak RSS/ {print "weft rss", $3}'
  "$bin/yield_benchmark" 2>/dev/null | awk '/^yield/ {print "weft yield", $4}'
  "$bin/pingpong_benchmark" 2>/dev/null | awk '/^ping-pong, 1 worker/ {print "weft pp1", $4} /^ping-pong, 2 workers/ {print "weft pp2", $4}'
}
run_tokio() {
  "$tokio_bin" spawn | awk '{print "tokio spawn", $3; print "tokio rss", $6 / 1024}'
  "$tokio_bin" yield | awk '{print "tokio yield", $3}'
  "$tokio_bin" pingpong --workers 1 | awk '{print "tokio pp1", $3}'
  "$tokio_bin" pingpong --workers 2 | awk '{print "tokio pp2", $3}'
}
for ((i = 0; i < rounds; ++i)); do
  if ((i % 2 == 0)); then
    run_weft >>"$tmp/samples"
    run_tokio >>"$tmp/samples"
  else
    run_tokio >>"$tmp/samples"
    run_weft >>"$tmp/samples"
  fi
done
# stats SIDE BENCH: "median min max" of that side's samples of that bench.
stats() {
  awk -v s="$1" -v b="$2" '$1 == s && $2 == b {print $3}' "$tmp/samples" | sort -g |
    awk '{v[NR] = $1} END {if (NR == 0) {print "nan nan nan"; exit} m = NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2; print m, v[1], v[NR]}'
}
printf "%s rounds; medians [range]\n" "$rounds"
printf "%-34s %-26s %-26s %s\n" "benchmark" "weft" "tokio 1.24" "weft/tokio"
for row in "spawn:ns per task" "rss:spawn peak RSS, MiB" "yield:ns per yield per worker" \
           "pp1:ping-pong, 1 worker, ns" "pp2:ping-pong, 2 workers, ns"; do
  b=${row%%:*} label=${row#*:}
  read -r wm wl wh <<<"$(stats weft "$b")"
  read -r tm tl th <<<"$(stats tokio "$b")"
  awk -v l="$label" -v wm="$wm" -v wl="$wl" -v wh="$wh" -v tm="$tm" -v tl="$tl" -v th="$th" 'BEGIN {
    printf "%-34s %8.1f [%6.1f-%6.1f]   %8.1f [%6.1f-%6.1f]   %.2f\n", l, wm, wl, wh, tm, tl, th, wm / tm
  }'
done
