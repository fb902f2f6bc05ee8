#!/usr/bin/env bash
# Drives echo_server with echo_client: many small messages, then messages
# larger than the socket buffers; checks flag errors and clean shutdown.
source examples/server_test_lib.sh

# A bad flag is a usage error: exit code 2.
rc=0
examples/echo_server --no_such_flag 1 >/dev/null 2>&1 || rc=$?
expect_eq "exit code for an unknown flag" "$rc" 2
rc=0
examples/echo_server --port >/dev/null 2>&1 || rc=$?
expect_eq "exit code for a flag without its value" "$rc" 2

# A bad placement is reported and the server exits 1 without listening.
rc=0
out=$(examples/echo_server --port 0 --placement nowhere 2>&1) || rc=$?
expect_eq "exit code for a bad --placement" "$rc" 1
grep -q "placement must be round_robin, least_loaded or same, not 'nowhere'" <<<"$out" ||
  fail "unexpected message for a bad --placement: $out"

# Every placement serves: connections on the accepting worker, then spread.
for placement in same least_loaded; do
  start_server echo_server --port 0 --workers 2 --placement "$placement"
  out=$(examples/echo_client --port "$PORT" --connections 8 --messages 50 --size 64 --workers 2 2>&1) ||
    fail "echo_client with --placement $placement failed: $out"
  grep -q ': 400 round trips in .* all echoes ok$' <<<"$out" || fail "unexpected summary: $out"
  stop_server
done

start_server echo_server --port 0 --workers 2

out=$(examples/echo_client --port "$PORT" --connections 20 --messages 500 --size 100 --workers 2 2>&1) ||
  fail "echo_client (small messages) failed: $out"
echo "$out"
grep -q '^echo_client: 20 connections x 500 messages x 100 bytes: 10000 round trips in .* all echoes ok$' <<<"$out" ||
  fail "unexpected summary: $out"

out=$(examples/echo_client --port "$PORT" --connections 3 --messages 4 --size=1048576 --workers=2 2>&1) ||
  fail "echo_client (1 MiB messages) failed: $out"
echo "$out"
grep -q ': 12 round trips in .* all echoes ok$' <<<"$out" || fail "unexpected summary: $out"

# The client itself must notice a server that is not there.
rc=0
examples/echo_client --port 1 --connections 1 --messages 1 >/dev/null 2>&1 || rc=$?
[[ "$rc" != 0 ]] || fail "echo_client reported success against a closed port"

stop_server
echo PASS
