#!/usr/bin/env bash
# A/B of the hot-path benchmarks (yield, spawn, ping-pong) between two
# builds on this machine, in one session:
#
#   tools/bench/ab_hotpath.sh OLD_DIR NEW_DIR [ROUNDS]
#
# Each directory holds yield_benchmark, spawn_benchmark and
# pingpong_benchmark (copied out of bazel-bin of two checkouts built with
# -c opt). Every round runs each benchmark once from each directory, the
# order alternating between rounds (old-new, new-old, ...) so that drift in
# the machine's load falls on both sides. Prints, per figure, the median
# and range of old and new ns/op, and of the per-round ratio new/old, and
# the ratio of the minima (load from other processes only adds time, so the
# minimum is the least disturbed run).
set -euo pipefail
old=${1:?old dir}
new=${2:?new dir}
rounds=${3:-7}
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

# run DIR SIDE ROUND: one pass over the three benchmarks; appends
# "figure side round ns" lines to $out/samples.
run() {
  local dir=$1 side=$2 round=$3
  "$dir/yield_benchmark" | awk -v s="$side" -v r="$round" '/^yield/ {print "yield", s, r, $4}'
  "$dir/spawn_benchmark" 2>/dev/null | awk -v s="$side" -v r="$round" '/^spawn/ {print "spawn", s, r, $4}'
  "$dir/pingpong_benchmark" |
    awk -v s="$side" -v r="$round" '/^ping-pong, 1/ {print "pingpong_1w", s, r, $4} /^ping-pong, 2/ {print "pingpong_2w", s, r, $4}'
}

for ((i = 0; i < rounds; ++i)); do
  if ((i % 2 == 0)); then
    run "$old" old "$i" >>"$out/samples"
    run "$new" new "$i" >>"$out/samples"
  else
    run "$new" new "$i" >>"$out/samples"
    run "$old" old "$i" >>"$out/samples"
  fi
  echo "round $((i + 1))/$rounds done" >&2
done

python3 - "$out/samples" <<'EOF'
import statistics, sys
from collections import defaultdict
v = defaultdict(dict)
for line in open(sys.argv[1]):
    fig, side, rnd, ns = line.split()
    v[fig].setdefault(side, {})[int(rnd)] = float(ns)
print(f"{'figure':<12} {'old ns (median, range)':<26} {'new ns (median, range)':<26} "
      f"{'new/old median [range]':<26} new/old of minima")
for fig in ["yield", "spawn", "pingpong_1w", "pingpong_2w"]:
    o, n = v[fig]["old"], v[fig]["new"]
    rs = [n[r] / o[r] for r in o if r in n]
    f = lambda xs: f"{statistics.median(xs):7.1f} [{min(xs):.1f}-{max(xs):.1f}]"
    print(f"{fig:<12} {f(list(o.values())):<26} {f(list(n.values())):<26} "
          f"{statistics.median(rs):.3f} [{min(rs):.3f}-{max(rs):.3f}]{'':<6} "
          f"{min(n.values()) / min(o.values()):.3f}")
EOF
