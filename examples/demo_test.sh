#!/usr/bin/env bash
set -euo pipefail
out=$(examples/demo --fibers=20000 --workers=2 --in_flight=5000)
echo "$out"
grep -q "20000 fibers finished" <<<"$out"
grep -q "checksum ok" <<<"$out"
