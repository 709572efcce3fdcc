#!/usr/bin/env bash
# Every benchmark of BENCHMARKS.md, in one command, from a fresh clone with
# only the Rust toolchain, Python 3.11 and Node 20:
#   1. installs the pinned peers (official Python and TypeScript SDKs),
#   2. cargo bench: the core (criterion, allocations) and the adapter
#      overhead (our clients vs raw ureq / raw hyper, static responder and
#      the TypeScript peer),
#   3. the cross-client comparison, recovery latency and herd against the
#      real peers, and the same comparison over TLS, on loopback and through
#      a 20 ms round-trip delay proxy (examples/bench_peers.rs, which also
#      runs the official clients in benches/clients/).
# Prints Markdown; a copy goes to target/bench-report.md. Not part of
# scripts/test.sh: nothing here asserts a timing.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TERM_COLOR=never
JOBS="${JOBS:-2}"
target="${CARGO_TARGET_DIR:-target}"
mkdir -p "$target"
report="$target/bench-report.md"

{
  echo "# scripts/bench.sh: $(date -u +%Y-%m-%d), $(nproc) cores, $(uname -m), git $(git rev-parse --short HEAD 2>/dev/null || echo '?')"
  echo
  bash scripts/peers.sh
  echo
  cargo bench -j"$JOBS" --all-features --bench core --bench adapters
  cargo build -j"$JOBS" --profile bench --features ureq,smol --example bench_peers
  "$target/release/examples/bench_peers"
} 2>&1 | tee "$report"
echo
echo "report: $report"
