#!/usr/bin/env bash
# Runs the soak tool, then makes it fail on purpose and checks that it does.
#
# Durations. The plain build soaks for 60 s, as the suite asks. Under ASan
# and TSan (tools/test.sh runs the suite three times on the same 2 cores)
# every fiber switch and allocation goes through the sanitizer's runtime,
# so 20 s there already runs thousands of rounds of each workload and is
# judged (20 samples); 60 s three times would add two minutes of a fully
# busy machine to each suite run for no new coverage. The binary says how
# it was built (--build_info: the compiler's __SANITIZE_ADDRESS__ and
# __SANITIZE_THREAD__, as tests/stress_util.h uses), so the choice needs no
# flag from the caller.
set -uo pipefail
SOAK=tools/soak/soak
fail() { echo "soak_test: $*" >&2; exit 1; }

build=$("$SOAK" --build_info) || fail "--build_info failed"
case "$build" in
  plain) duration=60s ;;
  asan | tsan) duration=20s ;;
  *) fail "unexpected --build_info: $build" ;;
esac
# ASan keeps freed memory in a quarantine of 256 MiB before reusing it, so
# the resident set climbs for the first ten seconds or so of a run that
# allocates as much as this one; a 16 MiB quarantine fills during the
# warm-up, and the growth judge then sees the program's memory, not the
# quarantine's (use-after-free within the last 16 MiB freed is still
# caught).
if [[ $build == asan ]]; then
  export ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}quarantine_size_mb=16"
fi
# Under TSan the resident set is mostly the sanitizer's shadow and history
# memory: it climbs as new addresses are touched and drops in bursts when
# TSan releases it, by tens of MiB either way. Under ASan it climbs by
# about 1 MiB a second for the whole 20 s, nearly all of it in ASan's own
# allocator regions (smaps between 8 s and 18 s: 9.3 of 11.7 MiB), which
# keep freed memory per size class; a 20 s run cannot tell that from a
# leak (one run in eight came within 6 MiB of the allowance, and one failed
# before the stack caches gave memory back). So only descriptors and
# fibers are judged under the sanitizers: the plain build judges all three,
# and LeakSanitizer checks the ASan build's heap at exit.
judge=rss,fds,fibers
[[ $build != plain ]] && judge=fds,fibers
echo "soak_test: $build build, soaking for $duration, judging $judge"

# 1. The soak itself passes.
rc=0
"$SOAK" --duration="$duration" --workers=2 --seed=7 --judge="$judge" || rc=$?
[[ $rc -eq 0 ]] || fail "the soak failed (exit status $rc)"

# 2. A miscounted round ends the run at once, naming the workload and check.
rc=0
start=$SECONDS
out=$("$SOAK" --duration=60s --workers=2 --workloads=spawn --inject_check_failure 2>&1) || rc=$?
echo "$out" | tail -3
[[ $rc -eq 1 ]] || fail "--inject_check_failure: exit status $rc, expected 1"
grep -q "soak: FAIL check in workload 'spawn'.*spawn trees: joined" <<<"$out" ||
  fail "--inject_check_failure: no failed-check message"
((SECONDS - start < 30)) || fail "--inject_check_failure: the run did not end at the failed check"

# 3. Leaked memory, descriptors and fibers are each named as growing, and
#    the end-state check sees the fibers and descriptors left behind.
rc=0
out=$("$SOAK" --duration=20s --workers=2 --workloads=spawn,channel,timers --inject_leak=rss,fds,fibers \
  --judge="$judge" 2>&1) || rc=$?
echo "$out" | grep "^soak:"
[[ $rc -eq 1 ]] || fail "--inject_leak: exit status $rc, expected 1"
wants=("FAIL fds keeps growing" "FAIL live_fibers keeps growing" "FAIL live_fibers did not return"
  "FAIL fds did not return")
[[ $judge == *rss* ]] && wants+=("FAIL rss_kb keeps growing")
for want in "${wants[@]}"; do
  grep -q "$want" <<<"$out" || fail "--inject_leak: missing from the output: $want"
done

# 4. Bad flags are exit status 2.
rc=0
"$SOAK" --workloads=nosuch >/dev/null 2>&1 || rc=$?
[[ $rc -eq 2 ]] || fail "--workloads=nosuch: exit status $rc, expected 2"
echo "soak_test: PASS"
