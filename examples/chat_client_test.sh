#!/usr/bin/env bash
# Drives chat_client against echo_server: standard input from a pipe, a
# file and /dev/null, then typed into a terminal under tmux as a person
# would, checking that the terminal's O_NONBLOCK flag is cleared on exit.
source examples/server_test_lib.sh

start_server echo_server --port 0 --workers 2

# A pipe: every line comes back, then end of input ends the client.
out=$(printf 'hello\nworld\n' | examples/chat_client --port "$PORT") || fail "chat_client (pipe) failed"
expect_eq "echo through a pipe" "$out" $'hello\nworld'

# A regular file (read on the blocking pool).
printf 'from\na file\n' >"$TMP/input"
out=$(examples/chat_client --port "$PORT" <"$TMP/input") || fail "chat_client (file) failed"
expect_eq "echo from a file" "$out" $'from\na file'

# /dev/null: nothing to send, a clean exit.
out=$(examples/chat_client --port "$PORT" </dev/null) || fail "chat_client (/dev/null) failed"
expect_eq "echo from /dev/null" "$out" ""

# A last line without a newline is still sent.
out=$(printf 'no newline' | examples/chat_client --port "$PORT") || fail "chat_client (partial line) failed"
expect_eq "a last line without newline" "$out" "no newline"

# Over a UNIX socket: echo_server --unix, then chat_client --unix.
stop_server
SOCK=$(mktemp -u /tmp/weft_echo.XXXXXX.sock)
start_server echo_server --unix "$SOCK" --workers 2
[[ -S "$SOCK" ]] || fail "echo_server --unix did not create $SOCK"
out=$(printf 'over unix\n' | examples/chat_client --unix "$SOCK") || fail "chat_client --unix failed"
expect_eq "echo over a UNIX socket" "$out" "over unix"
stop_server
[[ ! -e "$SOCK" ]] || fail "echo_server left its socket file $SOCK behind"
start_server echo_server --port 0 --workers 2

# Usage errors.
rc=0
examples/chat_client >/dev/null 2>&1 || rc=$?
expect_eq "exit code without --port" "$rc" 2

# A terminal, under tmux.
if command -v tmux >/dev/null 2>&1; then
  # A short directory: the server's socket path must fit in sun_path.
  TMUX_TMPDIR=$(mktemp -d /tmp/weft_tmux.XXXXXX)
  export TMUX_TMPDIR
  export TERM=xterm
  T="tmux -L weft_chat_client_test"
  $T kill-server 2>/dev/null || true
  $T new-session -d -s chat -x 120 -y 30 -c "$PWD" "bash --norc --noprofile"
  trap '$T kill-server 2>/dev/null || true; rm -rf "$TMUX_TMPDIR"; cleanup' EXIT
  send() { $T send-keys -t chat "$@"; }
  pane() { $T capture-pane -p -t chat; }
  wait_for_pane() {  # wait_for_pane REGEX COUNT: until REGEX matches COUNT lines
    local i
    for i in $(seq 1 500); do
      [[ $(pane | grep -cE "$1" || true) -ge $2 ]] && return 0
      sleep 0.02
    done
    fail "tmux pane never showed '$1' $2 times; pane was:"$'\n'"$(pane)"
  }
  send "PS1='$ '" Enter
  send "examples/chat_client --port $PORT --linger_ms 200; echo exit=\$?" Enter
  sleep 0.3
  send "typed by a person" Enter
  # Once as the terminal echoes the typing, once as the server echoes it.
  wait_for_pane '^typed by a person$' 2
  send "second line" Enter
  wait_for_pane '^second line$' 2
  send C-d
  wait_for_pane '^exit=0$' 1
  # The shell's terminal is blocking again.
  send "python3 -c 'import fcntl,os; print(\"nonblock=%d\" % bool(fcntl.fcntl(0, fcntl.F_GETFL) & os.O_NONBLOCK))'" Enter
  wait_for_pane '^nonblock=0$' 1
  $T kill-server
else
  echo "tmux is not installed: the terminal part is skipped (tools/setup.sh installs it)"
fi

stop_server
echo PASS
