#!/usr/bin/env bash
set -euo pipefail
out=$(examples/demo --fibers=20000 --workers=2 --in_flight=5000 --connections=20 --seconds=1)
echo "$out"
grep -q "20000 fibers finished" <<<"$out"
grep -q "checksum ok" <<<"$out"
grep -q "socket demo: every echo checked, no errors" <<<"$out"
