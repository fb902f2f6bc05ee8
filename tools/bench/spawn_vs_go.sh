#!/usr/bin/env bash
# spawn in weft against go statements in Go, same shape: one fiber (one
# goroutine) starts 1,000,000 that each add 1 to an atomic and signal a
# wait group, then waits for all; 2 workers, GOMAXPROCS=2. Each round runs
# each side once as a fresh process, the order alternating, so that the
# machine's drift falls on both; peak RSS is each process's own.
#
#   tools/bench/spawn_vs_go.sh [--rounds=R] [--fibers=N]
#
# Installs Debian's golang-go if `go` is missing (benchmarks only; the
# build does not need Go). Prints, for each side, the median and range of
# ns per fiber and of peak RSS, and the ratios weft/Go of the medians.
set -euo pipefail
cd "$(dirname "$0")/../.."
rounds=7
fibers=1000000
for a in "$@"; do
  case $a in
    --rounds=*) rounds=${a#*=} ;;
    --fibers=*) fibers=${a#*=} ;;
    *) echo "unknown flag $a" >&2; exit 2 ;;
  esac
done
if ! command -v go >/dev/null; then
  echo "installing golang-go (apt-get)" >&2
  apt-get install -y golang-go >/dev/null
fi
bazel build -c opt //tools/bench:spawn_benchmark >/dev/null 2>&1 || { echo "build failed" >&2; exit 1; }
weft_bin=$(bazel info -c opt bazel-bin 2>/dev/null)/tools/bench/spawn_benchmark
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
(cd tools/bench/go && GOCACHE="$tmp/cache" GO111MODULE=off go build -o "$tmp/spawn_bench" spawn_bench.go)

run_weft() {
  "$weft_bin" --fibers="$fibers" 2>/dev/null | awk '/^spawn/ {ns = $4} /peak RSS/ {rss = $3} END {print "weft", ns, rss}'
}
run_go() {
  GOMAXPROCS=2 "$tmp/spawn_bench" -tasks="$fibers" | awk '{print "go", $3, $6 / 1024}'
}
for ((i = 0; i < rounds; ++i)); do
  if ((i % 2 == 0)); then
    run_weft >>"$tmp/samples"
    run_go >>"$tmp/samples"
  else
    run_go >>"$tmp/samples"
    run_weft >>"$tmp/samples"
  fi
done
# stats SIDE COLUMN: "median min max" of one column of one side's samples.
stats() {
  awk -v s="$1" -v c="$2" '$1 == s {print $c}' "$tmp/samples" | sort -g |
    awk '{v[NR] = $1} END {m = NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2; print m, v[1], v[NR]}'
}
read -r wn wn_lo wn_hi <<<"$(stats weft 2)"
read -r wr wr_lo wr_hi <<<"$(stats weft 3)"
read -r gn gn_lo gn_hi <<<"$(stats go 2)"
read -r gr gr_lo gr_hi <<<"$(stats go 3)"
awk -v wn="$wn" -v wnl="$wn_lo" -v wnh="$wn_hi" -v wr="$wr" -v wrl="$wr_lo" -v wrh="$wr_hi" \
    -v gn="$gn" -v gnl="$gn_lo" -v gnh="$gn_hi" -v gr="$gr" -v grl="$gr_lo" -v grh="$gr_hi" -v r="$rounds" 'BEGIN {
  printf "spawn of %s rounds  %28s %30s\n", r, "ns per fiber: median [range]", "peak RSS MiB: median [range]"
  printf "%-17s %10.1f [%6.1f-%6.1f] %14.1f [%5.1f-%5.1f]\n", "weft", wn, wnl, wnh, wr, wrl, wrh
  printf "%-17s %10.1f [%6.1f-%6.1f] %14.1f [%5.1f-%5.1f]\n", "Go", gn, gnl, gnh, gr, grl, grh
  printf "weft/Go: ns %.2f (target <= 0.4), peak RSS %.2f (target <= 2)\n", wn / gn, wr / gr
}'
