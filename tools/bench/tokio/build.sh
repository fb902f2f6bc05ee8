#!/usr/bin/env bash
# tools/bench/tokio/build.sh OUT_DIR [CARGO_BUILD_FLAGS...]
#
# Builds this Cargo project (the tokio baselines) with Debian's cargo (not a
# rustup one on PATH), offline, against Debian's crate sources
# (librust-tokio-dev). The project is copied into OUT_DIR first, and cargo's
# home and target directory live there too, so the build writes nothing
# into the tree (or into a test's read-only runfiles). The binaries end up
# in OUT_DIR/target/release. Exit status 3 when cargo or librust-tokio-dev
# is missing (installing them is the caller's choice), 1 when the build
# fails (its log is OUT_DIR/build.log), 0 otherwise.
#
#   tools/bench/tokio/build.sh /tmp/tk --bin tokio_echo_server
set -uo pipefail
[[ $# -ge 1 ]] || { echo "usage: $0 OUT_DIR [CARGO_BUILD_FLAGS...]" >&2; exit 2; }
out=$1
shift
src=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
if [[ ! -x /usr/bin/cargo ]] || ! compgen -G "/usr/share/cargo/registry/tokio-1.*" >/dev/null; then
  exit 3
fi
mkdir -p "$out/cargo_home" "$out/src"
printf '%s\n' '[source.crates-io]' 'replace-with = "debian"' '[source.debian]' \
  'directory = "/usr/share/cargo/registry"' '[net]' 'offline = true' >"$out/cargo_home/config.toml"
cp -rL "$src"/. "$out/src"
(cd "$out/src" && CARGO_HOME="$out/cargo_home" /usr/bin/cargo build -q --release --target-dir "$out/target" "$@") \
  >"$out/build.log" 2>&1 || exit 1
