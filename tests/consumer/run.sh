#!/usr/bin/env bash
# Builds and runs tests/consumer, a separate Bazel workspace that depends on
# weft through local_repository + weft_deps(), as a user's would. Exits
# non-zero unless it prints the expected sum.
set -uo pipefail
cd "$(dirname "$0")"
out=$(bazel run //:hello 2>/tmp/weft_consumer_build.log)
rc=$?
if [ $rc -ne 0 ] || [ "$out" != "consumer: sum 55" ]; then
  echo "consumer workspace: failed (status $rc, output '$out'); build log:" >&2
  tail -n 40 /tmp/weft_consumer_build.log >&2
  exit 1
fi
echo "consumer workspace: $out"
