#!/usr/bin/env bash
# Builds the benchmarks optimized and runs each once, with 2 workers.
set -euo pipefail
cd "$(dirname "$0")/../.."
bash tools/setup.sh
bazel build -c opt //tools/bench:all >/dev/null 2>&1 || { echo "benchmark build failed" >&2; exit 1; }
for b in spawn yield pingpong memory future cancel select; do
  ./bazel-bin/tools/bench/${b}_benchmark "$@"
done
