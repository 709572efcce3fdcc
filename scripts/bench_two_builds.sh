#!/usr/bin/env bash
# Two builds of our clients side by side, alternating, against one Python
# peer (SSE answers): `bench_peers child calls ureq|smol URL 1000` from each
# build, 3 rounds, printing each run's JSON line (wall_s, cpu_s).
#
#   git worktree add /tmp/before <rev>
#   (cd /tmp/before && CARGO_TARGET_DIR=/tmp/before-target \
#       cargo build --release --features ureq,smol --example bench_peers)
#   cargo build --release --features ureq,smol --example bench_peers
#   bash scripts/bench_two_builds.sh /tmp/before-target/release/examples/bench_peers \
#       target/release/examples/bench_peers
set -euo pipefail
before=$(realpath "$1")
after=$(realpath "$2")
cd "$(dirname "$0")/../tests/peers"
state=$(mktemp -d)
.venv/bin/python python_server.py --state "$state" --mode sse > "$state/out" 2>&1 &
peer=$!
trap 'kill $peer; rm -rf "$state"' EXIT
for _ in $(seq 100); do grep -q READY "$state/out" 2>/dev/null && break; sleep 0.1; done
url="http://127.0.0.1:$(grep READY "$state/out" | cut -d' ' -f2)/mcp"
for round in 1 2 3; do
  for client in ureq smol; do
    echo "$round $client before $("$before" child calls "$client" "$url" 1000)"
    echo "$round $client after $("$after" child calls "$client" "$url" 1000)"
  done
done
