#!/usr/bin/env bash
# Runs every weft test: the default build, then the whole suite again under
# AddressSanitizer+UBSan and under ThreadSanitizer, then builds and runs
# tests/consumer (a separate workspace that depends on weft). Prints one
# summary line 'N passed, N failed' (N counts test targets over the three
# runs, plus the consumer) and exits non-zero if any failed.
set -uo pipefail
cd "$(dirname "$0")/.."
bash tools/setup.sh

passed=0
failed=0
run() {
  local label=$1
  shift
  local log
  log=$(mktemp)
  echo "=== bazel test $* //..." >&2
  bazel test "$@" //... 2>&1 | tee "$log" | grep -E "^//.* (PASSED|FAILED|TIMEOUT|FLAKY|NO STATUS)|^ERROR" >&2
  local p f
  p=$(grep -cE "^//.* PASSED" "$log")
  f=$(grep -cE "^//.* (FAILED|TIMEOUT|NO STATUS)" "$log")
  if grep -q "^ERROR: " "$log" && [ "$f" -eq 0 ]; then f=1; fi  # build failure
  # Show why each failing target failed: the end of its test log.
  local target
  for target in $(grep -E "^//.* (FAILED|TIMEOUT)" "$log" | awk '{print $1}'); do
    local path=${target#//}
    path=bazel-testlogs/${path/://}/test.log
    echo "--- $label: $target: last 80 lines of $path" >&2
    tail -n 80 "$path" >&2 2>/dev/null || echo "(no log)" >&2
  done
  echo "$label: $p passed, $f failed" >&2
  passed=$((passed + p))
  failed=$((failed + f))
  rm -f "$log"
}

run default
run asan --config=asan
run tsan --config=tsan

# A second workspace that uses weft through weft_deps(), as a user's would.
if bash tests/consumer/run.sh; then
  passed=$((passed + 1))
else
  failed=$((failed + 1))
fi

echo "${passed} passed, ${failed} failed"
[ "$failed" -eq 0 ]
