#!/usr/bin/env bash
# Installs what weft needs on Debian 12, if it is missing, and raises
# vm.max_map_count so up to two million fibers can hold a stack each
# (every stack is two mappings: the guard page and the usable range).
set -euo pipefail

# The build, then what the example tests drive the servers with (curl,
# redis-cli, python3) and what the benchmarks load them with (wrk,
# redis-benchmark; redis-server is the RESP baseline); tmux types into
# chat_client's terminal in its test; python3-websockets is ws_chat's client.
packages=(bazel-bootstrap bazel-rules-cc bazel-rules-java bazel-platforms
          libboost-context-dev libboost1.74-dev libabsl-dev doctest-dev g++ libssl-dev liburing-dev
          curl redis-tools redis-server wrk python3 util-linux openssl tmux
          python3-websockets)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "weft setup: installing ${missing[*]}" >&2
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi

want=4194304
have=$(cat /proc/sys/vm/max_map_count 2>/dev/null || echo 0)
if [ "$have" -lt "$want" ]; then
  if [ -w /proc/sys/vm/max_map_count ]; then
    echo "$want" > /proc/sys/vm/max_map_count
  else
    echo "weft setup: vm.max_map_count is $have; raise it to $want (sysctl -w vm.max_map_count=$want)" \
         "to run up to two million fibers at once (each fiber stack is two mappings)" >&2
  fi
fi
