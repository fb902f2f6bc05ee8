#!/usr/bin/env bash
# Runs migrate_demo for 2 s on 2 workers: it must check every echoed byte
# (errors=0), migrate connections (migrations > 0) and exit 0; then stops a
# longer run with SIGTERM, which must end it early and cleanly.
source examples/server_test_lib.sh

rc=0
examples/migrate_demo --port 0 --workers 2 --seconds 2 --clients 16 --interval_ms 2 \
  >"$TMP/run.out" 2>"$TMP/run.err" || rc=$?
cat "$TMP/run.out"
[[ "$rc" == 0 ]] || fail "migrate_demo exited $rc: $(cat "$TMP/run.err")"
grep -q '^listening on 127\.0\.0\.1:[1-9][0-9]*$' "$TMP/run.out" || fail "no listening line"
[[ $(grep -c '^t=[12]s migrations=[0-9]* roundtrips=[0-9]* errors=0$' "$TMP/run.out") == 2 ]] ||
  fail "expected two per-second lines with errors=0"
summary=$(tail -n1 "$TMP/run.out")
[[ "$summary" =~ ^migrate_demo:\ .*\ ([0-9]+)\ migrations,\ ([0-9]+)\ roundtrips,\ .*errors=0$ ]] ||
  fail "unexpected summary: $summary"
(( BASH_REMATCH[1] > 0 )) || fail "no migrations: $summary"
(( BASH_REMATCH[2] > 0 )) || fail "no round trips: $summary"

# SIGTERM ends a long run early, with a summary and exit code 0.
start_server migrate_demo --port 0 --workers 2 --seconds 600 --clients 8
for _ in $(seq 100); do
  grep -q '^t=1s ' "$SERVER_OUT" && break
  sleep 0.1
done
grep -q '^t=1s ' "$SERVER_OUT" || fail "no per-second line after 10 s"
stop_server
tail -n1 "$SERVER_OUT" | grep -q 'errors=0$' || fail "no clean summary after SIGTERM"
echo PASS
