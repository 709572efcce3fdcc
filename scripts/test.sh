#!/usr/bin/env bash
# The README's test command: everything the tests need, then every check.
# Runs from a fresh clone on a machine with only the Rust toolchain,
# Python 3.11 and Node 20. Later suites (real Python/TypeScript peers)
# install their pinned packages here too.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TERM_COLOR=never
JOBS="${JOBS:-2}"

step() { printf '\n== %s\n' "$*"; }

step "toolchain"
cargo --version
for component in rustfmt clippy; do
  if ! rustup component list --installed 2>/dev/null | grep -q "^${component}"; then
    rustup component add "$component"
  fi
done

step "format"
cargo fmt --all -- --check

step "core stays sans-IO"
if grep -rnE 'Instant::now|SystemTime::now|thread::sleep|thread::spawn|std::net::' core/src; then
  echo "core/src reads a clock, sleeps, spawns or touches the network" >&2
  exit 1
fi
direct=$(cargo tree -p mcp-recovery-core -e normal --depth 1 --prefix none \
  | tail -n +2 | awk '{print $1}' | sort -u | tr '\n' ' ')
if [ "$direct" != "serde_json thiserror " ]; then
  echo "mcp-recovery-core must depend on serde_json and thiserror only, has: $direct" >&2
  exit 1
fi
echo "direct dependencies: $direct"

step "clippy (warnings are errors; core/clippy.toml bans clocks, sleeps, threads, sockets)"
cargo clippy -j"$JOBS" --workspace --all-targets --all-features -- -D warnings

step "docs (broken links and missing docs are errors)"
RUSTDOCFLAGS="-D warnings" cargo doc -j"$JOBS" --workspace --all-features --no-deps -q

step "tests"
log=$(mktemp)
trap 'rm -f "$log"' EXIT
cargo test -j"$JOBS" --workspace --all-features 2>&1 | tee "$log"
passed=$(grep -Eo '^test result: [a-zA-Z]+\. [0-9]+ passed' "$log" | awk '{s+=$4} END {print s+0}')
failed=$(grep -Eo '[0-9]+ failed;' "$log" | awk '{s+=$1} END {print s+0}')

step "main job: custom-transport example against the embedded demo server"
out=$(cargo run -q -j"$JOBS" -p mcp-recovery-core --example tcp_transport)
echo "$out"
echo "$out" | grep -q "session generation 4" || {
  echo "the demo did not recover its three lost sessions" >&2
  exit 1
}

step "all green"
echo "tests: ${passed} passed, ${failed} failed"
