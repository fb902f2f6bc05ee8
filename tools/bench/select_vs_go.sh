#!/usr/bin/env bash
# select() in weft against select in Go, same shape: two fibers (two
# goroutines), one sending alternately on two capacity-1 channels, the
# other selecting over both; each next to its own same-run baseline, the
# same traffic over one channel with a plain receive.
#
#   tools/bench/select_vs_go.sh [--values=N] [--reps=R]
#
# Installs Debian's golang-go if `go` is missing (benchmarks only; the
# build does not need Go). Go runs with GOMAXPROCS=2; weft with 1 worker
# and with the two fibers on 2 workers.
set -euo pipefail
cd "$(dirname "$0")/../.."
values=1000000
reps=5
for a in "$@"; do
  case $a in
    --values=*) values=${a#*=} ;;
    --reps=*) reps=${a#*=} ;;
    *) echo "unknown flag $a" >&2; exit 2 ;;
  esac
done
if ! command -v go >/dev/null; then
  echo "installing golang-go (apt-get)" >&2
  apt-get install -y golang-go >/dev/null
fi
bazel build -c opt //tools/bench:select_benchmark >/dev/null 2>&1 || { echo "build failed" >&2; exit 1; }
gobin=$(mktemp -d)
trap 'rm -rf "$gobin"' EXIT
(cd tools/bench/go && GOCACHE="$gobin/cache" GO111MODULE=off go build -o "$gobin/select_bench" select_bench.go)

weft_out=$(./bazel-bin/tools/bench/select_benchmark --go --values="$values" --reps="$reps")
go_out=$(GOMAXPROCS=2 "$gobin/select_bench" -values="$values" -reps="$reps")
echo "$weft_out"
echo "$go_out"
echo "$weft_out
$go_out" | awk '
  $1 == "weft" { w[$2] = $6; wb[$2] = $4 }
  $1 == "go" { g = $6; gb = $4; gp = $2 }
  END {
    printf "%-22s %10s %14s %12s %10s\n", "", "select ns", "recv ns (base)", "select/recv", "weft/Go"
    printf "%-22s %10.1f %14.1f %12.2f %10s\n", "Go " gp, g, gb, g / gb, "-"
    for (i = 1; i <= 2; ++i) {
      k = "workers=" i
      printf "%-22s %10.1f %14.1f %12.2f %10.2f\n", "weft " k, w[k], wb[k], w[k] / wb[k], w[k] / g
    }
  }'
