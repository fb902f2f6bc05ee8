#!/usr/bin/env bash
# Runs the main demo small and checks its own verdicts. The output is
# printed whatever the exit status, so a failure shows what went wrong.
set -uo pipefail
rc=0
out=$(examples/demo --fibers=20000 --workers=2 --in_flight=5000 --connections=20 --seconds=1 2>&1) || rc=$?
echo "$out"
if [ "$rc" -ne 0 ]; then
  echo "demo_test: the demo exited with status $rc" >&2
  exit 1
fi
for want in "20000 fibers finished" "checksum ok" "socket demo: every echo checked, no errors"; do
  if ! grep -q "$want" <<<"$out"; then
    echo "demo_test: missing from the output: $want" >&2
    exit 1
  fi
done
