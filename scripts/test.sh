#!/usr/bin/env bash
# The README's test command: everything the tests need, then every check.
# Runs from a fresh clone on a machine with only the Rust toolchain,
# Python 3.11 and Node 20: it installs the pinned real-server peers (the
# official Python and TypeScript SDKs, Debian's redis-server) that the
# integration tests start.
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
# An allow list of pure crates (no clock, no network, no threads): JSON,
# error derives, WHATWG URL parsing and its percent-encoding, base64.
direct=$(cargo tree -p mcp-recovery-core -e normal --depth 1 --prefix none \
  | tail -n +2 | awk '{print $1}' | sort -u | tr '\n' ' ')
for dep in $direct; do
  case "$dep" in
    base64 | percent-encoding | serde_json | thiserror | url) ;;
    *) echo "mcp-recovery-core may depend on base64, percent-encoding, serde_json, thiserror and url only, has: $direct" >&2; exit 1 ;;
  esac
done
echo "direct dependencies: $direct"

step "no tokio runtime under the smol client (hyper's tokio/sync only)"
features=$(cargo tree -p mcp-recovery-smol -e features -i tokio 2>/dev/null \
  | grep -oE 'tokio feature "[^"]+"' | sort -u | sed 's/tokio feature //' | tr -d '"' | tr '\n' ' ')
echo "tokio features in the smol client's tree: ${features:-none}"
for f in $features; do
  case "$f" in
    default | sync) ;;
    *) echo "the smol client pulls tokio feature \"$f\": no tokio runtime allowed" >&2; exit 1 ;;
  esac
done

step "clippy (warnings are errors; core/clippy.toml bans clocks, sleeps, threads, sockets)"
cargo clippy -j"$JOBS" --workspace --all-targets --all-features -- -D warnings

step "docs (broken links and missing docs are errors)"
RUSTDOCFLAGS="-D warnings" cargo doc -j"$JOBS" --workspace --all-features --no-deps -q

step "real-server peers (pinned: mcp==2.3.0, @modelcontextprotocol/sdk@1.32.2, @modelcontextprotocol/server@2.4.0; Debian redis-server)"
bash scripts/peers.sh

step "tests"
log=$(mktemp)
scratch=$(mktemp -d)
peer=""
cleanup() {
  if [ -n "$peer" ]; then kill "$peer" 2>/dev/null || true; fi
  rm -rf "$log" "$scratch"
}
trap cleanup EXIT
cargo test -j"$JOBS" --workspace --all-features 2>&1 | tee "$log"
passed=$(grep -Eo '^test result: [a-zA-Z]+\. [0-9]+ passed' "$log" | awk '{s+=$4} END {print s+0}')
failed=$(grep -Eo '[0-9]+ failed;' "$log" | awk '{s+=$1} END {print s+0}')

step "README command #1: the demo (blocking client against its embedded demo server)"
# Exactly the README's command; `set -e` fails the run on a non-zero exit.
out=$(cargo run -q -j"$JOBS" --release --features cli -- demo)
echo "$out"
echo "$out" | grep -q "^summary: 4/4 scenarios went as expected" || {
  echo "the demo did not print its summary of 4 recovered scenarios" >&2
  exit 1
}

step "custom-transport example (the core over raw TCP) against its embedded demo server"
out=$(cargo run -q -j"$JOBS" -p mcp-recovery-core --example tcp_transport)
echo "$out"
echo "$out" | grep -q "session generation 4" || {
  echo "the example did not recover its three lost sessions" >&2
  exit 1
}

step "blocking and smol examples against the real Python peer"
tests/peers/.venv/bin/python tests/peers/python_server.py --state "$scratch" --port 0 >"$scratch/out" &
peer=$!
for _ in $(seq 300); do grep -q '^READY' "$scratch/out" && break; sleep 0.1; done
port=$(awk '/^READY/ {print $2}' "$scratch/out")
[ -n "$port" ] || { echo "the Python peer did not start" >&2; exit 1; }
out=$(cargo run -q -j"$JOBS" --features ureq --example blocking -- \
  "http://127.0.0.1:${port}/mcp" echo '{"text":"hello from the example"}')
echo "$out"
echo "$out" | grep -q "^echo: hello from the example$" || {
  echo "the blocking example did not call the tool" >&2
  exit 1
}

out=$(cargo run -q -j"$JOBS" --features smol --example smol -- \
  "http://127.0.0.1:${port}/mcp" echo '{"text":"hello from smol"}')
echo "$out"
echo "$out" | grep -q "^echo: hello from smol$" || {
  echo "the smol example did not call the tool" >&2
  exit 1
}

step "MCP conformance suite, client scenarios of both requirement sets (2025-11-25, 2026-07-28) against mcpr conformance; baselines in tests/conformance"
bash scripts/conformance.sh

step "soak, short: 1 000 calls per client (8 threads, 32 tasks) against the Python peer restarted every 2 s, on each wire"
# The long runs and their numbers: RELIABILITY.md. Exits non-zero if a call
# is lost, answered wrong, or counter_increment ran more often than allowed.
# The handshake wire (sessions lost to restarts and the idle timeout), then
# the default, which speaks 2026-07-28 to this server (restarts only).
cargo run -q -j"$JOBS" --all-features --example soak -- --client both --calls 1000 --restart-every 2 --protocol legacy
cargo run -q -j"$JOBS" --all-features --example soak -- --client both --calls 1000 --restart-every 2 --protocol auto

step "all green"
echo "tests: ${passed} passed, ${failed} failed"
